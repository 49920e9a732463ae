"""TensorRT engine sidecars, cache keys and the checks that keep a stale engine from running.

An engine is only valid for the TensorRT version, GPU model (compute capability) and ONNX file it
was built from, at its precision and shapes. Every engine ``F.engine`` gets a sidecar
``F.engine.json`` recording those; :func:`check_engine` compares it with the running machine and
refuses a mismatch with a message that names the difference and the command that rebuilds it.
:func:`ensure_engine` is the node's entry point: use the engine if it matches, build it if it is
missing and building is allowed, refuse otherwise. None of this needs TensorRT to be importable
(the environment is passed in), so all of it is tested on the CPU.
"""
from __future__ import annotations

import hashlib
import json
import os
import shlex
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

from dap_ros import __version__
from dap_ros.errors import AccuracyGateError, BackendUnavailableError, EngineError, EngineMismatchError

SIDECAR_FORMAT = 1
CACHE_ENV = "DAP_ROS_ENGINE_CACHE"


@dataclass(frozen=True)
class EngineEnvironment:
    """What an engine is tied to: the TensorRT version and the GPU."""

    tensorrt_version: str
    gpu_name: str
    compute_capability: str  # "8.7" (Orin), "9.0" (H100/H200), ...


def detect_environment(device_index: int = 0) -> EngineEnvironment:
    """The running machine's TensorRT version and GPU; BackendUnavailableError when either is missing."""
    try:
        import tensorrt as trt
    except ImportError as exc:
        raise BackendUnavailableError(
            f"TensorRT is not importable ({exc}); on Jetson it comes with JetPack (python3-libnvinfer), "
            "on a desktop install the tensorrt wheel matching your CUDA"
        ) from None
    import torch

    if not torch.cuda.is_available():
        raise BackendUnavailableError("TensorRT engines need a CUDA GPU, and torch sees none")
    major, minor = torch.cuda.get_device_capability(device_index)
    return EngineEnvironment(trt.__version__, torch.cuda.get_device_name(device_index), f"{major}.{minor}")


def sha256_file(path: str | Path, chunk: int = 1 << 22) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(chunk):
            digest.update(block)
    return digest.hexdigest()


@dataclass
class EngineSidecar:
    onnx_sha256: str
    onnx_name: str
    tensorrt_version: str
    gpu_name: str
    compute_capability: str
    precision: str
    input_shapes: dict[str, list]  # name -> [min, opt, max] shapes for dynamic inputs, else [shape]
    output_shapes: dict[str, list]
    format: int = SIDECAR_FORMAT
    dap_ros_version: str = __version__
    build_seconds: float = 0.0
    workspace_gb: float = 0.0
    accuracy: dict[str, float] = field(default_factory=dict)
    fp32_heads: bool = False  # graph exported with --fp16 --fp32-heads
    created: str = ""

    @property
    def environment(self) -> EngineEnvironment:
        return EngineEnvironment(self.tensorrt_version, self.gpu_name, self.compute_capability)

    def write(self, path: str | Path) -> Path:
        path = Path(path)
        self.created = self.created or time.strftime("%Y-%m-%dT%H:%M:%S%z")
        tmp = path.with_name(path.name + ".partial")
        tmp.write_text(json.dumps(asdict(self), indent=2) + "\n", encoding="utf-8")
        os.replace(tmp, path)
        return path

    @classmethod
    def read(cls, path: str | Path) -> EngineSidecar:
        path = Path(path)
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise EngineError(f"engine sidecar {path} not found") from None
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise EngineError(f"engine sidecar {path} is not readable JSON ({exc})") from None
        if not isinstance(data, dict) or data.get("format") != SIDECAR_FORMAT:
            raise EngineError(f"engine sidecar {path} has an unknown format (expected format {SIDECAR_FORMAT})")
        try:
            return cls(**data)
        except TypeError as exc:
            raise EngineError(f"engine sidecar {path} is missing or has unknown keys ({exc})") from None


def sidecar_path(engine_path: str | Path) -> Path:
    return Path(str(engine_path) + ".json")


def rejection_path(engine_path: str | Path) -> Path:
    """Where a build that failed its accuracy gate is recorded (no engine is written then)."""
    return Path(str(engine_path) + ".rejected.json")


