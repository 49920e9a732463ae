"""The node's parameters for offline evaluation: the same file (``--params config/depth.yaml``),
the same validation (``dap_ros.ros.params.NodeParams``), the same predictor settings.

Precedence: a command-line option that was given > the parameters file > the node's defaults.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping

from dap_ros.errors import ConfigError
from dap_ros.ros.params import NodeParams

__all__ = ["flatten_ros_params", "load_params_file", "resolve_params", "create_predictor"]


def flatten_ros_params(tree: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """{'qos': {'input': {'depth': 2}}} -> {'qos.input.depth': 2}."""
    flat: dict[str, Any] = {}
    for key, value in tree.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            flat.update(flatten_ros_params(value, name + "."))
        else:
            flat[name] = value
    return flat


def load_params_file(path: str | Path, node_name: str = "dap_depth") -> dict[str, Any]:
    """Parameter values from a ROS 2 parameters file (``NODE: ros__parameters: {...}``).

    Sections apply in file order when their key is ``/**``, ``NODE``, ``/NODE``, or a namespaced
    name ending in ``/NODE``; later sections override earlier ones, as in ROS.
    """
    import yaml

    p = Path(path)
    try:
        tree = yaml.safe_load(p.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigError(f"cannot read parameters file {p}: {exc.strerror}") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"parameters file {p} is not valid YAML: {exc}") from None
    if not isinstance(tree, Mapping):
        raise ConfigError(f"parameters file {p} must map node names to 'ros__parameters'")
    values: dict[str, Any] = {}
    matched = False
    for key, section in tree.items():
        key = str(key)
        applies = key in ("/**", node_name, f"/{node_name}") or key.endswith(f"/{node_name}")
        if not applies or not isinstance(section, Mapping):
            continue
        params = section.get("ros__parameters")
        if not isinstance(params, Mapping):
            raise ConfigError(f"parameters file {p}: section {key!r} has no 'ros__parameters' mapping")
        values.update(flatten_ros_params(params))
        matched = True
    if not matched:
        raise ConfigError(f"parameters file {p} has no section for '/**' or '{node_name}'")
    return values


def resolve_params(params_file: str | Path | None, overrides: Mapping[str, Any]) -> NodeParams:
    """Validated NodeParams from the file (if any) with ``overrides`` (None values ignored)."""
    values: dict[str, Any] = load_params_file(params_file) if params_file else {}
    values.update({k: v for k, v in overrides.items() if v is not None})
    return NodeParams.from_values(values)


def create_predictor(p: NodeParams):
    """The node's predictor for ``p``: the same options the node uses (NodeParams.predictor_options)."""
    from dap_ros.pipeline import DepthPredictor

    return DepthPredictor.create(**p.predictor_options())
