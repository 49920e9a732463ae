"""Publish serialized messages straight from a numpy buffer, without copying them in Python.

``rclpy.Publisher.publish(bytes)`` copies the CDR bytes into a ``std::string`` before calling
``rcl_publish_serialized_message``, and holds the GIL throughout. The node's outputs are ~17 MB
per frame (depth, mask, point cloud at 1920x960), so that copy and the ``bytes`` object it needs
cost ~3 ms per frame and keep the helper thread (building the point cloud) waiting for the GIL.

:class:`CdrPublisher` makes the same rcl call through ctypes with a pointer into the caller's
buffer: the middleware copies the message once (into its own history, synchronously: the buffer
is free again when ``publish`` returns) and the GIL is released during the call. rcl is already
loaded by rclpy (same library, same publisher handle, same checks inside rcl); when it cannot be
reached (another rclpy layout, a non-glibc platform), or when the environment sets
``DAP_ROS_DIRECT_PUBLISH=0``, the publisher falls back to ``Publisher.publish(bytes)`` and says
so in ``fallback_reason`` (the node logs it at start).

The ctypes structure below mirrors ``rcl_serialized_message_t`` (``rcutils_uint8_array_t``:
buffer, length, capacity, allocator), unchanged since ROS 2 Crystal.
"""
from __future__ import annotations

import ctypes
import threading
from typing import Any

import numpy as np

from dap_ros.ros.env import switched_off


class _Allocator(ctypes.Structure):  # rcutils_allocator_t: unused by publishing, left zero
    _fields_ = [
        ("allocate", ctypes.c_void_p),
        ("deallocate", ctypes.c_void_p),
        ("reallocate", ctypes.c_void_p),
        ("zero_allocate", ctypes.c_void_p),
        ("state", ctypes.c_void_p),
    ]


class _SerializedMessage(ctypes.Structure):  # rcl_serialized_message_t (rcutils_uint8_array_t)
    _fields_ = [
        ("buffer", ctypes.c_void_p),
        ("buffer_length", ctypes.c_size_t),
        ("buffer_capacity", ctypes.c_size_t),
        ("allocator", _Allocator),
    ]


_RCL_RET_OK = 0
_lock = threading.Lock()
_rcl_publish: Any = None
_rcl_error: str | None = None


def _rcl_publish_function() -> Any:
    """``rcl_publish_serialized_message`` from the librcl rclpy loaded (None + reason if absent)."""
    global _rcl_publish, _rcl_error
    with _lock:
        if _rcl_publish is None and _rcl_error is None:
            try:
                import rclpy.impl.implementation_singleton  # noqa: F401 - loads librcl.so

                function = ctypes.CDLL("librcl.so").rcl_publish_serialized_message
                function.argtypes = [ctypes.c_void_p, ctypes.POINTER(_SerializedMessage), ctypes.c_void_p]
                function.restype = ctypes.c_int
                _rcl_publish = function
            except (OSError, AttributeError, ImportError) as exc:
                _rcl_error = f"librcl not reachable through ctypes ({exc})"
        return _rcl_publish


def _reset_rcl_error() -> None:
    """rcl left an error message behind; clear it as rclpy does (else rcl warns on the next one)."""
    try:
        ctypes.CDLL("librcutils.so").rcutils_reset_error()
    except (OSError, AttributeError):
        pass


class CdrPublisher:
    """Wraps an rclpy (lifecycle) publisher; ``publish`` takes a CDR message as a uint8 array.

    The array may be a view into a larger, reused buffer: it is read during the call only.
    """

    def __init__(self, publisher: Any, direct: bool | None = None) -> None:
        """``direct`` None: unless DAP_ROS_DIRECT_PUBLISH is 0/false/no/off."""
        if direct is None:
            direct = not switched_off("DAP_ROS_DIRECT_PUBLISH")
        self.publisher = publisher
        self._publish = _rcl_publish_function() if direct else None
        self.fallback_reason: str | None = None
        if not direct:
            self.fallback_reason = "direct publishing disabled (DAP_ROS_DIRECT_PUBLISH or direct=False)"
        elif self._publish is None:
            self.fallback_reason = _rcl_error
        elif not hasattr(publisher.handle, "pointer"):
            self._publish, self.fallback_reason = None, "rclpy publisher has no 'pointer' (another rclpy version)"

    @property
    def direct(self) -> bool:
        return self._publish is not None

    def get_subscription_count(self) -> int:
        return self.publisher.get_subscription_count()

    def publish(self, cdr: np.ndarray | bytes) -> None:
        """Publish a CDR message (a contiguous uint8 array or bytes)."""
        if self._publish is None:
            self.publisher.publish(cdr if isinstance(cdr, bytes) else cdr.tobytes())
            return
        if not getattr(self.publisher, "is_activated", True):
            self.publisher.publish(b"")  # a deactivated lifecycle publisher: rclpy logs and drops it
            return
        view = np.frombuffer(cdr, dtype=np.uint8) if isinstance(cdr, bytes) else cdr
        if view.ndim != 1 or view.dtype != np.uint8 or not view.flags.c_contiguous:
            raise ValueError("a CDR message must be a contiguous 1-D uint8 array")
        message = _SerializedMessage(view.ctypes.data, view.size, view.size, _Allocator())
        with self.publisher.handle:  # keeps the rcl publisher alive during the call, as rclpy does
            ret = self._publish(self.publisher.handle.pointer, ctypes.byref(message), None)
        if ret != _RCL_RET_OK:
            _reset_rcl_error()
            raise RuntimeError(f"rcl_publish_serialized_message failed on {self.publisher.topic_name} (rcl code {ret})")
