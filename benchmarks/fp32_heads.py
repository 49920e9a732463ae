#!/usr/bin/env python3
"""fp16 with fp32 DPT heads (``dap-ros export-onnx --fp16 --fp32-heads``): accuracy and FLOP shares.

Accuracy: exports three graphs of one model into a temporary folder with ``export_onnx``: float32,
the mixed-precision fp16 graph (``--fp16``), and fp16 with fp32 heads (``--fp16 --fp32-heads``).
It runs them on ONNX Runtime (CPU) and compares each fp16 graph with the float32 graph
(``dap_ros.deploy.accuracy.compare_outputs``) on the bundled sample panorama and on each ``--image``.
The default model is the packaged embedded demo model at its training size; ``--config`` takes a
preset (vitl, ...) with random weights instead.

FLOPs: the float32 network of ``--flops-config`` (default vitl) at ``--flops-size`` (default
512x1024) runs on the meta device (no weights, no memory). torch.utils.flop_counter gives the
matrix-multiply / convolution FLOPs per module (backbone vs the two heads). A dispatch mode then
runs the two mixed-precision copies and counts the same FLOPs by the element type they are computed
in, plus the elements written by every other (non-view) op per type: the backbone's fp32 islands
(LayerNorm, softmax, RoPE, residual sums) are elementwise work of that kind, not GEMM FLOPs.

Usage:
    python benchmarks/fp32_heads.py
    python benchmarks/fp32_heads.py --image ../shared/reference/real_sample/matterport3d_rgb.png
    python benchmarks/fp32_heads.py --config vitl --size 256x512    # random ViT-L weights: slow

Results: docs/benchmarks.md, section "fp16 with fp32 DPT heads".
"""
from __future__ import annotations

import argparse
import platform
import re
import shlex
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import numpy as np  # noqa: E402
import torch  # noqa: E402
from cpu_inference import cpu_model  # noqa: E402 - the sibling benchmark (this script's folder is on sys.path)
from torch import Tensor, nn  # noqa: E402
from torch.utils._python_dispatch import TorchDispatchMode  # noqa: E402
from torch.utils._pytree import tree_leaves  # noqa: E402
from torch.utils.flop_counter import FlopCounterMode, flop_registry  # noqa: E402

from dap_ros.deploy.accuracy import compare_outputs  # noqa: E402
from dap_ros.deploy.mixed_precision import mixed_precision_copy  # noqa: E402
from dap_ros.deploy.onnx_export import SAMPLE_IMAGE, export_onnx, normalize_frames, run_onnxruntime  # noqa: E402
from dap_ros.model import build_model, load_model  # noqa: E402
from dap_ros.model.embedded import embedded_model  # noqa: E402
from dap_ros.settings import DEPTH_SCALE_M  # noqa: E402

VARIANTS = ("fp16", "fp16 + fp32 heads")
HEADS = ("depth_head", "mask_head")


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # one line on stderr, exit status 2
        sys.stderr.write(f"{self.prog}: error: {message}\n")
        raise SystemExit(2)


def _size(text: str) -> tuple[int, int]:
    m = re.fullmatch(r"\s*(\d+)\s*[xX]\s*(\d+)\s*", text)
    if not m or int(m[1]) <= 0 or int(m[2]) <= 0 or int(m[1]) % 16 or int(m[2]) % 16:
        raise argparse.ArgumentTypeError(f"expected HxW, positive multiples of 16 such as 512x1024, got {text!r}")
    return int(m[1]), int(m[2])


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = _Parser(prog="fp32_heads.py", description=__doc__.split("\n\n")[0])
    p.add_argument("--config", default="embedded",
                   help="'embedded' (the packaged demo model, default) or a preset / JSON config with random weights")
    p.add_argument("--size", type=_size, metavar="HxW",
                   help="network input size (default: the embedded model's training size, else 512x1024)")
    p.add_argument("--image", type=Path, action="append", default=[],
                   help="another RGB panorama to compare on (repeatable); the bundled sample is always used")
    p.add_argument("--flops-config", default="vitl", help="preset for the FLOP count (default vitl)")
    p.add_argument("--flops-size", type=_size, default=(512, 1024), metavar="HxW", help="default 512x1024")
    p.add_argument("--threads", type=int, default=0, help="ONNX Runtime intra-op threads (default: its own)")
    p.add_argument("--seed", type=int, default=0, help="seed of random weights (default 0)")
    args = p.parse_args(argv)
    for image in args.image:
        if not image.is_file():
            p.error(f"--image not found: {image}")
    return args


