"""Loads a service's YAML config into a frozen dataclass, with environment overrides.

Every service describes its settings as a dataclass; this module checks a YAML
mapping against it, so that an unknown key or a bad value stops the service at
start with a message naming the key.
"""

from __future__ import annotations

import dataclasses
import os
import re
import types
import typing
from collections.abc import Mapping
from pathlib import Path
from typing import Any, TypeVar

import yaml

T = TypeVar("T")


class ConfigError(ValueError):
    """A config file or override that cannot be used; the message names the key."""


def load_config(
    cls: type[T],
    path: str | Path | None,
    env: Mapping[str, str] | None = None,
    env_prefix: str = "",
) -> T:
    """Read `path` (or nothing), apply `env_prefix` overrides and build `cls`."""
    raw: dict[str, Any] = {}
    if path is not None:
        raw = read_yaml(Path(path))

    overridden: dict[str, str] = {}
    if env_prefix:
        environment = os.environ if env is None else env
        raw, overridden = _apply_env(cls, raw, environment, env_prefix)

    where = str(path) if path else "config"
    try:
        return from_mapping(cls, raw, where=where)
    except ConfigError as exc:
        # A bad value that came from the environment is named by its variable,
        # not blamed on the file.
        for key, variable in overridden.items():
            prefix = f"{where}.{key}"
            if str(exc).startswith((prefix + ":", prefix + ".", prefix + "[")):
                detail = str(exc).removeprefix(f"{where}.")
                raise ConfigError(f"environment variable {variable}: {detail}") from exc
        raise


def from_mapping(cls: type[T], raw: Mapping[str, Any], where: str = "config") -> T:
    """Build dataclass `cls` from `raw`, naming `where.key` in every error."""
    if not isinstance(raw, Mapping):
        raise ConfigError(f"{where}: expected a mapping, got {type(raw).__name__}")

    fields = {f.name: f for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    unknown = sorted(set(raw) - set(fields))
    if unknown:
        raise ConfigError(
            f"{where}: unknown key {unknown[0]!r}; known keys: {', '.join(fields)}"
        )

    hints = typing.get_type_hints(cls)
    values = {
        name: _coerce_field(fields[name], hints[name], value, f"{where}.{name}")
        for name, value in raw.items()
    }
    missing = [
        name
        for name, f in fields.items()
        if name not in values
        and f.default is dataclasses.MISSING
        and f.default_factory is dataclasses.MISSING
    ]
    if missing:
        raise ConfigError(f"{where}: missing required key {missing[0]!r}")

    try:
        return cls(**values)
    except (ValueError, TypeError) as exc:
        if isinstance(exc, ConfigError):
            raise ConfigError(f"{where}.{exc}") from exc
        raise ConfigError(f"{where}: {exc}") from exc


def _coerce_field(f: dataclasses.Field, hint: Any, value: Any, key: str) -> Any:
    try:
        return _coerce(hint, value, key)
    except ConfigError as exc:
        if f.repr:
            raise
        # A field kept out of repr holds a secret: its error says what was
        # expected and what kind of value came, never the value, and drops
        # the cause that would show it in a traceback.
        expected = str(exc).removeprefix(f"{key}: ").split(", got ")[0]
        raise ConfigError(
            f"{key}: {expected}, got {_yaml_kind(value)} (not shown: a secret)"
        ) from None


def _yaml_kind(value: Any) -> str:
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, Mapping):
        return "a mapping"
    return "nothing" if value is None else f"a {type(value).__name__}"


def check(condition: bool, key: str, message: str) -> None:
    """Raise ConfigError naming `key` unless `condition`; for __post_init__ checks."""
    if not condition:
        raise ConfigError(f"{key}: {message}")


def read_yaml(path: Path) -> dict[str, Any]:
    """The mapping at the top of a YAML file; ConfigError naming what is wrong."""
    try:
        text = path.read_text()
    except OSError as exc:
        raise ConfigError(f"cannot read config file {str(path)!r}: {exc}") from exc
    try:
        data = parse_yaml(text, str(path))
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {exc}") from exc
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: top level must be a mapping of keys")
    return data


def parse_yaml(text: str, source: str) -> Any:
    """YAML as safe_load reads it, but a key given twice in one mapping is an
    error (yaml.YAMLError) rather than the last one kept.

    An error's marks name `source` (a file, a variable) rather than
    "<unicode string>".
    """
    try:
        return yaml.load(text, Loader=_UniqueKeyLoader)
    except yaml.YAMLError as exc:
        for mark in (
            getattr(exc, "context_mark", None),
            getattr(exc, "problem_mark", None),
        ):
            if mark is not None:
                mark.name = source
        raise


