"""Build a TensorRT engine from an exported ONNX graph, strongly typed, behind an accuracy gate.

TensorRT 10/11 Python API: ``Builder.create_network`` with ``STRONGLY_TYPED`` (TensorRT 11 always
builds strongly typed and ignores the flag), ``OnnxParser.parse_from_file``, a builder config with
``set_memory_pool_limit(MemoryPoolType.WORKSPACE, ...)`` and an optional persistent timing cache,
``build_serialized_network``. Precision comes from the graph's own tensor types (export with
``--fp16`` for the mixed-precision graph); there are no FP16 builder flags (weak typing is gone in
TensorRT 11). float32 builds disable TF32 so that "fp32" means fp32.

Before the engine is written it is run on the stored reference input (``F.onnx.ref.npz``, written
by ``dap-ros export-onnx``) and compared with the ONNX Runtime float32 outputs stored there; beyond
the tolerance of :mod:`dap_ros.deploy.accuracy` nothing is written.
"""
from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from dap_ros.deploy import accuracy
from dap_ros.deploy.engine_cache import EngineSidecar, detect_environment, sha256_file, sidecar_path
from dap_ros.deploy.onnx_export import reference_path
from dap_ros.errors import AccuracyGateError, EngineError
from dap_ros.runtime.exported import read_metadata

LOG = logging.getLogger("dap_ros")


def _read_timing_cache(path: Path | None) -> bytes:
    if path is not None and path.is_file():
        return path.read_bytes()
    return b""


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
    log: Callable[[str], None] = LOG.info,
) -> EngineSidecar:
    """Build, gate and write ``engine_path`` plus its sidecar; returns the sidecar."""
    import torch

    from dap_ros.runtime.tensorrt_runner import TensorRTRunner, TrtLogger, import_tensorrt

    trt = import_tensorrt()
    onnx_path, engine_path = Path(onnx_path), Path(engine_path)
    meta = read_metadata(onnx_path)
    graph_precision = meta.get("precision", "fp32")
    if precision is not None and precision != graph_precision:
        raise EngineError(
            f"{onnx_path} is a {graph_precision} graph but --precision {precision} was asked; the precision of a "
            f"strongly typed engine is the graph's: export with{'' if precision == 'fp16' else 'out'} --fp16"
        )
    if meta.get("input_layout", "").startswith("NHWC"):
        LOG.info("graph takes uint8 NHWC input (exported with --uint8-input)")
    env = detect_environment(device_index)
    ref = load_reference(onnx_path, Path(reference) if reference else None) if accuracy_gate else None

    started = time.perf_counter()
    logger = TrtLogger.create(trt)
    builder = trt.Builder(logger)
    flags = 0
    strongly_typed = getattr(trt.NetworkDefinitionCreationFlag, "STRONGLY_TYPED", None)
    if strongly_typed is not None:
        flags |= 1 << int(strongly_typed)
    network = builder.create_network(flags)
    parser = trt.OnnxParser(network, logger)
    log(f"parsing {onnx_path} (TensorRT {trt.__version__}, {env.gpu_name}, sm {env.compute_capability})")
    if not parser.parse_from_file(str(onnx_path)):
        errors = [str(parser.get_error(i).desc()) for i in range(parser.num_errors)]
        raise EngineError(f"TensorRT could not parse {onnx_path}: " + " | ".join(errors[:3]))
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, int(workspace_gb * (1 << 30)))
    if graph_precision == "fp32" and hasattr(trt.BuilderFlag, "TF32"):
        config.clear_flag(trt.BuilderFlag.TF32)
    input_shapes: dict[str, list] = {}
    profile = None
    for i in range(network.num_inputs):
        tensor = network.get_input(i)
        shape = list(tensor.shape)
        if any(d < 0 for d in shape):  # dynamic batch: profile 1 .. batch (export --batch)
            max_batch = int(meta.get("batch", "1"))
            low, high = [1] + shape[1:], [max_batch] + shape[1:]
            profile = profile or builder.create_optimization_profile()
            profile.set_shape(tensor.name, low, high, high)
            input_shapes[tensor.name] = [low, high, high]
        else:
            input_shapes[tensor.name] = [shape]
    if profile is not None:
        config.add_optimization_profile(profile)
    cache_file = Path(timing_cache) if timing_cache else None
    cache = config.create_timing_cache(_read_timing_cache(cache_file))
    config.set_timing_cache(cache, False)
    log(f"building {graph_precision} engine (strongly typed, workspace {workspace_gb:g} GB): this takes minutes")
    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise EngineError(f"TensorRT failed to build an engine from {onnx_path} (see the TensorRT log above)")
    build_seconds = time.perf_counter() - started
    if cache_file is not None:
        cache_file.parent.mkdir(parents=True, exist_ok=True)
        cache_file.write_bytes(memoryview(config.get_timing_cache().serialize()))
    tmp = engine_path.with_name(engine_path.name + ".partial")
    engine_path.parent.mkdir(parents=True, exist_ok=True)
    tmp.write_bytes(memoryview(serialized))
    output_shapes = {network.get_output(i).name: list(network.get_output(i).shape) for i in range(network.num_outputs)}

    metrics: dict[str, float] = {}
    try:
        if ref is not None:
            device = torch.device("cuda", device_index)
            runner = TensorRTRunner(tmp, device, graph_precision)
            x = torch.from_numpy(ref["input"]).to(device)
            if tuple(x.shape) != runner.input_shape:
                raise EngineError(f"reference input {list(x.shape)} does not fit the engine input "
                                  f"{list(runner.input_shape)}")
            outputs = dict(zip(accuracy.OUTPUTS, runner(x)))
            torch.cuda.synchronize(device)
            test = {name: outputs[name].float().cpu().numpy() for name in accuracy.OUTPUTS}
            metrics = accuracy.compare_outputs(test, ref)
            tolerance = accuracy.tolerance_for(graph_precision, engine=True)
            bad = accuracy.failures(metrics, tolerance)
            if bad:
                raise AccuracyGateError(
                    f"engine NOT written: TensorRT {trt.__version__} output disagrees with ONNX Runtime float32 "
                    f"({'; '.join(bad)}; tolerance {tolerance.describe()}). A TensorRT 10.3 (JetPack 6) build "
                    "can do this on ViTs: upgrade TensorRT, or try --precision fp32"
                )
            log(f"accuracy gate passed: {accuracy.summary(metrics)}")
        else:
            log("accuracy gate SKIPPED (--no-accuracy-gate)")
        os.replace(tmp, engine_path)
    finally:
        if tmp.exists():
            tmp.unlink()
    sidecar = EngineSidecar(
        onnx_sha256=sha256_file(onnx_path),
        onnx_name=onnx_path.name,
        tensorrt_version=env.tensorrt_version,
        gpu_name=env.gpu_name,
        compute_capability=env.compute_capability,
        precision=graph_precision,
        input_shapes=input_shapes,
        output_shapes=output_shapes,
        build_seconds=round(build_seconds, 1),
        workspace_gb=workspace_gb,
        accuracy={k: float(v) for k, v in metrics.items()},
    )
    sidecar.write(sidecar_path(engine_path))
    log(f"wrote {engine_path} ({engine_path.stat().st_size / 2**20:.0f} MiB) and {sidecar_path(engine_path).name}")
    return sidecar
