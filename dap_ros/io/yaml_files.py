"""YAML files users write (parameters, lens calibrations), read with one-line errors."""
from __future__ import annotations

from pathlib import Path
from typing import Any

from dap_ros.errors import ConfigError


def read_yaml(path: str | Path, what: str) -> Any:
    """The parsed content of ``path``; ConfigError('WHAT PATH: ...') when it cannot be read or parsed."""
    import yaml

    path = Path(path).expanduser()
    try:
        return yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigError(f"{what} {path}: cannot read it ({exc.strerror})") from None
    except UnicodeDecodeError:
        raise ConfigError(f"{what} {path} is not a text file") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{what} {path} is not valid YAML: {exc}") from None
