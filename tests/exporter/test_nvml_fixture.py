"""The fixture format: the recorder script, run over the fake NVML, writes back
exactly the committed fixtures, so the fixtures hold every call the exporter
makes and the recorder records them in the shape the fake replays."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pynvml
import pytest

from exporter.nvml_fixture import RecordingNvml, call_key, decode, encode
from tests.exporter.fake_nvml import FIXTURES, H100, H200, FakeNvml, load_fixture

RECORDER = Path(__file__).parents[2] / "tools" / "record_nvml_fixture.py"


def load_recorder():
    spec = importlib.util.spec_from_file_location("record_nvml_fixture", RECORDER)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("name", [H100, H200])
def test_recording_the_fake_gives_back_the_fixture(name, tmp_path, monkeypatch):
    recorder = load_recorder()
    fixture = load_fixture(name)
    fake = FakeNvml(fixture, count=fixture["metadata"]["gpus_on_host"])
    monkeypatch.setattr(recorder, "import_pynvml", lambda: fake)
    out = tmp_path / "out"
    empty_proc = tmp_path / "proc"
    empty_proc.mkdir()

    code = recorder.main(
        ["--out", str(out), "--proc", str(empty_proc), "--keep-identity"]
    )

    assert code == 0
    written = json.loads((out / f"{name}.json").read_text())
    for part in ("system", "device", "fields", "mig"):
        assert written[part] == fixture[part], part
    assert written["metadata"]["model"] == fixture["metadata"]["model"]
    assert written["metadata"]["synthetic"] is False


def test_recorder_hides_identity_by_default(tmp_path, monkeypatch):
    recorder = load_recorder()
    fake = FakeNvml(load_fixture(H200), count=1)
    monkeypatch.setattr(recorder, "import_pynvml", lambda: fake)

    recorder.main(["--out", str(tmp_path), "--proc", str(tmp_path)])

    written = json.loads((tmp_path / f"{H200}.json").read_text())
    assert written["device"]["nvmlDeviceGetUUID()"]["value"] == (
        "GPU-00000000-0000-0000-0000-000000000000"
    )
    assert set(written["device"]["nvmlDeviceGetSerial()"]["value"]) == {"0"}
    assert written["mig"][0]["nvmlDeviceGetUUID()"]["value"].startswith("MIG-0000")


def test_recorder_without_nvml_fails_cleanly(tmp_path, monkeypatch, capsys):
    recorder = load_recorder()
    monkeypatch.setattr(
        recorder, "import_pynvml", lambda: FakeNvml(load_fixture(H100), missing=True)
    )

    assert recorder.main(["--out", str(tmp_path)]) == 1
    assert "NVML did not start" in capsys.readouterr().err


def test_every_fixture_is_marked_and_replayable():
    for path in sorted(FIXTURES.glob("*.json")):
        fixture = json.loads(path.read_text())
        assert fixture["format"] == 1, path
        assert fixture["metadata"]["recorded_by"] == "tools/record_nvml_fixture.py"
        # Synthetic fixtures must say where their values come from.
        if fixture["metadata"]["synthetic"]:
            assert "specifications" in fixture["metadata"]["source"], path


def test_codec_round_trips_pynvml_structures():
    memory = pynvml.c_nvmlMemory_t(total=10, free=4, used=6)
    pci = pynvml.nvmlPciInfo_t()
    pci.busId = "00000000:18:00.0"

    assert decode(encode(memory), pynvml).used == 6
    assert decode(encode(pci), pynvml).busId == "00000000:18:00.0"
    assert call_key("nvmlDeviceGetTotalEccErrors", (0, 1)) == (
        "nvmlDeviceGetTotalEccErrors(0, 1)"
    )
    assert call_key("nvmlDeviceGetProcessUtilization", (123456,)) == (
        "nvmlDeviceGetProcessUtilization()"
    )


def test_recording_passes_errors_through():
    fake = FakeNvml(load_fixture(H100), count=1)
    recording = RecordingNvml(fake)
    recording.nvmlInit()
    handle = recording.nvmlDeviceGetHandleByIndex(0)

    with pytest.raises(pynvml.NVMLError_NotSupported):
        recording.nvmlDeviceGetFanSpeed(handle)

    assert recording.devices[0]["calls"]["nvmlDeviceGetFanSpeed()"] == {
        "error": "NVML_ERROR_NOT_SUPPORTED"
    }
