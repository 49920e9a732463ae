"""A serialized TensorRT engine as a runner, with torch CUDA tensors as its buffers.

Written against the TensorRT 10/11 Python API: tensors are bound by name
(``ICudaEngine.num_io_tensors`` / ``get_tensor_name`` / ``get_tensor_mode``,
``IExecutionContext.set_input_shape`` / ``set_tensor_address``), execution is
``execute_async_v3`` on a dedicated CUDA stream, and the launch can be captured into a CUDA graph
(when capture fails the runner warns and launches without one, as trtexec does). No pycuda: torch
owns memory and streams. TensorRT < 10 is refused: it builds implicit-batch networks.
"""
from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TypeVar

import torch
from torch import Tensor

from dap_ros.errors import BackendUnavailableError, EngineError
from dap_ros.runtime.exported import DEFAULT_PATCH_SIZE

LOG = logging.getLogger("dap_ros")

MIN_TENSORRT_MAJOR = 10
T = TypeVar("T")


def tensorrt_version_problem(version: str) -> str | None:
    """Why this TensorRT version cannot be used, or None."""
    try:
        major = int(str(version).split(".")[0])
    except ValueError:
        return f"TensorRT version {version!r} is not understood"
    if major < MIN_TENSORRT_MAJOR:
        return (f"TensorRT {version} found, dap_ros needs TensorRT >= {MIN_TENSORRT_MAJOR} (older versions "
                "build implicit-batch networks the ONNX parser does not take): on Jetson upgrade to JetPack 6 or "
                "newer, on a desktop install the tensorrt wheel >= 10; meanwhile use backend torch or onnxruntime")
    return None


def import_tensorrt() -> Any:
    """The tensorrt module, or BackendUnavailableError when it is missing or older than 10."""
    try:
        import tensorrt as trt
    except ImportError as exc:
        raise BackendUnavailableError(
            f"backend 'tensorrt' needs the tensorrt Python module ({exc}); on Jetson it comes with JetPack, "
            "on a desktop install the tensorrt wheel for your CUDA"
        ) from None
    problem = tensorrt_version_problem(trt.__version__)
    if problem:
        raise BackendUnavailableError(problem)
    return trt


def torch_dtype(trt: Any, dtype: Any) -> torch.dtype:
    """TensorRT DataType -> torch dtype."""
    table = {
        "FLOAT": torch.float32,
        "HALF": torch.float16,
        "BF16": torch.bfloat16,
        "INT32": torch.int32,
        "INT64": torch.int64,
        "INT8": torch.int8,
        "UINT8": torch.uint8,
        "BOOL": torch.bool,
    }
    for name, value in table.items():
        if hasattr(trt.DataType, name) and dtype == getattr(trt.DataType, name):
            return value
    raise EngineError(f"engine tensor type {dtype} is not supported by dap_ros")


class TrtLogger:
    """A tensorrt.ILogger that forwards to the dap_ros logger."""

    @staticmethod
    def create(trt: Any) -> Any:
        class _Logger(trt.ILogger):
            def __init__(self):
                trt.ILogger.__init__(self)

            def log(self, severity, msg):
                if severity in (trt.ILogger.Severity.INTERNAL_ERROR, trt.ILogger.Severity.ERROR):
                    LOG.error("TensorRT: %s", msg)
                elif severity == trt.ILogger.Severity.WARNING:
                    LOG.warning("TensorRT: %s", msg)
                else:
                    LOG.debug("TensorRT: %s", msg)

        return _Logger()


def run_shape(declared: Sequence[int], profile: Sequence[Sequence[int]] | None,
              requested: Sequence[int] | None) -> list[int]:
    """The input shape to run: ``requested`` (default: batch 1 where the engine's dimension is
    dynamic), checked against the static dimensions and the optimization profile's [min, max]."""
    declared = [int(d) for d in declared]
    shape = [int(d) for d in requested] if requested is not None else [1 if d < 0 else d for d in declared]
    if len(shape) != len(declared) or any(d >= 0 and d != s for d, s in zip(declared, shape)):
        raise EngineError(f"input shape {shape} does not fit the engine input {declared}")
    if profile is not None:
        low, high = [int(d) for d in profile[0]], [int(d) for d in profile[-1]]
        if not all(a <= s <= b for a, s, b in zip(low, shape, high)):
            raise EngineError(f"input shape {shape} is outside the engine's optimization profile "
                              f"{low} .. {high}; rebuild from a graph exported for it")
    return shape


