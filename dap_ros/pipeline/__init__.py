"""Image-to-depth pipeline shared by the CLI, the ROS node, bag evaluation, the demo and the
benchmarks: ``DepthPredictor`` = pre-processing + a runner (``dap_ros.runtime``) + post-processing."""
from dap_ros.pipeline.loading import Weights
from dap_ros.pipeline.postprocess import postprocess
from dap_ros.pipeline.predictor import DepthPredictor, DepthResult
from dap_ros.pipeline.preprocess import Preprocessor

__all__ = ["DepthPredictor", "DepthResult", "Preprocessor", "Weights", "postprocess"]
