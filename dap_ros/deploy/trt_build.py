"""Build a TensorRT engine from an exported ONNX graph, strongly typed, behind an accuracy gate.

TensorRT 10/11 Python API: ``Builder.create_network`` with ``STRONGLY_TYPED`` (TensorRT 11 always
builds strongly typed and ignores the flag), ``OnnxParser.parse_from_file``, a builder config with
``set_memory_pool_limit(MemoryPoolType.WORKSPACE, ...)`` and a timing cache,
``build_serialized_network``. Precision comes from the graph's own tensor types (export with
``--fp16`` for the mixed-precision graph, ``--fp16 --fp32-heads`` to keep the DPT heads in fp32);
there are no FP16 builder flags (weak typing is gone in TensorRT 11). float32 builds disable TF32
so that "fp32" means fp32. Everything runs on the requested CUDA device.

A timing cache written by another TensorRT version or GPU is not an error: the build warns and
starts from an empty cache (``create_timing_cache`` returns None for an incompatible file,
``set_timing_cache`` returns False on a device mismatch).

Before the engine is written it is run on the stored reference input (``F.onnx.ref.npz``, written
by ``dap-ros export-onnx``) and compared with the ONNX Runtime float32 outputs stored there; beyond
the tolerance of :mod:`dap_ros.deploy.accuracy` nothing is written, and the refusal is recorded
next to the engine path (``F.engine.rejected.json``) so that a node does not rebuild it at every
start. The builder, network, parser and plan are released before the gate deserializes the engine:
a ViT-L build and a second copy of the engine do not fit together in an 8 GB Orin.
"""
from __future__ import annotations

import gc
import logging
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from dap_ros.deploy import accuracy
from dap_ros.deploy.engine_cache import (
    EngineSidecar,
    detect_environment,
    rejection_path,
    sha256_file,
    sidecar_path,
    write_rejection,
)
from dap_ros.deploy.onnx_export import reference_path
from dap_ros.errors import AccuracyGateError, EngineError
from dap_ros.runtime.device import cuda_device_scope
from dap_ros.runtime.exported import read_metadata

LOG = logging.getLogger("dap_ros")

Log = Callable[[str], None]


def load_reference(onnx_path: Path, reference: Path | None) -> dict[str, np.ndarray]:
    path = reference or reference_path(onnx_path)
    if not path.is_file():
        raise EngineError(f"no reference outputs for the accuracy gate: {path} not found; re-run dap-ros export-onnx "
                          "(it writes F.onnx.ref.npz), pass --reference, or --no-accuracy-gate to skip the check")
    with np.load(path) as data:
        missing = {"input", *accuracy.OUTPUTS} - set(data.files)
        if missing:
            raise EngineError(f"reference {path} lacks {sorted(missing)}")
        return {name: data[name] for name in data.files}


@dataclass(frozen=True)
class Plan:
    """What a build leaves behind once TensorRT's builder objects are gone: the plan on disk."""

    path: Path
    input_shapes: dict[str, list]
    output_shapes: dict[str, list]
    seconds: float


def graph_precision(meta: dict[str, str], requested: str | None, onnx_path: Path) -> str:
    """The graph's precision; EngineError when ``requested`` differs (strongly typed: the graph decides)."""
    precision = meta.get("precision", "fp32")
    if requested is not None and requested != precision:
        raise EngineError(
            f"{onnx_path} is a {precision} graph but --precision {requested} was asked; the precision of a "
            f"strongly typed engine is the graph's: export with{'' if requested == 'fp16' else 'out'} --fp16"
        )
    return precision


def use_timing_cache(trt: Any, config: Any, path: Path | None) -> None:
    """Give ``config`` the timing cache in ``path`` or, when TensorRT cannot use it, an empty one."""
    data = path.read_bytes() if path is not None and path.is_file() else b""
    cache = config.create_timing_cache(data)
    if cache is None and data:
        LOG.warning("timing cache %s is from another TensorRT version or damaged: building with an empty one "
                    "(it is rewritten after the build)", path)
        data, cache = b"", config.create_timing_cache(b"")
    if cache is not None and config.set_timing_cache(cache, False):
        return
    if data:
        LOG.warning("timing cache %s was made on another GPU: building with an empty one (it is rewritten after "
                    "the build)", path)
        cache = config.create_timing_cache(b"")
        if cache is not None and config.set_timing_cache(cache, False):
            return
    raise EngineError(f"TensorRT {trt.__version__} could not create an empty timing cache (see the TensorRT log)")