def load_network(config: str, seed: int) -> tuple[nn.Module, tuple[int, int], str]:
    """(float32 model, its default input size, a label)."""
    if config == "embedded":
        embedded = embedded_model()
        if embedded is None:
            raise SystemExit("fp32_heads.py: error: this installation has no embedded model; pass --config vitl")
        return load_model(embedded.weights, embedded.config), embedded.input_size, "embedded demo model"
    torch.manual_seed(seed)
    return load_model(None, config), (512, 1024), f"{config}, random weights (seed {seed})"


def export_graphs(model: nn.Module, size: tuple[int, int], folder: Path) -> dict[str, Path]:
    """The float32 graph and the two fp16 graphs, each verified by export_onnx."""
    h, w = size
    quiet = {"height": h, "width": w, "log": lambda message: None}
    plain = export_onnx(model, folder / "fp16.onnx", precision="fp16", keep_fp32=True, **quiet)
    heads = export_onnx(model, folder / "fp16_heads.onnx", precision="fp16", fp32_heads=True, **quiet)
    assert heads.fp32_heads and not plain.fp32_heads
    return {"fp32": folder / "fp16.fp32.onnx", VARIANTS[0]: plain.path, VARIANTS[1]: heads.path}


def load_frame(path: Path, size: tuple[int, int]) -> np.ndarray:
    """(1, H, W, 3) uint8 RGB at the network size (PIL bilinear, as the export's reference image)."""
    from PIL import Image

    with Image.open(path) as image:
        rgb = image.convert("RGB").resize((size[1], size[0]), Image.BILINEAR)
    return np.asarray(rgb, dtype=np.uint8)[None].copy()


def compare_on_image(graphs: dict[str, Path], frame: np.ndarray, threads: int) -> dict[str, dict[str, float]]:
    """{variant: metrics of its ORT outputs against the float32 graph's}."""
    feed = normalize_frames(frame).numpy()
    outputs = {name: run_onnxruntime(path, feed, threads) for name, path in graphs.items()}
    return {name: compare_outputs(outputs[name], outputs["fp32"]) for name in VARIANTS}


def module_flops(config: str, size: tuple[int, int]) -> tuple[nn.Module, Tensor, dict[str, float]]:
    """The float32 network on the meta device, its input, and GEMM/conv FLOPs per part."""
    with torch.device("meta"):
        model = build_model(config).eval()
    x = torch.empty(1, 3, *size, device="meta")
    with torch.no_grad(), FlopCounterMode(display=False, depth=None) as counter:
        model(x)
    counts = counter.get_flop_counts()
    root = type(model).__name__
    parts = {head: float(sum(counts.get(f"{root}.{head}", {}).values())) for head in HEADS}
    total = float(counter.get_total_flops())
    # The backbone is entered through a method, not forward(): it is what the heads leave.
    return model, x, {"backbone + adapter": total - sum(parts.values()), **parts, "total": total}


class DtypeWork(TorchDispatchMode):
    """GEMM/conv FLOPs by the element type they are computed in, and the elements written by all
    other non-view ops (elementwise, normalization, casts, copies) by output element type."""

    def __init__(self) -> None:
        super().__init__()
        self.gemm: Counter = Counter()
        self.other: Counter = Counter()

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        out = func(*args, **kwargs)
        packet = func._overloadpacket
        if packet in flop_registry:
            dtype = next(a.dtype for a in args if isinstance(a, Tensor))
            self.gemm[dtype] += flop_registry[packet](*args, **kwargs, out_val=out)
        elif not func.is_view:
            for value in tree_leaves(out):
                if isinstance(value, Tensor) and value.is_floating_point():
                    self.other[value.dtype] += value.numel()
        return out


