"""Synthetic generator: exact ray-cast ranges, beyond mask == sky, determinism, camera placement."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from dap_ros.geometry import ray_directions
from training.data import build_dataset, collate
from training.data.synthetic import (
    Material,
    Primitive,
    Scene,
    make_scene,
    render_panorama,
    render_rays,
    render_scene,
)


def _room_scene(extra=(), yaw=0.3):
    mats = [Material("checker", (0.8, 0.8, 0.8), (0.2, 0.2, 0.2), 0.5), Material("plain", (0.5, 0.4, 0.3))]
    room = Primitive("room", lo=(0.0, 0.0, 0.0), hi=(4.0, 3.0, 2.5), face_materials=(0, 0, 0, 0, 0, 0),
                     casts_shadow=False)
    return Scene("indoor", (1.0, 1.0, 1.2), yaw, [room, *extra], mats, light_pos=(2.0, 1.5, 2.3))


def _ranges(scene, dirs):
    d = torch.tensor(dirs, dtype=torch.float64)
    d = d / d.norm(dim=1, keepdim=True)
    _, t = render_rays(scene, d)
    return t.numpy()


def test_room_ranges_along_axes_are_exact():
    scene = _room_scene(yaw=0.0)
    t = _ranges(scene, [(1, 0, 0), (-1, 0, 0), (0, 1, 0), (0, -1, 0), (0, 0, 1), (0, 0, -1), (3, 2, 0)])
    np.testing.assert_allclose(t[:6], [3.0, 1.0, 2.0, 1.0, 1.3, 1.2], rtol=0, atol=1e-12)
    np.testing.assert_allclose(t[6], math.hypot(3.0, 2.0), atol=1e-12)  # exactly into the corner


def test_room_ranges_are_exact_for_every_erp_pixel():
    """Hit points o + t d of all pixels lie exactly on a face of the room (analytic check)."""
    scene = _room_scene(yaw=0.3)
    h, w = 32, 64
    out = render_scene(scene, h, w, dtype=torch.float64, noise=0)
    rng_m = out["range_m"].astype(np.float64)
    c, s = math.cos(0.3), math.sin(0.3)
    body = ray_directions(h, w).astype(np.float64)
    body /= np.linalg.norm(body, axis=-1, keepdims=True)
    world = np.stack([c * body[..., 0] - s * body[..., 1], s * body[..., 0] + c * body[..., 1], body[..., 2]], -1)
    # independent analytic answer: smallest positive distance to the six planes
    o = np.array(scene.camera)
    cand = []
    for axis in range(3):
        for bound in (0.0, (4.0, 3.0, 2.5)[axis]):
            with np.errstate(divide="ignore", invalid="ignore"):
                tt = (bound - o[axis]) / world[..., axis]
            cand.append(np.where(tt > 0, tt, np.inf))
    expected = np.min(cand, axis=0)
    np.testing.assert_allclose(rng_m, expected, rtol=2e-7)  # float32 output of float64 casting
    assert not out["beyond"].any()
    p = o + expected[..., None] * world
    on_face = np.isclose(p, 0.0, atol=1e-9) | np.isclose(p, (4.0, 3.0, 2.5), atol=1e-9)
    assert on_face.any(-1).all()


def test_primitive_intersections_are_exact():
    extra = [
        Primitive("sphere", 1, center=(3.0, 1.0, 1.2), radius=0.5),
        Primitive("cylinder", 1, center=(1.0, 2.5), radius=0.25, z0=0.0, z1=2.5),
        Primitive("cylinder", 1, center=(0.4, 1.0), radius=0.2, z0=0.0, z1=0.8),
        Primitive("box", 1, lo=(0.5, 0.0, 0.0), hi=(1.5, 0.5, 0.8)),
    ]
    scene = _room_scene(extra, yaw=0.0)
    t = _ranges(scene, [(1, 0, 0), (0, 1, 0), (0, -0.6, -0.4), (-0.6, 0, -0.4), (0, -1, 0)])
    assert t[0] == pytest.approx(1.5, abs=1e-12)  # sphere front at x = 2.5
    assert t[1] == pytest.approx(1.25, abs=1e-12)  # cylinder side at y = 2.25
    assert t[2] == pytest.approx(math.hypot(0.6, 0.4), abs=1e-12)  # box top z = 0.8 at y = 0.4
    # short cylinder's top cap: z = 0.8 reached at parameter 1 -> point (0.4, 1, 0.8), its cap centre
    assert t[3] == pytest.approx(math.hypot(0.6, 0.4), abs=1e-12)
    assert t[4] == pytest.approx(1.0, abs=1e-12)  # passes over the box (top at 0.8 < 1.2): wall y = 0


def test_outdoor_ground_and_sky():
    scene = make_scene(7, "outdoor")
    t = _ranges(scene, [(0, 0, -1), (0, 0, 1)])
    assert t[0] == pytest.approx(scene.camera[2], abs=1e-12)
    assert math.isinf(t[1])


@pytest.mark.parametrize("seed", [0, 5, 11])
def test_beyond_mask_is_sky_or_beyond_100m(seed):
    out = render_panorama(seed, 32, 64, "outdoor")
    r = out["range_m"]
    assert out["beyond"].dtype == np.bool_
    np.testing.assert_array_equal(out["beyond"], np.isinf(r) | (r > 100.0))
    assert np.isinf(r[:8]).mean() > 0.5  # the top rows are mostly sky
    assert np.isfinite(r[-8:]).all()  # the ground is everywhere below
    assert (r[np.isfinite(r)] > 0).all()
    assert out["rgb"].dtype == np.uint8 and out["rgb"].shape == (32, 64, 3)


def test_determinism_and_seed_dependence():
    a = render_panorama(3, 24, 48, "random")
    b = render_panorama(3, 24, 48, "random")
    c = render_panorama(4, 24, 48, "random")
    np.testing.assert_array_equal(a["rgb"], b["rgb"])
    np.testing.assert_array_equal(a["range_m"], b["range_m"])
    assert a["kind"] == b["kind"]
    assert not np.array_equal(a["range_m"], c["range_m"])


def test_camera_inside_room_and_outside_furniture():
    for seed in range(40):
        scene = make_scene(seed, "indoor")
        room = scene.room
        cam = np.array(scene.camera)
        assert (cam > np.array(room.lo)).all() and (cam < np.array(room.hi)).all()
        size = np.array(room.hi) - np.array(room.lo)
        assert (size[:2] >= 2.0).all() and (size[:2] <= 15.0).all()
        for p in scene.primitives[1:]:
            if p.shape == "box":
                assert not ((cam > np.array(p.lo)) & (cam < np.array(p.hi))).all()
            elif p.shape == "cylinder":
                inside = math.hypot(cam[0] - p.center[0], cam[1] - p.center[1]) < p.radius and p.z0 < cam[2] < p.z1
                assert not inside
            elif p.shape == "sphere":
                assert math.dist(cam, p.center) > p.radius
        if seed < 6:
            out = render_scene(scene, 16, 32, shadows=False)
            r = out["range_m"]
            assert np.isfinite(r).all() and (r > 0).all()
            assert r.max() <= np.linalg.norm(size) + 1e-4
            assert not out["beyond"].any()


def test_indoor_scenes_have_several_primitive_kinds():
    shapes = set()
    for seed in range(20):
        shapes |= {p.shape for p in make_scene(seed, "indoor").primitives}
        shapes |= {p.shape for p in make_scene(seed, "outdoor").primitives}
    assert {"room", "box", "cylinder", "sphere", "ground"} <= shapes
    assert any(make_scene(s, "indoor").decals for s in range(5))


def test_synthetic_dataset_samples():
    ds = build_dataset({"type": "synthetic", "num_samples": 3, "seed": 1, "height": 16, "width": 32,
                        "indoor_fraction": 0.5, "augment": False})
    assert len(ds) == 3
    s0 = ds[0]
    assert s0["image"].shape == (3, 16, 32) and s0["image"].dtype == torch.float32
    assert s0["depth"].shape == (1, 16, 32) and s0["valid"].dtype == torch.bool
    assert s0["beyond"].dtype == torch.float32 and s0["source"] == "synthetic:1000003"
    assert s0["domain"] in ("indoor", "outdoor")
    d = s0["depth"][s0["valid"]]
    assert (d >= 0.001).all() and (d <= 1.0).all()
    again = ds[0]
    assert torch.equal(again["depth"], s0["depth"]) and torch.equal(again["image"], s0["image"])
    all_indoor = build_dataset({"type": "synthetic", "num_samples": 4, "seed": 2, "height": 16, "width": 32,
                                "indoor_fraction": 1.0})
    batch = collate([all_indoor[i] for i in range(2)])
    assert batch["domain"] == ["indoor", "indoor"] and batch["depth"].shape == (2, 1, 16, 32)
    assert not (batch["beyond"] > 0).any()