def save_timing_cache(config: Any, path: Path | None) -> None:
    if path is None:
        return
    cache = config.get_timing_cache()
    if cache is None:
        LOG.warning("TensorRT returned no timing cache after the build: %s not updated", path)
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".partial")
    tmp.write_bytes(memoryview(cache.serialize()))
    os.replace(tmp, path)


def _optimization_profile(builder: Any, network: Any, config: Any, max_batch: int) -> dict[str, list]:
    """[shape] per static input; [min, opt, max] = batch 1, 1, ``max_batch`` per dynamic one (the
    node runs batch 1, so that is the shape the kernels are tuned for)."""
    input_shapes: dict[str, list] = {}
    profile = None
    for i in range(network.num_inputs):
        tensor = network.get_input(i)
        shape = [int(d) for d in tensor.shape]
        if any(d < 0 for d in shape):
            low, high = [1] + shape[1:], [max_batch] + shape[1:]
            profile = profile or builder.create_optimization_profile()
            profile.set_shape(tensor.name, low, low, high)
            input_shapes[tensor.name] = [low, low, high]
        else:
            input_shapes[tensor.name] = [shape]
    if profile is not None:
        config.add_optimization_profile(profile)
    return input_shapes


def build_plan(trt: Any, onnx_path: Path, plan_path: Path, *, precision: str, max_batch: int, workspace_gb: float,
               timing_cache: Path | None, device_index: int, log: Log) -> Plan:
    """Parse and build on CUDA device ``device_index``; writes the serialized engine to ``plan_path``.
    Builder, network, parser and config live only in this call: gone when it returns."""
    from dap_ros.runtime.tensorrt_runner import TrtLogger

    started = time.perf_counter()
    with cuda_device_scope(device_index):
        logger = TrtLogger.create(trt)
        builder = trt.Builder(logger)
        flags = 0
        strongly_typed = getattr(trt.NetworkDefinitionCreationFlag, "STRONGLY_TYPED", None)
        if strongly_typed is not None:
            flags |= 1 << int(strongly_typed)
        network = builder.create_network(flags)
        parser = trt.OnnxParser(network, logger)
        if not parser.parse_from_file(str(onnx_path)):
            errors = [str(parser.get_error(i).desc()) for i in range(parser.num_errors)]
            raise EngineError(f"TensorRT could not parse {onnx_path}: " + " | ".join(errors[:3]))
        config = builder.create_builder_config()
        config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, int(workspace_gb * (1 << 30)))
        if precision == "fp32" and hasattr(trt.BuilderFlag, "TF32"):
            config.clear_flag(trt.BuilderFlag.TF32)
        input_shapes = _optimization_profile(builder, network, config, max_batch)
        use_timing_cache(trt, config, timing_cache)
        log(f"building {precision} engine (strongly typed, workspace {workspace_gb:g} GB): this takes minutes")
        serialized = builder.build_serialized_network(network, config)
        if serialized is None:
            raise EngineError(f"TensorRT failed to build an engine from {onnx_path} (see the TensorRT log above); "
                              "out of memory on a Jetson: add swap or lower --workspace-gb (docs/deployment.md)")
        save_timing_cache(config, timing_cache)
        output_shapes = {network.get_output(i).name: [int(d) for d in network.get_output(i).shape]
                         for i in range(network.num_outputs)}
        plan_path.parent.mkdir(parents=True, exist_ok=True)
        plan_path.write_bytes(memoryview(serialized))
    return Plan(plan_path, input_shapes, output_shapes, time.perf_counter() - started)


def run_on_reference(plan_path: Path, reference_input: np.ndarray, device_index: int,
                     precision: str) -> dict[str, np.ndarray]:
    """The engine's outputs for the reference input, as float32 host arrays."""
    import torch

    from dap_ros.runtime.tensorrt_runner import TensorRTRunner

    device = torch.device("cuda", device_index)
    runner = TensorRTRunner(plan_path, device, precision, input_shape=reference_input.shape)
    outputs = dict(zip(accuracy.OUTPUTS, runner(torch.from_numpy(reference_input).to(device))))
    torch.cuda.synchronize(device)
    return {name: outputs[name].float().cpu().numpy() for name in accuracy.OUTPUTS}


