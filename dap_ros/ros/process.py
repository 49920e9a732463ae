"""The depth node as a child process (``python -m dap_ros.node``), for the tools that drive it over
ROS 2 topics: the demo, ``eval-bag --realtime`` and the node benchmark. No rclpy import here."""
from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from dap_ros.errors import DapError
from dap_ros.ros.params import params_file_text

FASTDDS_PROFILE = Path(__file__).resolve().parents[1] / "assets" / "fastdds.xml"


def default_domain_id() -> int:
    """A domain in 1..101 (the range whose DDS ports never collide with Linux ephemeral ports),
    derived from the process id so that concurrent runs rarely share one."""
    return 1 + os.getpid() % 101


@contextlib.contextmanager
def isolated_ros_environment(domain_id: int) -> Iterator[dict[str, str]]:
    """Set ROS_DOMAIN_ID and localhost-only discovery for this process (restored afterwards) and
    yield the environment for the node's process: neither sees nor disturbs other ROS 2 systems."""
    keys = {"ROS_DOMAIN_ID": str(domain_id), "ROS_AUTOMATIC_DISCOVERY_RANGE": "LOCALHOST",
            "ROS_LOCALHOST_ONLY": None,
            # a user's own Fast DDS profile wins; else ours (10 ms heartbeats: no 3 s repair stalls)
            "FASTDDS_DEFAULT_PROFILES_FILE": os.environ.get("FASTDDS_DEFAULT_PROFILES_FILE") or str(FASTDDS_PROFILE)}
    saved = {k: os.environ.get(k) for k in keys}
    try:
        for k, v in keys.items():
            if v is None:
                os.environ.pop(k, None)  # deprecated; conflicts with the discovery range on newer distros
            else:
                os.environ[k] = v
        yield dict(os.environ)
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


class NodeProcess:
    """Starts the node with ``params`` ({parameter name: value}, written as a parameters file to
    ``params_path``, default next to the log) in ``namespace``, logging to ``log_path``;
    ``stop()`` sends SIGINT (the node's clean shutdown) and waits."""

    def __init__(
        self,
        params: Mapping[str, Any],
        namespace: str,
        log_path: Path,
        params_path: Path | None = None,
        env: Mapping[str, str] | None = None,
        ros_args: tuple[str, ...] = (),
    ) -> None:
        self.log_path = Path(log_path)
        self.params_path = params_path or self.log_path.with_suffix(".params.yaml")
        self.params_path.write_text(params_file_text(params), encoding="utf-8")
        cmd = [sys.executable, "-m", "dap_ros.node", "--ros-args", "--params-file", str(self.params_path), *ros_args]
        if namespace.strip("/"):
            cmd += ["-r", f"__ns:=/{namespace.strip('/')}"]
        self._log = open(self.log_path, "wb")
        self.proc = subprocess.Popen(cmd, stdout=self._log, stderr=subprocess.STDOUT,
                                     env=dict(os.environ if env is None else env))

    @property
    def pid(self) -> int:
        return self.proc.pid

    def check_alive(self) -> None:
        code = self.proc.poll()
        if code is not None:
            raise DapError(f"the depth node exited with code {code}; its log ({self.log_path}): {self.tail()}")

    def tail(self, lines: int = 10) -> str:
        self._log.flush()
        try:
            text = self.log_path.read_text(errors="replace").strip().splitlines()
        except OSError:
            return "(no log)"
        return " | ".join(text[-lines:]) or "(empty log)"

    def wait(self, timeout: float) -> int:
        """Wait for the node to exit by itself; its exit code. DapError (with the log's tail) if it
        is still running after ``timeout`` seconds (it is then stopped)."""
        try:
            return self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.stop()
            raise DapError(f"the depth node did not exit within {timeout:.0f} s; its log: {self.tail()}") from None

    def stop(self) -> int | None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=5)
        self._log.close()
        return self.proc.returncode