def write_rejection(path: Path, *, onnx_sha256: str, env: EngineEnvironment, precision: str,
                    metrics: dict[str, float], message: str) -> None:
    """Record that this ONNX file, TensorRT version, GPU and precision failed the accuracy gate."""
    record = {"format": SIDECAR_FORMAT, "onnx_sha256": onnx_sha256, **asdict(env), "precision": precision,
              "metrics": {k: float(v) for k, v in metrics.items()}, "message": message,
              "created": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".partial")
    tmp.write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")
    os.replace(tmp, path)


def recorded_rejection(engine_path: Path, onnx_sha256: str | None, env: EngineEnvironment,
                       precision: str | None) -> str | None:
    """The gate failure recorded for exactly this build (same ONNX, TensorRT, GPU, precision), or None.
    An unreadable record counts as none: the build is simply tried again."""
    path = rejection_path(engine_path)
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return None
    same = (isinstance(record, dict) and record.get("onnx_sha256") == onnx_sha256
            and all(record.get(k) == v for k, v in asdict(env).items())
            and (precision is None or record.get("precision") == precision))
    if not same:
        return None
    return (f"{record.get('message', 'the engine failed its accuracy gate')} (recorded {record.get('created', '?')} "
            f"in {path}; delete that file to try the build again)")


def cache_key(onnx_sha256: str, env: EngineEnvironment, precision: str) -> str:
    """16 hex digits identifying (ONNX content, TensorRT version, GPU, precision)."""
    text = "|".join((onnx_sha256, env.tensorrt_version, env.gpu_name, env.compute_capability, precision))
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def default_cache_dir() -> Path:
    return Path(os.environ.get(CACHE_ENV) or Path.home() / ".cache" / "dap_ros" / "engines")


def cached_engine_path(onnx_path: str | Path, onnx_sha256: str, env: EngineEnvironment, precision: str,
                       cache_dir: str | Path | None = None) -> Path:
    """``<cache>/<onnx stem>-<precision>-<key>.engine``: a new TensorRT, GPU or ONNX gives a new name."""
    folder = Path(cache_dir) if cache_dir else default_cache_dir()
    return folder / f"{Path(onnx_path).stem}-{precision}-{cache_key(onnx_sha256, env, precision)}.engine"


def rebuild_command(onnx: str | Path | None, engine: str | Path, precision: str | None) -> str:
    onnx_arg = shlex.quote(str(onnx)) if onnx else "MODEL.onnx"
    text = f"dap-ros build-engine --onnx {onnx_arg} --output {shlex.quote(str(engine))}"
    return text + (f" --precision {precision}" if precision else "")


def check_engine(
    engine_path: str | Path,
    env: EngineEnvironment,
    *,
    onnx_path: str | Path | None = None,
    onnx_sha256: str | None = None,
    precision: str | None = None,
    input_shape: tuple | None = None,
) -> EngineSidecar:
    """The engine's sidecar when it fits this machine (and ONNX file, precision, input shape);
    EngineError / EngineMismatchError with a one-line rebuild hint otherwise."""
    engine_path = Path(engine_path)
    if not engine_path.is_file():
        raise EngineError(f"TensorRT engine {engine_path} not found; build it with: "
                          + rebuild_command(onnx_path, engine_path, precision))
    try:
        sidecar = EngineSidecar.read(sidecar_path(engine_path))
    except EngineError as exc:
        raise EngineMismatchError(f"{exc}: cannot tell what {engine_path.name} was built for; rebuild with: "
                                  + rebuild_command(onnx_path, engine_path, precision)) from None
    problems = []
    if sidecar.tensorrt_version != env.tensorrt_version:
        problems.append(f"TensorRT {sidecar.tensorrt_version} (running {env.tensorrt_version})")
    if sidecar.gpu_name != env.gpu_name or sidecar.compute_capability != env.compute_capability:
        problems.append(f"GPU {sidecar.gpu_name} sm {sidecar.compute_capability} "
                        f"(running {env.gpu_name} sm {env.compute_capability})")
    if onnx_sha256 is None and onnx_path is not None and Path(onnx_path).is_file():
        onnx_sha256 = sha256_file(onnx_path)
    if onnx_sha256 is not None and sidecar.onnx_sha256 != onnx_sha256:
        problems.append(f"another ONNX file ({sidecar.onnx_name}, sha256 {sidecar.onnx_sha256[:12]}, "
                        f"given {onnx_sha256[:12]})")
    if precision is not None and sidecar.precision != precision:
        problems.append(f"precision {sidecar.precision} (requested {precision})")
    if input_shape is not None:
        shapes = next(iter(sidecar.input_shapes.values()), [])
        if not any(list(input_shape) == list(s) for s in shapes[-1:]) and not _in_profile(input_shape, shapes):
            problems.append(f"input shape {list(shapes[-1]) if shapes else '?'} (requested {list(input_shape)})")
    if problems:
        raise EngineMismatchError(
            f"TensorRT engine {engine_path} was built for " + "; ".join(problems)
            + ". Engines are not portable; rebuild on this machine with: "
            + rebuild_command(onnx_path, engine_path, precision or sidecar.precision)
        )
    return sidecar


