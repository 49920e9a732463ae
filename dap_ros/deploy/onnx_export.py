"""ONNX export of the DAP network, verified before it is handed to anyone.

Graph contract (float variant, the default): input ``image`` float32 (B, 3, H, W), normalized the
way the predictor normalizes (ImageNet mean/std by default); outputs ``pred_depth`` and
``pred_mask`` float32 (B, 1, H, W) in the official units. The optional uint8 variant takes
``image_u8`` uint8 (B, H, W, 3) RGB at the network size, casts it to float32 before anything else
(TensorRT takes UINT8 only as a network input) and normalizes inside the graph.

Precision: float32, or with ``precision='fp16'`` the mixed-precision graph of
:mod:`dap_ros.deploy.mixed_precision` (fp16 compute, fp32 islands); ``fp32_heads=True`` keeps its
two DPT heads entirely in float32. Recorded in the graph metadata (``dap_ros.*``, see
:func:`dap_ros.runtime.exported.read_metadata`): ``precision`` (fp32 / fp16) and ``fp32_heads``
("true" only for an fp16 graph exported with fp32 heads, "false" otherwise).

Exported with torch's dynamo exporter (opset 18 by default) and simplified by its onnxscript
optimizer (constant folding, dead-code removal). The RoPE tables and the adapter's resampling
indices are computed eagerly before tracing, so they bake as constants. Verification: onnx
checker, strict shape inference with the expected output shapes, the TensorRT op/control-flow
check, and ONNX Runtime (CPU) against PyTorch float32 on a fixed input (the bundled sample
panorama). The ONNX Runtime float32 outputs are stored next to the graph (``F.onnx.ref.npz``):
the TensorRT build compares its engine against them.
"""
from __future__ import annotations

import contextlib
import io
import json
import logging
import os
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import Tensor, nn

from dap_ros import __version__
from dap_ros.deploy import accuracy
from dap_ros.errors import ExportError
from dap_ros.model.normalization import input_affine
from dap_ros.runtime.exported import META_PREFIX
from dap_ros.settings import network_size_problem

LOG = logging.getLogger("dap_ros")

INPUT_NAME = "image"
UINT8_INPUT_NAME = "image_u8"
OUTPUT_NAMES = ("pred_depth", "pred_mask")
DEFAULT_OPSET = 18
SAMPLE_IMAGE = Path(__file__).resolve().parents[1] / "assets" / "sample_room.jpg"


def reference_path(onnx_path: str | Path) -> Path:
    """Where the stored reference input/outputs of an exported graph live."""
    return Path(str(onnx_path) + ".ref.npz")


def reference_image(height: int, width: int) -> np.ndarray:
    """A fixed uint8 (H, W, 3) RGB panorama: the bundled sample resized, or seeded noise without it."""
    try:
        from PIL import Image

        with Image.open(SAMPLE_IMAGE) as image:
            return np.asarray(image.convert("RGB").resize((width, height), Image.BILINEAR), dtype=np.uint8).copy()
    except (ImportError, OSError):
        return np.random.default_rng(0).integers(0, 256, (height, width, 3), dtype=np.uint8)


