"""Start-up validation and the managed (lifecycle) mode, driven through the real lifecycle services."""
from __future__ import annotations

import pytest
from lifecycle_msgs.msg import State, Transition
from lifecycle_msgs.srv import ChangeState, GetState
from rclpy.parameter import Parameter
from ros_helpers import rgb_image_msg, send_until_outputs
from sensor_msgs.msg import Image

from dap_ros.errors import CheckpointError, ConfigError
from dap_ros.ros.client import qos
from dap_ros.ros.node import EXIT_CHECKPOINT, EXIT_PARAMETERS

pytestmark = pytest.mark.ros


@pytest.mark.parametrize(
    "overrides,names",
    [
        ({"mask_threshold": 2.0}, ["mask_threshold"]),
        ({"max_range": "far"}, ["max_range"]),
        ({"input_width": 100}, ["input_height", "input_width"]),
        ({"qos.input.reliability": "sometimes", "points.stride": 0}, ["qos.input.reliability", "points.stride"]),
        ({"scan.elevation_min_deg": 10.0}, ["scan.elevation_min_deg"]),
        ({"input_transport": "theora"}, ["input_transport"]),
        ({"lifecycle": "yes"}, ["lifecycle"]),
        ({"backend": "tensorrt"}, ["backend"]),
        ({"device": "cuda:7"}, ["device"]),
        ({"model_config": "/nonexistent/arch.json"}, ["model_config"]),
        ({"diagnostics.period_sec": 1e12}, ["diagnostics.period_sec"]),  # beyond what an rclpy timer holds
    ],
)
def test_invalid_parameters_refuse_to_start(make_node, overrides, names):
    node = make_node(start=False, **{k.replace(".", "__"): v for k, v in overrides.items()})
    assert node.start() == EXIT_PARAMETERS
    assert isinstance(node.startup_error, ConfigError)
    for name in names:
        assert name in str(node.startup_error) or name.split(".")[0] in str(node.startup_error), str(node.startup_error)
    assert node.predictor is None and not node._pubs


@pytest.mark.parametrize("random_ok", [False, True])
def test_missing_checkpoint_is_fatal_and_says_how_to_get_weights(make_node, random_ok):
    node = make_node(start=False, checkpoint="/nonexistent/model.pth", allow_random_weights=random_ok)
    assert node.start() == EXIT_CHECKPOINT
    message = str(node.startup_error)
    assert isinstance(node.startup_error, CheckpointError)
    assert "'checkpoint'" in message and "Insta360-Research/DAP-weights" in message


def test_corrupt_checkpoint_is_fatal_with_a_clear_message(make_node, tmp_path):
    bad = tmp_path / "model.pth"
    bad.write_bytes(b"PK\x03\x04 truncated download")
    node = make_node(start=False, checkpoint=str(bad))
    assert node.start() == EXIT_CHECKPOINT
    assert isinstance(node.startup_error, CheckpointError)
    assert "'checkpoint'" in str(node.startup_error) and "cannot be read" in str(node.startup_error)


def test_an_unexpected_start_error_is_fatal_with_its_type_and_message(make_node, monkeypatch):
    import dap_ros.ros.node as node_module

    def broken(*args, **kwargs):
        raise RuntimeError("driver exploded")

    monkeypatch.setattr(node_module, "create_predictor", broken)
    node = make_node(start=False)
    assert node.start() == EXIT_PARAMETERS
    assert "RuntimeError: driver exploded" in str(node.startup_error)
    assert node.predictor is None and not node._pubs


def _call(harness, client, request, what):
    harness.spin_until(lambda: client.service_is_ready(), 10.0, f"service {client.srv_name}")
    future = client.call_async(request)
    harness.spin_until(future.done, 30.0, what)
    return future.result()


def test_lifecycle_transitions(harness, make_node, real_sample):
    node = make_node(start=False, lifecycle=True)
    name = node.get_fully_qualified_name()
    change = harness.node.create_client(ChangeState, f"{name}/change_state")
    get = harness.node.create_client(GetState, f"{name}/get_state")

    def state() -> int:
        return _call(harness, get, GetState.Request(), "get_state").current_state.id

    def transition(tid: int) -> bool:
        return _call(harness, change, ChangeState.Request(transition=Transition(id=tid)), f"transition {tid}").success

    pub = harness.node.create_publisher(Image, "image", qos(depth=10))
    assert state() == State.PRIMARY_STATE_UNCONFIGURED
    assert node.predictor is None and pub.get_subscription_count() == 0
    # restart-only parameters may change while unconfigured (read at configure)
    assert node.set_parameters([Parameter("input_height", value=32), Parameter("input_width", value=64)])[0].successful

    assert transition(Transition.TRANSITION_CONFIGURE)
    assert state() == State.PRIMARY_STATE_INACTIVE
    assert node.predictor is not None and node.predictor.input_size == (32, 64)
    result = node.set_parameters([Parameter("input_height", value=64)])[0]
    assert not result.successful and "cleanup and configure" in result.reason
    harness.spin_for(0.3)
    assert pub.get_subscription_count() == 0, "inactive: no input subscription"

    assert transition(Transition.TRANSITION_ACTIVATE)
    assert state() == State.PRIMARY_STATE_ACTIVE
    harness.subscribe(["depth"])
    send_until_outputs(harness, pub, lambda s: rgb_image_msg(real_sample, s), {"depth"})

    assert transition(Transition.TRANSITION_DEACTIVATE)
    assert state() == State.PRIMARY_STATE_INACTIVE
    harness.spin_until(lambda: pub.get_subscription_count() == 0, 10.0, "the input subscription to go away")

    assert transition(Transition.TRANSITION_CLEANUP)
    assert state() == State.PRIMARY_STATE_UNCONFIGURED
    assert node.predictor is None

    # a failed configure (bad checkpoint) leaves the node unconfigured, not dead
    assert node.set_parameters([Parameter("checkpoint", value="/nonexistent/model.pth")])[0].successful
    assert not transition(Transition.TRANSITION_CONFIGURE)
    assert state() == State.PRIMARY_STATE_UNCONFIGURED
    assert node.set_parameters([Parameter("checkpoint", value="")])[0].successful
    assert transition(Transition.TRANSITION_CONFIGURE)
    assert transition(Transition.TRANSITION_ACTIVATE)
    send_until_outputs(harness, pub, lambda s: rgb_image_msg(real_sample, s), {"depth"})

    assert transition(Transition.TRANSITION_ACTIVE_SHUTDOWN)
    assert state() == State.PRIMARY_STATE_FINALIZED
    assert node.predictor is None
