"""The node as a user starts it: a separate process, the params file, remapping, exit codes."""
from __future__ import annotations

import os
from pathlib import Path

import pytest
from rcl_interfaces.msg import Parameter as ParameterMsg
from rcl_interfaces.msg import ParameterType, ParameterValue
from rcl_interfaces.srv import SetParameters
from ros_helpers import REPO, TINY, rgb_image_msg, send_until_outputs

from dap_ros.ros.client import qos
from dap_ros.ros.process import NodeProcess

pytestmark = pytest.mark.ros
PARAMS_FILE = REPO / "config" / "depth.yaml"


def start_node(namespace: str, log: Path, *ros_args: str) -> NodeProcess:
    """``python -m dap_ros.node --ros-args --params-file config/depth.yaml ROS_ARGS`` as a user runs it."""
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
    return NodeProcess({}, namespace, log, env=env, ros_args=("--params-file", str(PARAMS_FILE), *ros_args))


def tiny_args() -> list[str]:
    args = []
    for key, value in TINY.items():
        args += ["-p", f"{key}:={str(value).lower() if isinstance(value, bool) else value}"]
    return args


def finish(node: NodeProcess, timeout: float = 30.0) -> tuple[int, str]:
    """Wait for the node to exit by itself; (exit code, its output)."""
    node.wait(timeout)
    code = node.stop()  # already exited: closes its log
    return code, node.log_path.read_text(errors="replace")


def set_param(harness, client, name: str, value: float):
    request = SetParameters.Request(parameters=[ParameterMsg(
        name=name, value=ParameterValue(type=ParameterType.PARAMETER_DOUBLE, double_value=float(value)))])
    harness.spin_until(client.service_is_ready, 20.0, f"service {client.srv_name}")
    future = client.call_async(request)
    harness.spin_until(future.done, 20.0, f"setting {name}")
    return future.result().results[0]


def test_node_process_with_params_file_and_remap(harness, real_sample, tmp_path):
    node = start_node(harness.namespace, tmp_path / "node.log", *tiny_args(), "-r", "image:=camera/image",
                      "-p", "frame_id:=base_link")
    harness.process = node  # a wait that fails quotes the node's log
    try:
        harness.subscribe(["depth", "points"])
        pub = harness.publisher("camera/image", profile=qos(depth=10))
        msg, out = send_until_outputs(harness, pub, lambda s: rgb_image_msg(real_sample, s, "cam"),
                                      {"depth", "points"}, timeout=60.0)
        assert out["depth"].header.frame_id == "base_link" and out["depth"].width == real_sample.shape[1]
        assert out["depth"].header.stamp == msg.header.stamp

        client = harness.node.create_client(SetParameters, f"{harness.namespace}/dap_depth/set_parameters")
        assert set_param(harness, client, "max_range", 20.0).successful
        rejected = set_param(harness, client, "input_width", 256)
        assert not rejected.successful and "restart the node" in rejected.reason
    finally:
        harness.process = None
        code = node.stop()
    output = node.log_path.read_text(errors="replace")
    assert code == 0, output
    assert "Traceback" not in output, output
    assert "RANDOM WEIGHTS" in output  # the loud warning of allow_random_weights


def test_start_errors_exit_cleanly_with_a_message(harness, tmp_path):
    bad = start_node(harness.namespace + "_bad", tmp_path / "bad.log", *tiny_args(), "-p", "mask_threshold:=2.0")
    no_weights = start_node(harness.namespace + "_nw", tmp_path / "nw.log", "-p", "checkpoint:=/nonexistent/model.pth")
    code, output = finish(bad)
    assert code == 2, output
    assert "mask_threshold" in output and "Traceback" not in output, output
    code, output = finish(no_weights)
    assert code == 1, output
    assert "'checkpoint'" in output and "Insta360-Research/DAP-weights" in output, output
    assert "Traceback" not in output, output
