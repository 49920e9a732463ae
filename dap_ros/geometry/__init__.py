"""ERP geometry (docs/conventions.md): ray tables, range -> points, 360-degree laser scans.

Importing this package does not import torch.
"""
from dap_ros.geometry.erp import (
    as_range_image,
    azimuth_elevation,
    colored_points,
    erp_coordinates,
    range_to_points,
    ray_directions,
    ray_directions_torch,
)
from dap_ros.geometry.scan import MAX_BEAMS_PER_COLUMN, LaserScanSpec, laser_scan, scan_angles

__all__ = [
    "as_range_image",
    "azimuth_elevation",
    "erp_coordinates",
    "ray_directions",
    "ray_directions_torch",
    "range_to_points",
    "colored_points",
    "MAX_BEAMS_PER_COLUMN",
    "LaserScanSpec",
    "laser_scan",
    "scan_angles",
]
