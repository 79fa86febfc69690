"""redact_cmdline: secrets in options, variables, URLs, headers and token shapes
are replaced; everything else in a command line stays readable."""

from __future__ import annotations

import pytest

from exporter.cmdline import redact_cmdline

GITHUB_TOKEN = "ghp_aBcDeFgHiJkLmNoPqRsTuVwXyZ0123456789"


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (
            ["mysql", "--password=hunter2", "-u", "app"],
            "mysql --password=<redacted> -u app",
        ),
        (["psql", "--password", "hunter2", "db"], "psql --password <redacted> db"),
        (["trainer", "--hf-token", "abc"], "trainer --hf-token <redacted>"),
        (["svc", "--apiKey=k1"], "svc --apiKey=<redacted>"),
        (["svc", "--client-secret", "s"], "svc --client-secret <redacted>"),
        (["ssh-agent", "--private-key", "/k"], "ssh-agent --private-key <redacted>"),
        (
            ["env", "AWS_SECRET_ACCESS_KEY=wJalr", "x"],
            "env AWS_SECRET_ACCESS_KEY=<redacted> x",
        ),
        (
            ["env", "DB_PASS=p", "GITHUB_TOKEN=t"],
            "env DB_PASS=<redacted> GITHUB_TOKEN=<redacted>",
        ),
        (
            ["sync", "postgres://app:s3cr3t@db:5432/x"],
            "sync postgres://app:<redacted>@db:5432/x",
        ),
        (
            ["curl", "-H", "Authorization: Bearer eyJhbGciOi.x.y", "http://h/"],
            "curl -H Authorization: <redacted> http://h/",
        ),
        (
            ["git", "push", f"https://{GITHUB_TOKEN}@github.com/o/r"],
            "git push https://<redacted>@github.com/o/r",
        ),
        (["aws", "--profile", "AKIAIOSFODNN7EXAMPLE"], "aws --profile <redacted>"),
    ],
)
def test_secrets_are_redacted(args, expected):
    assert redact_cmdline(args) == expected


@pytest.mark.parametrize(
    "args",
    [
        ["python", "train.py", "--tokenizer", "gpt2", "--author", "me"],
        ["torchrun", "--nproc-per-node=8", "--session-id", "42"],
        ["nginx", "-g", "daemon off;"],
        ["sleep", "3600"],
    ],
)
def test_ordinary_arguments_stay(args):
    assert redact_cmdline(args) == " ".join(args)


def test_a_flag_followed_by_another_flag_hides_nothing():
    assert redact_cmdline(["app", "--token", "--verbose"]) == "app --token --verbose"


def test_long_command_lines_are_cut():
    result = redact_cmdline(["python", "-c", "x" * 1000], max_chars=40)

    assert len(result) == 40
    assert result.endswith("...")
