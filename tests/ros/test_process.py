"""The node as a user starts it: a separate process, the params file, remapping, exit codes."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
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
STARTUP_TIMEOUT = 120.0  # a node process's start (python, torch, the model): ~5 s idle, far more under load


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


def finish(node: NodeProcess, timeout: float = STARTUP_TIMEOUT) -> tuple[int, str]:
    """Wait for the node to exit by itself; (exit code, its output)."""
    node.wait(timeout)
    code = node.stop()  # already exited: closes its log
    return code, node.log_path.read_text(errors="replace")


def set_param(harness, client, name: str, value: float):
    request = SetParameters.Request(parameters=[ParameterMsg(
        name=name, value=ParameterValue(type=ParameterType.PARAMETER_DOUBLE, double_value=float(value)))])
    harness.spin_until(client.service_is_ready, 60.0, f"service {client.srv_name}")
    future = client.call_async(request)
    harness.spin_until(future.done, 60.0, f"setting {name}")
    return future.result().results[0]


def test_node_process_with_params_file_and_remap(harness, real_sample, tmp_path):
    node = start_node(harness.namespace, tmp_path / "node.log", *tiny_args(), "-r", "image:=camera/image",
                      "-p", "frame_id:=base_link")
    harness.process = node  # a wait that fails names what it awaited, the node's state and its log
    try:
        harness.subscribe(["depth", "points"])
        pub = harness.publisher("camera/image", profile=qos(depth=10))
        # the process imports torch and builds the model first: seconds, a minute on a busy machine
        harness.wait_until_ready(STARTUP_TIMEOUT, "camera/image")
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
        print(f"--- the node's log ({node.log_path}, exit code {code}) ---\n{output}")  # shown if the test fails
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


def fatal_lines(output: str) -> list[str]:
    return [line for line in output.splitlines() if "[FATAL]" in line]


def test_every_start_failure_is_one_fatal_line(harness, tmp_path):
    not_onnx = tmp_path / "empty.onnx"  # an empty file parses as an ONNX model without a graph
    not_onnx.write_bytes(b"")
    bad_file = start_node(harness.namespace + "_onnx", tmp_path / "onnx.log", *tiny_args(),
                          "-p", "backend:=onnxruntime", "-p", f"onnx:={not_onnx}")
    no_params = start_node(harness.namespace + "_pf", tmp_path / "pf.log", "--params-file", str(tmp_path / "gone.yaml"))
    for node, cause in ((bad_file, "not an ONNX file"), (no_params, "gone.yaml")):
        code, output = finish(node)
        assert code == 2, output
        (line,) = fatal_lines(output)
        assert cause in line and "Traceback" not in output, output


def read_until(proc: subprocess.Popen, text: str) -> str:
    """The process's output up to the first line holding ``text`` (blocking reads, no polling)."""
    seen = []
    for line in proc.stdout:
        seen.append(line)
        if text in line:
            return "".join(seen)
    raise AssertionError(f"the node exited (code {proc.wait()}) before logging {text!r}: {''.join(seen)}")


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_a_signal_during_the_model_load_stops_cleanly(harness, sig):
    env = dict(os.environ, PYTHONUNBUFFERED="1", RCUTILS_LOGGING_BUFFERED_STREAM="0")
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
    # the large architecture on random weights: seconds of loading after the backend line
    cmd = [sys.executable, "-m", "dap_ros.node", "--ros-args", "-p", "model_config:=vitl", "-p", "backend:=torch",
           "-p", "device:=cpu", "-p", "allow_random_weights:=true", "-r", f"__ns:={harness.namespace}"]
    with subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env) as proc:
        output = read_until(proc, "backend torch -> torch")
        proc.send_signal(sig)
        output += proc.communicate(timeout=STARTUP_TIMEOUT)[0]
    assert proc.returncode == 0, output
    assert "model ready" not in output, "the signal came after the load: " + output
    assert "errorprocessing" not in output and "Traceback" not in output and not fatal_lines(output), output