class _UniqueKeyLoader(yaml.SafeLoader):
    """A SafeLoader that refuses a key given twice in one mapping.

    PyYAML keeps the last of them silently, so a second `policies:` block
    would replace the first unseen; Prometheus and Alertmanager refuse such
    a file, and so do we.
    """


def _unique_mapping(loader: yaml.SafeLoader, node: yaml.MappingNode) -> dict:
    first_lines: dict[Any, int] = {}
    for key_node, _ in node.value:
        if key_node.tag == "tag:yaml.org,2002:merge":
            continue  # `<<` overrides on purpose
        key = loader.construct_object(key_node, deep=True)
        if not isinstance(key, typing.Hashable):
            continue  # construct_mapping says what is wrong with it
        if key in first_lines:
            raise yaml.constructor.ConstructorError(
                None,
                None,
                f"key {key!r} is given twice in one mapping"
                f" (first on line {first_lines[key]})",
                key_node.start_mark,
            )
        first_lines[key] = key_node.start_mark.line + 1
    return loader.construct_mapping(node, deep=True)


_UniqueKeyLoader.add_constructor(
    yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _unique_mapping
)


def _apply_env(
    cls: type, raw: dict[str, Any], env: Mapping[str, str], prefix: str
) -> tuple[dict[str, Any], dict[str, str]]:
    # Only top-level scalar keys and lists can be overridden; the value is parsed
    # as YAML so that AIOPS_X_PORTS='[1, 2]' and AIOPS_X_DEBUG=true both work.
    merged = dict(raw)
    overridden: dict[str, str] = {}
    hints = typing.get_type_hints(cls)
    known = {f.name for f in dataclasses.fields(cls)}
    secret = {f.name for f in dataclasses.fields(cls) if not f.repr}
    for name, value in env.items():
        if not name.startswith(prefix):
            continue
        key = name[len(prefix) :].lower()
        if key not in known:
            raise ConfigError(
                f"environment variable {name}: unknown key {key!r} for {prefix}*"
            )
        if key in overridden:
            # Names differ in case only: which one won would be chance.
            raise ConfigError(
                f"environment variables {overridden[key]} and {name} both set "
                f"key {key!r}"
            )
        if key in secret:
            # A token is text as written: read as YAML, digits would be a
            # number and a stray bracket an error that quotes the secret.
            merged[key] = value
            overridden[key] = name
            continue
        try:
            parsed = parse_yaml(value, name) if value != "" else ""
        except yaml.YAMLError as exc:
            raise ConfigError(f"environment variable {name}: {exc}") from exc

        # A word meant as text; unlike in a file, what was written is at hand.
        if isinstance(parsed, bool) and not _accepts(hints[key], parsed):
            if _accepts(hints[key], value):
                raise ConfigError(
                    f"environment variable {name}: {key}: YAML reads {value!r} as "
                    f'the boolean {_yaml_word(parsed)}; set it to "{value}", quotes '
                    "included, to pass the word"
                )
            # Quoting would not help either: the error shows the word as set.
            parsed = value
        merged[key] = parsed
        overridden[key] = name
    return merged, overridden


def _accepts(hint: Any, value: Any) -> bool:
    try:
        _coerce(hint, value, "")
    except ConfigError:
        return False
    return True


def _yaml_word(value: bool) -> str:
    return "true" if value else "false"


# YAML 1.1, which PyYAML reads, takes these unquoted words (and their
# capitalised forms) as booleans, besides true and false.
_BOOLEAN_ALIASES = {True: ("yes", "on"), False: ("no", "off")}

# A number with an exponent as people write it, which YAML 1.1 reads as text
# unless it has a dot and a signed exponent.
EXPONENT = re.compile(r"[-+]?([0-9]+\.?[0-9]*|\.[0-9]+)[eE][-+]?[0-9]+")

_SCALAR_TAGS = {f"tag:yaml.org,2002:{kind}" for kind in ("bool", "int", "float")}


def _unquoted(text: str) -> bool | int | float | None:
    """The boolean or number YAML reads `text` as when unquoted; None if text."""
    resolver = yaml.resolver.Resolver()
    if resolver.resolve(yaml.ScalarNode, text, (True, False)) not in _SCALAR_TAGS:
        return None
    return yaml.safe_load(text)


