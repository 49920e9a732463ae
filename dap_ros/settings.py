"""What every entry point agrees on, without torch: the shared constants, their validation, and
:class:`ModelSpec`, the frozen answer to "which model, on which backend, device, precision and size".

The node's parameters (``dap_ros.ros.params``) and the command line (``dap_ros.cli.common``) both
produce a ModelSpec; ``DepthPredictor.from_spec`` is the one place a predictor is built from it.
Importing this module imports neither torch nor rclpy (the node validates its parameters before
it loads anything heavy). Units and conventions: docs/conventions.md.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dap_ros.errors import ConfigError

DEPTH_SCALE_M = 100.0  # the network's pred_depth 1.0 is 100 m: its whole range (docs/conventions.md)
DEFAULT_INPUT_SIZE = (512, 1024)  # what the released DAP model was trained at (height, width)
IMAGENET_MEAN = (0.485, 0.456, 0.406)  # the input normalization DAP was trained with
IMAGENET_STD = (0.229, 0.224, 0.225)
# Size limits, each defined once. The network: 2048x4096 is 4x the trained width and ~43k ViT
# tokens already; larger inputs only exhaust memory (an export at 100000x200000 grew to 24 GB).
MAX_NETWORK_WIDTH = 4096
# Camera frames (the node's max_input_width): a 16K panorama is 400 MB of RGB, beyond any camera.
MAX_FRAME_WIDTH = 16384

BACKENDS = ("auto", "torch", "onnxruntime", "tensorrt")
PRECISIONS = ("fp32", "fp16", "bf16")
NORMALIZATIONS = ("imagenet", "none")
PROJECTIONS = ("erp", "dual_fisheye")
LEVELINGS = ("none", "static", "imu")


# --- rules: each returns the problem as text (None when the value is fine) ------------------------
# Two callers word them differently: the node names the parameter ('mask_threshold': ...), the
# library raises ConfigError with the option name. The rule itself lives here once.

def choice_problem(value: Any, choices: tuple[str, ...]) -> str | None:
    return None if value in choices else "must be one of " + ", ".join(choices)


def device_problem(value: str) -> str | None:
    """'auto', 'cpu', 'cuda' or 'cuda:N' (syntax only; whether this machine has it is the runtime's question)."""
    text = str(value).strip().lower()
    if text in ("auto", "cpu", "cuda") or (text.startswith("cuda:") and text[5:].isdigit()):
        return None
    return "must be auto, cpu, cuda or cuda:N"


def mask_threshold_problem(value: float) -> str | None:
    return None if 0.0 < value < 1.0 else "must lie in (0, 1)"


def max_range_problem(value: float) -> str | None:
    return None if 0.0 < value <= DEPTH_SCALE_M else f"must lie in (0, {DEPTH_SCALE_M:g}] metres"


def network_size_problem(height: int, width: int) -> str | None:
    """The one bound on the network input size (node, command line, ONNX export)."""
    if height <= MAX_NETWORK_WIDTH // 2 and width <= MAX_NETWORK_WIDTH:
        return None
    return f"must be at most {MAX_NETWORK_WIDTH // 2}x{MAX_NETWORK_WIDTH} (height x width)"


def input_size_problem(size: tuple[int, int], patch_size: int) -> str | None:
    height, width = size
    if not (height > 0 and width == 2 * height and height % patch_size == 0):
        return f"must be 2:1 with both sides multiples of {patch_size} (e.g. 512x1024 or 256x512)"
    return network_size_problem(height, width)


def box_problem(box_min: Any, box_max: Any) -> str | None:
    """Both corners or neither; each 3 finite metres, min < max on every axis."""
    if box_min is None and box_max is None:
        return None
    if box_min is None or box_max is None:
        return "needs both box_min and box_max"
    if len(box_min) != 3 or len(box_max) != 3:
        return "corners must be [x, y, z]"
    if not all(math.isfinite(a) and math.isfinite(b) and a < b for a, b in zip(box_min, box_max)):
        return "needs finite box_min < box_max on every axis"
    return None


def check(name: str, value: Any, problem: str | None) -> Any:
    """``value``, or ConfigError('NAME PROBLEM, got VALUE') when a rule found a problem."""
    if problem is not None:
        raise ConfigError(f"{name} {problem}, got {value!r}")
    return value


def check_mask_threshold(value: float) -> float:
    value = _finite(value, "mask_threshold")
    return check("mask_threshold", value, mask_threshold_problem(value))


def check_max_range(value: float) -> float:
    value = _finite(value, "max_range")
    return check("max_range", value, max_range_problem(value))


def check_input_size(size: Any, patch_size: int) -> tuple[int, int]:
    try:
        height, width = (int(v) for v in size)
    except (TypeError, ValueError):
        raise ConfigError(f"input size must be (height, width), got {size!r}") from None
    return check("network input size", (height, width), input_size_problem((height, width), patch_size))


def _finite(value: Any, name: str) -> float:
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise ConfigError(f"{name} must be a number, got {value!r}") from None
    if not math.isfinite(number):
        raise ConfigError(f"{name} must be finite, got {value!r}")
    return number


def _path_or_none(value: Any) -> str | None:
    """'' and None both mean 'not given' (ROS parameters have no None)."""
    return None if value in (None, "") else str(Path(str(value)).expanduser())


@dataclass(frozen=True)
class ModelSpec:
    """Which weights, backend, device, precision and sizes a predictor runs; validated on creation.

    ``checkpoint`` None: the embedded demo model (or random weights with ``allow_random``).
    ``input_size`` None: the model's native size (512x1024 for the released model, the file's size
    for an exported graph or engine). ``mask_threshold`` and ``max_range`` are the initial values of
    the predictor's run-time settings. ``onnx`` / ``engine``: exported files for the onnxruntime and
    tensorrt backends; ``build_engine`` builds a missing engine from ``onnx`` at start.
    """

    checkpoint: str | None = None
    model_config: str = "vitl"
    allow_random: bool = False
    backend: str = "torch"
    device: str = "cpu"
    precision: str = "fp32"
    input_size: tuple[int, int] | None = None
    normalization: str = "imagenet"
    mask_threshold: float = 0.5
    max_range: float = DEPTH_SCALE_M
    onnx: str | None = None
    engine: str | None = None
    build_engine: bool = False
    engine_cache_dir: str | None = None
    cuda_graph: bool = False
    compile: bool = False

    def __post_init__(self) -> None:
        set_ = object.__setattr__  # normalize in place: the dataclass is frozen
        for name in ("checkpoint", "onnx", "engine", "engine_cache_dir"):
            set_(self, name, _path_or_none(getattr(self, name)))
        set_(self, "model_config", str(self.model_config))
        set_(self, "device", str(self.device).strip().lower())
        if not self.model_config:
            raise ConfigError("model_config must name a preset (vitl, tiny) or a JSON file")
        check("backend", self.backend, choice_problem(self.backend, BACKENDS))
        check("precision", self.precision, choice_problem(self.precision, PRECISIONS))
        check("normalization", self.normalization, choice_problem(self.normalization, NORMALIZATIONS))
        check("device", self.device, device_problem(self.device))
        set_(self, "mask_threshold", check_mask_threshold(self.mask_threshold))
        set_(self, "max_range", check_max_range(self.max_range))
        if self.input_size is not None:
            set_(self, "input_size", check_input_size(self.input_size, 1))  # 2:1 here; patch size at load


def _triple(value: Any, name: str) -> tuple[float, float, float] | None:
    if value is None:
        return None
    try:
        numbers = tuple(float(v) for v in value)
    except (TypeError, ValueError):
        raise ConfigError(f"{name} must be three numbers, got {value!r}") from None
    if len(numbers) != 3 or not all(math.isfinite(v) for v in numbers):
        raise ConfigError(f"{name} must be three finite numbers, got {value!r}")
    return numbers  # type: ignore[return-value]


@dataclass(frozen=True)
class CameraSpec:
    """How the camera's image(s) map to rays and the rays to the output frame (docs/cameras.md).

    ``projection``: erp (one 2:1 panorama) or dual_fisheye (two lenses, ``fisheye_calibration``).
    ``mount_rpy_deg``: the camera's orientation in the output frame (ROS roll, pitch, yaw in degrees;
    a camera ray d is R·d there). ``leveling``: none (the image is used as it is; points are turned by
    the mount), static (resampled once to a panorama level in the output frame) or imu (levelled
    per frame with the roll and pitch of an IMU). ``self_mask``: a mask image in the camera's own
    panorama (0 = the robot); ``box_min`` / ``box_max``: a box of the robot's body in the output
    frame, metres. Masked pixels become invalid (NaN).
    """

    projection: str = "erp"
    fisheye_calibration: str | None = None
    mount_rpy_deg: tuple[float, float, float] = (0.0, 0.0, 0.0)
    leveling: str = "none"
    self_mask: str | None = None
    box_min: tuple[float, float, float] | None = None
    box_max: tuple[float, float, float] | None = None

    def __post_init__(self) -> None:
        set_ = object.__setattr__
        for name in ("fisheye_calibration", "self_mask"):
            set_(self, name, _path_or_none(getattr(self, name)))
        set_(self, "mount_rpy_deg", _triple(self.mount_rpy_deg, "mount_rpy_deg"))
        set_(self, "box_min", _triple(self.box_min, "self_filter.box_min"))
        set_(self, "box_max", _triple(self.box_max, "self_filter.box_max"))
        check("input_projection", self.projection, choice_problem(self.projection, PROJECTIONS))
        check("leveling", self.leveling, choice_problem(self.leveling, LEVELINGS))
        check("self_filter box", (self.box_min, self.box_max), box_problem(self.box_min, self.box_max))
        if self.projection == "dual_fisheye" and self.fisheye_calibration is None:
            raise ConfigError("input_projection dual_fisheye needs fisheye_calibration (a calibration YAML)")

    @property
    def identity(self) -> bool:
        """True when the image is used as it is: a panorama, not resampled."""
        return self.projection == "erp" and self.leveling == "none"
