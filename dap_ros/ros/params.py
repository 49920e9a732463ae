"""The node's parameters: one table (name, default, meaning), one validated dataclass, and the
ROS 2 parameters file (read by eval-bag, written for the node processes the tools start).

Pure Python (no rclpy, no torch) so the validation is testable and reusable; ``declare`` imports
rclpy lazily. The rules shared with the command line live in :mod:`dap_ros.settings`. Parameters
are declared with dynamic typing: ROS would otherwise reject ``max_range: 100`` (an integer in
YAML) with a type-mismatch traceback at start. The values are type-checked here instead, with one
clear message per parameter.

Every parameter is either applied at run time or "restart-only" (read once when the model and the
topics are set up); changing a restart-only parameter on a running node is rejected with a reason.
"""
from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

from dap_ros import settings
from dap_ros.errors import ConfigError
from dap_ros.geometry import MAX_BEAMS_PER_COLUMN, LaserScanSpec
from dap_ros.settings import (
    BACKENDS,
    DEPTH_SCALE_M,
    LEVELINGS,
    NORMALIZATIONS,
    PRECISIONS,
    PROJECTIONS,
    CameraSpec,
    ModelSpec,
)

OUTPUT_SIZES = ("input", "network")
TRANSPORTS = ("raw", "compressed")
RELIABILITIES = ("reliable", "best_effort")
NODE_NAME = "dap_depth"


@dataclass(frozen=True)
class ParamSpec:
    name: str
    default: Any
    description: str
    restart: bool = False  # True: read at configure time only


