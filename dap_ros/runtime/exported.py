"""Reading what ``dap-ros export-onnx`` wrote into a graph: its ``dap_ros.*`` metadata and shapes."""
from __future__ import annotations

import json
from pathlib import Path

from dap_ros.errors import ConfigError

META_PREFIX = "dap_ros."
DEFAULT_PATCH_SIZE = 16  # DINOv3 ViTs; only for graphs exported without their model config


def read_metadata(path: str | Path) -> dict[str, str]:
    """The ``dap_ros.*`` metadata of an exported graph (keys without the prefix); ConfigError
    when ``path`` is missing or not an ONNX file."""
    import onnx

    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"ONNX file not found: {path}")
    try:
        model = onnx.load(str(path), load_external_data=False)
    except Exception as exc:  # noqa: BLE001 - protobuf raises several types on a corrupt file
        raise ConfigError(f"{path} is not an ONNX file ({type(exc).__name__}: {exc})") from None
    if not model.graph.node:  # protobuf reads an empty (or other short) file as an empty model
        raise ConfigError(f"{path} is not an ONNX file (it holds no graph)")
    return {p.key[len(META_PREFIX) :]: p.value for p in model.metadata_props if p.key.startswith(META_PREFIX)}


def patch_size(metadata: dict[str, str]) -> int:
    """The patch size of the exported network (from its model config, recorded at export)."""
    try:
        return int(json.loads(metadata["model_config"])["patch_size"])
    except (KeyError, ValueError, TypeError):
        return DEFAULT_PATCH_SIZE


def graph_io(path: str | Path) -> tuple[dict[str, tuple], dict[str, tuple]]:
    """{name: shape} of the graph inputs and outputs (symbolic dims as strings)."""
    import onnx

    model = onnx.load(str(path), load_external_data=False)

    def shapes(values):
        return {
            v.name: tuple(d.dim_value if d.HasField("dim_value") else (d.dim_param or "?")
                          for d in v.type.tensor_type.shape.dim)
            for v in values
        }

    return shapes(model.graph.input), shapes(model.graph.output)