def dtype_work(model: nn.Module, x: Tensor) -> DtypeWork:
    work = DtypeWork()
    with torch.no_grad(), work:
        model(x)
    return work


def _fmt(value: float, digits: int = 2) -> str:
    return f"{value:.{digits}e}"


def print_accuracy(results: dict[str, dict[str, dict[str, float]]]) -> None:
    print("| image | graph vs fp32 graph (ORT CPU) | median rel depth err | p99 rel depth err | "
          "mask agreement | max abs depth err (m) | max abs mask err |")
    print("|---|---|---:|---:|---:|---:|---:|")
    for image, by_variant in results.items():
        for name, m in by_variant.items():
            print(f"| {image} | {name} | {_fmt(m['depth_median_rel'])} | {_fmt(m['depth_p99_rel'])} | "
                  f"{m['mask_agreement']:.5f} | {_fmt(m['pred_depth_max_abs'] * DEPTH_SCALE_M)} | "
                  f"{_fmt(m['pred_mask_max_abs'])} |")


def print_flops(parts: dict[str, float], work: dict[str, DtypeWork]) -> None:
    total = parts["total"]
    print("| part (float32 network) | GFLOP | share |")
    print("|---|---:|---:|")
    for name, flops in parts.items():
        print(f"| {name} | {flops / 1e9:,.1f} | {100 * flops / total:.2f} % |")
    print()
    print("| recipe | fp16 GFLOP | fp32 GFLOP | fp32 share of GEMM/conv FLOPs | "
          "other ops: fp32 / fp16 elements written (G) |")
    print("|---|---:|---:|---:|---:|")
    for name, w in work.items():
        f16, f32 = w.gemm[torch.float16], w.gemm[torch.float32]
        print(f"| {name} | {f16 / 1e9:,.1f} | {f32 / 1e9:,.2f} | {100 * f32 / (f16 + f32):.3f} % | "
              f"{w.other[torch.float32] / 1e9:.2f} / {w.other[torch.float16] / 1e9:.2f} |")


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    import onnxruntime

    print(f"command: python benchmarks/fp32_heads.py {shlex.join(sys.argv[1:] if argv is None else argv)}")
    print(f"CPU '{cpu_model()}', torch {torch.__version__}, onnxruntime {onnxruntime.__version__}, "
          f"python {platform.python_version()}, {time.strftime('%Y-%m-%d')}")
    model, default_size, label = load_network(args.config, args.seed)
    size = args.size or default_size
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="fp32_heads_") as tmp:
        graphs = export_graphs(model, size, Path(tmp))
        export_s = time.perf_counter() - t0
        images = [SAMPLE_IMAGE, *args.image]
        results = {image.name: compare_on_image(graphs, load_frame(image, size), args.threads) for image in images}
    print(f"model: {label}, {size[0]}x{size[1]}; 3 graphs exported and verified in {export_s:.0f} s, "
          f"compared in {time.perf_counter() - t0 - export_s:.0f} s")
    print()
    print_accuracy(results)

    t1 = time.perf_counter()
    meta_model, x, parts = module_flops(args.flops_config, args.flops_size)
    work = {
        "fp32 graph": dtype_work(meta_model, x),
        "--fp16": dtype_work(mixed_precision_copy(meta_model), x),
        "--fp16 --fp32-heads": dtype_work(mixed_precision_copy(meta_model, fp32_heads=True), x),
    }
    print()
    print(f"FLOPs: {args.flops_config} at {args.flops_size[0]}x{args.flops_size[1]}, batch 1, meta device "
          f"({time.perf_counter() - t1:.0f} s); GEMM/conv FLOPs as torch.utils.flop_counter counts them "
          "(2 per multiply-add)")
    print()
    print_flops(parts, work)
    return 0


if __name__ == "__main__":
    sys.exit(main())
