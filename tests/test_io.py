"""Image loading, depth files, colourised depth, PLY and EXR I/O."""
from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from dap_ros.errors import ImageError
from dap_ros.io import (
    check_equirectangular,
    colorize_range,
    load_range_png_mm,
    load_rgb,
    read_exr_depth,
    read_ply,
    save_mask_png,
    save_range_npy,
    save_range_png_mm,
    to_bgr,
    turbo_lut,
    write_ply,
)
from dap_ros.io.colorize import INF_COLOR, NAN_COLOR


def gradient_rgb(h: int = 16, w: int = 32) -> np.ndarray:
    rgb = np.zeros((h, w, 3), np.uint8)
    rgb[..., 0] = np.linspace(0, 255, w, dtype=np.uint8)[None, :]
    rgb[..., 1] = np.linspace(0, 255, h, dtype=np.uint8)[:, None]
    rgb[..., 2] = 77
    return rgb


# ---------------------------------------------------------------- PLY


def test_ply_round_trip_with_colors(tmp_path):
    rng = np.random.default_rng(0)
    pts = rng.normal(size=(1000, 3)).astype(np.float32)
    cols = rng.integers(0, 256, size=(1000, 3), dtype=np.uint8)
    path = tmp_path / "cloud.ply"
    write_ply(path, pts, cols)
    data = path.read_bytes()
    assert data.startswith(b"ply\nformat binary_little_endian 1.0\n")
    header_end = data.index(b"end_header\n") + len(b"end_header\n")
    assert len(data) - header_end == 1000 * 15  # 3 float32 + 3 uchar per vertex
    p2, c2 = read_ply(path)
    np.testing.assert_array_equal(p2, pts)
    np.testing.assert_array_equal(c2, cols)


def test_ply_round_trip_without_colors_and_empty(tmp_path):
    pts = np.array([[1.0, 2.0, 3.0], [-1.5, 0.25, 1e3]])  # float64 in, float32 stored
    write_ply(tmp_path / "a.ply", pts)
    p2, c2 = read_ply(tmp_path / "a.ply")
    assert c2 is None and p2.dtype == np.float32
    np.testing.assert_array_equal(p2, pts.astype(np.float32))
    write_ply(tmp_path / "empty.ply", np.zeros((0, 3), np.float32), np.zeros((0, 3), np.uint8))
    p3, c3 = read_ply(tmp_path / "empty.ply")
    assert p3.shape == (0, 3) and c3.shape == (0, 3)


def test_ply_rejects_bad_input(tmp_path):
    with pytest.raises(ValueError, match=r"\(N, 3\)"):
        write_ply(tmp_path / "x.ply", np.zeros((4, 2)))
    with pytest.raises(ValueError, match="uint8"):
        write_ply(tmp_path / "x.ply", np.zeros((4, 3)), np.zeros((4, 3), np.float32))


# ---------------------------------------------------------------- depth files


def test_range_png_mm_round_trip(tmp_path):
    r = np.array([[1.2344, 0.0004, np.nan, np.inf], [-np.inf, -1.0, 70.0, 65.535]], np.float32)
    path = tmp_path / "depth.png"
    save_range_png_mm(path, r)
    with Image.open(path) as im:
        raw = np.asarray(im).astype(np.int64)
    assert raw.shape == (2, 4)
    np.testing.assert_array_equal(raw, [[1234, 1, 0, 0], [0, 0, 65535, 65535]])
    back = load_range_png_mm(path)
    assert back.dtype == np.float32
    np.testing.assert_allclose(back[0, 0], 1.234)
    assert np.isnan(back[0, 2]) and np.isnan(back[0, 3]) and np.isnan(back[1, 0])
    np.testing.assert_allclose(back[1, 2], 65.535)  # clipped


def test_range_png_mm_precision(tmp_path):
    r = np.random.default_rng(2).uniform(0.1, 60.0, (20, 40)).astype(np.float32)
    save_range_png_mm(tmp_path / "d.png", r)
    back = load_range_png_mm(tmp_path / "d.png")
    assert np.max(np.abs(back - r)) <= 0.0005 + 1e-6


def test_range_npy_keeps_float32_and_specials(tmp_path):
    r = np.array([[1.5, np.nan], [np.inf, 2.0]])
    path = tmp_path / "range.npy"
    save_range_npy(path, r)
    back = np.load(path)
    assert back.dtype == np.float32
    np.testing.assert_array_equal(back, r.astype(np.float32))


def test_mask_png(tmp_path):
    mask = np.array([[True, False, True], [False, False, True]])
    save_mask_png(tmp_path / "mask.png", mask)
    with Image.open(tmp_path / "mask.png") as im:
        assert im.mode == "L"
        np.testing.assert_array_equal(np.asarray(im), np.where(mask, 255, 0))


