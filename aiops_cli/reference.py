"""Renders the README's reference from the code: every metric the services
declare (through prometheus_client's own exposition and parser), every alert of
deploy/rules/ and every key of the services' config dataclasses.

    python -m aiops_cli.reference --write README.md   # or --check README.md
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib
import pkgutil
import sys
import types
import typing
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

import yaml
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.core import Metric as Family
from prometheus_client.metrics import MetricWrapperBase
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.registry import Collector

import exporter
from alertmanager_webhook.config import WebhookConfig
from alertmanager_webhook.metrics import WebhookMetrics
from detector.config import DetectorConfig
from detector.diagnosis.collector import DiagnosisCollector
from detector.diagnosis.config import DiagnosisConfig
from detector.diagnosis.service import Diagnoser
from detector.metrics import POINTS_SEEN, SERIES_GAUGES, DetectorCollector
from detector.optimizer.collector import RESOURCE_METRICS, OptimizerCollector
from detector.optimizer.config import OptimizerConfig
from detector.optimizer.optimizer import Optimizer
from detector.snapshot import Snapshot
from exporter.config import ExporterConfig
from exporter.metrics import Spec

RULES_DIR = Path(__file__).resolve().parent.parent / "deploy" / "rules"
BEGIN, END = "<!-- metrics-reference -->", "<!-- /metrics-reference -->"

# Unit by name suffix (after _total), most specific first, as prometheus.io
# names them; a name without one is a count or a state.
UNITS = (
    ("_timestamp_seconds", "Unix time (s)"),
    ("_bytes_per_second", "bytes/s"),
    ("_seconds", "seconds"),
    ("_bytes", "bytes"),
    ("_celsius", "°C"),
    ("_watts", "watts"),
    ("_joules", "joules"),
    ("_hertz", "hertz"),
    ("_cores", "cores"),
    ("_gpus", "GPUs"),
    ("_ratio", "ratio 0-1"),
    ("_info", "info (1)"),
)
SOURCE_LABELS = "`query` + the scored series' own labels"
PER_SERIES = {name for name, _, _ in SERIES_GAUGES} | {POINTS_SEEN[0]}
# Where an optimizer metric's identity labels are set: a sized resource's
# metrics take that resource's, the GPU power metrics optimizer.power's.
RESOURCE_LABELS = "the `labels` set for the resource in `optimizer.resources`"
POWER_LABELS = "`optimizer.power.labels`"


@dataclasses.dataclass(frozen=True)
class MetricDoc:
    """One metric family as a scrape shows it."""

    name: str
    type: str
    labels: tuple[str, ...]
    help: str
    # Said instead of the label names when they vary with the data.
    labels_note: str = ""

    @property
    def unit(self) -> str:
        base = self.name.removesuffix("_total")
        return next((unit for suffix, unit in UNITS if base.endswith(suffix)), "")


class _Families(Collector):
    """Serves a fixed list of families, so they go through the exposition."""

    def __init__(self, families: Iterable[Family]) -> None:
        self._families = list(families)

    def collect(self) -> Iterator[Family]:
        return iter(self._families)


def parse(registry: CollectorRegistry) -> list[MetricDoc]:
    """Name, type, label names and help of every family `registry` exposes."""
    docs = []
    text = generate_latest(registry).decode()
    families = list(text_string_to_metric_families(text))
    names = {family.name for family in families}
    for family in families:
        # prometheus_client adds a _created gauge to each counter and
        # histogram; it belongs to that metric, not a metric of its own.
        if family.name.endswith("_created") and family.name[:-8] in names:
            continue
        labels: dict[str, None] = {}
        for sample in family.samples:
            labels.update(dict.fromkeys(k for k in sample.labels if k != "le"))
        name = family.name + ("_total" if family.type == "counter" else "")
        docs.append(MetricDoc(name, family.type, tuple(labels), family.documentation))
    return sorted(docs, key=lambda doc: doc.name)


def exporter_metrics() -> list[MetricDoc]:
    """Every Spec the exporter's metric modules declare, one sample each.

    The exporter builds a family from its Spec at collection time, as a
    counter when the name ends in _total (the house naming rule); the tests
    compare this with a real scrape over a fake NVML.
    """
    families = []
    for spec in _specs():
        family = spec.counter() if spec.name.endswith("_total") else spec.gauge()
        family.add_metric(["x"] * len(spec.labels), 1.0)
        families.append(family)
    registry = CollectorRegistry()
    registry.register(_Families(families))
    return parse(registry)


def _specs() -> list[Spec]:
    found: dict[str, Spec] = {}
    for module_info in pkgutil.iter_modules(exporter.__path__):
        if module_info.name == "metrics" or module_info.name.endswith("_metrics"):
            module = importlib.import_module(f"exporter.{module_info.name}")
            for value in vars(module).values():
                for spec in _find_specs(value):
                    found[spec.name] = spec
    return list(found.values())


def _find_specs(value: Any) -> Iterator[Spec]:
    if isinstance(value, Spec):
        yield value
    elif isinstance(value, tuple | list):
        for item in value:
            yield from _find_specs(item)


def detector_metrics() -> list[MetricDoc]:
    """Every family the detector process serves, over the state it starts with.

    The engine's (checkpoints included) and the diagnosis' collectors always;
    the optimizer's once `optimizer` is configured, here with its defaults after
    one cycle over an empty Prometheus, which sets each resource's labels.
    """
    diagnoser = Diagnoser(DiagnosisConfig(), _no_series)
    optimizer = Optimizer(OptimizerConfig(), _no_series, clock=lambda: 0.0)
    optimizer.run_cycle()
    snapshot = optimizer.snapshot
    identity = set(snapshot.power_label_names).union(
        *(state.label_names for state in snapshot.resources)
    )

    engine = [
        dataclasses.replace(doc, labels_note=SOURCE_LABELS)
        if doc.name in PER_SERIES
        else doc
        for doc in _declared(DetectorCollector(Snapshot))
    ]
    diagnosis = _declared(DiagnosisCollector(lambda: diagnoser.snapshot))
    sizes = [
        dataclasses.replace(doc, labels_note=_identity_note(doc))
        if identity & set(doc.labels)
        else doc
        for doc in _declared(OptimizerCollector(lambda: snapshot))
    ]
    return engine + diagnosis + sizes


def _identity_note(doc: MetricDoc) -> str:
    resource_metrics = {
        name for names in RESOURCE_METRICS.values() for name, _ in names
    }
    where = RESOURCE_LABELS if doc.name in resource_metrics else POWER_LABELS
    which = "those but `bound` are" if "bound" in doc.labels else "these are"
    return f"{_label_list(doc.labels)}; {which} {where} (defaults shown)"


def _no_series(promql: str, start: float, end: float, step: float) -> list:
    return []


def _declared(collector: Collector) -> list[MetricDoc]:
    """`collector`'s families, each with one sample where its state has none.

    A family without samples still carries the label names it was declared
    with (prometheus_client keeps them in _labelnames); one sample of them is
    what lets the exposition show them.
    """
    families = []
    for family in collector.collect():
        if not family.samples and isinstance(
            family, GaugeMetricFamily | CounterMetricFamily
        ):
            family.add_metric(["x"] * len(family._labelnames), 0.0)
        families.append(family)
    registry = CollectorRegistry()
    registry.register(_Families(families))
    return parse(registry)


def webhook_metrics() -> list[MetricDoc]:
    """The receiver's registry, with one child per labelled metric."""
    registry = CollectorRegistry()
    metrics = WebhookMetrics(registry)
    for value in vars(metrics).values():
        # _labelnames is how prometheus_client keeps a metric's label names.
        if isinstance(value, MetricWrapperBase) and value._labelnames:
            value.labels(*["x"] * len(value._labelnames))
    return parse(registry)


