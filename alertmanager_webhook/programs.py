"""Finds the programs that command policies name, once at start, on PATH.

A bare name (`touch`) becomes the path found, so that what runs is what the
start logged, whatever PATH holds by then.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import shutil
from collections.abc import Callable

from alertmanager_webhook.config import WebhookConfig
from alertmanager_webhook.policy_config import PolicyConfig
from alertmanager_webhook.templates import fill_argv

log = logging.getLogger(__name__)

Which = Callable[[str], str | None]


def resolve_programs(
    config: WebhookConfig, which: Which = shutil.which
) -> WebhookConfig:
    """Return `config` with each command policy's program found; log where.

    A program not found is warned of, not refused: it may be installed after
    the start, and a receiver that only plans must still run. Its bare name
    is then looked up on PATH at each run, as before.
    """
    policies = tuple(_resolved(policy, which) for policy in config.policies)
    return dataclasses.replace(config, policies=policies)


def _resolved(policy: PolicyConfig, which: Which) -> PolicyConfig:
    if policy.action != "command":
        return policy

    # argv[0] takes no label (params.py); filling only undoes doubled braces.
    [program] = fill_argv(policy.argv[:1], {})
    found = which(program)
    if found is None:
        log.warning(
            "program not found or not executable policy=%s program=%r; "
            "its actions will fail until it is installed",
            policy.name,
            program,
        )
        return policy

    # A relative PATH entry would find another file once the cwd changed.
    path = found if os.sep in program else os.path.abspath(found)
    log.info("program policy=%s program=%r path=%s", policy.name, program, path)
    template = path.replace("{", "{{").replace("}", "}}")
    return dataclasses.replace(policy, argv=(template, *policy.argv[1:]))
