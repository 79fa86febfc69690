"""Fills policy templates from alert labels, checking every value on the way in.

A label value reaches an argument list, a file path, a URL or a PromQL query
only through here: plain names for arguments and paths, escaping for PromQL.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

PLACEHOLDER = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)\}")

# In an argument, as in Python's str.format: `{label}` is the label's value
# and `{{` and `}}` are braces; a brace that is neither is refused at load,
# where it used to be kept or eaten depending on what followed it.
ARG_PART = re.compile(r"\{\{|\}\}|\{([A-Za-z_][A-Za-z0-9_]*)\}|[{}]")

# A plain name: no path separator, no leading dash (it would read as an
# option), no leading dot (no '..'), no whitespace and no shell metacharacter.
SAFE_VALUE = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.:@+-]{0,127}")

# Kubernetes object names: RFC 1123 labels and subdomains.
K8S_NAME = re.compile(r"[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?")


class LabelError(ValueError):
    """A label a template needs is missing or not a safe value; names the label."""


class TemplateError(ValueError):
    """An argument holds a brace that is neither doubled nor around a label name."""


def safe_value(labels: Mapping[str, str], name: str, pattern: re.Pattern[str]) -> str:
    """Return label `name` if it fully matches `pattern`, else raise LabelError."""
    value = labels.get(name)
    if not value:
        raise LabelError(f"alert has no {name} label")
    if not pattern.fullmatch(value):
        raise LabelError(f"label {name}={_short(value)} is not a plain name")
    return value


def arg_labels(arg: str) -> list[str]:
    """The labels argument template `arg` names; TemplateError at a lone brace."""
    names = []
    for match in ARG_PART.finditer(arg):
        if match[1]:
            names.append(match[1])
        elif len(match[0]) == 1:
            raise TemplateError(_lone(match))
    return names


def fill_argv(argv: tuple[str, ...], labels: Mapping[str, str]) -> list[str]:
    """Replace `{label}` in each argument by that label's checked value, and
    `{{` and `}}` by a brace."""
    return [_fill(arg, labels) for arg in argv]


def _fill(arg: str, labels: Mapping[str, str]) -> str:
    def one(match: re.Match[str]) -> str:
        if match[1]:
            return safe_value(labels, match[1], SAFE_VALUE)
        if len(match[0]) == 1:
            raise TemplateError(_lone(match))
        return match[0][0]

    return ARG_PART.sub(one, arg)


def _lone(match: re.Match[str]) -> str:
    brace, start = match[0], match.start()
    close = match.string.find("}", start) if brace == "{" else -1
    if close != -1:
        # `{ job }` or `{0}`: meant as a label, with a name that is none.
        return (
            f"{brace!r} at offset {start} around {match.string[start : close + 1]!r}"
            ", which is no label name (letters, digits and _, not first a digit);"
            " write {{ for a brace"
        )
    return (
        f"lone {brace!r} at offset {start}; write {brace * 2} for a brace, "
        "{label} for a label's value"
    )


def promql_string(value: str) -> str:
    """Escape `value` for use inside a double-quoted PromQL string."""
    return (
        value.replace("\\", "\\\\")
        .replace('"', '\\"')
        .replace("\n", "\\n")
        .replace("\r", "\\r")
    )


def fill_promql(query: str, labels: Mapping[str, str]) -> str:
    """Replace `{label}` in a PromQL template by the escaped label value.

    A bare `{identifier}` is never valid PromQL (a selector needs an operator),
    so the placeholders cannot be mistaken for the query's own braces.
    """

    def one(match: re.Match[str]) -> str:
        if match[1] not in labels:
            raise LabelError(f"alert has no {match[1]} label")
        return promql_string(labels[match[1]])

    return PLACEHOLDER.sub(one, query)


def _short(value: str) -> str:
    # Shown to operators in plans and logs; keep hostile values short and quoted.
    text = repr(value)
    return text if len(text) <= 48 else text[:45] + "..."
