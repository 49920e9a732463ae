"""The PyTorch network as a runner, optionally replayed as a CUDA graph or (opt-in) torch.compile'd."""
from __future__ import annotations

import torch
from torch import Tensor

from dap_ros.errors import ConfigError
from dap_ros.runtime.device import precision_name


class TorchRunner:
    name = "torch"
    input_shape = None  # any 2:1 size that is a multiple of the patch size

    def __init__(self, model: torch.nn.Module, device: torch.device, dtype: torch.dtype,
                 cuda_graph: bool = False, compile: bool = False) -> None:
        if cuda_graph and device.type != "cuda":
            raise ConfigError("CUDA graphs need a CUDA device")
        self.model = model
        self.device = device
        self.input_dtype = dtype
        self.precision = precision_name(dtype)
        self.patch_size = model.config.patch_size
        self.cuda_graph = cuda_graph
        self.compiled = compile
        # Opt-in only: max-autotune compiles the official module for ~7 min on an H200 (docs/benchmarks.md).
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
