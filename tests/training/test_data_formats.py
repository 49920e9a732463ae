"""Loaders of the public sets and of the generic list format: files written in each real format are
read back with exact values; bad samples are reported, counted and skipped."""
from __future__ import annotations

import logging
import math
import re

import numpy as np
import pytest
import torch
from PIL import Image

from dap_ros.errors import ConfigError
from dap_ros.evaluation.datasets import parse_scale
from dap_ros.geometry import ray_directions
from dap_ros.geometry.cassini import cassini_grid, cassini_to_erp
from training.data import build_dataset, read_list_file
from training.data.sample import nearest_indices, normalize_image

H, W = 8, 16


def _rgb(h=H, w=W, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


def _save_png(path, arr):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(arr).save(path)


def _png16(path, arr):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(arr.astype(np.uint16)).save(path)
    back = np.asarray(Image.open(path))
    assert back.dtype == np.uint16 and np.array_equal(back, arr)


def _raw16(seed=1, h=H, w=W):
    raw = np.random.default_rng(seed).integers(1, 60000, (h, w)).astype(np.uint16)
    raw[0, 0] = 0
    return raw


def _check(sample, metres, valid):
    exp_depth = np.where(valid, np.clip(np.where(valid, metres, 100) / 100.0, 0.001, 1.0), 1.0).astype(np.float32)
    np.testing.assert_array_equal(sample["valid"][0].numpy(), valid)
    np.testing.assert_allclose(sample["depth"][0].numpy(), exp_depth, rtol=1e-6, atol=0)
    assert sample["depth"].dtype == torch.float32 and sample["image"].shape == (3,) + metres.shape


def test_stanford2d3d_png_512(tmp_path):
    raw = _raw16()
    raw[1, 2] = 65535  # Stanford2D3D's "no depth"
    base = tmp_path / "area_1" / "pano"
    _save_png(base / "rgb" / "camera_a_office_1_frame_equirectangular_domain_rgb.png", _rgb())
    _png16(base / "depth" / "camera_a_office_1_frame_equirectangular_domain_depth.png", raw)
    for spec in ({"root": str(tmp_path)},):  # layout discovery
        ds = build_dataset({"type": "stanford2d3d", "height": H, "width": W, **spec})
        assert len(ds) == 1
        s = ds[0]
        metres = raw / 512.0
        valid = (raw != 0) & (raw != 65535) & (metres <= 100)
        _check(s, metres, valid)
        assert s["domain"] == "indoor"
        beyond = s["beyond"][0].numpy() > 0
        np.testing.assert_array_equal(beyond, (metres > 100) & (raw != 65535))  # 65535 = missing, NOT beyond
    assert not (s["beyond"][0, 1, 2] > 0)
    split = tmp_path / "split.txt"
    split.write_text("# rgb depth\narea_1/pano/rgb/camera_a_office_1_frame_equirectangular_domain_rgb.png "
                     "area_1/pano/depth/camera_a_office_1_frame_equirectangular_domain_depth.png\n")
    ds = build_dataset({"type": "stanford2d3d", "root": str(tmp_path), "split_file": str(split),
                        "height": H, "width": W})
    assert torch.equal(ds[0]["depth"], s["depth"])


def test_matterport3d_exr_metres_and_png_4000(tmp_path):
    OpenEXR = pytest.importorskip("OpenEXR")
    metres = np.random.default_rng(2).uniform(0.05, 120.0, (H, W)).astype(np.float32)
    metres[2, 3] = 0.0  # missing
    header = {"compression": OpenEXR.ZIP_COMPRESSION, "type": OpenEXR.scanlineimage}
    with OpenEXR.File(header, {"Z": metres}) as f:
        f.write(str(tmp_path / "house_0_rgb.png").replace("_rgb.png", "_depth.exr"))
    _save_png(tmp_path / "house_0_rgb.png", _rgb())
    raw = _raw16(3)
    _save_png(tmp_path / "house_1_rgb.png", _rgb(seed=1))
    _png16(tmp_path / "house_1_depth.png", raw)
    ds = build_dataset({"type": "matterport3d", "root": str(tmp_path), "height": H, "width": W})
    assert len(ds) == 2
    s0, s1 = ds[0], ds[1]
    _check(s0, metres, (metres > 0) & (metres <= 100))
    np.testing.assert_array_equal(s0["beyond"][0].numpy() > 0, metres > 100)
    _check(s1, raw / 4000.0, raw != 0)


def test_structured3d_png_1000(tmp_path):
    raw = _raw16(4)
    folder = tmp_path / "scene_00000" / "2D_rendering" / "485142" / "panorama" / "full"
    _save_png(folder / "rgb_rawlight.png", _rgb())
    _png16(folder / "depth.png", raw)
    ds = build_dataset({"type": "structured3d", "root": str(tmp_path), "height": H, "width": W})
    assert len(ds) == 1
    _check(ds[0], raw / 1000.0, raw != 0)


def test_resize_uses_nearest_for_depth(tmp_path):
    raw = _raw16(5, 2 * H, 2 * W)
    folder = tmp_path / "s" / "panorama" / "full"
    _save_png(folder / "rgb_rawlight.png", _rgb(2 * H, 2 * W))
    _png16(folder / "depth.png", raw)
    s = build_dataset({"type": "structured3d", "root": str(tmp_path), "height": H, "width": W})[0]
    picked = raw[nearest_indices(2 * H, H)][:, nearest_indices(2 * W, W)]
    np.testing.assert_array_equal(nearest_indices(2 * H, H), np.arange(H) * 2 + 1)
    _check(s, picked / 1000.0, picked != 0)  # every output value is one of the input values


# ---------------------------------------------------------------- Deep360 / Cassini


def _official_cassini_rays(row, col, ch, cw):
    """Unit rays (..., 3), REP 103, of (continuous) Cassini pixel coordinates on the official loader's grid.

    The inverse of the mapping in dap_ros/geometry/cassini.py: the loader samples x = -phi_c / (pi/2),
    y = -theta_c / pi with align_corners=True, i.e. column (x + 1) / 2 (Wc - 1) and row (y + 1) / 2 (Hc - 1),
    so column c holds phi_c = pi/2 - pi c / (Wc - 1) and row r holds theta_c = pi - 2 pi r / (Hc - 1) (the
    first and last rows / columns sit ON the edges: not pixel centres). With an ERP ray
    d = (cos phi cos theta, cos phi sin theta, sin phi) its formulas read phi_c = asin(d_y) and
    theta_c = atan2(d_z, d_x), hence d = (cos phi_c cos theta_c, sin phi_c, cos phi_c sin theta_c).
    """
    theta_c = math.pi - 2.0 * math.pi * np.asarray(row, np.float64) / (ch - 1)
    phi_c = math.pi / 2 - math.pi * np.asarray(col, np.float64) / (cw - 1)
    theta_c, phi_c = np.broadcast_arrays(theta_c, phi_c)
    return np.stack([np.cos(phi_c) * np.cos(theta_c), np.sin(phi_c), np.cos(phi_c) * np.sin(theta_c)], -1)


def _official_cassini_image_rays(ch, cw):
    """Rays (Hc, Wc, 3) of every pixel of a Cassini image, official grid (to render a scene in Cassini)."""
    return _official_cassini_rays(np.arange(ch)[:, None], np.arange(cw)[None, :], ch, cw)


def _unit_erp_rays(h, w):
    rays = ray_directions(h, w).astype(np.float64)
    return rays / np.linalg.norm(rays, axis=-1, keepdims=True)


def _angle(a, b):
    return np.arccos(np.clip((a * b).sum(-1), -1.0, 1.0))


@pytest.mark.parametrize("ch", [64, 128])
def test_official_cassini_grid_matches_the_erp_rays(ch):
    """The official Cassini grid, read back as rays, is the ERP's pixel-centre rays; nearest picks a
    Cassini pixel within half a grid cell of each."""
    cw = ch // 2
    rays_e = _unit_erp_rays(cw, ch)
    # continuous sampling points of every ERP pixel centre: the same rays up to the float32 rounding of
    # the grid (normalised coordinates ~6e-8; asin near the Cassini poles amplifies that to < 1e-5 rad)
    gx, gy = cassini_grid(cw, ch)
    col = (gx.astype(np.float64) + 1.0) / 2.0 * (cw - 1)
    row = (gy.astype(np.float64) + 1.0) / 2.0 * (ch - 1)
    assert _angle(_official_cassini_rays(row, col, ch, cw), rays_e).max() < 1e-5
    # nearest: |drow|, |dcol| <= 1/2 of the grid's steps 2 pi / (Hc - 1) (theta_c) and pi / (Wc - 1) (phi_c);
    # a theta_c step turns the ray by cos(phi_c) times it, so the angle is within half a cell diagonal
    idx = np.arange(ch * cw).reshape(ch, cw)
    picked = cassini_to_erp(idx, mode="nearest")
    assert picked.shape == (cw, ch)
    rays_c = _official_cassini_image_rays(ch, cw).reshape(-1, 3)[picked]
    half_diagonal = 0.5 * math.hypot(2.0 * math.pi / (ch - 1), math.pi / (cw - 1))
    ang = _angle(rays_c, rays_e)
    assert ang.max() <= half_diagonal * (1 + 1e-4)
    # anchor: the 2 x 2 ERP pixels around the forward direction sample the 2 x 2 Cassini pixels around
    # its centre (theta_c = 0 between rows Hc/2 - 1 and Hc/2, phi_c = 0 between columns Wc/2 - 1 and
    # Wc/2), in the same arrangement: up-left (+z, +y) to up-left
    np.testing.assert_array_equal(picked[cw // 2 - 1:cw // 2 + 1, ch // 2 - 1:ch // 2 + 1],
                                  idx[ch // 2 - 1:ch // 2 + 1, cw // 2 - 1:cw // 2 + 1])
    rays_cas = _official_cassini_image_rays(ch, cw)
    np.testing.assert_allclose(rays_cas[:, 0], np.broadcast_to([0.0, 1.0, 0.0], (ch, 3)), atol=1e-12)
    np.testing.assert_allclose(rays_cas[0, cw // 2], rays_cas[-1, cw // 2], atol=1e-12)  # both look back


def test_deep360_cassini_depth_to_erp_on_an_analytic_scene(tmp_path):
    """Render the same analytic room in Cassini (official grid) and in ERP; the Deep360 loader's
    nearest-resampled range matches the ERP render."""
    from training.data.synthetic import Material, Primitive, Scene, render_rays, render_scene

    scene = Scene("indoor", (1.3, 1.1, 1.4), 0.0,
                  [Primitive("room", lo=(0, 0, 0), hi=(5.0, 3.0, 2.8), face_materials=(0,) * 6, casts_shadow=False),
                   Primitive("sphere", 0, center=(3.5, 1.5, 1.0), radius=0.6)],
                  [Material("plain", (0.5, 0.5, 0.5))], light_pos=(2, 1, 2.6))
    ch, cw = 128, 64
    _, t_cas = render_rays(scene, torch.from_numpy(_official_cassini_image_rays(ch, cw).reshape(-1, 3)),
                           shadows=False)
    cas = t_cas.numpy().reshape(ch, cw).astype(np.float32)
    np.savez(tmp_path / "000000_depth.npz", cas)
    _save_png(tmp_path / "000000_rgb.png", _rgb(ch, cw))
    (tmp_path / "list.txt").write_text("000000_rgb.png 000000_depth.npz\n")
    ds = build_dataset({"type": "deep360", "root": str(tmp_path), "split_file": str(tmp_path / "list.txt"),
                        "height": cw, "width": ch})
    s = ds[0]
    assert s["domain"] == "outdoor" and s["valid"].all()
    got = s["depth"][0].numpy() * 100.0
    np.testing.assert_allclose(got, cassini_to_erp(cas, mode="nearest"), rtol=1e-6)  # the dap_ros resampling
    exact = render_scene(scene, cw, ch, dtype=torch.float64, noise=0)["range_m"]
    rel = np.abs(got - exact) / exact
    # the sampled ray is off by <= half a grid cell (0.035 rad here): on the room's walls (>= 1.1 m away,
    # grazing at worst near corners) that moves the range by a few percent at most; only pixels whose
    # ray and its Cassini neighbour hit different surfaces (sphere silhouette, room edges) differ more
    assert np.median(rel) < 0.01
    assert np.mean(rel < 0.05) > 0.95
    # every converted value is a value of the Cassini image (nearest, never blended)
    assert np.isin(got.astype(np.float32) / 100.0, (cas / 100.0).astype(np.float32)).mean() > 0.99


def test_deep360_rgb_is_the_official_bilinear_resampling_of_a_smooth_pattern(tmp_path):
    """An RGB pattern that is a smooth function of the ray, drawn in Cassini on the official grid, comes
    out of the Deep360 loader as the same function of the ERP rays (bilinear + uint8 truncation)."""
    ch, cw = 128, 64

    def pattern(rays):  # linear in the ray: x, y, z -> R, G, B in [0, 255]
        return 127.5 * (1.0 + rays)

    cas_rgb = np.floor(pattern(_official_cassini_image_rays(ch, cw)) + 0.5).astype(np.uint8)
    erp = cassini_to_erp(cas_rgb, mode="bilinear")
    assert erp.shape == (cw, ch, 3) and erp.dtype == np.uint8
    err = erp.astype(np.float64) - pattern(_unit_erp_rays(cw, ch))
    # 0.5 from the Cassini image's own rounding, < 1 from truncating the blend, and the curvature of the
    # rays within a cell (step <= 0.1 rad: 127.5 * 0.1**2 / 8 < 0.2)
    assert err.max() < 0.5 + 0.2 and err.min() > -1.5 - 0.2
    _save_png(tmp_path / "r.png", cas_rgb)
    np.savez(tmp_path / "d.npz", np.full((ch, cw), 5.0, np.float32))
    (tmp_path / "l.txt").write_text("r.png d.npz\n")
    ds = build_dataset({"type": "deep360", "root": str(tmp_path), "split_file": str(tmp_path / "l.txt"),
                        "height": cw, "width": ch})
    expected = normalize_image(torch.from_numpy(erp).permute(2, 0, 1).float() / 255.0)
    torch.testing.assert_close(ds[0]["image"], expected, rtol=0, atol=1e-6)  # the loader uses exactly that


def test_deep360_beyond_and_rgb_shape(tmp_path):
    ch, cw = 32, 16
    cas = np.full((ch, cw), 50.0, dtype=np.float32)
    cas[:4] = 1000.0  # far: beyond 100 m
    cas[-1, 0] = np.inf
    cas[10, 5] = 0.0  # missing
    np.savez(tmp_path / "d.npz", cas)
    _save_png(tmp_path / "r.png", _rgb(ch, cw))
    (tmp_path / "l.txt").write_text("r.png d.npz\n")
    s = build_dataset({"type": "deep360", "root": str(tmp_path), "split_file": str(tmp_path / "l.txt"),
                       "height": cw, "width": ch})[0]
    erp = cassini_to_erp(cas, mode="nearest")
    np.testing.assert_array_equal(s["beyond"][0].numpy() > 0, (erp > 100) | np.isinf(erp))
    np.testing.assert_array_equal(s["valid"][0].numpy(), (erp > 0) & (erp <= 100))
    rgb = cassini_to_erp(_rgb(ch, cw), mode="bilinear")
    assert rgb.shape == (cw, ch, 3) and rgb.dtype == np.uint8


# ---------------------------------------------------------------- generic list format


def test_list_format_scale_tokens(tmp_path):
    """The list format's SCALE column is dap_ros.evaluation.datasets.parse_scale (one implementation);
    a bad token names the list file and line."""
    assert parse_scale("m") == 1.0 and parse_scale("mm") == 0.001 and parse_scale("cm") == 0.01
    assert parse_scale("/512") == 1 / 512 and parse_scale("*0.001") == 0.001 and parse_scale("0.25") == 0.25
    for bad in ("/0", "km", "-1", "*nan"):
        with pytest.raises(ValueError):
            parse_scale(bad)
        lf = tmp_path / "l.txt"
        lf.write_text(f"# header\nrgb.png d.png mm\nrgb.png d.png {bad}\n")
        with pytest.raises(ConfigError, match=f"l.txt:3.*{re.escape(repr(bad))}"):
            read_list_file(lf)
    lf.write_text("rgb.png d.png /512\n")
    (item,) = read_list_file(lf)
    assert item.depth.endswith("d.png")


def test_list_format_units_masks_and_domain(tmp_path):
    raw = _raw16(6)
    _png16(tmp_path / "d_mm.png", raw)
    _png16(tmp_path / "d_512.png", raw)
    metres = np.random.default_rng(7).uniform(0.5, 150.0, (H, W)).astype(np.float32)
    metres[0, 1] = np.inf
    metres[0, 2] = np.nan
    np.save(tmp_path / "d.npy", metres)
    valid_mask = np.ones((H, W), np.uint8) * 255
    valid_mask[3, :] = 0
    sky = np.zeros((H, W), np.uint8)
    sky[0, 5] = 1
    _save_png(tmp_path / "valid.png", valid_mask)
    _save_png(tmp_path / "sky.png", sky)
    (tmp_path / "sub dir").mkdir()
    _save_png(tmp_path / "sub dir" / "a.png", _rgb())
    lines = [
        "# rgb depth scale [mask]",
        "'sub dir/a.png' d_mm.png mm",
        "'sub dir/a.png' d_512.png /512 valid.png domain=indoor",
        "'sub dir/a.png' d.npy m sky:sky.png domain=outdoor",
        "'sub dir/a.png' d_mm.png *0.001",
    ]
    (tmp_path / "list.txt").write_text("\n".join(lines) + "\n")
    ds = build_dataset({"type": "list", "list_file": str(tmp_path / "list.txt"), "height": H, "width": W})
    assert len(ds) == 4
    s0, s1, s2, s3 = (ds[i] for i in range(4))
    _check(s0, raw / 1000.0, raw != 0)
    assert s0["domain"] == "unknown"
    _check(s1, raw / 512.0, (raw != 0) & (valid_mask != 0) & (raw / 512.0 <= 100))
    assert s1["domain"] == "indoor"
    v2 = np.isfinite(metres) & (metres <= 100) & (sky == 0)
    _check(s2, metres, v2)
    np.testing.assert_array_equal(s2["beyond"][0].numpy() > 0, (metres > 100) | np.isinf(metres) | (sky != 0))
    assert s2["domain"] == "outdoor" and "d.npy" in s2["source"]
    assert torch.equal(s3["depth"], s0["depth"])


def test_bad_samples_are_reported_counted_and_skipped(tmp_path, caplog):
    raw = _raw16(8)
    _png16(tmp_path / "good.png", raw)
    _save_png(tmp_path / "rgb.png", _rgb())
    _save_png(tmp_path / "square.png", _rgb(H, H))
    (tmp_path / "corrupt.png").write_bytes(b"not a png")
    _png16(tmp_path / "zeros.png", np.zeros((H, W), np.uint16))
    lines = ["rgb.png missing.png mm", "rgb.png corrupt.png mm", "square.png good.png mm", "rgb.png zeros.png mm",
             "rgb.png good.png mm"]
    (tmp_path / "l.txt").write_text("\n".join(lines) + "\n")
    ds = build_dataset({"type": "list", "list_file": str(tmp_path / "l.txt"), "height": H, "width": W})
    with caplog.at_level(logging.WARNING, logger="training.data"):
        s = ds[0]
        _check(s, raw / 1000.0, raw != 0)
        assert ds.skipped == 4
        msgs = [r.getMessage() for r in caplog.records]
        assert len(msgs) == 4
        for name, reason in (("missing.png", "not found"), ("corrupt.png", ""), ("square.png", "2:1"),
                             ("zeros.png", "no usable")):
            assert any(name in m and reason in m for m in msgs), (name, msgs)
        ds[1]  # the same bad files again: counted, not logged again
        assert ds.skipped == 7 and len(caplog.records) == 4
    only_bad = tmp_path / "bad.txt"
    only_bad.write_text("rgb.png missing.png mm\n")
    with pytest.raises(RuntimeError, match="missing.png"):
        build_dataset({"type": "list", "list_file": str(only_bad), "height": H, "width": W})[0]


def test_build_dataset_rejects_bad_specs(tmp_path):
    with pytest.raises(ValueError, match="unknown dataset type"):
        build_dataset({"type": "kitti"})
    with pytest.raises(ValueError, match="unknown keys"):
        build_dataset({"type": "synthetic", "num_samples": 2, "colour": 1})
    with pytest.raises(ValueError, match="split_file"):
        build_dataset({"type": "deep360", "root": str(tmp_path)})
    cat = build_dataset([{"type": "synthetic", "num_samples": 2, "height": 8, "width": 16},
                         {"type": "synthetic", "num_samples": 3, "seed": 1, "height": 8, "width": 16}])
    assert len(cat) == 5 and cat.skipped == 0
    cat.set_epoch(3)
    assert all(d.epoch == 3 for d in cat.datasets)
