"""A serialized TensorRT engine as a runner, with torch CUDA tensors as its buffers.

Written against the TensorRT 10/11 Python API: tensors are bound by name
(``ICudaEngine.num_io_tensors`` / ``get_tensor_name`` / ``get_tensor_mode``,
``IExecutionContext.set_tensor_address``), execution is ``execute_async_v3`` on a dedicated CUDA
stream, and the launch can be captured into a CUDA graph. No pycuda: torch owns memory and streams.
"""
from __future__ import annotations

import logging
from pathlib import Path

import torch
from torch import Tensor

from dap_ros.errors import BackendUnavailableError, EngineError
from dap_ros.runtime.exported import DEFAULT_PATCH_SIZE

LOG = logging.getLogger("dap_ros")


def import_tensorrt():
    try:
        import tensorrt as trt
    except ImportError as exc:
        raise BackendUnavailableError(
            f"backend 'tensorrt' needs the tensorrt Python module ({exc}); on Jetson it comes with JetPack, "
            "on a desktop install the tensorrt wheel for your CUDA"
        ) from None
    return trt


def torch_dtype(trt, dtype) -> torch.dtype:
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
    def create(trt):
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


class TensorRTRunner:
    """Runs a serialized engine. ``__call__(x)`` takes a CUDA tensor shaped like the engine input and
    returns (pred_depth, pred_mask): the runner's own buffers, valid until the next call.
    ``precision``: what the engine computes in (the sidecar says; the engine's I/O is float32 either way)."""

    name = "tensorrt"
    patch_size = DEFAULT_PATCH_SIZE  # unused: the engine fixes the input size (input_shape)

    def __init__(self, engine_path: str | Path, device: torch.device, precision: str = "fp32",
                 cuda_graph: bool = False) -> None:
        trt = import_tensorrt()
        if device.type != "cuda":
            raise BackendUnavailableError(f"backend 'tensorrt' needs a CUDA device, got {device}")
        self.trt = trt
        self.device = device
        self.precision = precision
        self.engine_path = Path(engine_path)
        self.cuda_graph = cuda_graph
        self._logger = TrtLogger.create(trt)
        self.runtime = trt.Runtime(self._logger)
        data = Path(engine_path).read_bytes()
        with torch.cuda.device(device):
            self.engine = self.runtime.deserialize_cuda_engine(data)
            if self.engine is None:
                raise EngineError(f"TensorRT could not deserialize {engine_path} (built by another TensorRT "
                                  "version or for another GPU?); rebuild it with dap-ros build-engine")
            self.context = self.engine.create_execution_context()
            self.stream = torch.cuda.Stream(device)
            self.inputs: dict[str, Tensor] = {}
            self.outputs: dict[str, Tensor] = {}
            names = [self.engine.get_tensor_name(i) for i in range(self.engine.num_io_tensors)]
            for name in names:
                if self.engine.get_tensor_mode(name) == trt.TensorIOMode.INPUT:
                    shape = list(self.engine.get_tensor_shape(name))
                    if any(d < 0 for d in shape):  # dynamic batch: run at the profile's opt shape
                        shape = list(self.engine.get_tensor_profile_shape(name, 0)[1])
                        self.context.set_input_shape(name, shape)
                    self.inputs[name] = torch.empty(shape, dtype=torch_dtype(trt, self.engine.get_tensor_dtype(name)),
                                                    device=device)
            for name in names:
                if name not in self.inputs:
                    shape = list(self.context.get_tensor_shape(name))
                    self.outputs[name] = torch.empty(shape, dtype=torch_dtype(trt, self.engine.get_tensor_dtype(name)),
                                                     device=device)
            for name, tensor in {**self.inputs, **self.outputs}.items():
                self.context.set_tensor_address(name, tensor.data_ptr())
        if len(self.inputs) != 1:
            raise EngineError(f"expected an engine with one input, {engine_path} has {sorted(self.inputs)}")
        self.input_name, self.input = next(iter(self.inputs.items()))
        self.input_dtype = self.input.dtype
        self._graph: torch.cuda.CUDAGraph | None = None
        if cuda_graph:
            self._capture()

    @property
    def input_shape(self) -> tuple[int, ...]:
        return tuple(self.input.shape)

    def describe(self) -> str:
        return f"TensorRT {self.precision} engine {self.engine_path.name} on {self.device}" + (
            " + CUDA graph" if self.cuda_graph else "")

    def _enqueue(self) -> None:
        if not self.context.execute_async_v3(self.stream.cuda_stream):
            raise EngineError("TensorRT execute_async_v3 failed (see the TensorRT log above)")

    def _capture(self) -> None:
        with torch.cuda.stream(self.stream):
            self._enqueue()  # first launch does lazy initialization, which must not be captured
        self.stream.synchronize()
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph, stream=self.stream):
            self._enqueue()
        self._graph = graph

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
        return self.outputs["pred_depth"], self.outputs["pred_mask"]
