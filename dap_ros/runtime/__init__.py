"""Runners: one object per inference backend that turns the normalized network input into the
network's two outputs, all behind the :class:`Runner` protocol.

- ``base``                ``Runner`` (the protocol every backend implements)
- ``device``              device names ('auto', 'cpu', 'cuda:N') and precision names -> torch
- ``capabilities``        what this machine can run, and the ``auto`` backend choice (pure, tested without a GPU)
- ``torch_runner``        the PyTorch network, optionally as a CUDA graph or torch.compile'd
- ``onnxruntime_runner``  an exported graph on ONNX Runtime (TensorRT / CUDA / CPU providers)
- ``tensorrt_runner``     a serialized TensorRT engine (execute_async_v3, torch CUDA buffers)
- ``exported``            reading an exported graph's metadata and shapes

Nothing here builds or exports anything (``dap_ros.deploy`` does that offline); importing this
package imports neither onnxruntime nor tensorrt.
"""
from dap_ros.runtime.base import Runner
from dap_ros.runtime.capabilities import Capabilities, Choice, choose_backend, detect_capabilities
from dap_ros.runtime.device import compute_dtype, precision_name, resolve_device

__all__ = [
    "Capabilities",
    "Choice",
    "Runner",
    "choose_backend",
    "compute_dtype",
    "detect_capabilities",
    "precision_name",
    "resolve_device",
]
