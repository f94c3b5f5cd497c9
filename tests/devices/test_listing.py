"""list_devices() on the virtual ALSA devices."""

from __future__ import annotations

from media_nodes.devices import list_devices


def test_lists_every_device_with_its_capabilities() -> None:
    devices = list_devices()
    names = [d["name"] for d in devices]
    for name in ("virtual_mic", "fast_mic", "virtual_speaker", "fast_speaker", "default"):
        assert name in names
    assert [d["index"] for d in devices] == list(range(len(devices)))
    mic = devices[names.index("virtual_mic")]
    assert set(mic) == {
        "index",
        "name",
        "host_api",
        "max_input_channels",
        "max_output_channels",
        "default_sample_rate",
        "default_input",
        "default_output",
    }
    assert mic["host_api"] == "ALSA"
    assert mic["max_input_channels"] >= 2 and mic["max_output_channels"] >= 2
    assert isinstance(mic["default_sample_rate"], float) and mic["default_sample_rate"] > 0


def test_marks_the_default_input_and_output() -> None:
    devices = list_devices()
    assert [d["name"] for d in devices if d["default_input"]] == ["default"]
    assert [d["name"] for d in devices if d["default_output"]] == ["default"]
