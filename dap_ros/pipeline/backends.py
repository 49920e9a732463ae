"""Inference backends behind DepthPredictor: torch, onnxruntime, tensorrt, and ``auto``.

A backend ("runner") takes the normalized network input as a tensor on the predictor's device and
returns ``(pred_depth, pred_mask)`` tensors on that device; pre- and post-processing stay in torch
on the same device, so on a GPU only the uint8 image goes up and only the published arrays come
back. Selection is a pure function of the machine's capabilities (:class:`Capabilities`), so it is
tested without a GPU.

``auto`` picks, in order: ``tensorrt`` (CUDA + TensorRT importable + an engine or ONNX file),
``torch`` on CUDA, ``onnxruntime`` on the CPU (when an ONNX file is given), ``torch`` on the CPU,
and logs why each better choice was passed over.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from dap_ros.deploy.errors import BackendUnavailableError
from dap_ros.errors import ConfigError

LOG = logging.getLogger("dap_ros")

BACKENDS = ("auto", "torch", "onnxruntime", "tensorrt")
ORT_PROVIDER_ORDER = ("TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider")


@dataclass(frozen=True)
class Capabilities:
    cuda: bool
    tensorrt_version: str | None = None
    ort_providers: tuple[str, ...] = ()  # empty: onnxruntime not importable
    notes: dict[str, str] = field(default_factory=dict)  # why something is missing


def detect_capabilities() -> Capabilities:
    notes = {}
    trt_version = None
    try:
        import tensorrt

        trt_version = tensorrt.__version__
    except ImportError as exc:
        notes["tensorrt"] = f"tensorrt not importable ({exc})"
    providers: tuple[str, ...] = ()
    try:
        import onnxruntime

        providers = tuple(onnxruntime.get_available_providers())
    except ImportError as exc:
        notes["onnxruntime"] = f"onnxruntime not importable ({exc})"
    return Capabilities(torch.cuda.is_available(), trt_version, providers, notes)


@dataclass(frozen=True)
class Choice:
    backend: str
    reasons: tuple[str, ...]


def _exists(path: str | Path | None) -> bool:
    return path not in (None, "") and Path(path).is_file()


def choose_backend(
    requested: str,
    caps: Capabilities,
    *,
    device: str = "auto",
    onnx: str | Path | None = None,
    engine: str | Path | None = None,
) -> Choice:
    """Resolve ``requested`` (one of BACKENDS) to a concrete backend, or raise BackendUnavailableError
    with a one-line reason. ``device``: what the user asked for ('auto', 'cpu', 'cuda[:N]')."""
    if requested not in BACKENDS:
        raise ConfigError(f"backend must be one of {', '.join(BACKENDS)}, got {requested!r}")
    wants_cpu = str(device).lower() == "cpu"
    gpu = caps.cuda and not wants_cpu
    have_files = _exists(engine) or _exists(onnx)
    if requested == "tensorrt":
        if caps.tensorrt_version is None:
            raise BackendUnavailableError("backend 'tensorrt': " + caps.notes.get("tensorrt", "tensorrt not importable")
                                          + "; use backend torch or onnxruntime")
        if not gpu:
            raise BackendUnavailableError("backend 'tensorrt' needs a CUDA device"
                                          + (" (device is 'cpu')" if wants_cpu else " and torch sees none"))
        if not have_files:
            raise BackendUnavailableError("backend 'tensorrt' needs an engine file (--engine) or an ONNX file "
                                          "(--onnx) to build one from; neither exists")
        return Choice("tensorrt", (f"requested; TensorRT {caps.tensorrt_version}",))
    if requested == "onnxruntime":
        if not caps.ort_providers:
            raise BackendUnavailableError("backend 'onnxruntime': " + caps.notes.get("onnxruntime", "not importable")
                                          + "; pip install onnxruntime (or onnxruntime-gpu)")
        if not _exists(onnx):
            raise BackendUnavailableError(f"backend 'onnxruntime' needs an ONNX file (--onnx); {onnx or 'none'} given "
                                          "does not exist (make one with dap-ros export-onnx)")
        return Choice("onnxruntime", ("requested",))
    if requested == "torch":
        return Choice("torch", ("requested",))
    reasons = []
    if caps.tensorrt_version and gpu and have_files:
        return Choice("tensorrt", (f"CUDA GPU and TensorRT {caps.tensorrt_version} present, engine/ONNX given",))
    if caps.tensorrt_version is None:
        reasons.append("not tensorrt: " + caps.notes.get("tensorrt", "tensorrt not importable"))
    elif not gpu:
        reasons.append("not tensorrt: no CUDA device")
    else:
        reasons.append("not tensorrt: no engine or ONNX file given")
    if gpu:
        return Choice("torch", (*reasons, "torch on CUDA"))
    reasons.append("no CUDA device" if not caps.cuda else "device is cpu")
    if caps.ort_providers and _exists(onnx):
        return Choice("onnxruntime", (*reasons, "ONNX file given: onnxruntime on the CPU"))
    reasons.append("no ONNX file for onnxruntime" if caps.ort_providers else caps.notes.get("onnxruntime", "no onnxruntime"))
    return Choice("torch", (*reasons, "torch on the CPU"))


class TorchRunner:
    """The PyTorch model, optionally captured in a CUDA graph or (opt-in) torch.compile'd."""

    name = "torch"

    def __init__(self, model: torch.nn.Module, device: torch.device, dtype: torch.dtype,
                 cuda_graph: bool = False, compile: bool = False) -> None:
        if cuda_graph and device.type != "cuda":
            raise ConfigError("CUDA graphs need a CUDA device")
        self.model = model
        self.device = device
        self.input_dtype = dtype
        self.precision = {torch.float32: "fp32", torch.float16: "fp16", torch.bfloat16: "bf16"}[dtype]
        self.cuda_graph = cuda_graph
        self.compiled = compile
        # Opt-in only: max-autotune compiles the official module for ~7 min on an H200 (DESIGN.md §6).
        self._forward = torch.compile(model, fullgraph=True, dynamic=False) if compile else model
        self._graph: torch.cuda.CUDAGraph | None = None
        self._static_in: Tensor | None = None
        self._static_out: dict[str, Tensor] | None = None

    def describe(self) -> str:
        extra = (" + CUDA graph" if self.cuda_graph else "") + (" + torch.compile" if self.compiled else "")
        return f"torch {self.precision} on {self.device}{extra}"

    def _capture(self, x: Tensor) -> None:
        self._static_in = x.clone()
        side = torch.cuda.Stream(self.device)
        side.wait_stream(torch.cuda.current_stream(self.device))
        with torch.cuda.stream(side):
            for _ in range(3):  # warm-up: cuDNN/cuBLAS choices and caches before capture
                self._forward(self._static_in)
        torch.cuda.current_stream(self.device).wait_stream(side)
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph):
            self._static_out = self._forward(self._static_in)
        self._graph = graph

    def __call__(self, x: Tensor) -> tuple[Tensor, Tensor]:
        if self.cuda_graph:
            if self._graph is None or self._static_in is None or self._static_in.shape != x.shape:
                self._capture(x)
            self._static_in.copy_(x)
            self._graph.replay()
            out = self._static_out
        else:
            out = self._forward(x)
        return out["pred_depth"], out["pred_mask"]


