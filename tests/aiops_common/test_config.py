"""The shared loader: every error names the key, or the variable it came from."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import pytest

from aiops_common.config import ConfigError, check, load_config


@dataclass(frozen=True)
class Query:
    name: str
    promql: str


@dataclass(frozen=True)
class Settings:
    interval_seconds: float = 15.0
    debug: bool = False
    queries: tuple[Query, ...] = ()
    labels: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        check(self.interval_seconds > 0, "interval_seconds", "must be above 0")


def write(tmp_path, text: str):
    path = tmp_path / "svc.yml"
    path.write_text(text)
    return path


def test_file_values_and_environment_overrides(tmp_path):
    path = write(tmp_path, "interval_seconds: 5\nqueries: [{name: a, promql: up}]\n")

    settings = load_config(Settings, path, env={"SVC_DEBUG": "true"}, env_prefix="SVC_")

    assert settings == Settings(5.0, True, (Query("a", "up"),), {})


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("intervall_seconds: 5\n", "svc.yml: unknown key 'intervall_seconds'"),
        ("interval_seconds: fast\n", "svc.yml.interval_seconds: expected a number"),
        ("interval_seconds: -1\n", "svc.yml.interval_seconds: must be above 0"),
        ("queries: [{name: a}]\n", "svc.yml.queries[0]: missing required key 'promql'"),
        ("labels: {a: 1}\n", "svc.yml.labels.a: expected a string"),
        ("- a\n", "svc.yml: top level must be a mapping"),
    ],
)
def test_file_errors_name_the_key(tmp_path, text, message):
    with pytest.raises(ConfigError) as caught:
        load_config(Settings, write(tmp_path, text), env={}, env_prefix="SVC_")

    assert str(caught.value).startswith(str(tmp_path / message))


def test_a_bad_override_names_its_variable_not_the_file(tmp_path):
    path = write(tmp_path, "interval_seconds: 5\n")

    with pytest.raises(
        ConfigError,
        match="^environment variable SVC_INTERVAL_SECONDS: interval_seconds: "
        "expected a number",
    ):
        load_config(
            Settings, path, env={"SVC_INTERVAL_SECONDS": "abc"}, env_prefix="SVC_"
        )
    with pytest.raises(ConfigError, match="unknown key 'nope'"):
        load_config(Settings, path, env={"SVC_NOPE": "1"}, env_prefix="SVC_")


def test_an_unreadable_file_is_named(tmp_path):
    with pytest.raises(ConfigError, match="cannot read config file"):
        load_config(Settings, tmp_path / "missing.yml")


@dataclass(frozen=True)
class Words:
    log_level: str = "info"
    mode: Literal["on", "off"] = "on"
    debug: bool = False
    level: Literal["debug", "info"] = "info"
    retries: int = 0
    ratio: float = 0.5


@pytest.mark.parametrize(
    ("variable", "value", "word"),
    [("SVC_LOG_LEVEL", "Yes", "true"), ("SVC_MODE", "off", "false")],
)
def test_a_word_yaml_reads_as_a_boolean_is_shown_as_written(variable, value, word):
    with pytest.raises(ConfigError) as caught:
        load_config(Words, None, env={variable: value}, env_prefix="SVC_")

    key = variable.removeprefix("SVC_").lower()
    assert str(caught.value) == (
        f"environment variable {variable}: {key}: YAML reads {value!r} as the "
        f'boolean {word}; set it to "{value}", quotes included, to pass the word'
    )


def test_a_boolean_word_still_sets_a_boolean_key():
    words = load_config(Words, None, env={"SVC_DEBUG": "off"}, env_prefix="SVC_")

    assert words.debug is False


def test_a_file_boolean_where_a_string_belongs_says_to_quote_it(tmp_path):
    path = write(tmp_path, "log_level: off\n")

    with pytest.raises(ConfigError) as caught:
        load_config(Words, path)

    assert str(caught.value) == (
        f"{path}.log_level: expected a string, got the boolean false: YAML reads "
        "unquoted yes, no, on, off, true and false as booleans; quote a word meant "
        "as text"
    )


BOOLEAN_FALSE = "the boolean false: YAML reads unquoted no, off and false as false"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            "debug: 'true'\n",
            "debug: expected true or false, got the text 'true' (quoted in YAML, "
            "so a string); write it unquoted to give the YAML boolean true",
        ),
        (
            "debug: 'Off'\n",
            "debug: expected true or false, got the text 'Off' (quoted in YAML, "
            "so a string); write it unquoted to give the YAML boolean false",
        ),
        ("debug: maybe\n", "debug: expected true or false, got 'maybe'"),
        (
            "retries: true\n",
            "retries: expected a whole number, got true, a YAML boolean (unquoted "
            "yes and on read as true too)",
        ),
        (
            "retries: '3'\n",
            "retries: expected a whole number, got the text '3' (quoted in YAML, "
            "so a string); write it unquoted to give the YAML number 3",
        ),
        ("retries: 2.5\n", "retries: expected a whole number, got 2.5"),
        (
            "ratio: no\n",
            "ratio: expected a number, got false, a YAML boolean (unquoted no and "
            "off read as false too)",
        ),
        (
            "ratio: 25e-2\n",
            "ratio: expected a number, got the text '25e-2': YAML reads a number "
            "with an exponent only with a dot and a sign (1.0e+3); write 0.25",
        ),
        (
            "ratio: '0.25'\n",
            "ratio: expected a number, got the text '0.25' (quoted in YAML, so a "
            "string); write it unquoted to give the YAML number 0.25",
        ),
        (
            "mode: off\n",
            f"mode: expected one of 'on', 'off', got {BOOLEAN_FALSE}; quote 'off' "
            "to pass the word",
        ),
        (
            "level: off\n",
            f"level: expected one of 'debug', 'info', got {BOOLEAN_FALSE}, none of "
            "which is a valid value",
        ),
    ],
    ids=[
        "quoted-true",
        "quoted-off",
        "no-boolean-word",
        "boolean-for-int",
        "quoted-int",
        "float-for-int",
        "boolean-for-float",
        "exponent-without-dot",
        "quoted-float",
        "boolean-for-valid-word",
        "boolean-for-no-valid-word",
    ],
)
def test_a_value_of_the_wrong_yaml_type_is_shown_as_written(tmp_path, text, message):
    path = write(tmp_path, text)

    with pytest.raises(ConfigError) as caught:
        load_config(Words, path)

    assert str(caught.value) == f"{path}.{message}"


@pytest.mark.parametrize(
    ("variable", "value", "message"),
    [
        ("SVC_LEVEL", "off", "level: expected one of 'debug', 'info', got 'off'"),
        ("SVC_RETRIES", "yes", "retries: expected a whole number, got 'yes'"),
    ],
)
def test_an_override_no_reading_accepts_is_shown_as_written(variable, value, message):
    # Neither the boolean YAML makes of the word nor the word itself would do:
    # quoting it would only lead to a second error.
    with pytest.raises(ConfigError) as caught:
        load_config(Words, None, env={variable: value}, env_prefix="SVC_")

    assert str(caught.value) == f"environment variable {variable}: {message}"


def test_a_key_given_twice_is_refused_with_both_lines(tmp_path):
    # YAML parsers often keep the last silently: a second `queries:` would
    # drop the first unseen.
    path = write(
        tmp_path,
        "queries:\n  - {name: a, promql: up}\ninterval_seconds: 5\n"
        "queries:\n  - {name: b, promql: up}\n",
    )

    with pytest.raises(ConfigError) as caught:
        load_config(Settings, path)

    message = str(caught.value)
    assert message.startswith(f"{path}: not valid YAML: ")
    assert "key 'queries' is given twice in one mapping (first on line 1)" in message
    assert f'in "{path}", line 4, column 1' in message


def test_a_key_given_twice_in_a_nested_mapping_is_refused(tmp_path):
    path = write(tmp_path, "labels:\n  team: a\n  team: b\n")

    with pytest.raises(ConfigError, match="key 'team' is given twice"):
        load_config(Settings, path)


def test_merge_keys_still_override_what_they_merge(tmp_path):
    path = write(
        tmp_path,
        "labels:\n  <<: {team: a, site: x}\n  team: b\n",
    )

    assert load_config(Settings, path).labels == {"team": "b", "site": "x"}


def test_a_key_given_twice_in_an_override_is_refused(tmp_path):
    with pytest.raises(ConfigError) as caught:
        load_config(
            Settings,
            None,
            env={"SVC_LABELS": "{team: a, team: b}"},
            env_prefix="SVC_",
        )

    assert str(caught.value).startswith("environment variable SVC_LABELS: ")
    assert "key 'team' is given twice" in str(caught.value)
    assert 'in "SVC_LABELS", line 1' in str(caught.value)


def test_two_variables_for_one_key_are_refused(tmp_path):
    # Names that differ in case only: which one won would be chance.
    with pytest.raises(ConfigError) as caught:
        load_config(
            Settings,
            None,
            env={"SVC_INTERVAL_SECONDS": "1", "SVC_interval_seconds": "5"},
            env_prefix="SVC_",
        )

    assert str(caught.value) == (
        "environment variables SVC_INTERVAL_SECONDS and SVC_interval_seconds "
        "both set key 'interval_seconds'"
    )


@dataclass(frozen=True)
class WithSecret:
    # Kept out of repr: the loader's errors must not show it either.
    token: str = field(default="", repr=False)


@pytest.mark.parametrize(
    "text", ["token: 8472910364\n", "token: [s3cr3t-x]\n", "token: {a: s3cr3t-x}\n"]
)
def test_a_bad_secret_in_the_file_is_named_not_shown(tmp_path, text):
    with pytest.raises(ConfigError) as caught:
        load_config(WithSecret, write(tmp_path, text), env={}, env_prefix="SVC_")

    message = str(caught.value)
    assert message.startswith(str(tmp_path / "svc.yml.token: expected a string, got"))
    assert message.endswith("(not shown: a secret)")
    assert "8472910364" not in message
    assert "s3cr3t" not in message


@pytest.mark.parametrize("value", ["[s3cr3t-x", "8472910364", "yes", "0x1f"])
def test_a_secret_override_is_taken_as_written(value):
    settings = load_config(
        WithSecret, None, env={"SVC_TOKEN": value}, env_prefix="SVC_"
    )

    assert settings.token == value
