"""The repository is a valid ROS 2 ament_python package and an importable Python package."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
IGNORED = shutil.ignore_patterns(".venv", ".git", "__pycache__", "out", "build", "install", "log", "*.egg-info")


def test_package_xml_is_format_3_ament_python():
    from catkin_pkg.package import parse_package

    package = parse_package(str(REPO))
    assert package.name == "dap_ros" and package.package_format == 3
    assert package.get_build_type() == "ament_python"
    exec_deps = {d.name for d in package.exec_depends}
    assert {"rclpy", "sensor_msgs", "std_msgs", "diagnostic_msgs", "launch_ros", "python3-numpy"} <= exec_deps


def test_import_needs_neither_rclpy_nor_torch_at_top_level():
    code = (
        "import sys, dap_ros, dap_ros.geometry, dap_ros.io, dap_ros.config, dap_ros.errors\n"
        "assert 'rclpy' not in sys.modules and 'torch' not in sys.modules, sorted(sys.modules)\n"
        "import dap_ros.cli.main, dap_ros.pipeline, dap_ros.model\n"
        "assert 'rclpy' not in sys.modules\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)


def test_colcon_builds_and_installs_the_ros_layout(tmp_path):
    colcon = shutil.which("colcon", path=str(Path(sys.executable).parent)) or shutil.which("colcon")
    if colcon is None:
        pytest.fail("colcon is not installed: `make setup` installs it from requirements-dev.txt")
    shutil.copytree(REPO, tmp_path / "src" / "dap_ros", ignore=IGNORED)
    env = dict(os.environ, PYTHONWARNINGS="ignore")
    listing = subprocess.run([colcon, "list"], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    assert "(ros.ament_python)" in listing.stdout, listing.stdout + listing.stderr
    build = subprocess.run(
        [colcon, "build", "--base-paths", "src"], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300
    )
    assert build.returncode == 0, build.stdout[-2000:] + build.stderr[-2000:]
    prefix = tmp_path / "install" / "dap_ros"
    assert (prefix / "lib" / "dap_ros" / "depth_node").is_file()  # where `ros2 run` looks
    assert (prefix / "lib" / "dap_ros" / "dap-ros").is_file()
    share = prefix / "share" / "dap_ros"
    assert (share / "package.xml").is_file()
    for profile in ("fastdds", "fastdds_low_latency", "fastdds2", "fastdds2_low_latency"):
        assert (share / "config" / f"{profile}.xml").is_file(), profile  # Fast DDS 3 and 2 forms
    for rel in ("launch/depth.launch.py", "config/depth.yaml"):
        if (REPO / rel).exists():
            assert (share / rel).is_file(), rel
    resolve = subprocess.run(
        [
            sys.executable,
            "-c",
            "from ament_index_python.packages import get_package_share_directory as g; print(g('dap_ros'))",
        ],
        env=dict(env, AMENT_PREFIX_PATH=str(prefix)),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert resolve.returncode == 0 and Path(resolve.stdout.strip()) == share, resolve.stderr
