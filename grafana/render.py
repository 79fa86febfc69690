"""Renders the dashboards to the JSON committed under grafana/json/, and checks
a dashboard's JSON against grafana-foundation-sdk's model.

`python -m grafana` writes the files; `python -m grafana --check` fails when a
committed file differs from what the code builds.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from grafana_foundation_sdk.cog import runtime
from grafana_foundation_sdk.cog.encoder import JSONEncoder
from grafana_foundation_sdk.cog.plugins import register_default_plugins
from grafana_foundation_sdk.models.dashboard import Dashboard

from grafana.dashboards import DASHBOARDS

JSON_DIR = Path(__file__).resolve().parent / "json"
# Grafana refuses longer UIDs.
MAX_UID_LENGTH = 40
GRID_COLUMNS = 24
DATASOURCE = {"type": "prometheus", "uid": "${datasource}"}
# Variables Grafana defines itself: intervals, and the fields of the row or
# series a data link is clicked on.
BUILTIN_VARIABLES = {"__rate_interval", "__range", "__interval", "__data"}
VARIABLE = re.compile(r"\$\{?(\w+)")


def render(model: Dashboard) -> str:
    """The dashboard as stable JSON text: sorted keys, two-space indent."""
    return json.dumps(model, cls=JSONEncoder, indent=2, sort_keys=True) + "\n"


def render_all() -> dict[str, str]:
    """File name -> JSON text of every dashboard."""
    return {f"{name}.json": render(build()) for name, build in DASHBOARDS.items()}


def model_problems(data: dict[str, Any]) -> list[str]:
    """What the SDK's model does not accept in `data`, as readable lines.

    The model decodes the JSON and encodes it again; a key the schema does not
    know is dropped on the way and a mistyped value comes back different, so
    every value of the input must come back unchanged. Defaults the model adds
    are not problems.
    """
    register_default_plugins()
    try:
        decoded = Dashboard.from_json(data)
        again = json.loads(json.dumps(decoded, cls=JSONEncoder))
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        return [f"the model cannot decode the dashboard: {exc!r}"]

    problems = [
        f"{path}: {problem}" for path, problem in _differences(data, again, "$")
    ]
    problems += _semantic_problems(data)
    return problems


def _differences(given: Any, back: Any, path: str) -> Iterator[tuple[str, str]]:
    if isinstance(given, dict):
        if not isinstance(back, dict):
            yield path, f"object came back as {type(back).__name__}"
            return
        for key, value in given.items():
            if key not in back:
                yield f"{path}.{key}", "not in the model"
            else:
                yield from _differences(value, back[key], f"{path}.{key}")
    elif isinstance(given, list):
        if not isinstance(back, list) or len(back) != len(given):
            yield path, "list came back different"
            return
        for index, (one, other) in enumerate(zip(given, back, strict=True)):
            yield from _differences(one, other, f"{path}[{index}]")
    elif given != back:
        yield path, f"{given!r} came back as {back!r}"


def _semantic_problems(data: dict[str, Any]) -> list[str]:
    """What the model accepts but Grafana would show wrong: see the checks."""
    problems = []
    uid = data.get("uid", "")
    if not 1 <= len(uid) <= MAX_UID_LENGTH:
        problems.append(f"uid {uid!r} must have 1 to {MAX_UID_LENGTH} characters")

    known = runtime.Runtime().panelcfg_variants
    ids = [panel.get("id") for panel in data.get("panels", [])]
    if len(set(ids)) != len(ids) or None in ids:
        problems.append(f"panel ids must be present and unique, got {ids!r}")
    for panel in data.get("panels", []):
        kind = panel.get("type")
        if kind != "row" and kind not in known:
            problems.append(f"panel {panel.get('title')!r}: unknown type {kind!r}")
        for target in panel.get("targets", []):
            if not target.get("refId") or not target.get("expr"):
                problems.append(
                    f"panel {panel.get('title')!r}: target lacks refId/expr"
                )
    problems += _panel_problems(data)
    problems += _table_problems(data)
    problems += _layout_problems(data)
    problems += _variable_problems(data)
    return problems


def _panel_problems(data: dict[str, Any]) -> list[str]:
    problems = []
    for panel in data.get("panels", []):
        if panel.get("type") == "row":
            continue
        title = panel.get("title")
        # A panel without the variable reads Grafana's default source, not the
        # one the user picked.
        sources = [panel.get("datasource")]
        sources += [t.get("datasource") for t in panel.get("targets", [])]
        if any(source != DATASOURCE for source in sources):
            problems.append(f"panel {title!r}: data source is not ${{datasource}}")
        defaults = panel.get("fieldConfig", {}).get("defaults", {})
        if not defaults.get("unit"):
            problems.append(f"panel {title!r}: no unit")
        if not panel.get("description"):
            problems.append(f"panel {title!r}: no description")
    return problems


def _table_problems(data: dict[str, Any]) -> list[str]:
    """Tables of several queries whose value columns keep Grafana's names.

    Merged, each query's value column is "Value #<refId>"; `organize` must
    rename it or leave it out, and an override must name it as renamed.
    """
    problems = []
    for panel in data.get("panels", []):
        targets = panel.get("targets", [])
        if panel.get("type") != "table" or len(targets) < 2:
            continue
        title = panel.get("title")
        steps = {
            t.get("id"): t.get("options") or {}
            for t in panel.get("transformations", [])
        }
        if "merge" not in steps:
            problems.append(f"panel {title!r}: its queries are not merged")
        renamed = steps.get("organize", {}).get("renameByName", {})
        excluded = steps.get("organize", {}).get("excludeByName", {})
        for target in targets:
            column = f"Value #{target.get('refId')}"
            if not renamed.get(column) and not excluded.get(column):
                problems.append(f"panel {title!r}: column {column!r} is not renamed")
        overrides = panel.get("fieldConfig", {}).get("overrides", [])
        for override in overrides:
            matcher = override.get("matcher", {})
            if matcher.get("id") == "byName" and matcher.get("options") in renamed:
                problems.append(
                    f"panel {title!r}: override of {matcher['options']!r} "
                    "matches nothing once it is renamed"
                )
    return problems


def _layout_problems(data: dict[str, Any]) -> list[str]:
    """Panels outside the 24 columns or on top of each other."""
    problems = []
    taken: dict[tuple[int, int], str] = {}
    for panel in data.get("panels", []):
        title = panel.get("title")
        pos = panel.get("gridPos") or {}
        x, y, w, h = (pos.get(k, 0) for k in ("x", "y", "w", "h"))
        if w <= 0 or h <= 0 or x < 0 or y < 0 or x + w > GRID_COLUMNS:
            problems.append(f"panel {title!r}: gridPos {pos!r} is off the grid")
            continue
        for cell in ((cx, cy) for cx in range(x, x + w) for cy in range(y, y + h)):
            if cell in taken:
                problems.append(f"panel {title!r} overlaps {taken[cell]!r}")
                break
            taken[cell] = title
    return problems


def _variable_problems(data: dict[str, Any]) -> list[str]:
    """`$name` in queries, variable queries and links that nothing defines."""
    variables = data.get("templating", {}).get("list", [])
    defined = {v.get("name") for v in variables} | BUILTIN_VARIABLES
    texts = [
        (f"variable {v.get('name')!r}", json.dumps(v.get("query"))) for v in variables
    ]
    for panel in data.get("panels", []):
        title = f"panel {panel.get('title')!r}"
        texts += [(title, t.get("expr", "")) for t in panel.get("targets", [])]
        links = panel.get("fieldConfig", {}).get("defaults", {}).get("links", [])
        texts += [(title, link.get("url", "")) for link in links]
    problems = []
    for where, text in texts:
        for name in sorted(set(VARIABLE.findall(text)) - defined):
            problems.append(f"{where}: ${name} is not a variable of the dashboard")
    return problems


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m grafana",
        description="Write the dashboards' JSON, or check it is up to date.",
    )
    parser.add_argument(
        "--check",
        action="store_true",
        help="write nothing; exit 1 when a committed file is missing or differs",
    )
    parser.add_argument(
        "--out",
        type=Path,
        default=JSON_DIR,
        metavar="DIR",
        help="folder of the JSON files (default grafana/json)",
    )
    args = parser.parse_args(argv)

    stale = []
    for name, text in render_all().items():
        problems = model_problems(json.loads(text))
        if problems:
            print(f"{name}: " + "\n  ".join(problems), file=sys.stderr)
            return 2
        path = args.out / name
        if args.check:
            if not path.exists() or path.read_text() != text:
                stale.append(name)
            continue
        args.out.mkdir(parents=True, exist_ok=True)
        path.write_text(text)

    if stale:
        print(
            f"out of date: {', '.join(stale)}; run `python -m grafana`",
            file=sys.stderr,
        )
        return 1
    return 0
