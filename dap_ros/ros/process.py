"""The depth node as a child process (``python -m dap_ros.node``), for the tools that drive it over
ROS 2 topics: the demo, ``eval-bag --realtime`` and the node benchmark. No rclpy import here."""
from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from dap_ros.errors import DapError
from dap_ros.ros import fastdds
from dap_ros.ros.params import params_file_text

DOMAINS = range(1, 102)  # the domains whose DDS ports lie below Linux's ephemeral ports (32768+)
_held_domains: dict[int, int] = {}  # domain -> the descriptor of its lock, held until this process exits


def domain_ports(domain_id: int, participants: int = 4) -> list[int]:
    """The UDP ports of the first ``participants`` DDS participants of ``domain_id`` on a host
    (RTPS: 7400 + 250 * domain + 10 / 11 + 2 * participant); with localhost-only discovery a
    participant announces itself to these ports."""
    base = 7400 + 250 * domain_id
    return [base + offset + 2 * k for k in range(participants) for offset in (10, 11)]


def _ports_free(ports: list[int]) -> bool:
    for port in ports:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
            try:
                probe.bind(("", port))  # fails while any participant of the domain holds the port
            except OSError:
                return False
    return True


def _lock_domain(domain_id: int) -> int | None:
    """The descriptor of an exclusive lock on ``domain_id`` among the processes of this machine (a
    file in the temp directory; the kernel drops the lock when the process ends); None while another
    process holds it; -1 where no lock can be taken (the port probe alone decides)."""
    try:
        import fcntl
    except ImportError:  # not POSIX: the port probe alone
        return -1
    folder = Path(tempfile.gettempdir()) / "dap_ros_domains"
    try:
        folder.mkdir(mode=0o777, exist_ok=True)
        fd = os.open(folder / f"{domain_id}.lock", os.O_RDONLY | os.O_CREAT, 0o666)
    except OSError:  # e.g. another user's folder: the port probe alone
        return -1
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        os.close(fd)
        return None
    return fd


def default_domain_id() -> int:
    """A ROS domain that no other ROS 2 system on this machine uses, held by this process until it
    ends: the first of 1..101 (starting at one derived from the process id) that no other process
    of dap_ros holds (a lock file) and whose discovery ports nobody has bound. A domain from the
    pid alone was shared by concurrent sessions now and then: each then sees the other's
    participants, /diagnostics and /rosout, and discovery slows down as participants add up."""
    start = os.getpid() % len(DOMAINS)
    for i in range(len(DOMAINS)):
        domain = DOMAINS[(start + i) % len(DOMAINS)]
        if domain in _held_domains:
            continue
        fd = _lock_domain(domain)
        if fd is None:
            continue
        if _ports_free(domain_ports(domain)):
            _held_domains[domain] = fd
            return domain
        if fd >= 0:
            os.close(fd)
    return DOMAINS[start]  # every domain busy: share one (discovery may then be incomplete)


@contextlib.contextmanager
def isolated_ros_environment(domain_id: int) -> Iterator[dict[str, str]]:
    """Set ROS_DOMAIN_ID and localhost-only discovery for this process (restored afterwards) and
    yield the environment for the node's process: neither sees nor disturbs other ROS 2 systems."""
    keys = {"ROS_DOMAIN_ID": str(domain_id), "ROS_AUTOMATIC_DISCOVERY_RANGE": "LOCALHOST",
            "ROS_LOCALHOST_ONLY": None,
            # a user's own Fast DDS profile wins; else ours (10 ms heartbeats: no 3 s repair stalls)
            **fastdds.profile_environment()}
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
        self.env = dict(os.environ if env is None else env)
        self.started = time.monotonic()
        self.proc = subprocess.Popen(cmd, stdout=self._log, stderr=subprocess.STDOUT, env=self.env)

    @property
    def pid(self) -> int:
        return self.proc.pid

    def check_alive(self) -> None:
        code = self.proc.poll()
        if code is not None:
            raise DapError(f"the depth node exited with code {code}; its log ({self.log_path}): {self.tail()}")

    def describe(self, lines: int = 20) -> str:
        """The node's state and the tail of its log, for the message of a wait that failed."""
        code = self.proc.poll()
        state = (f"still running after {time.monotonic() - self.started:.1f} s" if code is None
                 else f"exited with code {code}")
        domain = self.env.get("ROS_DOMAIN_ID", "0 (unset)")
        return f"the depth node (pid {self.pid}, ROS domain {domain}) is {state}; its log ({self.log_path}): " \
               f"{self.tail(lines)}"

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

    def stop(self, timeout: float = 60.0) -> int | None:
        """SIGINT, then the exit code once the node has shut down; killed (and said so at the end of
        its log) if it is still running after ``timeout`` s. A clean shutdown takes a few seconds, far
        more on an overloaded machine: 15 s once killed a node that was shutting down normally."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=5)
                if not self._log.closed:
                    self._log.write(f"[NodeProcess] still running {timeout:.0f} s after SIGINT: killed\n".encode())
        if not self._log.closed:
            self._log.close()
        return self.proc.returncode
