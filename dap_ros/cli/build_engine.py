"""``dap-ros build-engine``: exported ONNX -> TensorRT engine + sidecar, behind an accuracy gate."""
from __future__ import annotations

import argparse
from pathlib import Path

from dap_ros.errors import DapError


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser(
        "build-engine",
        help="build a TensorRT engine (strongly typed) from an exported ONNX graph, on the target machine",
        description=(
            "Builds OUTPUT and OUTPUT.json (sidecar: ONNX sha256, TensorRT version, GPU, compute capability, "
            "precision, shapes). The engine is run on the reference stored by export-onnx and compared with "
            "ONNX Runtime float32; beyond tolerance nothing is written. Engines only run on the TensorRT "
            "version and GPU model that built them."
        ),
    )
    parser.add_argument("--onnx", type=Path, required=True, help="graph from dap-ros export-onnx (--fp16 for fp16)")
    parser.add_argument("--output", "-o", type=Path, required=True, help="the .engine file to write")
    parser.add_argument("--precision", choices=("fp16", "fp32"),
                        help="check that the graph has this precision (it decides: strongly typed build)")
    parser.add_argument("--workspace-gb", type=float, default=4.0, help="builder workspace limit (default 4 GB)")
    parser.add_argument("--timing-cache", type=Path, help="timing cache file: read if present, updated after the build")
    parser.add_argument("--reference", type=Path, help="reference npz (default: ONNX.ref.npz from export-onnx)")
    parser.add_argument("--no-accuracy-gate", action="store_true", help="skip the accuracy check (not recommended)")
    parser.add_argument("--device", type=int, default=0, help="CUDA device index (default 0)")
    parser.add_argument("--force", action="store_true", help="overwrite OUTPUT")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from dap_ros.deploy.trt_build import build_engine

    if not args.onnx.is_file():
        raise DapError(f"ONNX file not found: {args.onnx}")
    if args.output.exists() and not args.force:
        raise DapError(f"{args.output} exists; pass --force to overwrite")
    if args.workspace_gb <= 0:
        raise DapError(f"--workspace-gb must be > 0, got {args.workspace_gb}")
    sidecar = build_engine(
        args.onnx,
        args.output,
        precision=args.precision,
        workspace_gb=args.workspace_gb,
        timing_cache=args.timing_cache,
        reference=args.reference,
        accuracy_gate=not args.no_accuracy_gate,
        device_index=args.device,
        log=print,
    )
    print(f"engine {args.output}: {sidecar.precision}, TensorRT {sidecar.tensorrt_version}, {sidecar.gpu_name} "
          f"(sm {sidecar.compute_capability}), built in {sidecar.build_seconds:.0f} s")
    return 0
