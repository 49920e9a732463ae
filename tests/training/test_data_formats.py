"""Loaders of the public sets and of the generic list format: files written in each real format are
read back with exact values; bad samples are reported, counted and skipped."""
from __future__ import annotations

import logging
import math

import numpy as np
import pytest
import torch
from PIL import Image

from dap_ros.geometry import ray_directions
from training.data import build_dataset, parse_scale
from training.data.cassini import cassini_rays, cassini_to_erp
from training.data.sample import nearest_indices

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


def test_cassini_rays_match_the_erp_geometry():
    """Cassini pixel chosen for each ERP pixel looks (nearly) the same way: within one Cassini pixel."""
    ch, cw = 64, 32
    idx = np.arange(ch * cw).reshape(ch, cw)
    picked = cassini_to_erp(idx, mode="nearest")
    assert picked.shape == (cw, ch)
    rays_c = cassini_rays(ch, cw).reshape(-1, 3)[picked]
    rays_e = ray_directions(cw, ch).astype(np.float64)
    rays_e /= np.linalg.norm(rays_e, axis=-1, keepdims=True)
    ang = np.arccos(np.clip((rays_c * rays_e).sum(-1), -1, 1))
    assert ang.max() <= math.pi / cw * math.sqrt(0.5) + 1e-9  # half a pixel diagonal
    # the Cassini centre row / column looks forward; left column looks left (+y)
    c = cassini_rays(ch, cw)
    assert c[ch // 2, cw // 2, 0] > 0.99 and c[ch // 2, 0, 1] > 0.99 and c[ch // 4, cw // 2, 2] > 0.99


def test_deep360_cassini_depth_to_erp_on_an_analytic_scene(tmp_path):
    """Render the same analytic room in Cassini and ERP; the converted Cassini range matches."""
    from training.data.synthetic import Material, Primitive, Scene, render_rays, render_scene

    scene = Scene("indoor", (1.3, 1.1, 1.4), 0.0,
                  [Primitive("room", lo=(0, 0, 0), hi=(5.0, 3.0, 2.8), face_materials=(0,) * 6, casts_shadow=False),
                   Primitive("sphere", 0, center=(3.5, 1.5, 1.0), radius=0.6)],
                  [Material("plain", (0.5, 0.5, 0.5))], light_pos=(2, 1, 2.6))
    ch, cw = 128, 64
    _, t_cas = render_rays(scene, torch.from_numpy(cassini_rays(ch, cw).reshape(-1, 3)), shadows=False)
    cas = t_cas.numpy().reshape(ch, cw).astype(np.float32)
    np.savez(tmp_path / "000000_depth.npz", cas)
    _save_png(tmp_path / "000000_rgb.png", _rgb(ch, cw))
    (tmp_path / "list.txt").write_text("000000_rgb.png 000000_depth.npz\n")
    ds = build_dataset({"type": "deep360", "root": str(tmp_path), "split_file": str(tmp_path / "list.txt"),
                        "height": cw, "width": ch})
    s = ds[0]
    assert s["domain"] == "outdoor" and s["valid"].all()
    got = s["depth"][0].numpy() * 100.0
    exact = render_scene(scene, cw, ch, dtype=torch.float64, noise=0)["range_m"]
    rel = np.abs(got - exact) / exact
    assert np.median(rel) < 0.01
    assert np.mean(rel < 0.05) > 0.95  # only pixels at depth edges differ more (nearest sampling)
    # every converted value is a value of the Cassini image (nearest, never blended)
    assert np.isin(got.astype(np.float32) / 100.0, (cas / 100.0).astype(np.float32)).mean() > 0.99


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


def test_parse_scale():
    assert parse_scale("m") == 1.0 and parse_scale("mm") == 0.001 and parse_scale("cm") == 0.01
    assert parse_scale("/512") == 1 / 512 and parse_scale("*0.001") == 0.001 and parse_scale("0.25") == 0.25
    for bad in ("/0", "km", "-1", "*nan"):
        with pytest.raises(ValueError):
            parse_scale(bad)


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
