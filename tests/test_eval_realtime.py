"""eval-bag --realtime against the real node (python -m dap_ros.node, tiny random model), over
real rclpy + Fast DDS on loopback. Isolation: localhost discovery, a per-process domain and a
unique namespace. Waiting is done by spinning with deadlines (no sleeps as synchronization)."""
from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("rosbags", reason="eval needs rosbags (pip install -e .[eval])")
pytest.importorskip("rclpy", reason="--realtime needs rclpy (pip install -e .[ros])")

from dap_ros.cli.main import main as cli_main  # noqa: E402
from dap_ros.evaluation.makebag import make_bag  # noqa: E402
from dap_ros.ros.process import default_domain_id  # noqa: E402

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture
def ros_env(monkeypatch):
    monkeypatch.setenv("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")
    monkeypatch.delenv("ROS_LOCALHOST_ONLY", raising=False)
    monkeypatch.setenv("ROS_DOMAIN_ID", str(os.environ.get("ROS_DOMAIN_ID") or default_domain_id()))


def test_realtime_replay_through_the_running_node(tmp_path, ros_env, capsys):
    from PIL import Image

    rng = np.random.default_rng(0)
    images = []
    for i in range(6):
        path = tmp_path / f"f{i}.png"
        Image.fromarray(rng.integers(0, 256, (64, 128, 3), dtype=np.uint8)).save(path)
        images.append(path)
    bag = tmp_path / "in.mcap"
    make_bag(images, [None] * 6, bag, image_topic="/cam/image", rate_hz=5.0, progress=False)
    report = tmp_path / "report"
    ns = f"/rt{os.getpid()}"
    code = cli_main([
        "eval-bag", str(bag), "--image-topic", "/cam/image", "--report-dir", str(report), "--no-progress",
        "--model-config", "tiny", "--random-weights", "--input-size", "64x128", "--device", "cpu",
        "--params", str(REPO / "config/depth.yaml"), "--realtime", "--launch-node", "--node-namespace", ns,
        "--node-timeout", "90", "--drain-timeout", "10", "--no-plots",
    ])
    out = capsys.readouterr()
    doc = json.loads((report / "metrics.json").read_text())
    rt = doc["realtime"]
    assert code == 0 and "error" not in rt, (rt, out.err[-2000:])
    assert rt["input_topic"] == f"{ns}/image" and rt["output_topic"] == f"{ns}/depth"
    assert rt["frames_published"] == 6
    assert rt["frames_received"] + rt["frames_dropped"] == 6
    assert rt["frames_received"] >= 1 and 0.0 <= rt["drop_rate"] < 1.0
    lat = rt["latency_ms"]
    assert 0 < lat["p50"] <= lat["p95"] <= lat["p99"] <= lat["max"] < 10_000
    assert rt["recorded_hz"] == pytest.approx(5.0)
    assert "Real-time replay" in (report / "report.md").read_text()