def reference_frames(height: int, width: int, batch: int) -> np.ndarray:
    """(B, H, W, 3) uint8: the reference image yawed by B different amounts (valid ERP frames)."""
    image = reference_image(height, width)
    return np.stack([np.roll(image, (i * width) // max(batch, 1), axis=1) for i in range(batch)])


def normalize_frames(frames: np.ndarray, normalization: str = "imagenet") -> Tensor:
    """(B, H, W, 3) uint8 at the network size -> (B, 3, H, W) float32, the predictor's arithmetic."""
    scale, shift = input_affine(normalization)
    return (torch.from_numpy(frames).permute(0, 3, 1, 2).float() * scale + shift).contiguous()


class UInt8Input(nn.Module):
    """uint8 (B, H, W, 3) RGB -> the network's normalized input, inside the graph."""

    def __init__(self, model: nn.Module, normalization: str = "imagenet") -> None:
        super().__init__()
        self.model = model
        scale, shift = input_affine(normalization)
        self.register_buffer("scale", scale, persistent=False)
        self.register_buffer("shift", shift, persistent=False)

    def forward(self, x: Tensor) -> dict[str, Tensor]:
        # Cast before anything else: TensorRT takes UINT8 only as a network input/output, so the
        # uint8 tensor must feed nothing but the Cast (a Transpose on it fails to parse).
        return self.model(x.float().permute(0, 3, 1, 2) * self.scale + self.shift)


@dataclass
class ExportResult:
    path: Path
    precision: str
    opset: int
    input_name: str
    input_shape: tuple
    op_counts: dict[str, int]
    parity: dict[str, float]  # this graph (ORT CPU) vs PyTorch float32
    fp32_parity: dict[str, float] | None = None  # fp16 exports: the float32 graph vs PyTorch
    fp32_heads: bool = False  # fp16 exports: the DPT heads computed in float32
    reference: Path | None = None
    export_seconds: float = 0.0
    verify_seconds: float = 0.0
    size_bytes: int = 0
    notes: list[str] = field(default_factory=list)


def run_onnxruntime(path: str | Path, feed: np.ndarray, threads: int = 0) -> dict[str, np.ndarray]:
    """Run a graph on ONNX Runtime's CPU provider; returns {output name: array}."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.log_severity_level = 3
    if threads:
        options.intra_op_num_threads = threads
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    outputs = session.run(None, {name: feed})
    return {meta.name: value for meta, value in zip(session.get_outputs(), outputs)}


def _quiet():
    """Silence the exporter's chatter (progress prints, torchvision warnings) unless debugging."""
    if LOG.isEnabledFor(logging.DEBUG):
        return contextlib.nullcontext()
    stack = contextlib.ExitStack()
    stack.enter_context(contextlib.redirect_stdout(io.StringIO()))
    stack.enter_context(warnings.catch_warnings())
    warnings.simplefilter("ignore")
    for name in ("torch.onnx", "torch._dynamo", "onnxscript", "onnx_ir"):
        logging.getLogger(name).setLevel(logging.ERROR)
    return stack


def _export_graph(
    module: nn.Module,
    example: Tensor,
    path: Path,
    *,
    opset: int,
    input_name: str,
    max_batch: int | None,
    metadata: dict[str, str],
) -> None:
    import onnx

    with torch.no_grad():  # eager run first: per-size caches (RoPE sin/cos) then bake as constants
        module(example)
    dynamic_shapes = None
    if max_batch is not None:
        dynamic_shapes = {"x": {0: torch.export.Dim("batch", min=1, max=max_batch)}}
    try:
        with _quiet(), torch.inference_mode(False), torch.no_grad():
            program = torch.onnx.export(
                module,
                (example,),
                dynamo=True,
                input_names=[input_name],
                output_names=list(OUTPUT_NAMES),
                opset_version=opset,
                dynamic_shapes=dynamic_shapes,
                optimize=True,
                verbose=False,
            )
    except Exception as exc:
        raise ExportError(f"torch.onnx.export failed: {type(exc).__name__}: {str(exc).splitlines()[0]}") from exc
    model = program.model_proto  # already simplified by onnxscript's optimizer (optimize=True)
    _uint8_input_feeds_only_a_cast(model)
    # Exporter debug metadata (stack traces, fx node names) bloats the file; keep names only.
    for node in model.graph.node:
        del node.metadata_props[:]
    for key, value in metadata.items():
        entry = model.metadata_props.add()
        entry.key, entry.value = META_PREFIX + key, str(value)
    model.producer_name, model.producer_version = "dap_ros", __version__
    tmp = path.with_name(path.name + ".partial")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        onnx.save_model(model, str(tmp), save_as_external_data=model.ByteSize() > (2**31 - 2**24))
        os.replace(tmp, path)
    except OSError as exc:  # disk full, folder gone or read-only: one line, no half-written graph
        tmp.unlink(missing_ok=True)
        raise ExportError(f"cannot write {path}: {exc.strerror or exc}") from None


def _uint8_input_feeds_only_a_cast(model) -> None:
    """Make a uint8 graph input feed one Cast and nothing else, as TensorRT requires (UINT8 is
    allowed only for network inputs/outputs). The exporter reads the dynamic batch size with a
    Shape on the graph input; the Cast's output has the same shape, so Shape reads that instead."""
    import onnx

    for value in model.graph.input:
        if value.type.tensor_type.elem_type != onnx.TensorProto.UINT8:
            continue
        nodes = [onnx.NodeProto.FromString(node.SerializeToString()) for node in model.graph.node]
        readers = [i for i, node in enumerate(nodes) if value.name in node.input]
        casts = [i for i in readers if nodes[i].op_type == "Cast"]
        others = sorted({nodes[i].op_type for i in readers if nodes[i].op_type not in ("Cast", "Shape")})
        if len(casts) != 1 or others:
            raise ExportError(f"uint8 input {value.name} must feed exactly one Cast, it feeds "
                              f"{len(casts)} Cast and {', '.join(others) or 'no other'} nodes")
        cast = nodes[casts[0]]
        for i in readers:
            if i != casts[0]:
                nodes[i].input[:] = [cast.output[0] if name == value.name else name for name in nodes[i].input]
        # The Cast reads only the graph input: first in the node list keeps the order topological.
        del model.graph.node[:]
        model.graph.node.extend([cast] + nodes[: casts[0]] + nodes[casts[0] + 1 :])


def verify_graph(path: Path, input_shape: tuple, output_shape: tuple, dynamic_batch: bool) -> dict[str, int]:
    """Checker, strict shape inference with the expected shapes, TensorRT ops; returns op counts."""
    import onnx

    from dap_ros.deploy.graph_check import graph_problems, op_types

    try:
        onnx.checker.check_model(str(path), full_check=True)
    except onnx.checker.ValidationError as exc:
        raise ExportError(f"{path}: onnx checker: {str(exc).splitlines()[0]}") from None
    model = onnx.load(str(path))
    inferred = onnx.shape_inference.infer_shapes(model, strict_mode=True, data_prop=True)

    def dims(value):
        return tuple(d.dim_value if d.HasField("dim_value") else None for d in value.type.tensor_type.shape.dim)

    expect_out = (None if dynamic_batch else output_shape[0],) + tuple(output_shape[1:])
    expect_in = (None if dynamic_batch else input_shape[0],) + tuple(input_shape[1:])
    for value in inferred.graph.output:
        if dims(value) != expect_out:
            raise ExportError(f"{path}: output {value.name} has shape {dims(value)}, expected {expect_out}")
    if dims(inferred.graph.input[0]) != expect_in:
        raise ExportError(f"{path}: input has shape {dims(inferred.graph.input[0])}, expected {expect_in}")
    problems = graph_problems(model)
    if problems:
        raise ExportError(f"{path}: " + "; ".join(problems))
    return dict(sorted(op_types(model).items()))


def export_onnx(
    model: nn.Module,
    output: str | Path,
    *,
    height: int = 512,
    width: int = 1024,
    batch: int = 1,
    dynamic_batch: bool = False,
    opset: int = DEFAULT_OPSET,
    precision: str = "fp32",
    uint8_input: bool = False,
    normalization: str = "imagenet",
    keep_fp32: bool = False,
    fp32_heads: bool = False,
    metadata: dict[str, str] | None = None,
    log: Callable[[str], None] = LOG.info,
) -> ExportResult:
    """Export ``model`` (a float32 DAP network) to ``output`` and verify it; see the module docstring.

    ``precision='fp16'`` writes the mixed-precision graph of :mod:`dap_ros.deploy.mixed_precision`
    (float32 I/O); its float32 twin is exported too (kept as ``F.fp32.onnx`` with ``keep_fp32``) to
    produce the float32 reference. ``fp32_heads`` (fp16 only): the DPT heads stay float32.
    ``dynamic_batch``: batch 1..``batch`` (TensorRT profile max).
    """
    from dap_ros.deploy.mixed_precision import mixed_precision_copy

    output = Path(output)
    if precision not in ("fp32", "fp16"):
        raise ExportError(f"precision must be fp32 or fp16, got {precision!r}")
    if fp32_heads and precision != "fp16":
        raise ExportError("fp32_heads applies to the fp16 (mixed-precision) graph only; export with precision fp16")
    if batch < 1:
        raise ExportError(f"batch must be >= 1, got {batch}")
    if opset < 17:
        raise ExportError(f"opset must be >= 17 (single LayerNormalization op), got {opset}")
    if problem := network_size_problem(height, width):  # before any tensor of that size exists
        raise ExportError(f"input size {problem}, got {height}x{width}")
    patch = model.config.patch_size
    if height % patch or width % patch or height <= 0 or width <= 0:
        raise ExportError(f"height and width must be positive multiples of {patch}, got {height}x{width}")
    model = model.float().eval()
    frames = reference_frames(height, width, batch)
    x = normalize_frames(frames, normalization)
    t0 = time.perf_counter()
    with torch.no_grad():  # eager run: fills the per-size caches (RoPE tables...) with real tensors
        expected = {k: v.numpy() for k, v in model(x).items()}
    feed = frames if uint8_input else x.numpy()
    example = torch.from_numpy(frames) if uint8_input else x
    input_name = UINT8_INPUT_NAME if uint8_input else INPUT_NAME
    input_shape = tuple(feed.shape)
    output_shape = (batch, 1, height, width)
    meta = {
        "format": "1",
        "input_name": input_name,
        "input_layout": "NHWC uint8 RGB" if uint8_input else "NCHW float32 normalized",
        "input_size": f"{height}x{width}",
        "batch": str(batch),
        "dynamic_batch": str(bool(dynamic_batch)).lower(),
        "normalization": normalization,
        "model_config": json.dumps(model.config.to_dict(), separators=(",", ":")),
        "exporter": f"torch {torch.__version__} dynamo, opset {opset}",
        "fp32_heads": "false",
        **(metadata or {}),
    }
    max_batch = batch if dynamic_batch else None
    if dynamic_batch and batch < 2:
        raise ExportError("--dynamic-batch needs --batch >= 2 (the largest batch the graph will take)")

    def wrap(module: nn.Module) -> nn.Module:
        return UInt8Input(module, normalization).eval() if uint8_input else module

    fp32_path = output if precision == "fp32" else output.with_name(output.stem + ".fp32.onnx")
    _export_graph(wrap(model), example, fp32_path, opset=opset, input_name=input_name, max_batch=max_batch,
                  metadata={**meta, "precision": "fp32"})
    export_seconds = time.perf_counter() - t0
    log(f"exported float32 graph in {export_seconds:.1f} s; verifying")
    t1 = time.perf_counter()
    ops = verify_graph(fp32_path, input_shape, output_shape, dynamic_batch)
    ref = run_onnxruntime(fp32_path, feed)
    fp32_parity = accuracy.compare_outputs(ref, expected)
    bad = accuracy.failures(fp32_parity, accuracy.EXPORT_FP32)
    if bad:
        raise ExportError(f"ONNX Runtime float32 output differs from PyTorch: {'; '.join(bad)}")
    log(f"ONNX Runtime (CPU) vs PyTorch float32: max|diff| pred_depth {fp32_parity['pred_depth_max_abs']:.2e}, "
        f"pred_mask {fp32_parity['pred_mask_max_abs']:.2e} (tolerance 1e-4)")
    result = ExportResult(output, precision, opset, input_name, input_shape, ops, fp32_parity)
    if precision == "fp16":
        t2 = time.perf_counter()
        mixed_model = mixed_precision_copy(model, fp32_heads=fp32_heads)
        _export_graph(wrap(mixed_model), example, output, opset=opset, input_name=input_name, max_batch=max_batch,
                      metadata={**meta, "precision": "fp16", "fp32_heads": str(fp32_heads).lower()})
        export_seconds += time.perf_counter() - t2
        result.op_counts = verify_graph(output, input_shape, output_shape, dynamic_batch)
        mixed = run_onnxruntime(output, feed)
        result.parity = accuracy.compare_outputs(mixed, expected)
        result.fp32_parity = fp32_parity
        result.fp32_heads = fp32_heads
        bad = accuracy.failures(result.parity, accuracy.MIXED_FP16)
        if bad:
            raise ExportError(f"mixed-precision graph vs PyTorch float32: {'; '.join(bad)}")
        kind = "mixed-precision graph" + (" with fp32 heads" if fp32_heads else "")
        log(f"{kind} (ORT CPU) vs PyTorch float32: {accuracy.summary(result.parity)}")
        if not keep_fp32:
            fp32_path.unlink()
    result.reference = reference_path(output)
    np.savez_compressed(result.reference, input=feed, **ref)
    result.export_seconds = export_seconds
    result.verify_seconds = time.perf_counter() - t1 - (export_seconds - (t1 - t0))
    result.size_bytes = output.stat().st_size
    return result
