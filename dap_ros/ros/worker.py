"""The inference thread: a one-frame slot and a loop that processes whatever is newest.

The subscription callback only drops the message into the slot, so the executor never waits on
the model. A frame still waiting when a newer one arrives is replaced (and counted): latency stays
at one inference plus one frame interval however slow the model is.
"""
from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Generic, TypeVar

T = TypeVar("T")


class LatestSlot(Generic[T]):
    """Holds at most one item; ``put`` replaces the waiting one (newest-frame-only)."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._item: T | None = None
        self._closed = False

    def put(self, item: T) -> bool:
        """Store ``item``; True if it replaced (dropped) an item nobody had taken yet."""
        with self._cond:
            replaced = self._item is not None
            self._item = item
            self._cond.notify()
            return replaced

    def take(self, timeout: float | None = None) -> T | None:
        """Wait for an item (None on timeout or after ``close``)."""
        with self._cond:
            if self._item is None and not self._closed:
                self._cond.wait(timeout)
            item, self._item = self._item, None
            return None if self._closed else item

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._item = None
            self._cond.notify_all()


class InferenceWorker(Generic[T]):
    """A daemon thread running ``process(item)`` on the newest submitted item.

    ``process`` must handle its own errors; anything that escapes goes to ``on_crash`` and the
    loop carries on, so one bad frame can never stop the node's processing.
    """

    def __init__(
        self,
        process: Callable[[T], None],
        on_crash: Callable[[BaseException], None],
        name: str = "dap_inference",
    ) -> None:
        self._process = process
        self._on_crash = on_crash
        self._slot: LatestSlot[T] = LatestSlot()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._stopping = threading.Event()
        self.busy = threading.Event()  # set while a frame is being processed

    def start(self) -> None:
        self._thread.start()

    def submit(self, item: T) -> bool:
        """Queue ``item`` for processing; True if an unprocessed older item was dropped."""
        return self._slot.put(item)

    def stop(self, timeout: float = 10.0) -> bool:
        """Stop after the current frame; True if the thread ended within ``timeout`` seconds."""
        self._stopping.set()
        self._slot.close()
        if self._thread.is_alive() and threading.current_thread() is not self._thread:
            self._thread.join(timeout)
        return not self._thread.is_alive()

    def _run(self) -> None:
        while not self._stopping.is_set():
            item = self._slot.take(timeout=0.5)
            if item is None:
                continue
            self.busy.set()
            try:
                self._process(item)
            except BaseException as exc:  # noqa: BLE001 - the loop must survive anything
                self._on_crash(exc)
            finally:
                self.busy.clear()
