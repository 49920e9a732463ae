"""The shipped Fast DDS profiles: Fast DDS loads them without complaint and they carry big frames.

Each profile is loaded the way users load it (an environment variable read when the participant
starts), in a fresh process; a 7.4 MB message goes through a publisher and a subscription of that
process (shared memory or UDP on loopback, per the profile).

Distribution-dependent (dap_ros.ros.fastdds): Kilted's Fast DDS 3 reads
FASTDDS_DEFAULT_PROFILES_FILE and the fastdds*.xml files; Jazzy's Fast DDS 2.14 reads only
FASTRTPS_DEFAULT_PROFILES_FILE and knows the 2.x XML names (heartbeatPeriod, not heartbeat_period):
the fastdds2*.xml files.
"""
from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from ros_helpers import fastdds_major, profiles_variable

from dap_ros.ros import fastdds

pytestmark = pytest.mark.ros

ASSETS = Path(__file__).resolve().parents[2] / "dap_ros" / "assets"
PROFILES = [fastdds.profile_path(name) for name in fastdds.PROFILES]  # this Fast DDS's files

PROBE = r"""
import sys, time
import numpy as np
import rclpy
from rclpy.qos import QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import Image
from std_msgs.msg import Header
from dap_ros.ros.messages import image_message

rclpy.init()
node = rclpy.create_node("profile_probe")
qos = QoSProfile(depth=2, reliability=ReliabilityPolicy.RELIABLE)
got = []
node.create_subscription(Image, "probe_big", got.append, qos, raw=True)
pub = node.create_publisher(Image, "probe_big", qos)
message, pixels = image_message(Header(frame_id="probe"), (960, 1920, 4), np.uint8, "rgba8")
pixels[...] = np.arange(960 * 1920 * 4, dtype=np.uint32).astype(np.uint8).reshape(960, 1920, 4)
frame = message.cdr.tobytes()
deadline = time.monotonic() + 20.0
while pub.get_subscription_count() == 0 and time.monotonic() < deadline:
    rclpy.spin_once(node, timeout_sec=0.05)
pub.publish(frame)
while not got and time.monotonic() < deadline:
    rclpy.spin_once(node, timeout_sec=0.05)
print("intact" if got and bytes(got[0]) == frame else f"lost ({len(got)} received)")
"""


def test_both_profiles_are_shipped_for_both_fast_dds_versions():
    """The 2.x files hold the 3.x files' settings: they differ only in the element names and comments."""
    shipped = sorted(p.name for p in ASSETS.glob("fastdds*.xml"))
    assert shipped == ["fastdds.xml", "fastdds2.xml", "fastdds2_low_latency.xml", "fastdds_low_latency.xml"]
    for name in fastdds.PROFILES:
        v3, v2 = (fastdds.profile_path(name, major).read_text() for major in (3, 2))
        assert "heartbeat_period" in v3 and "heartbeatPeriod" not in v3
        assert _settings(v2) == _settings(v3).replace("heartbeat_period", "heartbeatPeriod")
    assert [p.name for p in PROFILES] == [fastdds.profile_name(n) for n in fastdds.PROFILES]


def _settings(xml: str) -> str:
    """The XML without its comments."""
    return re.sub(r"<!--.*?-->", "", xml, flags=re.S)


def run_python(code: str, **variables: str) -> tuple[subprocess.CompletedProcess, str]:
    """``python -c code`` with the package importable and ``variables`` set; (the run, its output)."""
    env = {**os.environ, **variables}
    for name in ("FASTDDS_DEFAULT_PROFILES_FILE", "FASTRTPS_DEFAULT_PROFILES_FILE"):
        if name not in variables:
            env.pop(name, None)  # only the profile under test
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ASSETS.parents[1]), env.get("PYTHONPATH")]))
    run = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60)
    return run, run.stdout + run.stderr


@pytest.mark.parametrize("profile", PROFILES, ids=lambda p: p.name)
def test_profile_loads_cleanly_and_carries_a_full_size_frame(profile):
    run, output = run_python(PROBE, **{profiles_variable(): str(profile)})
    assert run.returncode == 0, output[-2000:]
    assert run.stdout.strip().endswith("intact"), output[-2000:]
    assert "Error" not in output, f"Fast DDS complained about {profile.name}:\n{output[-2000:]}"


def test_a_broken_profile_would_be_noticed(tmp_path):
    """The check above can fail: Fast DDS reports a profile it cannot parse. Which variable it
    reads differs between the distributions: the one the docs and depth.launch.py set,
    FASTDDS_DEFAULT_PROFILES_FILE, is read on Kilted only."""
    broken = tmp_path / "broken.xml"
    broken.write_text("<dds><profiles><participant profile_name='x' is_default_profile='true'>")
    start = "import rclpy; rclpy.init(); rclpy.create_node('probe'); print('node started')"
    run, output = run_python(start, **{profiles_variable(): str(broken)})
    assert "Error" in output and str(broken) in output, output
    assert run.returncode == 0 and "node started" in run.stdout, output  # Fast DDS goes on with its defaults

    run, output = run_python(start, FASTDDS_DEFAULT_PROFILES_FILE=str(broken))
    if fastdds_major() >= 3:  # Kilted: reports the broken file
        assert "Error" in output and str(broken) in output, output
    else:  # Jazzy (Fast DDS 2.14): never opens the file named there; prints nothing, starts on the defaults
        assert "Error" not in output and str(broken) not in output, output
        assert run.returncode == 0 and "node started" in run.stdout, output