def _in_profile(shape: tuple, shapes: list) -> bool:
    """True when ``shape`` lies inside a [min, opt, max] profile."""
    if len(shapes) != 3:
        return False
    low, _, high = shapes
    return len(low) == len(shape) == len(high) and all(a <= s <= b for a, s, b in zip(low, shape, high))


def ensure_engine(
    *,
    env: EngineEnvironment,
    builder: Callable[[Path, Path, str | None], EngineSidecar] | None,
    onnx_path: str | Path | None = None,
    engine_path: str | Path | None = None,
    precision: str | None = None,
    input_shape: tuple | None = None,
    build_if_missing: bool = False,
    cache_dir: str | Path | None = None,
    progress: Callable[[str], None] = lambda message: None,
) -> tuple[Path, EngineSidecar]:
    """The engine to run: ``engine_path`` (or the cache entry for ``onnx_path`` on this machine).

    A present engine must match (check_engine); a missing one is built from ``onnx_path`` with
    ``builder(onnx, engine, precision)`` when ``build_if_missing``, else refused with the command
    that builds it. A mismatched engine is never silently replaced: the message says how to rebuild.
    A build that already failed its accuracy gate here is not repeated at every start: its recorded
    AccuracyGateError is raised at once.
    """
    if engine_path is None and onnx_path is None:
        raise EngineError("backend 'tensorrt' needs an engine file or an ONNX file to build one from")
    onnx_sha = None
    if onnx_path is not None:
        onnx_path = Path(onnx_path)
        if not onnx_path.is_file():
            raise EngineError(f"ONNX file not found: {onnx_path}")
        progress(f"hashing {onnx_path.name}")
        onnx_sha = sha256_file(onnx_path)
    if engine_path is None:
        engine_path = cached_engine_path(onnx_path, onnx_sha, env, precision or "auto", cache_dir)
    engine_path = Path(engine_path)
    if engine_path.is_file():
        return engine_path, check_engine(engine_path, env, onnx_path=onnx_path, onnx_sha256=onnx_sha,
                                         precision=precision, input_shape=input_shape)
    if not build_if_missing or builder is None or onnx_path is None:
        why = "" if onnx_path is not None else " (and no ONNX file to build it from)"
        raise EngineError(f"TensorRT engine {engine_path} not found{why}; build it with: "
                          + rebuild_command(onnx_path, engine_path, precision)
                          + (" or enable building on first start" if onnx_path is not None else ""))
    rejected = recorded_rejection(engine_path, onnx_sha, env, precision)
    if rejected:
        raise AccuracyGateError(rejected)
    progress(f"building TensorRT engine {engine_path} from {onnx_path.name}: this takes minutes (once per machine)")
    engine_path.parent.mkdir(parents=True, exist_ok=True)
    sidecar = builder(onnx_path, engine_path, precision)
    progress(f"engine built in {sidecar.build_seconds:.0f} s: {engine_path}")
    return engine_path, check_engine(engine_path, env, onnx_sha256=onnx_sha, precision=precision,
                                     input_shape=input_shape)
