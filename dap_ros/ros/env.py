"""Environment switches of the node (performance paths a user can turn off when debugging)."""
from __future__ import annotations

import os

_OFF = ("0", "false", "no", "off")


def switched_off(name: str) -> bool:
    """True when environment variable ``name`` is set to 0 / false / no / off (any case)."""
    return os.environ.get(name, "").strip().lower() in _OFF