def alert_rows(rules_dir: Path = RULES_DIR) -> list[tuple[str, str, str, str]]:
    """(alert, severity, for, summary) of every alert rule, in file order."""
    rows = []
    for path in sorted(rules_dir.glob("*.yml")):
        for group in yaml.safe_load(path.read_text())["groups"]:
            for rule in group["rules"]:
                if "alert" in rule:
                    rows.append(
                        (
                            rule["alert"],
                            rule["labels"]["severity"],
                            str(rule["for"]),
                            rule["annotations"]["summary"],
                        )
                    )
    return rows


def config_rows(
    cls: type, prefix: str = "", sections: dict[type, str] | None = None
) -> list[tuple[str, str, str]]:
    """(key, type, default) of `cls` and the dataclasses nested in it.

    A section whose class is already a top-level section (a query's own
    `model`, say) points to that section rather than listing its keys again.
    """
    hints = typing.get_type_hints(cls)
    if sections is None:
        sections = {}
        for f in dataclasses.fields(cls):
            nested = _nested_dataclass(hints[f.name])
            if nested is not None:
                sections.setdefault(nested, f.name)

    rows = []
    for f in dataclasses.fields(cls):
        key = prefix + f.name
        hint = hints[f.name]
        nested = _nested_dataclass(hint)
        shared = sections.get(nested) if nested is not None else None
        if prefix and shared is not None:
            rows.append(
                (key, f"{_type_name(hint)}, the keys of `{shared}`", _default(f))
            )
            continue
        rows.append((key, _type_name(hint), _default(f)))
        if nested is not None:
            many = typing.get_origin(hint) in (tuple, list)
            rows += config_rows(nested, f"{key}[]." if many else f"{key}.", sections)
    return rows


def _nested_dataclass(hint: Any) -> type | None:
    for candidate in (hint, *typing.get_args(hint)):
        if dataclasses.is_dataclass(candidate) and isinstance(candidate, type):
            return candidate
    return None


