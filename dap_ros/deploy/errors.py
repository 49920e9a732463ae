"""Deployment errors: one-line messages meant for users (the CLI prints them, the node logs them)."""
from dap_ros.errors import ConfigError, DapError


class ExportError(DapError):
    """ONNX export failed or the exported graph failed its verification."""


class EngineError(DapError):
    """A TensorRT engine cannot be built, read or used."""


class EngineMismatchError(EngineError):
    """An engine was built for another GPU, TensorRT version, ONNX file, precision or shape."""


class AccuracyGateError(EngineError):
    """A freshly built engine disagrees with the ONNX Runtime float32 reference beyond tolerance."""


class BackendUnavailableError(ConfigError):
    """A requested inference backend or execution provider is not available on this machine."""