class EngineBuffers:
    """An engine's one input and its outputs bound to torch tensors on ``device``, at the input
    shape the caller runs (``set_input_shape`` on dynamic engines, so the outputs follow it)."""

    def __init__(self, trt: Any, engine: Any, context: Any, device: torch.device,
                 input_shape: Sequence[int] | None = None) -> None:
        names = [engine.get_tensor_name(i) for i in range(engine.num_io_tensors)]
        inputs = [n for n in names if engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT]
        if len(inputs) != 1:
            raise EngineError(f"expected an engine with one input, this one has {sorted(inputs)}")
        self.input_name = inputs[0]
        declared = list(engine.get_tensor_shape(self.input_name))
        dynamic = any(d < 0 for d in declared)
        profile = engine.get_tensor_profile_shape(self.input_name, 0) if dynamic else None
        shape = run_shape(declared, profile, input_shape)
        if dynamic and not context.set_input_shape(self.input_name, shape):
            raise EngineError(f"TensorRT refused input shape {shape} for {self.input_name}")
        self.tensors: dict[str, Tensor] = {}
        for name in names:
            dims = shape if name == self.input_name else list(context.get_tensor_shape(name))
            if any(d < 0 for d in dims):
                raise EngineError(f"engine output {name} has unresolved shape {dims} for input {shape}")
            self.tensors[name] = torch.empty(dims, dtype=torch_dtype(trt, engine.get_tensor_dtype(name)),
                                             device=device)
            if not context.set_tensor_address(name, self.tensors[name].data_ptr()):
                raise EngineError(f"TensorRT refused the buffer of {name}")
        self.input = self.tensors[self.input_name]

    def output(self, name: str) -> Tensor:
        if name not in self.tensors:
            raise EngineError(f"engine has no output {name!r} (it has {sorted(self.tensors)})")
        return self.tensors[name]


def capture_or_none(capture: Callable[[], T], what: str) -> T | None:
    """``capture()``, or None with one WARN when it fails: without a graph the engine still runs
    (each launch then costs a little more CPU), and the real error stays visible."""
    try:
        return capture()
    except (RuntimeError, EngineError) as exc:
        LOG.warning("CUDA graph capture of %s failed (%s): running without a CUDA graph",
                    what, str(exc).splitlines()[0] if str(exc) else type(exc).__name__)
        return None


class TensorRTRunner:
    """Runs a serialized engine. ``__call__(x)`` takes a CUDA tensor of ``input_shape`` and returns
    (pred_depth, pred_mask): the runner's own buffers, valid until the next call. ``precision``:
    what the engine computes in (the sidecar says; the engine's I/O is float32 either way).
    ``input_shape``: the shape to run a dynamic-batch engine at (default batch 1)."""

    name = "tensorrt"
    patch_size = DEFAULT_PATCH_SIZE  # unused: the engine fixes the input size (input_shape)

    def __init__(self, engine_path: str | Path, device: torch.device, precision: str = "fp32",
                 cuda_graph: bool = False, input_shape: Sequence[int] | None = None) -> None:
        trt = import_tensorrt()
        if device.type != "cuda":
            raise BackendUnavailableError(f"backend 'tensorrt' needs a CUDA device, got {device}")
        self.device = device
        self.precision = precision
        self.engine_path = Path(engine_path)
        self._logger = TrtLogger.create(trt)
        self.runtime = trt.Runtime(self._logger)
        with torch.cuda.device(device):
            self.engine = self.runtime.deserialize_cuda_engine(self.engine_path.read_bytes())
            if self.engine is None:
                raise EngineError(f"TensorRT could not deserialize {engine_path} (built by another TensorRT "
                                  "version or for another GPU?); rebuild it with dap-ros build-engine")
            self.context = self.engine.create_execution_context()
            self.stream = torch.cuda.Stream(device)
            self.buffers = EngineBuffers(trt, self.engine, self.context, device, input_shape)
        self.input_name, self.input = self.buffers.input_name, self.buffers.input
        self.input_dtype = self.input.dtype
        self._graph = capture_or_none(self._capture, self.engine_path.name) if cuda_graph else None
        self.cuda_graph = self._graph is not None
        if cuda_graph and self._graph is None:
            self._check_plain_launch()

    @property
    def input_shape(self) -> tuple[int, ...]:
        return tuple(self.input.shape)

    def describe(self) -> str:
        return f"TensorRT {self.precision} engine {self.engine_path.name} on {self.device}" + (
            " + CUDA graph" if self.cuda_graph else "")

    def _enqueue(self) -> None:
        if not self.context.execute_async_v3(self.stream.cuda_stream):
            raise EngineError("TensorRT execute_async_v3 failed (see the TensorRT log above)")

    def _check_plain_launch(self) -> None:
        """After a failed capture: the engine must still run without a graph, or start-up fails here."""
        try:
            with torch.cuda.stream(self.stream):
                self._enqueue()
            self.stream.synchronize()
        except RuntimeError as exc:
            raise EngineError(f"{self.engine_path.name} does not run without a CUDA graph either: {exc}") from None

    def _capture(self) -> torch.cuda.CUDAGraph:
        with torch.cuda.stream(self.stream):
            self._enqueue()  # first launch does lazy initialization, which must not be captured
        self.stream.synchronize()
        graph = torch.cuda.CUDAGraph()
        # thread_local: CUDA calls of other threads (the node's executor) cannot invalidate the capture
        with torch.cuda.graph(graph, stream=self.stream, capture_error_mode="thread_local"):
            self._enqueue()
        return graph

    def __call__(self, x: Tensor) -> tuple[Tensor, Tensor]:
        x = x.to(self.input_dtype)
        if tuple(x.shape) != self.input_shape:
            raise EngineError(f"engine input {self.input_name} is {list(self.input_shape)}, got {list(x.shape)}")
        current = torch.cuda.current_stream(self.device)
        self.stream.wait_stream(current)
        with torch.cuda.stream(self.stream):
            self.input.copy_(x, non_blocking=True)
            if self._graph is not None:
                self._graph.replay()
            else:
                self._enqueue()
        current.wait_stream(self.stream)
        return self.buffers.output("pred_depth"), self.buffers.output("pred_mask")
