"""Exceptions with messages meant for users: the CLI prints them as one line, the node logs them."""


class DapError(Exception):
    """Base class for every error dap_ros reports to a user."""


class ConfigError(DapError, ValueError):
    """An architecture config, parameter or option is missing or out of range."""


class CheckpointError(DapError):
    """A checkpoint file is missing, unreadable, truncated or for another architecture."""


class ImageError(DapError, ValueError):
    """An input image cannot be used (unreadable, empty, wrong aspect ratio, unknown encoding)."""