class OnnxRuntimeRunner:
    """An exported graph on ONNX Runtime with the best available execution provider."""

    name = "onnxruntime"

    def __init__(self, onnx_path: str | Path, device: torch.device, providers: list[str] | None = None,
                 cache_dir: str | Path | None = None, threads: int = 0) -> None:
        import onnxruntime as ort

        from dap_ros.deploy.onnx_export import read_metadata

        self.path = Path(onnx_path)
        meta = read_metadata(self.path)
        if meta.get("input_layout", "").startswith("NHWC"):
            raise ConfigError(f"{self.path} takes uint8 NHWC input (exported with --uint8-input); the dap_ros "
                              "backends take the float variant: export without --uint8-input")
        available = ort.get_available_providers()
        wanted = providers or [p for p in ORT_PROVIDER_ORDER if device.type == "cuda" or p == "CPUExecutionProvider"]
        missing = [p for p in wanted if p not in available]
        if providers and missing:
            raise BackendUnavailableError(f"onnxruntime execution provider(s) {', '.join(missing)} not available "
                                          f"(this onnxruntime has {', '.join(available)})")
        chosen: list = []
        for p in wanted:
            if p not in available:
                continue
            if p == "TensorrtExecutionProvider":
                folder = str(cache_dir or Path.home() / ".cache" / "dap_ros" / "ort_trt")
                chosen.append((p, {"trt_engine_cache_enable": True, "trt_engine_cache_path": folder,
                                   "trt_timing_cache_enable": True, "device_id": device.index or 0}))
            elif p == "CUDAExecutionProvider":
                chosen.append((p, {"device_id": device.index or 0}))
            else:
                chosen.append(p)
        options = ort.SessionOptions()
        options.log_severity_level = 3
        # No busy-waiting between runs: in a node the CPU is shared with ROS, pre/post-processing.
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        if threads:
            options.intra_op_num_threads = threads
        self.session = ort.InferenceSession(str(self.path), options, providers=chosen)
        self.providers = self.session.get_providers()
        self.device = device if self.providers[0] != "CPUExecutionProvider" else torch.device("cpu")
        self.precision = meta.get("precision", "fp32")
        self.input_name = self.session.get_inputs()[0].name
        self.input_shape = tuple(self.session.get_inputs()[0].shape)
        self.output_names = [o.name for o in self.session.get_outputs()]
        self.input_dtype = torch.float32
        LOG.info("onnxruntime: execution providers %s (available: %s)", self.providers, ", ".join(available))
        if device.type == "cuda" and self.device.type == "cpu":
            LOG.warning("onnxruntime has no GPU execution provider here: running %s on the CPU", self.path.name)

    def describe(self) -> str:
        return f"onnxruntime {self.precision} graph {self.path.name} on {self.providers[0]}"

    def __call__(self, x: Tensor) -> tuple[Tensor, Tensor]:
        if self.device.type == "cuda":  # zero-copy: bind torch CUDA tensors
            x = x.contiguous().float()
            binding = self.session.io_binding()
            binding.bind_input(self.input_name, "cuda", self.device.index or 0, np.float32, tuple(x.shape), x.data_ptr())
            outs = {}
            for name in self.output_names:
                outs[name] = torch.empty((x.shape[0], 1, x.shape[2], x.shape[3]), dtype=torch.float32, device=x.device)
                binding.bind_output(name, "cuda", self.device.index or 0, np.float32, tuple(outs[name].shape),
                                    outs[name].data_ptr())
            torch.cuda.current_stream(x.device).synchronize()
            self.session.run_with_iobinding(binding)
            return outs["pred_depth"], outs["pred_mask"]
        result = self.session.run(None, {self.input_name: x.detach().float().cpu().numpy()})
        out = dict(zip(self.output_names, result))
        return torch.from_numpy(out["pred_depth"]).to(x.device), torch.from_numpy(out["pred_mask"]).to(x.device)


class TensorRTBackend:
    """Adapter from dap_ros.deploy.trt_runtime.TensorRTRunner to the runner interface."""

    name = "tensorrt"

    def __init__(self, engine_path: Path, device: torch.device, precision: str, cuda_graph: bool = False) -> None:
        from dap_ros.deploy.trt_runtime import TensorRTRunner

        self.engine_path = Path(engine_path)
        self.runner = TensorRTRunner(engine_path, device, cuda_graph=cuda_graph)
        self.device = device
        self.precision = precision
        self.input_dtype = self.runner.input.dtype
        self.input_shape = self.runner.input_shape
        self.cuda_graph = cuda_graph

    def describe(self) -> str:
        return f"TensorRT {self.precision} engine {self.engine_path.name} on {self.device}" + (
            " + CUDA graph" if self.cuda_graph else "")

    def __call__(self, x: Tensor) -> tuple[Tensor, Tensor]:
        out = self.runner(x.to(self.input_dtype))
        return out["pred_depth"], out["pred_mask"]