def _shown_as_text(value: Any) -> str:
    """`value` where text belongs; a boolean there was most likely a word."""
    if isinstance(value, bool):
        return (
            f"the boolean {_yaml_word(value)}: YAML reads unquoted yes, no, on, "
            "off, true and false as booleans; quote a word meant as text"
        )
    return repr(value)


def _shown_for(hint: Any, value: Any) -> str:
    """`value` where a boolean or number belongs, in the form it was written."""
    if isinstance(value, bool):
        word = _yaml_word(value)
        aliases = " and ".join(_BOOLEAN_ALIASES[value])
        return f"{word}, a YAML boolean (unquoted {aliases} read as {word} too)"

    # Text YAML would have read as a fitting value, had it not been quoted.
    meant = _unquoted(value) if isinstance(value, str) else None
    if meant is not None and _accepts(hint, meant):
        kind, shown = (
            ("boolean", _yaml_word(meant))
            if isinstance(meant, bool)
            else ("number", repr(meant))
        )
        return (
            f"the text {value!r} (quoted in YAML, so a string); write it unquoted "
            f"to give the YAML {kind} {shown}"
        )
    if meant is None and isinstance(value, str) and EXPONENT.fullmatch(value):
        # YAML 1.1 reads 1e3 as text: its exponents need a dot and a sign.
        return (
            f"the text {value!r}: YAML reads a number with an exponent only with "
            f"a dot and a sign (1.0e+3); write {float(value):g}"
        )
    return repr(value)


def _shown_among(choices: tuple[Any, ...], value: Any) -> str:
    """`value` where one of `choices` belongs; quoting is advised only if it helps."""
    if not isinstance(value, bool):
        return repr(value)

    word = _yaml_word(value)
    aliases = ", ".join(_BOOLEAN_ALIASES[value])
    read = f"the boolean {word}: YAML reads unquoted {aliases} and {word} as {word}"
    fitting = [c for c in choices if isinstance(c, str) and _unquoted(c) is value]
    if fitting:
        return f"{read}; quote {' or '.join(map(repr, fitting))} to pass the word"
    return f"{read}, none of which is a valid value"


def _coerce(hint: Any, value: Any, key: str) -> Any:
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)

    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        options = [a for a in args if a is not type(None)]
        errors = []
        for option in options:
            try:
                return _coerce(option, value, key)
            except ConfigError as exc:
                errors.append(str(exc))
        raise ConfigError(errors[0])

    if dataclasses.is_dataclass(hint):
        return from_mapping(hint, value, where=key)  # type: ignore[arg-type]

    if origin in (list, tuple):
        if not isinstance(value, list):
            raise ConfigError(f"{key}: expected a list, got {value!r}")
        item = args[0] if args else Any
        items = [_coerce(item, v, f"{key}[{i}]") for i, v in enumerate(value)]
        return tuple(items)

    if origin is dict:
        if not isinstance(value, Mapping):
            raise ConfigError(f"{key}: expected a mapping, got {value!r}")
        key_type, value_type = args or (Any, Any)
        return {
            _coerce(key_type, k, f"{key}"): _coerce(value_type, v, f"{key}.{k}")
            for k, v in value.items()
        }

    return _coerce_scalar(hint, value, key)


def _coerce_scalar(hint: Any, value: Any, key: str) -> Any:
    if hint is Any:
        return value
    if hint is bool:
        if isinstance(value, bool):
            return value
        raise ConfigError(
            f"{key}: expected true or false, got {_shown_for(hint, value)}"
        )
    if hint is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        raise ConfigError(
            f"{key}: expected a whole number, got {_shown_for(hint, value)}"
        )
    if hint is float:
        if isinstance(value, int | float) and not isinstance(value, bool):
            return float(value)
        raise ConfigError(f"{key}: expected a number, got {_shown_for(hint, value)}")
    if hint is str:
        if isinstance(value, str):
            return value
        raise ConfigError(f"{key}: expected a string, got {_shown_as_text(value)}")
    if typing.get_origin(hint) is typing.Literal:
        choices = typing.get_args(hint)
        if value in choices:
            return value
        raise ConfigError(
            f"{key}: expected one of {', '.join(map(repr, choices))}, "
            f"got {_shown_among(choices, value)}"
        )
    raise ConfigError(f"{key}: unsupported type {hint!r}")
