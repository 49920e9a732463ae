"""Exceptions with messages meant for users: the CLI prints them as one line, the node logs them."""


class DapError(Exception):
    """Base class for every error dap_ros reports to a user."""


class ConfigError(DapError, ValueError):
    """An architecture config, parameter or option is missing or out of range."""


class CameraFileError(ConfigError):
    """A camera file (lens calibration, self mask) is missing or invalid."""


class CheckpointError(DapError):
    """A checkpoint file is missing, unreadable, truncated or for another architecture."""


class ImageError(DapError, ValueError):
    """An input image cannot be used (unreadable, empty, wrong aspect ratio, unknown encoding)."""


class BackendUnavailableError(ConfigError):
    """A requested inference backend or execution provider is not available on this machine."""


class ExportError(DapError):
    """ONNX export failed or the exported graph failed its verification."""


class EngineError(DapError):
    """A TensorRT engine cannot be built, read or used."""


class EngineMismatchError(EngineError):
    """An engine was built for another GPU, TensorRT version, ONNX file, precision or shape."""


class AccuracyGateError(EngineError):
    """A freshly built engine disagrees with the ONNX Runtime float32 reference beyond tolerance."""
