"""Options shared by sub-commands that run the model."""
from __future__ import annotations

import argparse
import re

from dap_ros.config import preset_names
from dap_ros.pipeline import BACKENDS, NORMALIZATIONS, PRECISIONS


def parse_size(text: str) -> tuple[int, int]:
    """'512x1024' (height x width) -> (512, 1024)."""
    match = re.fullmatch(r"\s*(\d+)\s*[xX]\s*(\d+)\s*", text)
    if not match:
        raise argparse.ArgumentTypeError(f"expected HEIGHTxWIDTH such as 512x1024, got {text!r}")
    return int(match[1]), int(match[2])


def add_model_options(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("model")
    group.add_argument(
        "--checkpoint",
        help="DAP weights: the released model.pth, a copy, or a .safetensors file "
        "(default: the embedded demo model, synthetic-only)",
    )
    group.add_argument(
        "--model-config",
        default="vitl",
        help=f"architecture: a preset ({', '.join(preset_names())}) or a JSON file (default: vitl)",
    )
    group.add_argument(
        "--random-weights",
        action="store_true",
        help="run without a checkpoint on randomly initialized weights (for trying the tool; depth is meaningless)",
    )
    group.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N (default: cpu)")
    group.add_argument("--precision", default="fp32", choices=sorted(PRECISIONS), help="compute precision")
    group.add_argument(
        "--input-size",
        type=parse_size,
        default=None,
        metavar="HxW",
        help="network input size, 2:1, multiples of 16 (default: the model's native size, 512x1024 for DAP)",
    )
    group.add_argument("--normalization", default="imagenet", choices=NORMALIZATIONS)
    group.add_argument(
        "--mask-threshold",
        type=float,
        default=0.5,
        help="a pixel is in range where 1 - pred_mask > this (official rule: 0.5)",
    )
    group.add_argument("--max-range", type=float, default=100.0, help="ranges beyond this (m) count as out of range")


def add_backend_options(parser: argparse.ArgumentParser) -> None:
    """--backend and what the deployment backends need (docs/deployment.md). Separate from
    add_model_options so that sub-commands with their own --backend keep working;
    predictor_from_args falls back to the torch backend when these options are absent."""
    group = parser.add_argument_group("backend")
    group.add_argument(
        "--backend",
        default="torch",
        choices=BACKENDS,
        help="torch (default), onnxruntime (--onnx), tensorrt (--engine or --onnx), auto (best available, logged)",
    )
    group.add_argument("--onnx", help="exported graph (dap-ros export-onnx) for onnxruntime / to build a TensorRT engine")
    group.add_argument("--engine", help="TensorRT engine (dap-ros build-engine); default: the engine cache")
    group.add_argument("--build-engine", action="store_true", help="tensorrt: build a missing engine from --onnx")
    group.add_argument("--cuda-graph", action="store_true", help="replay the network as a CUDA graph (torch, tensorrt)")
    group.add_argument(
        "--compile",
        action="store_true",
        help="torch: torch.compile the network (opt-in: minutes of compilation before the first frame)",
    )


def predictor_from_args(args: argparse.Namespace):
    from dap_ros.pipeline import DepthPredictor

    return DepthPredictor.create(
        args.checkpoint,
        args.model_config,
        device=args.device,
        precision=args.precision,
        input_size=args.input_size,
        normalization=args.normalization,
        mask_threshold=args.mask_threshold,
        max_range=args.max_range,
        allow_random=args.random_weights,
        backend=getattr(args, "backend", "torch"),
        onnx=getattr(args, "onnx", None),
        engine=getattr(args, "engine", None),
        cuda_graph=getattr(args, "cuda_graph", False),
        compile=getattr(args, "compile", False),
        build_engine=getattr(args, "build_engine", False),
    )
