"""Node parameters -> ModelSpec, the parameters file written and read back, the newest-frame slot."""
from __future__ import annotations

import pytest

from dap_ros.errors import ConfigError
from dap_ros.ros.params import NodeParams, load_params_file, params_file_text
from dap_ros.ros.worker import LatestSlot
from dap_ros.settings import ModelSpec


def test_model_spec_of_the_parameters_and_native_size():
    p = NodeParams.from_values({"backend": "onnxruntime", "onnx": "/m.onnx", "device": "cpu"})
    spec = p.model_spec()
    assert isinstance(spec, ModelSpec) and p.input_size is None and spec.input_size is None
    assert (spec.backend, spec.onnx, spec.engine, spec.checkpoint, spec.device) == ("onnxruntime", "/m.onnx", None,
                                                                                   None, "cpu")
    assert NodeParams.from_values({"input_height": 256, "input_width": 512}).model_spec().input_size == (256, 512)
    with pytest.raises(ConfigError, match="input_height.*both 0"):
        NodeParams.from_values({"input_height": 0, "input_width": 512})
    assert NodeParams.from_values({"scan.angle_increment_deg": 1.0}).scan_spec().num_beams == 360


def test_params_file_round_trip(tmp_path):
    p = NodeParams.from_values({"points.stride": 3, "qos.output.depth": 7, "checkpoint": "/w/model.pth",
                                "max_range": 42.0})
    path = tmp_path / "params.yaml"
    path.write_text(params_file_text(p.values()))
    assert NodeParams.from_values(load_params_file(path)) == p


def test_rules_are_shared_with_the_model_spec():
    """The node refuses exactly what ModelSpec refuses (one rule each, in dap_ros.settings)."""
    for name, value in (("mask_threshold", 1.0), ("max_range", 101.0), ("device", "tpu"), ("precision", "int8")):
        with pytest.raises(ConfigError, match=name):
            NodeParams.from_values({name: value})
        with pytest.raises(ConfigError, match=name):
            ModelSpec(**{name: value})


@pytest.mark.parametrize("values, match", [
    # 18000 beams on frames at most 4096 wide: over 4 per column (a 1 GB scan plan before)
    ({"scan.angle_increment_deg": 0.02}, r"'scan.angle_increment_deg': .*18000 beams.*max_input_width=4096: "
                                         r"at most 16384 beams, an increment >= 0.0219727 degrees"),
    ({"scan.angle_increment_deg": 0.002, "max_input_width": 128}, "at most 512 beams"),
    ({"max_input_width": 10**9}, r"'max_input_width': must lie in \[16, 16384\]"),
    ({"input_height": 50000, "input_width": 100000}, "'input_width': the network input must be at most 2048x4096"),
])
def test_size_limits_name_the_parameter_and_the_limit(values, match):
    with pytest.raises(ConfigError, match=match):
        NodeParams.from_values(values)


def test_finest_scan_increment_allowed_by_the_frame_width():
    assert NodeParams.from_values({"scan.angle_increment_deg": 0.0219727}).scan_spec().num_beams == 16384
    narrow = NodeParams.from_values({"scan.angle_increment_deg": 0.1, "max_input_width": 1024})
    assert narrow.scan_spec().num_beams == 3600


def test_latest_slot_keeps_only_the_newest():
    slot: LatestSlot[int] = LatestSlot()
    assert slot.put(1) is False
    assert slot.put(2) is True  # 1 dropped
    assert slot.take(0.0) == 2
    assert slot.take(0.01) is None
    slot.close()
    assert slot.put(3) is False and slot.take(0.0) is None
