"""An exported graph on ONNX Runtime with the best available execution provider."""
from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from dap_ros.errors import BackendUnavailableError, ConfigError
from dap_ros.runtime import exported

LOG = logging.getLogger("dap_ros")

PROVIDER_ORDER = ("TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider")


def default_ort_cache_dir() -> Path:
    return Path.home() / ".cache" / "dap_ros" / "ort_trt"


def provider_options(providers: list[str], device_id: int, cache_dir: str | Path | None = None) -> list:
    """ONNX Runtime's ``providers`` argument. The TensorRT provider gets its engine and timing
    caches in ``cache_dir`` (created with its parents: ORT creates only the last folder and silently
    drops to CUDA without it), never in the working directory, which a ROS node often cannot write."""
    chosen: list = []
    for name in providers:
        if name == "TensorrtExecutionProvider":
            folder = Path(cache_dir) if cache_dir else default_ort_cache_dir()
            try:
                folder.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise ConfigError(f"cannot create the TensorRT provider's cache folder {folder}: {exc}") from None
            chosen.append((name, {"device_id": device_id, "trt_engine_cache_enable": True,
                                  "trt_engine_cache_path": str(folder), "trt_timing_cache_enable": True,
                                  "trt_timing_cache_path": str(folder)}))
        elif name == "CUDAExecutionProvider":
            chosen.append((name, {"device_id": device_id}))
        else:
            chosen.append(name)
    return chosen


class OnnxRuntimeRunner:
    name = "onnxruntime"

    def __init__(self, onnx_path: str | Path, device: torch.device, providers: list[str] | None = None,
                 cache_dir: str | Path | None = None, threads: int = 0, allow_tensorrt: bool = True) -> None:
        import onnxruntime as ort

        self.path = Path(onnx_path)
        meta = exported.read_metadata(self.path)
        if meta.get("input_layout", "").startswith("NHWC"):
            raise ConfigError(f"{self.path} takes uint8 NHWC input (exported with --uint8-input); the dap_ros "
                              "backends take the float variant: export without --uint8-input")
        available = ort.get_available_providers()
        wanted = providers or [p for p in PROVIDER_ORDER if device.type == "cuda" or p == "CPUExecutionProvider"]
        if not allow_tensorrt:  # falling back from a TensorRT that failed: not TensorRT again through ORT
            wanted = [p for p in wanted if p != "TensorrtExecutionProvider"]
        missing = [p for p in wanted if p not in available]
        if providers and missing:
            raise BackendUnavailableError(f"onnxruntime execution provider(s) {', '.join(missing)} not available "
                                          f"(this onnxruntime has {', '.join(available)})")
        chosen = provider_options([p for p in wanted if p in available], device.index or 0, cache_dir)
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
        self.patch_size = exported.patch_size(meta)
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
            binding.bind_input(self.input_name, "cuda", self.device.index or 0, np.float32, tuple(x.shape),
                               x.data_ptr())
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
