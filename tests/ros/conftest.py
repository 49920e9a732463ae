"""Real rclpy + Fast DDS on loopback for the node tests (no mocks of ROS).

Isolation: localhost-only discovery, a ROS domain of this session's own (set before rclpy loads:
one that no other session, demo or ROS 2 system on the machine uses, held until the session ends;
dap_ros.ros.process.default_domain_id), and a fresh namespace per node.
Synchronization: every wait spins the executor with a deadline and fails with a message.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from dap_ros.ros.process import default_domain_id

os.environ["ROS_AUTOMATIC_DISCOVERY_RANGE"] = "LOCALHOST"
# Not the pid (100 + pid % 100 put two sessions in one domain now and then, with DDS ports among
# the kernel's ephemeral ones): a domain of 1..101 reserved for this session.
os.environ["ROS_DOMAIN_ID"] = str(default_domain_id())
os.environ.pop("ROS_LOCALHOST_ONLY", None)  # deprecated variable; conflicts with the one above

rclpy = pytest.importorskip("rclpy", reason="rclpy is not installed (pip install -e .[ros])")

from rclpy.context import Context  # noqa: E402
from rclpy.parameter import Parameter  # noqa: E402
from ros_helpers import REAL_SAMPLE, TINY, fastdds_major, ros_distro, unique_namespace  # noqa: E402

from dap_ros.ros.client import NodeClient  # noqa: E402


def pytest_report_header(config) -> str:
    """Which ROS 2 the node tests run on (make test runs them on Kilted, then on Jazzy)."""
    return (f"ROS 2 {ros_distro()} (rclpy from {Path(rclpy.__file__).parent}), Fast DDS {fastdds_major()}.x, "
            f"ROS_DOMAIN_ID {os.environ['ROS_DOMAIN_ID']}")


@pytest.fixture(scope="session")
def ros_context():
    context = Context()
    rclpy.init(args=[], context=context)
    yield context
    rclpy.try_shutdown(context=context)


@pytest.fixture(scope="session")
def real_sample() -> np.ndarray:
    from PIL import Image as PILImage

    if not REAL_SAMPLE.is_file():
        pytest.fail(f"reference image missing: {REAL_SAMPLE} (the tests read ../shared/reference)")
    return np.asarray(PILImage.open(REAL_SAMPLE).convert("RGB"))


@pytest.fixture
def harness(ros_context):
    """The package's node client in a fresh namespace; in-process nodes spin with its executor."""
    client = NodeClient(unique_namespace(), context=ros_context, name="test_helper")
    yield client
    client.close()


@pytest.fixture
def make_node(harness):
    """Factory: a DepthNode in the harness namespace with the tiny model and ``overrides``."""
    from dap_ros.ros.node import DepthNode

    def make(start: bool = True, **overrides: Any) -> Any:
        import torch

        torch.manual_seed(0)  # the random weights (and so the outputs) are the same every run
        values = {**TINY, **{k.replace("__", "."): v for k, v in overrides.items()}}
        node = DepthNode(
            namespace=harness.namespace,
            context=harness.context,
            parameter_overrides=[Parameter(k, value=v) for k, v in values.items()],
        )
        harness.add_node(node)
        if start:
            code = node.start()
            assert code == 0, f"node failed to start (exit code {code}): {node.startup_error}"
        return node

    return make
