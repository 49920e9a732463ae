"""``dap-ros demo`` end to end: the real node process, real ROS 2 topics, a short run (issue 7)."""
from __future__ import annotations

import json
import math

import pytest

pytest.importorskip("rclpy", reason="rclpy is not installed (pip install -e .[ros])")

from dap_ros.model.embedded import embedded_model_files  # noqa: E402

pytestmark = pytest.mark.ros


def test_demo_sequence_is_bundled_and_small():
    from dap_ros.demo.sequence import default_sequence_dir, load_sequence

    folder = default_sequence_dir()
    total = sum(f.stat().st_size for f in folder.rglob("*") if f.is_file())
    assert total < 3.5e6
    seq = load_sequence(max_frames=2)
    f = seq.frames[0]
    assert f.rgb.shape == (seq.meta["height"], seq.meta["width"], 3)
    assert f.gt_m.shape == f.rgb.shape[:2]
    assert 0.2 < float(f.gt_m[f.gt_m == f.gt_m].min()) and float(f.gt_m[f.gt_m == f.gt_m].max()) < 65.0


@pytest.mark.skipif(embedded_model_files() is None, reason="no embedded model packaged")
def test_demo_short_run(tmp_path, capsys):
    from dap_ros.cli.main import main

    out = tmp_path / "report"
    assert main(["demo", "--frames", "3", "--panels", "2", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert f"report: {out.resolve()}" in printed
    assert "EMBEDDED DEMO MODEL" in printed
    m = json.loads((out / "metrics.json").read_text())
    assert m["frames"] == 3
    assert sorted(p.name for p in (out / "panels").glob("*.png")) == ["frame_000.png", "frame_002.png"]
    assert (out / "report.md").is_file() and (out / "node.log").is_file()
    d = m["depth"]
    # sane, not the quality bar
    assert 0.0 < d["abs_rel"] < 1.0 and 0.2 < d["delta1"] <= 1.0 and math.isfinite(d["rmse"])
    for output in ("depth", "range_mask", "points", "scan"):
        lat = m["latency_ms"][output]
        assert 0.0 < lat["p50"] <= lat["p95"] < 30_000
    assert all(f["points"] > 1000 for f in m["per_frame"])
    assert m["scan_median_rel_error"] is not None and m["scan_median_rel_error"] < 1.0
    assert m["wall_s"] < 120
