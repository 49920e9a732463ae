"""Entry point of the ``dap-ros`` command."""
from __future__ import annotations

import argparse
import logging
import sys

from dap_ros import __version__
from dap_ros.cli import (
    bench,
    build_engine,
    demo,
    eval_bag,
    eval_dataset,
    export_onnx,
    fisheye_calibrate,
    fisheye_to_erp,
    infer,
    make_bag,
    make_self_mask,
)
from dap_ros.errors import DapError

SUBCOMMANDS = (demo, infer, eval_bag, eval_dataset, make_bag, fisheye_to_erp, fisheye_calibrate, make_self_mask,
               export_onnx, build_engine, bench)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="dap-ros",
        description="Metric 360-degree depth from equirectangular images with the DAP model.",
    )
    parser.add_argument("--version", action="version", version=f"dap-ros {__version__}")
    parser.add_argument("--verbose", "-v", action="store_true", help="debug logging")
    subparsers = parser.add_subparsers(title="commands", required=True, metavar="COMMAND")
    for module in SUBCOMMANDS:
        module.add_parser(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO, format="[%(levelname)s] %(message)s")
    try:
        return int(args.run(args) or 0)
    except DapError as exc:
        print(f"dap-ros: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("dap-ros: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
