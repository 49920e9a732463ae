"""The shipped Fast DDS profiles: Fast DDS loads them without complaint and they carry big frames.

Each profile is loaded the way users load it (FASTDDS_DEFAULT_PROFILES_FILE, read when the
participant starts), in a fresh process; a 7.4 MB message goes through a publisher and a
subscription of that process (shared memory or UDP on loopback, per the profile).
"""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.ros

ASSETS = Path(__file__).resolve().parents[2] / "dap_ros" / "assets"
PROFILES = sorted(ASSETS.glob("fastdds*.xml"))

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


def test_both_profiles_are_shipped():
    assert [p.name for p in PROFILES] == ["fastdds.xml", "fastdds_low_latency.xml"]


@pytest.mark.parametrize("profile", PROFILES, ids=lambda p: p.name)
def test_profile_loads_cleanly_and_carries_a_full_size_frame(profile):
    env = dict(os.environ, FASTDDS_DEFAULT_PROFILES_FILE=str(profile))
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ASSETS.parents[1]), env.get("PYTHONPATH")]))
    run = subprocess.run([sys.executable, "-c", PROBE], env=env, capture_output=True, text=True, timeout=60)
    output = run.stdout + run.stderr
    assert run.returncode == 0, output[-2000:]
    assert "Error" not in output, f"Fast DDS complained about {profile.name}:\n{output[-2000:]}"
    assert run.stdout.strip().endswith("intact"), output[-2000:]


def test_a_broken_profile_would_be_noticed(tmp_path):
    """The check above can fail: Fast DDS reports a profile it cannot parse."""
    broken = tmp_path / "broken.xml"
    broken.write_text("<dds><profiles><participant profile_name='x' is_default_profile='true'>")
    env = dict(os.environ, FASTDDS_DEFAULT_PROFILES_FILE=str(broken))
    run = subprocess.run([sys.executable, "-c", "import rclpy; rclpy.init(); rclpy.create_node('probe')"],
                         env=env, capture_output=True, text=True, timeout=60)
    assert "Error" in run.stdout + run.stderr
