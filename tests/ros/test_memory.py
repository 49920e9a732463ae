"""dap_ros.ros.memory: glibc keeps recycling multi-MB frame buffers instead of faulting them in anew."""
from __future__ import annotations

import os
import platform
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]

# A frame-like loop on a worker thread (non-main malloc arena, as the node's inference thread):
# depth image, point record, serialized bytes; prints the minor page faults per iteration.
_PROBE = r"""
import resource, sys, threading
import numpy as np
from dap_ros.ros.memory import tune_malloc_for_large_frames
print(tune_malloc_for_large_frames(), file=sys.stderr)

def frames(out):
    def one():
        depth = np.ones((960, 1920), np.float32)
        record = np.ones((480, 960, 4), np.float32) * 2
        payload = record.tobytes()
        del depth, record, payload
    for _ in range(3):
        one()
    start = resource.getrusage(resource.RUSAGE_THREAD).ru_minflt
    for _ in range(10):
        one()
    out.append((resource.getrusage(resource.RUSAGE_THREAD).ru_minflt - start) / 10)

result = []
worker = threading.Thread(target=frames, args=(result,))
worker.start()
worker.join()
print(result[0])
"""


def _faults_per_frame(**env: str) -> tuple[float, str]:
    full_env = {k: v for k, v in os.environ.items() if not k.startswith(("MALLOC_", "GLIBC_TUNABLES"))}
    full_env.update(env, PYTHONPATH=str(REPO))
    done = subprocess.run([sys.executable, "-c", _PROBE], env=full_env, capture_output=True, text=True,
                          timeout=120, check=True)
    return float(done.stdout.strip()), done.stderr.strip()


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="the tuning applies to glibc only")
def test_tuning_stops_per_frame_page_faults():
    untuned, note_off = _faults_per_frame(DAP_ROS_MALLOC_TUNING="0")
    tuned, note_on = _faults_per_frame()
    assert "disabled" in note_off and "recycled" in note_on
    # 7.4 + 7.4 + 7.4 MB per frame = ~5400 pages: untuned most of them fault again every frame
    assert untuned > 1500, f"probe did not reproduce the problem ({untuned} faults per frame)"
    assert tuned < 0.25 * untuned, f"tuned {tuned} vs untuned {untuned} minor faults per frame"


def test_user_settings_are_respected():
    _faults, note = _faults_per_frame(MALLOC_MMAP_THRESHOLD_="65536")
    assert "left to the user" in note and "MALLOC_MMAP_THRESHOLD_" in note