SPECS: tuple[ParamSpec, ...] = (
    ParamSpec("lifecycle", False, "true: managed lifecycle node, waits for configure/activate; "
              "false: configures and activates itself at start", restart=True),
    ParamSpec("checkpoint", "", "path of the DAP weights (model.pth / .safetensors); empty = the embedded "
              "demo model (synthetic-only, not for real robots)", restart=True),
    ParamSpec("allow_random_weights", False, "with an empty checkpoint, run RANDOM weights instead of the "
              "embedded model (tests and plumbing checks only; the depth is meaningless)", restart=True),
    ParamSpec("model_config", "vitl", "architecture preset (vitl, tiny) or a JSON file path", restart=True),
    ParamSpec("backend", "auto", "inference backend: auto, torch, onnxruntime, tensorrt", restart=True),
    ParamSpec("onnx", "", "exported graph (dap-ros export-onnx) for onnxruntime / to build a TensorRT engine",
              restart=True),
    ParamSpec("engine", "", "TensorRT engine (dap-ros build-engine); empty = the engine cache", restart=True),
    ParamSpec("build_engine", False, "tensorrt: build a missing engine from 'onnx' at start (minutes)",
              restart=True),
    ParamSpec("cuda_graph", False, "replay the network as a CUDA graph (torch, tensorrt on CUDA)", restart=True),
    ParamSpec("device", "auto", "auto (cuda if available, else cpu), cpu, cuda, cuda:N", restart=True),
    ParamSpec("precision", "fp32", "fp32, fp16 (CUDA only), bf16", restart=True),
    ParamSpec("input_height", 0, "network input height in pixels (2:1 with input_width); 0 = the "
              "model's native size (512x1024 for the released model)", restart=True),
    ParamSpec("input_width", 0, "network input width in pixels; 0 with input_height 0", restart=True),
    ParamSpec("normalization", "imagenet", "network input normalization: imagenet or none", restart=True),
    ParamSpec("mask_threshold", 0.5, "out-of-range probability above which a pixel is +Inf, in (0, 1)"),
    ParamSpec("max_range", DEPTH_SCALE_M, "metres; ranges beyond are +Inf (no return), in (0, 100]"),
    ParamSpec("frame_id", "", "frame of all outputs; empty = the input image's frame_id"),
    ParamSpec("output_size", "input", "size of depth/range_mask/points: input (image size) or network"),
    ParamSpec("max_input_width", 4096, "frames wider than this (pixels) are rejected and counted"),
    ParamSpec("input_projection", "erp", "erp: a 2:1 panorama; dual_fisheye: two fisheye lenses "
              "(fisheye_calibration)", restart=True),
    ParamSpec("fisheye_calibration", "", "calibration YAML of the two lenses (docs/cameras.md)", restart=True),
    ParamSpec("fisheye.sync_tolerance_ms", 10.0, "two_topics layout: largest stamp difference of a lens pair"),
    ParamSpec("mount_rpy_deg", [0.0, 0.0, 0.0], "[roll, pitch, yaw] degrees: the camera's orientation in "
              "frame_id (a camera ray d is R·d there, R = Rz(yaw)·Ry(pitch)·Rx(roll))", restart=True),
    ParamSpec("leveling", "none", "none: the image as it is; static: resampled level in frame_id; imu: "
              "levelled per frame with the roll/pitch of the imu topic", restart=True),
    ParamSpec("imu.leveled_frame_id", "", "leveling imu: frame of the (levelled) outputs; empty = frame_id + "
              "'_level'", restart=True),
    ParamSpec("imu.timeout_sec", 0.2, "leveling imu: an IMU sample farther from the frame's stamp is stale "
              "(WARN, static levelling for that frame)"),
    ParamSpec("self_mask", "", "mask image in the camera's own panorama, 0 = the robot (invalid pixels)",
              restart=True),
    ParamSpec("self_filter.box_min", [0.0, 0.0, 0.0], "metres in frame_id: lower corner of the robot's box "
              "(pixels whose point lies inside are invalid; both corners 0 = off)", restart=True),
    ParamSpec("self_filter.box_max", [0.0, 0.0, 0.0], "metres in frame_id: upper corner of the robot's box",
              restart=True),
    ParamSpec("input_transport", "raw", "raw: subscribe image (Image); compressed: image/compressed "
              "(CompressedImage, jpeg/png)", restart=True),
    ParamSpec("qos.input.reliability", "reliable", "input subscription: reliable or best_effort", restart=True),
    ParamSpec("qos.input.depth", 2, "input subscription history depth (keep last)", restart=True),
    ParamSpec("qos.output.reliability", "reliable", "output publishers: reliable or best_effort", restart=True),
    ParamSpec("qos.output.depth", 2, "output publishers history depth (keep last)", restart=True),
    ParamSpec("points.enable", True, "publish the PointCloud2 on points"),
    ParamSpec("points.stride", 2, "take every stride-th row and column (1 = every pixel)"),
    ParamSpec("points.min_range", 0.0, "metres; nearer points are dropped"),
    ParamSpec("points.max_range", DEPTH_SCALE_M, "metres; farther points are dropped"),
    ParamSpec("points.rgb", True, "add the packed float32 rgb field"),
    ParamSpec("points.organized", False, "true: H x W cloud with NaN for missing points; "
              "false: only valid points (height 1)"),
    ParamSpec("scan.enable", True, "publish the 360-degree LaserScan on scan"),
    ParamSpec("scan.elevation_min_deg", -5.0, "degrees; lower edge of the elevation band scanned"),
    ParamSpec("scan.elevation_max_deg", 5.0, "degrees; upper edge of the elevation band scanned"),
    ParamSpec("scan.angle_increment_deg", 0.5, "degrees between beams (720 beams at 0.5)"),
    ParamSpec("scan.range_min", 0.1, "metres; LaserScan.range_min"),
    ParamSpec("scan.range_max", DEPTH_SCALE_M, "metres; LaserScan.range_max (farther = +Inf)"),
    ParamSpec("publish_colorized", True, "publish depth/colorized (bgr8, for viewing)"),
    ParamSpec("azimuth_offset_deg", 0.0, "degrees; camera yaw in the output frame (points, scan): the older "
              "name of mount_rpy_deg's yaw; set one of them"),
    ParamSpec("diagnostics.period_sec", 1.0, "seconds between DiagnosticArray messages", restart=True),
    ParamSpec("diagnostics.stale_input_sec", 5.0, "seconds without input before the status is WARN"),
    ParamSpec("diagnostics.error_after_failures", 5, "consecutive failed frames before the status is ERROR"),
)
SPEC_BY_NAME: dict[str, ParamSpec] = {s.name: s for s in SPECS}
# parameters ROS itself reads from a node's parameters: valid in a params file, not ours to check
ROS_OWN_PARAMETERS = frozenset({"use_sim_time", "start_type_description_service"})


