"""Records the NVML answers of this host's GPUs as test fixtures, one JSON file
per GPU model, by running the exporter's own GPU, GPU-process and Xid readers
once through a recording wrapper around pynvml.

Needs an NVIDIA driver and pynvml. Run it on a GPU host from the repository
root, then commit the files it writes under tests/exporter/fixtures/:

    .venv/bin/python tools/record_nvml_fixture.py --out tests/exporter/fixtures

UUIDs and serial numbers are replaced by placeholders unless --keep-identity.
"""

from __future__ import annotations

import argparse
import datetime
import json
import re
import sys
from pathlib import Path
from typing import Any

from prometheus_client import CollectorRegistry, generate_latest

from exporter.gpu import GpuReader
from exporter.gpu_metrics import gpu_families
from exporter.gpu_processes import GpuProcessReader
from exporter.identity import IdentityCache
from exporter.nvml_fixture import FORMAT, RecordingNvml
from exporter.nvml_session import NvmlSession, import_pynvml
from exporter.procfs import ProcFs
from exporter.xid import NvmlXidEvents

_ZERO_UUID = "00000000-0000-0000-0000-0000000000"


def main(argv: list[str] | None = None) -> int:
    args = _parse_args(argv)
    try:
        nvml = import_pynvml()
    except ImportError as exc:
        print(f"record_nvml_fixture: pynvml is not installed: {exc}", file=sys.stderr)
        return 1

    recording = RecordingNvml(nvml)
    session = NvmlSession(lambda: recording)
    if session.start() is None:
        print("record_nvml_fixture: NVML did not start; see above", file=sys.stderr)
        return 1

    try:
        sample = GpuReader(session).read()
        procfs = ProcFs(args.proc)
        GpuProcessReader(session, procfs, IdentityCache(procfs)).read()
        NvmlXidEvents(session).drain()
    finally:
        session.close()

    written = write_fixtures(recording, Path(args.out), args.keep_identity)
    for path in written:
        print(f"wrote {path}")
    if args.metrics:
        registry = CollectorRegistry()
        registry.register(_Fixed(gpu_families(sample)))
        sys.stdout.write(generate_latest(registry).decode())
    return 0


def write_fixtures(
    recording: RecordingNvml, out: Path, keep_identity: bool = False
) -> list[Path]:
    """One file per GPU model, from the first GPU of that model."""
    out.mkdir(parents=True, exist_ok=True)
    models: dict[str, int] = {}
    for index in sorted(recording.devices):
        calls = recording.devices[index]["calls"]
        name = calls.get("nvmlDeviceGetName()", {}).get("value", f"gpu{index}")
        models.setdefault(name, index)

    written = []
    for name, index in models.items():
        fixture = {
            "format": FORMAT,
            "metadata": {
                "model": name,
                "recorded_by": "tools/record_nvml_fixture.py",
                "synthetic": False,
                "source": "Recorded from a real GPU through NVML.",
                "recorded_at": datetime.datetime.now(datetime.UTC).isoformat(
                    timespec="seconds"
                ),
                "gpus_on_host": len(recording.devices),
            },
            "system": recording.system,
            **recording.device_fixture(index),
        }
        if not keep_identity:
            _anonymize(fixture)
        path = out / f"{slug(name)}.json"
        path.write_text(json.dumps(fixture, indent=2) + "\n")
        written.append(path)
    return written


def slug(name: str) -> str:
    """'NVIDIA H100 80GB HBM3' -> 'nvidia-h100-80gb-hbm3'."""
    return re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")


def _anonymize(fixture: dict[str, Any]) -> None:
    # The fake NVML derives each cloned GPU's identity from the last two
    # characters, so placeholders keep the length and end in "00".
    scopes = [fixture["device"], *fixture["mig"]]
    for calls in scopes:
        uuid = calls.get("nvmlDeviceGetUUID()", {})
        if isinstance(uuid.get("value"), str):
            prefix = uuid["value"].split("-", 1)[0]
            uuid["value"] = f"{prefix}-{_ZERO_UUID}00"
        serial = calls.get("nvmlDeviceGetSerial()", {})
        if isinstance(serial.get("value"), str):
            serial["value"] = "0" * len(serial["value"])


class _Fixed:
    def __init__(self, families: list[Any]) -> None:
        self._families = families

    def collect(self) -> list[Any]:
        return self._families


def _parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--out", default="tests/exporter/fixtures", help="directory to write to"
    )
    parser.add_argument(
        "--proc", default="/proc", help="/proc tree for naming GPU processes"
    )
    parser.add_argument(
        "--keep-identity",
        action="store_true",
        help="keep real UUIDs and serial numbers",
    )
    parser.add_argument(
        "--metrics",
        action="store_true",
        help="also print the GPU metrics the exporter makes of this host",
    )
    return parser.parse_args(argv)


if __name__ == "__main__":
    sys.exit(main())
