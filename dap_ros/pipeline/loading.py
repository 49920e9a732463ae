"""From a :class:`~dap_ros.settings.ModelSpec` to a ready runner: which weights, which backend,
the network input size, and (tensorrt) the engine, built on first start when allowed.

The one construction path behind ``DepthPredictor.from_spec``; every entry point (node, CLI,
eval-bag, demo, benchmarks) goes through it.
"""
from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

import torch

from dap_ros.config import ConfigLike, resolve_config
from dap_ros.errors import CheckpointError, ConfigError, EngineError
from dap_ros.model import WEIGHTS_HINT, load_model
from dap_ros.model.embedded import EMBEDDED_WARNING, embedded_model
from dap_ros.runtime import Runner, choose_backend, compute_dtype, detect_capabilities, resolve_device
from dap_ros.settings import DEFAULT_INPUT_SIZE, ModelSpec, check_input_size

LOG = logging.getLogger("dap_ros")

Progress = Callable[[str], None]


@dataclass(frozen=True)
class Weights:
    """Where the network's numbers come from: ``kind`` is checkpoint, embedded (the packaged demo
    model), random, exported (an ONNX graph or TensorRT engine: ``path``) or module (a network
    handed to the predictor by code)."""

    kind: str
    path: str | None = None

    def describe(self) -> str:
        """One line for logs and /diagnostics ("model file")."""
        if self.kind == "embedded":
            return f"EMBEDDED DEMO MODEL (synthetic-only, not for real robots): {self.path}"
        if self.kind == "random":
            return "RANDOM WEIGHTS (allow_random_weights)"
        if self.kind == "module":
            return "a network given in memory"
        return str(self.path)


@dataclass(frozen=True)
class Loaded:
    runner: Runner
    weights: Weights
    input_size: tuple[int, int]
    fallback: str | None = None  # why ``auto`` runs something other than the TensorRT it chose


def load_runner(spec: ModelSpec, progress: Progress | None = None) -> Loaded:
    """Validate ``spec`` against this machine, then load; ConfigError / CheckpointError / DapError.

    ``backend: auto`` that chose TensorRT falls back (one WARN, and ``Loaded.fallback``) when the
    engine cannot be built, loaded or fails its accuracy gate; an explicit ``tensorrt`` fails."""
    caps = detect_capabilities()
    choice = choose_backend(spec.backend, caps, device=spec.device, onnx=spec.onnx, engine=spec.engine)
    for reason in choice.reasons:
        LOG.info("backend %s -> %s: %s", spec.backend, choice.backend, reason)
    device = resolve_device(spec.device)
    if spec.cuda_graph and device.type != "cuda":
        raise ConfigError("CUDA graphs need a CUDA device")
    if choice.backend == "torch":
        loaded = _torch(spec, device)
    else:
        try:
            loaded = _exported(spec, choice.backend, device, progress or LOG.info)
        except EngineError as exc:
            if spec.backend != "auto" or choice.backend != "tensorrt":
                raise
            loaded = load_fallback(spec, device, f"TensorRT {caps.tensorrt_version}: {exc}")
    LOG.info("inference: %s", loaded.runner.describe())
    return loaded


def fallback_spec(spec: ModelSpec, device: torch.device) -> ModelSpec | None:
    """What ``auto`` runs when TensorRT fails: the checkpoint on torch (fp16 + CUDA graph on a GPU),
    else the ONNX file on ONNX Runtime; None when neither was given (an engine alone)."""
    if spec.checkpoint:
        if device.type == "cuda":
            return replace(spec, backend="torch", precision="fp16", cuda_graph=True, compile=False)
        return replace(spec, backend="torch", cuda_graph=False, compile=False)
    if spec.onnx:
        return replace(spec, backend="onnxruntime", cuda_graph=False, compile=False)
    return None


def load_fallback(spec: ModelSpec, device: torch.device, why: str) -> Loaded:
    """Load what ``auto`` runs instead of TensorRT (``why``: the TensorRT failure), with one WARN."""
    target = fallback_spec(spec, device)
    if target is None:
        raise EngineError(f"{why}; nothing to fall back to: give a checkpoint or an ONNX file too, or fix the engine")
    if target.backend == "torch":
        loaded = _torch(target, device)
    else:
        runner = _onnxruntime_runner(target, device, allow_tensorrt=False)
        loaded = _exported_loaded(target, runner, Path(target.onnx))
    note = (f"{why} -> falling back to {loaded.runner.describe()} (backend auto; set backend tensorrt to make "
            "this an error)")
    LOG.warning("%s", note)
    return replace(loaded, fallback=note)


