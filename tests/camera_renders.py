"""One synthetic scene rendered the ways real cameras see it: a level panorama, the panorama of a
tilted or upside-down camera, and dual-fisheye frames (the training data generator's ray caster,
fed with the rays of each camera model). Shared by the camera and node tests."""
from __future__ import annotations

import numpy as np
import torch

from dap_ros.geometry import ray_directions
from dap_ros.geometry.fisheye import FisheyeCalibration
from training.data.synthetic import Scene, make_scene, render_rays, to_srgb_uint8

SEED = 31


def scene(seed: int = SEED, kind: str = "indoor") -> Scene:
    return make_scene(seed, kind)


def render(scene: Scene, rays: np.ndarray, pixel_angle: float) -> tuple[np.ndarray, np.ndarray]:
    """Level-frame unit rays (..., 3) -> (sRGB uint8 (..., 3), range float32 (...), +inf = sky)."""
    flat = torch.from_numpy(np.ascontiguousarray(rays, dtype=np.float64).reshape(-1, 3))
    linear, t = render_rays(scene, flat, pixel_angle=pixel_angle, shadows=False)
    rgb = to_srgb_uint8(linear, scene.exposure).numpy().reshape(rays.shape)
    return rgb, t.numpy().astype(np.float32).reshape(rays.shape[:-1])


def panorama(scene: Scene, height: int, width: int, mount: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """The panorama of a camera whose orientation in the level frame is ``mount`` (camera ray d is
    mount · d there): (rgb, range)."""
    rays = ray_directions(height, width).astype(np.float64)
    if mount is not None:
        rays = rays @ mount.T
    return render(scene, rays, np.pi / height)


def fisheye_frame(scene: Scene, calibration: FisheyeCalibration, mount: np.ndarray | None = None) -> np.ndarray:
    """The side_by_side / top_bottom frame (or, for two_topics, the list of two lens images) that
    ``calibration``'s lenses see; black outside the image circles."""
    width, height = calibration.part_size
    images = []
    for lens in calibration.lenses:
        u, v = np.meshgrid(np.arange(width, dtype=np.float64), np.arange(height, dtype=np.float64))
        rays, theta = lens.unproject(u, v)
        if mount is not None:
            rays = rays @ mount.T
        rgb, _ = render(scene, rays, 1.0 / lens.focal)
        rgb[theta > lens.half_fov] = 0
        images.append(rgb)
    if calibration.layout == "two_topics":
        return images
    return np.concatenate(images, axis=1 if calibration.layout == "side_by_side" else 0)


def calibration(model: str = "equidistant", layout: str = "side_by_side", size: int = 200,
                fov: float = 200.0) -> FisheyeCalibration:
    """Two back-to-back lenses whose image circles fill ``size`` x ``size`` parts."""
    focal = (size / 2 - 2) / np.radians(fov / 2)
    lens = {"model": model, "center": [size / 2 - 0.5, size / 2 - 0.5], "focal": float(focal), "fov_deg": fov}
    if model == "kannala_brandt":
        lens["k"] = [0.02, -0.004, 0.0, 0.0]
        theta = np.radians(fov / 2)
        lens["focal"] = float((size / 2 - 2) / (theta * (1 + 0.02 * theta**2 - 0.004 * theta**4)))
    image_size = {"side_by_side": [2 * size, size], "top_bottom": [size, 2 * size], "two_topics": [size, size]}[layout]
    return FisheyeCalibration.from_dict({"layout": layout, "image_size": image_size, "lenses": [
        {**lens, "rpy_deg": [0, 0, 0]}, {**lens, "rpy_deg": [0, 0, 180]}]}, "test calibration")


def psnr(a: np.ndarray, b: np.ndarray, where: np.ndarray) -> float:
    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64))[where] ** 2))
    return float("inf") if mse == 0 else 10 * np.log10(255.0**2 / mse)
