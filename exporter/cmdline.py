"""Turns a process's arguments into a label value with secrets taken out.

Command lines are only exported when the config asks; even then passwords,
tokens and keys passed as arguments must not reach Prometheus.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

REDACTED = "<redacted>"
MAX_CHARS = 256

# Words that make an option or variable name a secret's name, matched against
# whole parts of the name so that --tokenizer or --author stay readable.
_SECRET_WORDS = frozenset(
    "pass password passwd passphrase pwd secret token credential credentials auth "
    "cookie signature apikey".split()
)
_SECRET_SUFFIXES = ("password", "passwd", "secret", "token", "apikey", "accesskey")
_KEY_QUALIFIERS = frozenset(
    "api access secret private signing encryption master".split()
)
# --name=value, -name=value and NAME=value.
_ASSIGNMENT = re.compile(r"^(-{0,2}[A-Za-z][\w.-]*)=(.*)$", re.DOTALL)
_FLAG = re.compile(r"^-{1,2}[A-Za-z][\w.-]*$")
# scheme://user:password@host keeps the user and the host.
_URL_PASSWORD = re.compile(r"(\b[a-z][a-z0-9+.-]*://[^/\s:@]*:)[^/\s@]+@", re.I)
# Header values as curl and friends take them: -H 'Authorization: Bearer x'.
_HEADER = re.compile(
    r"\b(authorization|proxy-authorization|x-api-key|api-key|cookie|x-auth-token)"
    r"\s*:\s*\S.*",
    re.IGNORECASE,
)
# Token shapes that are secrets wherever they appear: AWS access key ids,
# GitHub, Slack, Hugging Face and OpenAI-style keys, and JSON web tokens.
_TOKEN = re.compile(
    r"\b(AKIA[0-9A-Z]{16}|gh[pousr]_[A-Za-z0-9]{30,}|xox[abprs]-[A-Za-z0-9-]{10,}"
    r"|hf_[A-Za-z0-9]{30,}|sk-[A-Za-z0-9_-]{20,}"
    r"|eyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,})"
)


def redact_cmdline(args: Sequence[str], max_chars: int = MAX_CHARS) -> str:
    """Join `args` with spaces, secrets replaced, cut to `max_chars`."""
    out: list[str] = []
    hide_next = False
    for arg in args:
        if hide_next and not arg.startswith("-"):
            out.append(REDACTED)
            hide_next = False
            continue
        hide_next = False

        assignment = _ASSIGNMENT.match(arg)
        if assignment and _is_secret_name(assignment.group(1)):
            out.append(f"{assignment.group(1)}={REDACTED}")
            continue
        if _FLAG.match(arg) and _is_secret_name(arg):
            # --password hunter2: the secret is the next argument.
            hide_next = True
            out.append(arg)
            continue

        out.append(_scrub(arg))

    text = " ".join(out)
    if len(text) > max_chars:
        return text[: max_chars - 3] + "..."
    return text


def _scrub(arg: str) -> str:
    arg = _URL_PASSWORD.sub(rf"\g<1>{REDACTED}@", arg)
    arg = _HEADER.sub(lambda m: f"{m.group(1)}: {REDACTED}", arg)
    return _TOKEN.sub(REDACTED, arg)


def _is_secret_name(name: str) -> bool:
    parts = [p for p in re.split(r"[-_.]", name.lower()) if p]
    for before, part in zip(["", *parts], parts, strict=False):
        if part in _SECRET_WORDS or part.endswith(_SECRET_SUFFIXES):
            return True
        if part == "key" and before in _KEY_QUALIFIERS:
            return True
    return False
