"""backend auto on a machine whose TensorRT builds an engine that fails its accuracy gate: the node
still starts, runs the fallback, and says so once in its log and on every /diagnostics status.

TensorRT and the GPU are the contract fake of tests/fake_tensorrt.py; rclpy and DDS are real."""
from __future__ import annotations

import pytest
import torch
from fake_tensorrt import install, pretend_gpu
from ros_helpers import TINY, rgb_image_msg, send_until_outputs
from sensor_msgs.msg import Image

from dap_ros.deploy.engine_cache import CACHE_ENV
from dap_ros.deploy.onnx_export import export_onnx
from dap_ros.model import load_model
from dap_ros.ros.client import qos

pytestmark = pytest.mark.ros


@pytest.fixture(scope="module")
def tiny_onnx(tmp_path_factory):
    torch.manual_seed(5)
    path = tmp_path_factory.mktemp("fallback") / "tiny.onnx"
    export_onnx(load_model(None, "tiny"), path, height=TINY["input_height"], width=TINY["input_width"],
                log=lambda m: None)
    return path


def test_node_falls_back_and_reports_it(harness, make_node, real_sample, tiny_onnx, tmp_path, monkeypatch, capfd):
    fake = pretend_gpu(monkeypatch, install(monkeypatch))
    fake.gate.onnx, fake.gate.error = tiny_onnx, 0.05
    monkeypatch.setenv(CACHE_ENV, str(tmp_path / "engines"))
    harness.watch_diagnostics()
    node = make_node(backend="auto", device="auto", onnx=str(tiny_onnx), build_engine=True,
                     diagnostics__period_sec=0.2)
    log = capfd.readouterr().err
    warnings = [line for line in log.splitlines() if "[WARN]" in line and "falling back" in line]
    assert len(warnings) == 1 and log.count("falling back") == 1, log  # one ROS WARN, no second copy
    assert "TensorRT 10.3.0: engine NOT written" in warnings[0] and "onnxruntime" in warnings[0]
    assert node.predictor.backend == "onnxruntime" and fake.called("build_serialized_network") == [0]

    harness.subscribe(["depth"])
    pub = harness.node.create_publisher(Image, "image", qos(depth=10))
    send_until_outputs(harness, pub, lambda s: rgb_image_msg(real_sample, s), {"depth"})
    status = harness.spin_until(
        lambda: next((d for d in reversed(harness.diagnostics) if int(d.get("frames processed", 0)) >= 1), None),
        10.0, "a status counting the processed frame")
    assert status["backend"] == "onnxruntime" and status["_level"] == "1"  # WARN
    assert "fallback backend" in status["_message"]
    assert status["backend fallback"] == node.predictor.fallback
    assert "TensorRT 10.3.0" in status["backend fallback"]
