"""The options every sub-command that runs the model shares, the ModelSpec they describe, and the
argument types and output-path checks of all sub-commands."""
from __future__ import annotations

import argparse
import math
import re
import tempfile
from pathlib import Path
from typing import Any

from dap_ros.config import preset_names
from dap_ros.errors import ConfigError
from dap_ros.settings import BACKENDS, DEPTH_SCALE_M, NORMALIZATIONS, PRECISIONS, CameraSpec, ModelSpec

# argparse dest -> node parameter of the same meaning (eval-bag merges options into the node's
# parameters file); input_size maps onto input_height / input_width.
NODE_PARAMETERS = {
    "checkpoint": "checkpoint",
    "model_config": "model_config",
    "random_weights": "allow_random_weights",
    "device": "device",
    "precision": "precision",
    "normalization": "normalization",
    "mask_threshold": "mask_threshold",
    "max_range": "max_range",
    "backend": "backend",
    "onnx": "onnx",
    "engine": "engine",
    "build_engine": "build_engine",
    "cuda_graph": "cuda_graph",
}


def parse_size(text: str) -> tuple[int, int]:
    """'512x1024' (height x width) -> (512, 1024)."""
    match = re.fullmatch(r"\s*(\d+)\s*[xX]\s*(\d+)\s*", text)
    if not match:
        raise argparse.ArgumentTypeError(f"expected HEIGHTxWIDTH such as 512x1024, got {text!r}")
    return int(match[1]), int(match[2])


