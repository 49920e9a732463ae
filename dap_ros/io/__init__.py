"""File I/O: images (any mode -> RGB uint8), EXR depth, range PNG/NPY, colourised depth, PLY."""
from dap_ros.io.colorize import colorize_range, to_bgr, turbo_lut
from dap_ros.io.depth_files import (
    load_range_png_mm,
    save_mask_png,
    save_range_npy,
    save_range_png_mm,
)
from dap_ros.io.exr import read_exr_depth
from dap_ros.io.images import check_equirectangular, load_rgb, pil_to_rgb
from dap_ros.io.ply import read_ply, write_ply

__all__ = [
    "load_rgb",
    "pil_to_rgb",
    "check_equirectangular",
    "read_exr_depth",
    "save_range_npy",
    "save_range_png_mm",
    "load_range_png_mm",
    "save_mask_png",
    "colorize_range",
    "turbo_lut",
    "to_bgr",
    "write_ply",
    "read_ply",
]