def unknown_names(names: Iterable[str]) -> list[str]:
    """The names that are neither this node's parameters nor ROS's own (a typo, usually), sorted."""
    return sorted(n for n in set(names)
                  if n not in SPEC_BY_NAME and n not in ROS_OWN_PARAMETERS and not n.startswith("qos_overrides."))
RESTART_ONLY: frozenset[str] = frozenset(s.name for s in SPECS if s.restart)


def field_name(param_name: str) -> str:
    """'qos.input.depth' -> 'qos_input_depth' (the dataclass attribute)."""
    return param_name.replace(".", "_")


@dataclass(frozen=True)
class NodeParams:
    """All parameter values, validated. Attribute names are the parameter names with '_' for '.'."""

    lifecycle: bool
    checkpoint: str
    allow_random_weights: bool
    model_config: str
    backend: str
    onnx: str
    engine: str
    build_engine: bool
    cuda_graph: bool
    device: str
    precision: str
    input_height: int
    input_width: int
    normalization: str
    mask_threshold: float
    max_range: float
    frame_id: str
    output_size: str
    max_input_width: int
    input_projection: str
    fisheye_calibration: str
    fisheye_sync_tolerance_ms: float
    mount_rpy_deg: tuple[float, float, float]
    leveling: str
    imu_leveled_frame_id: str
    imu_timeout_sec: float
    self_mask: str
    self_filter_box_min: tuple[float, float, float]
    self_filter_box_max: tuple[float, float, float]
    input_transport: str
    qos_input_reliability: str
    qos_input_depth: int
    qos_output_reliability: str
    qos_output_depth: int
    points_enable: bool
    points_stride: int
    points_min_range: float
    points_max_range: float
    points_rgb: bool
    points_organized: bool
    scan_enable: bool
    scan_elevation_min_deg: float
    scan_elevation_max_deg: float
    scan_angle_increment_deg: float
    scan_range_min: float
    scan_range_max: float
    publish_colorized: bool
    azimuth_offset_deg: float
    diagnostics_period_sec: float
    diagnostics_stale_input_sec: float
    diagnostics_error_after_failures: int

    @classmethod
    def defaults(cls) -> NodeParams:
        return cls.from_values({})

    @classmethod
    def from_values(cls, values: Mapping[str, Any]) -> NodeParams:
        """Validate ``{parameter name: value}`` (missing names take defaults); raise ConfigError."""
        typed, problems = check_values(values)
        if problems:
            raise ConfigError("invalid parameter " + "; ".join(f"'{n}': {p}" for n, p, _ in problems))
        return cls(**{field_name(name): value for name, value in typed.items()})

    def value(self, param_name: str) -> Any:
        return getattr(self, field_name(param_name))

    @property
    def input_size(self) -> tuple[int, int] | None:
        """None: the model's native input size."""
        if self.input_height == 0 and self.input_width == 0:
            return None
        return self.input_height, self.input_width

    def values(self) -> dict[str, Any]:
        """{parameter name: value} of every parameter."""
        return {spec.name: list(v) if isinstance(v := self.value(spec.name), tuple) else v for spec in SPECS}

    def model_spec(self) -> ModelSpec:
        """What the predictor loads for these parameters (the node, eval-bag and the benchmarks
        build their predictor from this one place)."""
        return ModelSpec(
            checkpoint=self.checkpoint or None,
            model_config=self.model_config,
            allow_random=self.allow_random_weights,
            backend=self.backend,
            device=self.device,
            precision=self.precision,
            input_size=self.input_size,
            normalization=self.normalization,
            mask_threshold=self.mask_threshold,
            max_range=self.max_range,
            onnx=self.onnx or None,
            engine=self.engine or None,
            build_engine=self.build_engine,
            cuda_graph=self.cuda_graph,
        )

    def camera_spec(self) -> CameraSpec:
        """The camera these parameters describe (the node and eval-bag load the same)."""
        roll, pitch, yaw = self.mount_rpy_deg
        box = None if not any(self.self_filter_box_min + self.self_filter_box_max) else (
            self.self_filter_box_min, self.self_filter_box_max)
        return CameraSpec(
            projection=self.input_projection,
            fisheye_calibration=self.fisheye_calibration or None,
            mount_rpy_deg=(roll, pitch, yaw + self.azimuth_offset_deg),
            leveling=self.leveling,
            self_mask=self.self_mask or None,
            box_min=box[0] if box else None,
            box_max=box[1] if box else None,
        )

    @property
    def output_frame_id(self) -> str:
        """The frame_id of the outputs ('' = the input's) when levelled by an IMU: the levelled frame."""
        if self.leveling != "imu":
            return self.frame_id
        return self.imu_leveled_frame_id or f"{self.frame_id or 'camera'}_level"

    @property
    def output_rotation(self) -> tuple[float, float, float]:
        """(roll, pitch, yaw) in radians that turn the output panorama's rays into the output frame:
        the mount when the image is used as it is (leveling none), else nothing (it was resampled
        into the output frame already)."""
        if self.leveling != "none":
            return 0.0, 0.0, 0.0
        roll, pitch, yaw = (math.radians(a) for a in self.mount_rpy_deg)
        return roll, pitch, yaw + math.radians(self.azimuth_offset_deg)

    @property
    def azimuth_offset_rad(self) -> float:
        """The output rotation's yaw: the scan turns with it (roll and pitch do not fold into a scan)."""
        return self.output_rotation[2]

    def scan_spec(self) -> LaserScanSpec:
        return LaserScanSpec(
            angle_increment=math.radians(self.scan_angle_increment_deg),
            elevation_min_deg=self.scan_elevation_min_deg,
            elevation_max_deg=self.scan_elevation_max_deg,
            range_min=self.scan_range_min,
            range_max=self.scan_range_max,
        )