def finite_float(text: str) -> float:
    """argparse type: a finite number (``float`` alone also takes nan and inf)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"expected a finite number, got {text!r}")
    return value


def positive_float(text: str) -> float:
    """argparse type: a finite number > 0 (rates, scales, timeouts)."""
    value = finite_float(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"expected a number > 0, got {text!r}")
    return value


def non_negative_float(text: str) -> float:
    """argparse type: a finite number >= 0 (tolerances)."""
    value = finite_float(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected a number >= 0, got {text!r}")
    return value


def make_output_dir(path: Path, option: str) -> None:
    """Create the output folder ``path`` (``option`` names it in messages) and make sure a file can
    be written into it, or raise ConfigError. Callers run it before a model load, so that a wrong
    path costs no loading time. A probe file is written and removed: permissions alone do not tell
    (root, read-only mounts, /proc)."""
    if path.exists() and not path.is_dir():
        raise ConfigError(f"{option} {path} is a file, not a directory")
    try:
        path.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=path, prefix=".dap_ros_", suffix=".probe"):
            pass
    except OSError as exc:
        raise ConfigError(f"cannot write into {option} {path}: {exc.strerror or exc}") from None


def check_output_file(path: Path, option: str) -> None:
    """ConfigError unless a file can be written at ``path`` (its folder is created if missing)."""
    if path.is_dir():
        raise ConfigError(f"{option} {path} is a directory; name a file")
    make_output_dir(path.parent, f"the folder of {option}")


def add_model_options(parser: argparse.ArgumentParser, *, defaults: bool = True) -> None:
    """The model and backend options (docs/deployment.md for the backends). ``defaults=False``:
    an option not given stays None, so that a parameters file (eval-bag --params) decides."""
    group = parser.add_argument_group("model")
    group.add_argument(
        "--checkpoint",
        help="DAP weights: the released model.pth, a copy, or a .safetensors file "
        "(default: the embedded demo model, synthetic-only)",
    )
    group.add_argument(
        "--model-config",
        default="vitl",
        help=f"architecture: a preset ({', '.join(preset_names())}) or a JSON file (default: vitl)",
    )
    group.add_argument(
        "--random-weights",
        action="store_true",
        help="run without a checkpoint on randomly initialized weights (for trying the tool; depth is meaningless)",
    )
    group.add_argument("--device", default="cpu", help="auto, cpu, cuda or cuda:N (default: cpu)")
    group.add_argument("--precision", default="fp32", choices=PRECISIONS, help="compute precision")
    group.add_argument(
        "--input-size",
        type=parse_size,
        default=None,
        metavar="HxW",
        help="network input size, 2:1, multiples of 16 (default: the model's native size, 512x1024 for DAP)",
    )
    group.add_argument("--normalization", default="imagenet", choices=NORMALIZATIONS)
    group.add_argument(
        "--mask-threshold",
        type=float,
        default=0.5,
        help="a pixel is in range where 1 - pred_mask > this (official rule: 0.5)",
    )
    group.add_argument("--max-range", type=float, default=DEPTH_SCALE_M,
                       help="ranges beyond this (m) count as out of range")
    group = parser.add_argument_group("backend")
    group.add_argument(
        "--backend",
        default="torch",
        choices=BACKENDS,
        help="torch (default), onnxruntime (--onnx), tensorrt (--engine or --onnx), auto (best available, logged)",
    )
    group.add_argument("--onnx",
                       help="exported graph (dap-ros export-onnx) for onnxruntime / to build a TensorRT engine")
    group.add_argument("--engine", help="TensorRT engine (dap-ros build-engine); default: the engine cache")
    group.add_argument("--build-engine", action="store_true", help="tensorrt: build a missing engine from --onnx")
    group.add_argument("--cuda-graph", action="store_true", help="replay the network as a CUDA graph (torch, tensorrt)")
    group.add_argument(
        "--compile",
        action="store_true",
        help="torch: torch.compile the network (opt-in: minutes of compilation before the first frame)",
    )
    if not defaults:
        parser.set_defaults(**{dest: None for dest in NODE_PARAMETERS}, input_size=None)


def spec_from_args(args: argparse.Namespace) -> ModelSpec:
    """The ModelSpec of the model and backend options."""
    return ModelSpec(
        checkpoint=args.checkpoint,
        model_config=args.model_config,
        allow_random=args.random_weights,
        backend=args.backend,
        device=args.device,
        precision=args.precision,
        input_size=args.input_size,
        normalization=args.normalization,
        mask_threshold=args.mask_threshold,
        max_range=args.max_range,
        onnx=args.onnx,
        engine=args.engine,
        build_engine=args.build_engine,
        cuda_graph=args.cuda_graph,
        compile=args.compile,
    )


def node_parameter_overrides(args: argparse.Namespace) -> dict[str, Any]:
    """{node parameter: value} of the model options given on the command line (None: not given)."""
    values = {param: getattr(args, dest) for dest, param in NODE_PARAMETERS.items()}
    if args.input_size is not None:
        values["input_height"], values["input_width"] = args.input_size
    return values


def add_camera_options(parser: argparse.ArgumentParser, *, imu: bool = False) -> None:
    """Projection, mount, levelling and self filter (docs/cameras.md); not given = None, so that a
    parameters file (eval-bag --params) decides. ``imu``: offer ``--leveling imu`` too."""
    group = parser.add_argument_group("camera (docs/cameras.md)")
    group.add_argument("--fisheye-calibration", metavar="YAML",
                       help="the input is a dual-fisheye camera with this lens calibration")
    group.add_argument("--mount-rpy", type=float, nargs=3, metavar=("ROLL", "PITCH", "YAW"),
                       help="the camera's orientation in the output frame, degrees (upside down: 180 0 0)")
    group.add_argument("--leveling", choices=("none", "static", "imu") if imu else ("none", "static"),
                       help="static: resample to a panorama level in the output frame (default: none)")
    group.add_argument("--self-mask", metavar="PNG", help="mask in the camera's own panorama, 0 = the robot")
    group.add_argument("--box-min", type=float, nargs=3, metavar=("X", "Y", "Z"),
                       help="the robot's body box in the output frame, metres: lower corner")
    group.add_argument("--box-max", type=float, nargs=3, metavar=("X", "Y", "Z"), help="upper corner")


def camera_from_args(args: argparse.Namespace) -> CameraSpec:
    """The CameraSpec of the camera options (absent ones: a level panorama)."""
    return CameraSpec(
        projection="dual_fisheye" if args.fisheye_calibration else "erp",
        fisheye_calibration=args.fisheye_calibration,
        mount_rpy_deg=tuple(args.mount_rpy) if args.mount_rpy else (0.0, 0.0, 0.0),
        leveling=args.leveling or "none",
        self_mask=args.self_mask,
        box_min=tuple(args.box_min) if args.box_min else None,
        box_max=tuple(args.box_max) if args.box_max else None,
    )


def camera_parameter_overrides(args: argparse.Namespace) -> dict[str, Any]:
    """{node parameter: value} of the camera options given on the command line."""
    values: dict[str, Any] = {}
    if args.fisheye_calibration:
        values.update(input_projection="dual_fisheye", fisheye_calibration=args.fisheye_calibration)
    for dest, param in (("mount_rpy", "mount_rpy_deg"), ("box_min", "self_filter.box_min"),
                        ("box_max", "self_filter.box_max")):
        if getattr(args, dest):
            values[param] = list(getattr(args, dest))
    if args.leveling:
        values["leveling"] = args.leveling
    if args.self_mask:
        values["self_mask"] = args.self_mask
    return values