# ---------------------------------------------------------------- colorize


def test_colorize_shapes_and_special_values():
    r = np.tile(np.geomspace(0.5, 50.0, 64, dtype=np.float32), (8, 1))
    r[0, 0] = np.nan
    r[1, 1] = np.inf
    r[2, 2] = -np.inf
    out = colorize_range(r, max_range=50.0, min_range=0.5)
    assert out.shape == (8, 64, 3) and out.dtype == np.uint8
    assert tuple(out[0, 0]) == NAN_COLOR
    assert tuple(out[1, 1]) == INF_COLOR
    lut = turbo_lut()
    assert tuple(out[2, 2]) == tuple(lut[255])  # too close -> nearest colour
    assert tuple(out[3, 0]) == tuple(lut[255]) and tuple(out[3, -1]) == tuple(lut[0])
    # near is warm (red), far is cool (blue); the colour changes monotonically along the row
    assert out[3, 0, 0] > out[3, 0, 2] and out[3, -1, 2] > out[3, -1, 0]
    # log scaling: the geometric midpoint lands mid-table
    mid = colorize_range(np.full((1, 1), np.sqrt(0.5 * 50.0)), max_range=50.0, min_range=0.5)
    assert tuple(mid[0, 0]) in {tuple(lut[127]), tuple(lut[128])}


def test_colorize_auto_range_and_all_invalid():
    r = np.random.default_rng(3).uniform(1.0, 10.0, (10, 20)).astype(np.float32)
    out = colorize_range(r)
    assert len(np.unique(out.reshape(-1, 3), axis=0)) > 20
    blank = colorize_range(np.full((4, 8), np.nan, np.float32))
    assert np.all(blank == np.array(NAN_COLOR, np.uint8))


def test_turbo_lut_close_to_matplotlib():
    matplotlib = pytest.importorskip("matplotlib")
    ref = matplotlib.colormaps["turbo"](np.linspace(0, 1, 256))[:, :3] * 255
    err = np.abs(turbo_lut().astype(float) - ref)
    assert err.mean() < 3 and err.max() < 10
    assert not turbo_lut().flags.writeable


def test_to_bgr():
    rgb = gradient_rgb()
    bgr = to_bgr(rgb)
    assert bgr.flags.c_contiguous
    np.testing.assert_array_equal(bgr[..., 0], rgb[..., 2])
    np.testing.assert_array_equal(bgr[..., 2], rgb[..., 0])
    with pytest.raises(ValueError):
        to_bgr(np.zeros((4, 4)))


# ---------------------------------------------------------------- load_rgb


def test_load_rgb_rgb_png(tmp_path):
    rgb = gradient_rgb()
    Image.fromarray(rgb).save(tmp_path / "a.png")
    out = load_rgb(tmp_path / "a.png")
    assert out.dtype == np.uint8 and out.shape == (16, 32, 3)
    np.testing.assert_array_equal(out, rgb)


def test_load_rgb_grayscale(tmp_path):
    gray = np.arange(16 * 32, dtype=np.uint16).reshape(16, 32) % 256
    Image.fromarray(gray.astype(np.uint8)).save(tmp_path / "g.png")
    out = load_rgb(tmp_path / "g.png")
    assert out.shape == (16, 32, 3)
    for c in range(3):
        np.testing.assert_array_equal(out[..., c], gray)


def test_load_rgb_rgba_drops_alpha(tmp_path):
    rgba = np.dstack([gradient_rgb(), np.full((16, 32), 10, np.uint8)])
    Image.fromarray(rgba, "RGBA").save(tmp_path / "a.png")
    out = load_rgb(tmp_path / "a.png")
    np.testing.assert_array_equal(out, rgba[..., :3])


def test_load_rgb_16bit_gray_scaled(tmp_path):
    values = np.array([[0, 257, 32896, 65535]], np.uint16).repeat(2, axis=0)
    Image.fromarray(values).save(tmp_path / "g16.png")
    with Image.open(tmp_path / "g16.png") as im:
        assert im.mode.startswith("I")  # really stored as 16-bit
    out = load_rgb(tmp_path / "g16.png")
    assert out.dtype == np.uint8
    np.testing.assert_array_equal(out[0, :, 0], [0, 1, 128, 255])
    np.testing.assert_array_equal(out[..., 0], out[..., 2])


