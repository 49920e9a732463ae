"""``dap-ros export-onnx``: the DAP network -> a verified ONNX graph (+ reference outputs)."""
from __future__ import annotations

import argparse
import logging
from pathlib import Path

from dap_ros.cli.common import check_output_file, parse_size
from dap_ros.config import preset_names
from dap_ros.errors import DapError
from dap_ros.settings import NORMALIZATIONS

LOG = logging.getLogger("dap_ros")


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser(
        "export-onnx",
        help="export the network to ONNX (verified: checker, shapes, ONNX Runtime parity, TensorRT ops)",
        description=(
            "Writes OUTPUT (input 'image' float32 (B,3,H,W) normalized; outputs pred_depth, pred_mask "
            "(B,1,H,W), official units) and OUTPUT.ref.npz (fixed input + ONNX Runtime float32 outputs, "
            "used by build-engine's accuracy gate). --fp16 writes the mixed-precision graph for strongly "
            "typed TensorRT builds (fp16 compute, fp32 LayerNorm/softmax/RoPE/residual sums, fp32 I/O); "
            "--fp16 --fp32-heads also keeps both DPT heads in fp32 (fp16 backbone only; for targets where fp16 "
            "heads were reported to drift in metric scale, such as Jetson Orin NX with TensorRT 10.3)."
        ),
    )
    parser.add_argument("--checkpoint", help="DAP weights (model.pth / .safetensors)")
    parser.add_argument("--model-config", default="vitl", help=f"preset ({', '.join(preset_names())}) or JSON file")
    parser.add_argument("--random-weights", action="store_true", help="export random weights (testing only)")
    parser.add_argument("--output", "-o", type=Path, required=True, help="the .onnx file to write")
    parser.add_argument("--height", type=int, default=512, help="network input height (default 512)")
    parser.add_argument("--width", type=int, default=1024, help="network input width (default 1024)")
    parser.add_argument("--input-size", type=parse_size, metavar="HxW", help="alternative to --height/--width")
    parser.add_argument("--opset", type=int, default=18, help="ONNX opset (default 18; >= 17)")
    parser.add_argument("--batch", type=int, default=1, help="static batch, or the largest with --dynamic-batch")
    parser.add_argument("--dynamic-batch", action="store_true", help="batch dimension 1..--batch")
    parser.add_argument("--fp16", action="store_true", help="mixed-precision graph (fp16 compute, fp32 islands)")
    parser.add_argument("--fp32-heads", action="store_true",
                        help="with --fp16: compute the depth and mask heads in fp32 (fp16 backbone only); "
                             "recorded as fp32_heads in the graph metadata")
    parser.add_argument("--keep-fp32", action="store_true",
                        help="with --fp16: also keep the float32 graph (F.fp32.onnx)")
    parser.add_argument("--uint8-input", action="store_true",
                        help="graph input 'image_u8' uint8 (B,H,W,3) RGB at the network size, normalized in the graph")
    parser.add_argument("--normalization", default="imagenet", choices=NORMALIZATIONS)
    parser.add_argument("--force", action="store_true", help="overwrite OUTPUT")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from dap_ros.deploy.onnx_export import export_onnx
    from dap_ros.model import WEIGHTS_HINT, load_model

    height, width = args.input_size or (args.height, args.width)
    if args.fp32_heads and not args.fp16:
        raise DapError("--fp32-heads needs --fp16 (a float32 graph has fp32 heads already)")
    check_output_file(args.output, "--output")
    if args.output.exists() and not args.force:
        raise DapError(f"{args.output} exists; pass --force to overwrite")
    if not args.checkpoint and not args.random_weights:
        raise DapError(f"no --checkpoint given ({WEIGHTS_HINT}); --random-weights exports an untrained network")
    if args.checkpoint and not Path(args.checkpoint).is_file():
        raise DapError(f"checkpoint not found: {args.checkpoint}")
    model = load_model(args.checkpoint or None, args.model_config)
    result = export_onnx(
        model,
        args.output,
        height=height,
        width=width,
        batch=args.batch,
        dynamic_batch=args.dynamic_batch,
        opset=args.opset,
        precision="fp16" if args.fp16 else "fp32",
        uint8_input=args.uint8_input,
        normalization=args.normalization,
        keep_fp32=args.keep_fp32,
        fp32_heads=args.fp32_heads,
        metadata={"checkpoint": Path(args.checkpoint).name if args.checkpoint else "RANDOM"},
        log=print,
    )
    ops = ", ".join(f"{op} {n}" for op, n in result.op_counts.items())
    print(f"op types ({len(result.op_counts)}, all supported by the TensorRT ONNX parser, no If/Loop/Scan): {ops}")
    fp32 = result.fp32_parity or result.parity
    print(f"ORT CPU float32 vs PyTorch float32: max|diff| pred_depth {fp32['pred_depth_max_abs']:.3e}, "
          f"pred_mask {fp32['pred_mask_max_abs']:.3e}")
    if result.precision == "fp16":
        p = result.parity
        kind = "mixed fp16 with fp32 heads" if result.fp32_heads else "mixed fp16"
        print(f"ORT CPU {kind} vs PyTorch float32: max|diff| pred_depth {p['pred_depth_max_abs']:.3e}, "
              f"pred_mask {p['pred_mask_max_abs']:.3e}, median rel depth {p['depth_median_rel']:.3e}, "
              f"mask agreement {p['mask_agreement']:.4f}")
    print(f"wrote {result.path} ({result.size_bytes / 2**20:.1f} MiB, {result.precision}, opset {result.opset}, "
          f"input {result.input_name} {list(result.input_shape)}) and {result.reference.name}; "
          f"export {result.export_seconds:.1f} s")
    return 0