def _torch(spec: ModelSpec, device) -> Loaded:
    from dap_ros.runtime.torch_runner import TorchRunner

    weights, model_config, native_size = _choose_weights(spec)
    config = resolve_config(model_config)
    dtype = compute_dtype(spec.precision, device)
    input_size = check_input_size(spec.input_size or native_size, config.patch_size)
    model = load_model(weights.path if weights.kind != "random" else None, config, device=device, dtype=dtype)
    runner = TorchRunner(model, device, dtype, cuda_graph=spec.cuda_graph, compile=spec.compile)
    return Loaded(runner, weights, input_size)


def _choose_weights(spec: ModelSpec) -> tuple[Weights, ConfigLike, tuple[int, int]]:
    """(weights, model config, native input size) after the no-checkpoint rules: the embedded demo
    model when packaged (its own architecture replaces ``model_config``), random weights with
    ``allow_random``, else a CheckpointError saying how to get the weights."""
    if spec.checkpoint is not None:
        return Weights("checkpoint", spec.checkpoint), spec.model_config, DEFAULT_INPUT_SIZE
    if spec.allow_random:
        LOG.warning("NO CHECKPOINT: using RANDOM weights; the depth is meaningless (%s)", WEIGHTS_HINT)
        return Weights("random"), spec.model_config, DEFAULT_INPUT_SIZE
    embedded = embedded_model()
    if embedded is None:
        raise CheckpointError(f"no checkpoint given; {WEIGHTS_HINT}")
    LOG.warning("%s (%s)", EMBEDDED_WARNING, WEIGHTS_HINT)
    return Weights("embedded", str(embedded.weights)), embedded.config, embedded.input_size


def _onnxruntime_runner(spec: ModelSpec, device, allow_tensorrt: bool = True) -> Runner:
    from dap_ros.runtime.onnxruntime_runner import OnnxRuntimeRunner

    return OnnxRuntimeRunner(spec.onnx, device, allow_tensorrt=allow_tensorrt)


def _exported(spec: ModelSpec, backend: str, device, progress: Progress) -> Loaded:
    """An ONNX Runtime or TensorRT runner; the weights, precision and input size are the file's."""
    if backend == "onnxruntime":
        runner, source = _onnxruntime_runner(spec, device), Path(spec.onnx)
    else:
        runner, source = _tensorrt(spec, device, progress)
    return _exported_loaded(spec, runner, source)


def _exported_loaded(spec: ModelSpec, runner: Runner, source: Path) -> Loaded:
    """Check an exported runner's input against the requested size and batch 1."""
    shape = tuple(runner.input_shape)
    file_size = tuple(shape[2:])
    height, width = spec.input_size or file_size
    if len(shape) != 4 or shape[1] != 3 or file_size != (height, width):
        raise ConfigError(
            f"{source.name} takes input {list(shape)} but the input size is {height}x{width}: "
            f"set the input size to match or re-export with --height {height} --width {width}"
        )
    if isinstance(shape[0], int) and shape[0] != 1:
        raise ConfigError(f"{source.name} was exported for batch {shape[0]}; the predictor runs batch 1: "
                          "export with --batch 1 (or --dynamic-batch)")
    if runner.precision != spec.precision:
        LOG.info("precision %s comes from %s (the requested %s applies to the torch backend only)",
                 runner.precision, source.name, spec.precision)
    return Loaded(runner, Weights("exported", str(source)), (height, width))


def _tensorrt(spec: ModelSpec, device, progress: Progress) -> tuple[Runner, Path]:
    from dap_ros.deploy.engine_cache import detect_environment, ensure_engine
    from dap_ros.deploy.trt_build import build_engine
    from dap_ros.runtime.exported import read_metadata
    from dap_ros.runtime.tensorrt_runner import TensorRTRunner

    if device.type != "cuda":
        raise ConfigError("backend 'tensorrt' needs device cuda or cuda:N")
    index = device.index or 0
    file_precision = read_metadata(spec.onnx).get("precision", "fp32") if spec.onnx else None
    height, width = spec.input_size or DEFAULT_INPUT_SIZE
    engine_path, sidecar = ensure_engine(
        env=detect_environment(index),
        builder=lambda o, e, p: build_engine(o, e, precision=p, device_index=index, log=progress),
        onnx_path=spec.onnx,
        engine_path=spec.engine,
        precision=file_precision,
        input_shape=(1, 3, height, width),
        build_if_missing=spec.build_engine,
        cache_dir=spec.engine_cache_dir,
        progress=progress,
    )
    try:
        return TensorRTRunner(engine_path, device, sidecar.precision, cuda_graph=spec.cuda_graph), engine_path
    except RuntimeError as exc:  # CUDA out of memory and the like, from torch or TensorRT
        raise EngineError(f"TensorRT engine {engine_path.name} could not be loaded: {exc}") from exc