def test_load_rgb_palette_with_transparency(tmp_path):
    index = (np.arange(16 * 32).reshape(16, 32) % 4).astype(np.uint8)
    im = Image.fromarray(index, "L").convert("P")
    palette = [255, 0, 0, 0, 255, 0, 0, 0, 255, 10, 20, 30] + [0] * (256 * 3 - 12)
    im.putpalette(palette)
    im.info["transparency"] = 3
    im.save(tmp_path / "p.png", transparency=3)
    out = load_rgb(tmp_path / "p.png")
    expected = np.array(palette[:12], np.uint8).reshape(4, 3)[index]
    np.testing.assert_array_equal(out, expected)


def test_load_rgb_cmyk_and_jpeg(tmp_path):
    rgb = gradient_rgb(64, 128)
    Image.fromarray(rgb).save(tmp_path / "a.jpg", quality=95)
    out = load_rgb(tmp_path / "a.jpg")
    assert out.shape == (64, 128, 3)
    assert np.mean(np.abs(out.astype(int) - rgb)) < 3
    Image.fromarray(rgb).convert("CMYK").save(tmp_path / "c.tif")
    out = load_rgb(tmp_path / "c.tif")
    assert out.shape == (64, 128, 3) and out.dtype == np.uint8
    assert np.mean(np.abs(out.astype(int) - rgb)) < 3


def test_load_rgb_errors(tmp_path):
    with pytest.raises(ImageError, match="not found"):
        load_rgb(tmp_path / "missing.png")
    (tmp_path / "empty.png").write_bytes(b"")
    with pytest.raises(ImageError, match="empty"):
        load_rgb(tmp_path / "empty.png")
    (tmp_path / "junk.png").write_bytes(b"this is not an image at all" * 10)
    with pytest.raises(ImageError, match="junk.png"):
        load_rgb(tmp_path / "junk.png")
    Image.fromarray(gradient_rgb(64, 128)).save(tmp_path / "full.png")
    data = (tmp_path / "full.png").read_bytes()
    (tmp_path / "cut.png").write_bytes(data[: len(data) // 2])
    with pytest.raises(ImageError, match="cut.png") as info:
        load_rgb(tmp_path / "cut.png")
    assert "\n" not in str(info.value)
    with pytest.raises(ImageError, match="not an image file"):
        load_rgb(tmp_path)


# ---------------------------------------------------------------- aspect ratio


def test_check_equirectangular_accepts_2_to_1():
    check_equirectangular(512, 1024)
    check_equirectangular(500, 1010)  # within 2 %


def test_check_equirectangular_messages_and_force():
    with pytest.raises(ImageError) as info:
        check_equirectangular(600, 1000)
    msg = str(info.value)
    assert "1000x600" in msg and "ratio 1.67" in msg and "2:1" in msg and "--force" in msg
    with pytest.raises(ImageError, match="1.90"):
        check_equirectangular(1000, 1900)
    check_equirectangular(1000, 1900, force=True)  # 5 % off: accepted when forced
    check_equirectangular(1000, 2150, force=True)
    with pytest.raises(ImageError, match="even with --force"):
        check_equirectangular(600, 1000, force=True)  # 17 % off: never
    with pytest.raises(ImageError, match="even with --force"):
        check_equirectangular(1000, 1000, force=True)
    with pytest.raises(ImageError, match="zero size"):
        check_equirectangular(0, 1024)


# ---------------------------------------------------------------- EXR


def _write_exr(path, channels):
    OpenEXR = pytest.importorskip("OpenEXR")
    header = {"compression": OpenEXR.ZIP_COMPRESSION, "type": OpenEXR.scanlineimage}
    with OpenEXR.File(header, channels) as f:
        f.write(str(path))


def test_read_exr_single_and_rgb_channels(tmp_path):
    depth = np.random.default_rng(4).uniform(0.5, 9.0, (8, 16)).astype(np.float32)
    depth[0, 0] = 1e10
    depth[1, 1] = np.inf
    _write_exr(tmp_path / "z.exr", {"Z": depth})
    out = read_exr_depth(tmp_path / "z.exr")
    assert out.shape == (8, 16) and out.dtype == np.float32
    assert np.isnan(out[0, 0]) and np.isnan(out[1, 1])
    ok = np.isfinite(out)
    assert ok.sum() == depth.size - 2
    np.testing.assert_array_equal(out[ok], depth[ok])

    rgb = np.stack([depth, depth * 2, depth * 3], axis=-1)
    _write_exr(tmp_path / "rgb.exr", {"RGB": rgb})
    out = read_exr_depth(tmp_path / "rgb.exr")
    np.testing.assert_array_equal(out[ok], depth[ok])


def test_read_exr_errors(tmp_path):
    with pytest.raises(ImageError, match="not found"):
        read_exr_depth(tmp_path / "none.exr")
    (tmp_path / "bad.exr").write_bytes(b"\x00" * 100)
    with pytest.raises(ImageError, match="bad.exr"):
        read_exr_depth(tmp_path / "bad.exr")