# --- type coercion: one function per declared default type -------------------------------------

def _as_bool(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    raise ValueError(f"must be true or false, got {value!r}")


def _as_int(value: Any) -> int:
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    raise ValueError(f"must be an integer, got {value!r}")


def _as_float(value: Any) -> float:
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        if math.isfinite(value):
            return float(value)
        raise ValueError(f"must be a finite number, got {value!r}")
    raise ValueError(f"must be a number, got {value!r}")


def _as_triple(value: Any) -> tuple[float, float, float]:
    if isinstance(value, (str, bytes)) or not hasattr(value, "__len__") or len(value) != 3:
        raise ValueError(f"must be a list of three numbers, got {value!r}")
    return tuple(_as_float(v) for v in value)  # type: ignore[return-value]


def _as_str(value: Any) -> str:
    if isinstance(value, str):
        return value.strip()
    raise ValueError(f"must be a string, got {value!r}")


_COERCE: dict[type, Callable[[Any], Any]] = {bool: _as_bool, int: _as_int, float: _as_float, str: _as_str,
                                              list: _as_triple}

_CHOICES: dict[str, tuple[str, ...]] = {
    "backend": BACKENDS,
    "precision": PRECISIONS,
    "normalization": NORMALIZATIONS,
    "output_size": OUTPUT_SIZES,
    "input_transport": TRANSPORTS,
    "input_projection": PROJECTIONS,
    "leveling": LEVELINGS,
    "qos.input.reliability": RELIABILITIES,
    "qos.output.reliability": RELIABILITIES,
}


def check_values(values: Mapping[str, Any]) -> tuple[dict[str, Any], list[tuple[str, str, bool]]]:
    """Coerce and check every parameter; returns (typed values, [(parameter, problem, cross)]).

    A cross-parameter problem (``cross`` True, e.g. width != 2 x height) is reported under each
    parameter involved, so a caller can tell whether a change it is about to make is at fault.
    """
    typed: dict[str, Any] = {}
    problems: list[tuple[str, str, bool]] = []
    for spec in SPECS:
        raw = values.get(spec.name, spec.default)
        try:
            typed[spec.name] = _COERCE[type(spec.default)](raw)
        except ValueError as exc:
            problems.append((spec.name, str(exc), False))
            typed[spec.name] = spec.default
    v = typed

    def bad(name: str, problem: str, cross: bool = False) -> None:
        problems.append((name, f"{problem}, got {values.get(name, v[name])!r}", cross))

    for name, choices in _CHOICES.items():
        v[name] = v[name].lower()
        problem = settings.choice_problem(v[name], choices)
        if problem is not None:
            bad(name, problem)
    for name, problem in (("device", settings.device_problem(v["device"])),
                          ("mask_threshold", settings.mask_threshold_problem(v["mask_threshold"])),
                          ("max_range", settings.max_range_problem(v["max_range"]))):
        if problem is not None:
            bad(name, problem)
    if not v["model_config"]:
        bad("model_config", "must name a preset (vitl, tiny) or a JSON file")
    if v["input_height"] == 0 and v["input_width"] == 0:
        pass  # the model's native size
    elif v["input_height"] <= 0 or v["input_width"] <= 0:
        bad("input_height" if v["input_height"] <= 0 else "input_width", "must be > 0 (or both 0: native size)")
    elif v["input_width"] != 2 * v["input_height"]:
        for name in ("input_height", "input_width"):
            bad(name, f"input_width must be 2 x input_height (ERP 2:1; {v['input_height']}x{v['input_width']})", True)
    elif problem := settings.network_size_problem(v["input_height"], v["input_width"]):
        for name in ("input_height", "input_width"):
            bad(name, f"the network input {problem}", True)
    if not 16 <= v["max_input_width"] <= settings.MAX_FRAME_WIDTH:
        bad("max_input_width", f"must lie in [16, {settings.MAX_FRAME_WIDTH}] pixels")
    for name in ("qos.input.depth", "qos.output.depth"):
        if not 1 <= v[name] <= 1000:
            bad(name, "must lie in [1, 1000]")
    if v["points.stride"] < 1:
        bad("points.stride", "must be >= 1")
    if v["points.min_range"] < 0.0:
        bad("points.min_range", "must be >= 0 m")
    if v["points.max_range"] <= v["points.min_range"]:
        for name in ("points.min_range", "points.max_range"):
            bad(name, "points.min_range must be < points.max_range", True)
    lo, hi = v["scan.elevation_min_deg"], v["scan.elevation_max_deg"]
    if not -90.0 <= lo < hi <= 90.0:
        for name in ("scan.elevation_min_deg", "scan.elevation_max_deg"):
            bad(name, f"need -90 <= scan.elevation_min_deg < scan.elevation_max_deg <= 90 ([{lo}, {hi}])", True)
    if not 0.0 < v["scan.angle_increment_deg"] <= 45.0:
        bad("scan.angle_increment_deg", "must lie in (0, 45] degrees")
    elif problem := _scan_beams_problem(v["scan.angle_increment_deg"], v["max_input_width"]):
        for name in ("scan.angle_increment_deg", "max_input_width"):
            bad(name, problem, True)
    if v["scan.range_min"] < 0.0:
        bad("scan.range_min", "must be >= 0 m")
    if v["scan.range_max"] <= v["scan.range_min"] or v["scan.range_max"] > 1e6:
        for name in ("scan.range_min", "scan.range_max"):
            bad(name, "need 0 <= scan.range_min < scan.range_max <= 1e6 m", True)
    if v["input_projection"] == "dual_fisheye" and not v["fisheye_calibration"]:
        bad("fisheye_calibration", "must name the calibration YAML when input_projection is dual_fisheye", True)
        bad("input_projection", "dual_fisheye needs fisheye_calibration", True)
    if v["fisheye.sync_tolerance_ms"] <= 0.0:
        bad("fisheye.sync_tolerance_ms", "must be > 0 ms")
    if v["imu.timeout_sec"] <= 0.0:
        bad("imu.timeout_sec", "must be > 0 s")
    if v["azimuth_offset_deg"] and v["mount_rpy_deg"][2]:
        for name in ("azimuth_offset_deg", "mount_rpy_deg"):
            bad(name, "set the camera's yaw once: azimuth_offset_deg is the older name of mount_rpy_deg's yaw", True)
    lo, hi = v["self_filter.box_min"], v["self_filter.box_max"]
    if any(lo + hi):
        problem = settings.box_problem(lo, hi)
        if problem:
            for name in ("self_filter.box_min", "self_filter.box_max"):
                bad(name, f"the body box {problem} (or both [0, 0, 0]: no box)", True)
    if not 0.0 < v["diagnostics.period_sec"] <= 3600.0:  # rclpy timers overflow near 9e9 s; an hour is plenty
        bad("diagnostics.period_sec", "must lie in (0, 3600] s")
    if v["diagnostics.stale_input_sec"] <= 0.0:
        bad("diagnostics.stale_input_sec", "must be > 0 s")
    if v["diagnostics.error_after_failures"] < 1:
        bad("diagnostics.error_after_failures", "must be >= 1")
    return typed, problems


def _scan_beams_problem(increment_deg: float, max_input_width: int) -> str | None:
    """Beams finer than a quarter column of the widest accepted panorama resolve nothing new; they
    only cost memory and time (the bound the scan's cost was measured at, docs/ros_node.md)."""
    beams = LaserScanSpec(angle_increment=math.radians(increment_deg)).num_beams
    limit = MAX_BEAMS_PER_COLUMN * max(max_input_width, 1)
    if beams <= limit:
        return None
    return (f"scan.angle_increment_deg gives {beams} beams, more than {MAX_BEAMS_PER_COLUMN} per column of the "
            f"widest panorama accepted (max_input_width={max_input_width}: at most {limit} beams, an increment "
            f">= {360.0 / limit:g} degrees); finer beams repeat columns and only cost memory and time")


def problems_for(changed: set[str], values: Mapping[str, Any], cross: bool = True) -> list[str]:
    """Problems of ``values`` that involve one of the ``changed`` parameters, as messages.

    ``cross=False`` leaves out cross-parameter problems: while a managed node is unconfigured,
    ``ros2 param set`` can only change one parameter at a time (height, then width), and
    configure checks the whole set anyway.
    """
    _, problems = check_values(values)
    return [f"'{n}': {p}" for n, p, is_cross in problems if n in changed and (cross or not is_cross)]


def declare(node: Any) -> None:
    """Declare every parameter on an rclpy node (dynamic typing, checked by NodeParams)."""
    from rcl_interfaces.msg import ParameterDescriptor

    for spec in SPECS:
        suffix = " (restart-only)" if spec.restart else ""
        descriptor = ParameterDescriptor(description=spec.description + suffix, dynamic_typing=True)
        node.declare_parameter(spec.name, spec.default, descriptor)


def read(node: Any) -> dict[str, Any]:
    """Current values of every declared parameter of ``node`` ({name: python value})."""
    return {spec.name: node.get_parameter(spec.name).value for spec in SPECS}


# --- the ROS 2 parameters file -------------------------------------------------------------------

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


def load_params_file(path: str | Path, node_name: str = NODE_NAME) -> dict[str, Any]:
    """Parameter values from a ROS 2 parameters file (``NODE: ros__parameters: {...}``).

    Sections apply in file order when their key is ``/**``, ``NODE``, ``/NODE``, or a namespaced
    name ending in ``/NODE``; later sections override earlier ones, as in ROS.
    """
    from dap_ros.io.yaml_files import read_yaml

    p = Path(path)
    tree = read_yaml(p, "parameters file")
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


def params_file_text(values: Mapping[str, Any]) -> str:
    """A ROS 2 parameters file (``/**: ros__parameters:``) holding ``values`` ({dotted name: value})."""
    import yaml

    tree: dict[str, Any] = {}
    for name, value in values.items():
        node = tree
        *parents, leaf = name.split(".")
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = value
    return yaml.safe_dump({"/**": {"ros__parameters": tree}}, sort_keys=False)


def resolve_params(params_file: str | Path | None, overrides: Mapping[str, Any]) -> NodeParams:
    """Validated NodeParams from the file (if any) with ``overrides`` (None values ignored).
    Precedence, as for the node: an override > the file > the defaults."""
    values: dict[str, Any] = load_params_file(params_file) if params_file else {}
    values.update({k: v for k, v in overrides.items() if v is not None})
    return NodeParams.from_values(values)


# Checked once at import: the table and the dataclass must list the same names.
assert [field_name(s.name) for s in SPECS] == [f.name for f in fields(NodeParams)], "params table out of sync"
