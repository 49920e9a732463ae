"""The depth node as a child process (``python -m dap_ros.node``), for tools that drive it over
ROS 2 topics: ``dap-ros demo`` and ``dap-ros eval-bag --realtime``. No rclpy import here."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

from dap_ros.errors import DapError


class NodeProcess:
    """Starts the node with a parameters file (written to ``params_path``) in ``namespace``,
    logging to ``log_path``; ``stop()`` sends SIGINT (the node's clean shutdown) and waits."""

    def __init__(
        self,
        params_yaml: str,
        namespace: str,
        log_path: Path,
        params_path: Path,
        env: dict[str, str] | None = None,
    ) -> None:
        self.log_path = log_path
        self.params_path = params_path
        self.params_path.write_text(params_yaml, encoding="utf-8")
        cmd = [sys.executable, "-m", "dap_ros.node", "--ros-args", "--params-file", str(self.params_path)]
        if namespace.strip("/"):
            cmd += ["-r", f"__ns:=/{namespace.strip('/')}"]
        self._log = open(log_path, "wb")
        self.proc = subprocess.Popen(cmd, stdout=self._log, stderr=subprocess.STDOUT,
                                     env=dict(os.environ) if env is None else env)

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