UPGRADE_ADVICE = ("upgrade TensorRT (10.3/10.4, JetPack 6, are known to get DINOv3 wrong; see docs/deployment.md, "
                  "section Jetson)")


def gate_advice(precision: str, fp32_heads: bool) -> str:
    """What to try when an engine fails the gate: a less fragile graph, then a newer TensorRT."""
    if precision == "fp16" and not fp32_heads:
        return ("re-export with --fp16 --fp32-heads (DPT heads in fp32) or without --fp16 (float32), "
                f"or {UPGRADE_ADVICE}")
    if precision == "fp16":
        return f"re-export without --fp16 (a float32 graph), or {UPGRADE_ADVICE}"
    return UPGRADE_ADVICE


def build_engine(
    onnx_path: str | Path,
    engine_path: str | Path,
    *,
    precision: str | None = None,
    workspace_gb: float = 4.0,
    timing_cache: str | Path | None = None,
    reference: str | Path | None = None,
    accuracy_gate: bool = True,
    device_index: int = 0,
    log: Log = LOG.info,
) -> EngineSidecar:
    """Build, gate and write ``engine_path`` plus its sidecar; returns the sidecar.

    AccuracyGateError (and ``engine_path``.rejected.json) when the engine disagrees with the
    reference; EngineError for every other failure. Nothing is written at ``engine_path`` then.
    """
    from dap_ros.runtime.tensorrt_runner import import_tensorrt

    trt = import_tensorrt()
    onnx_path, engine_path = Path(onnx_path), Path(engine_path)
    meta = read_metadata(onnx_path)
    precision = graph_precision(meta, precision, onnx_path)
    fp32_heads = meta.get("fp32_heads") == "true"
    if meta.get("input_layout", "").startswith("NHWC"):
        LOG.info("graph takes uint8 NHWC input (exported with --uint8-input)")
    env = detect_environment(device_index)
    ref = load_reference(onnx_path, Path(reference) if reference else None) if accuracy_gate else None
    onnx_sha = sha256_file(onnx_path)
    log(f"parsing {onnx_path} (TensorRT {trt.__version__}, {env.gpu_name}, sm {env.compute_capability}, "
        f"cuda:{device_index})")
    tmp = engine_path.with_name(engine_path.name + ".partial")
    metrics: dict[str, float] = {}
    try:
        plan = build_plan(trt, onnx_path, tmp, precision=precision, max_batch=int(meta.get("batch", "1")),
                          workspace_gb=workspace_gb, timing_cache=Path(timing_cache) if timing_cache else None,
                          device_index=device_index, log=log)
        gc.collect()  # the builder's objects are unreachable now; free them before the engine is loaded
        if ref is not None:
            test = run_on_reference(plan.path, ref["input"], device_index, precision)
            metrics = accuracy.compare_outputs(test, ref)
            tolerance = accuracy.tolerance_for(precision, engine=True)
            bad = accuracy.failures(metrics, tolerance)
            if bad:
                message = (f"engine NOT written: TensorRT {trt.__version__} {precision} output disagrees with "
                           f"ONNX Runtime float32 ({'; '.join(bad)}; tolerance {tolerance.describe()}): "
                           + gate_advice(precision, fp32_heads))
                write_rejection(rejection_path(engine_path), onnx_sha256=onnx_sha, env=env, precision=precision,
                                metrics=metrics, message=message)
                raise AccuracyGateError(message)
            log(f"accuracy gate passed: {accuracy.summary(metrics)}")
        else:
            log("accuracy gate SKIPPED (--no-accuracy-gate)")
        os.replace(tmp, engine_path)
    finally:
        if tmp.exists():
            tmp.unlink()
    rejection_path(engine_path).unlink(missing_ok=True)
    sidecar = EngineSidecar(
        onnx_sha256=onnx_sha,
        onnx_name=onnx_path.name,
        tensorrt_version=env.tensorrt_version,
        gpu_name=env.gpu_name,
        compute_capability=env.compute_capability,
        precision=precision,
        input_shapes=plan.input_shapes,
        output_shapes=plan.output_shapes,
        build_seconds=round(plan.seconds, 1),
        workspace_gb=workspace_gb,
        accuracy={k: float(v) for k, v in metrics.items()},
        fp32_heads=fp32_heads,
    )
    sidecar.write(sidecar_path(engine_path))
    log(f"wrote {engine_path} ({engine_path.stat().st_size / 2**20:.0f} MiB) and {sidecar_path(engine_path).name}")
    return sidecar