def _type_name(hint: Any) -> str:
    if isinstance(hint, type) and not typing.get_args(hint):
        return "mapping" if dataclasses.is_dataclass(hint) else hint.__name__
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        return " or ".join(
            "null" if a is type(None) else _type_name(a) for a in typing.get_args(hint)
        )
    if typing.get_origin(hint) is typing.Literal:
        return "one of " + ", ".join(
            f"`{a}`" if a else "`''`" for a in typing.get_args(hint)
        )
    if typing.get_origin(hint) in (tuple, list):
        return f"list of {_type_name(typing.get_args(hint)[0])}"
    if typing.get_origin(hint) is dict:
        return "mapping"
    return str(hint)


def _default(f: dataclasses.Field) -> str:
    if f.default is not dataclasses.MISSING:
        value = f.default
    elif f.default_factory is not dataclasses.MISSING:
        value = f.default_factory()
    else:
        return "required"
    if dataclasses.is_dataclass(value):
        return "see below"
    if value is None:
        return "null"
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, tuple | list) and len(value) > 3:
        return f"{len(value)} entries"
    if isinstance(value, tuple | list | dict):
        return f"`{yaml.safe_dump(value, default_flow_style=True).strip()}`"
    return f"`{value}`" if value != "" else "`''`"


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def _label_list(labels: Iterable[str]) -> str:
    return ", ".join(f"`{label}`" for label in labels)


def metric_table(docs: Sequence[MetricDoc]) -> list[str]:
    lines = ["| metric | type | unit | labels | meaning |", "|---|---|---|---|---|"]
    for doc in docs:
        labels = doc.labels_note or _label_list(doc.labels) or "—"
        lines.append(
            f"| `{doc.name}` | {doc.type} | {doc.unit or '—'} | {labels} "
            f"| {_cell(doc.help)} |"
        )
    return lines


def render() -> str:
    """The Markdown between the README's markers."""
    out = [
        "Generated by `python -m aiops_cli.reference --write README.md` from the "
        "code; a test fails when it is out of date.",
        "",
        "### aiops-exporter",
        "",
        *metric_table(exporter_metrics()),
        "",
        "The exporter also serves prometheus_client's `process_*` and "
        "`python_info` series about itself. A GPU field NVML does not support "
        "on a GPU is absent, not 0.",
        "",
        "### aiops-detector",
        "",
        *metric_table(detector_metrics()),
        "",
        "The `aiops_recommended_*`, `aiops_allocated_*` and `aiops_optimizer_*` "
        "series are served only when `optimizer` is configured.",
        "",
        "### aiops-webhook",
        "",
        *metric_table(webhook_metrics()),
        "",
        "### Alert rules (`deploy/rules/`)",
        "",
        "| alert | severity | for | summary |",
        "|---|---|---|---|",
        *(f"| `{a}` | {s} | {f} | {_cell(m)} |" for a, s, f, m in alert_rows()),
        "",
        "Each has a section in [`docs/runbook.md`](docs/runbook.md) and "
        "`promtool test rules` cases in `deploy/rules-tests/`.",
        "",
        "### Configuration keys",
        "",
        "Top-level keys can also be set as `AIOPS_<SERVICE>_<KEY>` environment "
        "variables; `a[].b` is key `b` of each item of list `a`.",
    ]
    for title, cls in (
        ("aiops-exporter (`deploy/exporter.yml`)", ExporterConfig),
        ("aiops-detector (`deploy/detector.yml`)", DetectorConfig),
        ("aiops-webhook (`deploy/webhook.yml`)", WebhookConfig),
    ):
        out += ["", f"#### {title}", "", "| key | type | default |", "|---|---|---|"]
        out += [f"| `{k}` | {_cell(t)} | {d} |" for k, t, d in config_rows(cls)]
    return "\n".join(out) + "\n"


def update(readme: str, section: str) -> str:
    """`readme` with `section` between the markers.

    A README with only the opening marker gets the closing one after the
    section; the text after the markers is kept as it is.
    """
    if BEGIN not in readme:
        raise ValueError(f"the README has no {BEGIN} marker")
    head, _, rest = readme.partition(BEGIN)
    if END in rest:
        tail = rest.partition(END)[2]
    else:
        tail = "\n\n" + rest.lstrip("\n") if rest.strip() else rest
    return f"{head}{BEGIN}\n{section}{END}{tail}"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m aiops_cli.reference",
        description="Render the README's metrics, alerts and config reference.",
    )
    action = parser.add_mutually_exclusive_group()
    action.add_argument("--write", metavar="README", type=Path, help="update it")
    action.add_argument(
        "--check", metavar="README", type=Path, help="exit 1 when it is out of date"
    )
    args = parser.parse_args(argv)

    section = render()
    if args.write is None and args.check is None:
        sys.stdout.write(section)
        return 0
    path = args.write or args.check
    current = path.read_text()
    updated = update(current, section)
    if args.check:
        if updated != current:
            message = f"{path} is out of date: run {parser.prog} --write {path}"
            print(message, file=sys.stderr)
            return 1
        return 0
    path.write_text(updated)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
