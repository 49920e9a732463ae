"""Image-to-depth pipeline shared by the CLI, the ROS node and bag evaluation."""
from dap_ros.pipeline.backends import BACKENDS, Capabilities, choose_backend, detect_capabilities
from dap_ros.pipeline.postprocess import OFFICIAL_DEPTH_SCALE_M, postprocess
from dap_ros.pipeline.predictor import (
    PRECISIONS,
    DepthPredictor,
    DepthResult,
    resolve_device,
    resolve_precision,
)
from dap_ros.pipeline.preprocess import IMAGENET_MEAN, IMAGENET_STD, NORMALIZATIONS, Preprocessor

__all__ = [
    "BACKENDS",
    "Capabilities",
    "choose_backend",
    "detect_capabilities",
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "NORMALIZATIONS",
    "OFFICIAL_DEPTH_SCALE_M",
    "PRECISIONS",
    "DepthPredictor",
    "DepthResult",
    "Preprocessor",
    "postprocess",
    "resolve_device",
    "resolve_precision",
]
