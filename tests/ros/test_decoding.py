"""Camera messages -> RGB (no DDS needed): encodings, row padding, rejections by kind, compressed frames."""
from __future__ import annotations

import array
import io

import numpy as np
import pytest
from builtin_interfaces.msg import Time
from ros_helpers import rgb_image_msg
from sensor_msgs.msg import CompressedImage

from dap_ros.ros import decoding as M

RGB = np.random.default_rng(0).integers(0, 256, (16, 32, 3), dtype=np.uint8)
STAMP = Time(sec=5, nanosec=7)


@pytest.mark.parametrize("encoding", ["rgb8", "bgr8", "rgba8", "bgra8", "mono8"])
@pytest.mark.parametrize("pad", [0, 1, 13])
def test_image_to_rgb_every_encoding_with_row_padding(encoding, pad):
    msg = rgb_image_msg(RGB, STAMP, encoding=encoding, pad=pad)
    got = M.image_to_rgb(msg, max_width=4096)
    expected = np.repeat(RGB[..., :1], 3, axis=2) if encoding == "mono8" else RGB
    assert got.shape == (16, 32, 3) and got.dtype == np.uint8
    np.testing.assert_array_equal(got, expected)


def test_last_row_without_padding_is_accepted():
    msg = rgb_image_msg(RGB, STAMP, pad=4)
    msg.data = array.array("B", bytes(msg.data)[:-4])  # driver trimmed the final row's padding
    np.testing.assert_array_equal(M.image_to_rgb(msg, 4096), RGB)


@pytest.mark.parametrize("change,kind", [
    ({"encoding": "16UC1"}, "encoding"),
    ({"step": 10}, "bad_step"),
    ({"data": array.array("B", bytes(100))}, "short_data"),
    ({"width": 16, "step": 48}, "not_erp"),
    ({"width": 1, "height": 1, "step": 3, "data": array.array("B", bytes(3))}, "not_erp"),
    ({"width": 3, "height": 1, "step": 9, "data": array.array("B", bytes(9))}, "not_erp"),
    ({"width": 0, "height": 0}, "empty"),
    ({"width": 7680, "height": 3840, "step": 7680 * 3}, "too_large"),
])
def test_bad_images_are_rejected_by_kind(change, kind):
    msg = rgb_image_msg(RGB, STAMP)
    for key, value in change.items():
        setattr(msg, key, value)
    with pytest.raises(M.InputRejected) as info:
        M.image_to_rgb(msg, max_width=4096)
    assert info.value.kind == kind


def test_compressed_decoding_and_size_check_before_decoding():
    from PIL import Image as PILImage

    buffer = io.BytesIO()
    PILImage.fromarray(RGB).save(buffer, format="PNG")
    msg = CompressedImage(format="png", data=buffer.getvalue())
    np.testing.assert_array_equal(M.compressed_to_rgb(msg, 4096), RGB)
    with pytest.raises(M.InputRejected, match="max_input_width") as info:
        M.compressed_to_rgb(msg, max_width=16)
    assert info.value.kind == "too_large"
    with pytest.raises(M.InputRejected) as info:
        M.compressed_to_rgb(CompressedImage(format="jpeg", data=b"garbage"), 4096)
    assert info.value.kind == "corrupt"


def _compressed(pixels: np.ndarray, fmt: str) -> CompressedImage:
    from PIL import Image as PILImage

    buffer = io.BytesIO()
    PILImage.fromarray(pixels).save(buffer, format=fmt)
    return CompressedImage(format=fmt.lower(), data=buffer.getvalue())


@pytest.mark.parametrize("fmt", ["GIF", "BMP", "TIFF", "WEBP"])
def test_compressed_frames_are_jpeg_or_png_only(fmt):
    with pytest.raises(M.InputRejected, match="not a readable JPEG or PNG image") as info:
        M.compressed_to_rgb(_compressed(RGB, fmt), 4096)
    assert info.value.kind == "corrupt"


def test_16_bit_png_is_scaled_to_8_bit_as_files_are(tmp_path):
    from dap_ros.io import load_rgb

    grey = np.linspace(0, 65535, 16 * 32).astype(np.uint16).reshape(16, 32)
    msg = _compressed(grey, "PNG")
    got = M.compressed_to_rgb(msg, 4096)
    (tmp_path / "grey16.png").write_bytes(msg.data)
    np.testing.assert_array_equal(got, load_rgb(tmp_path / "grey16.png"))  # the CLI's reading
    np.testing.assert_array_equal(got[..., 0], np.rint(grey / 257.0).astype(np.uint8))  # not saturated at 255


def test_tall_frames_are_rejected_from_the_header():
    """Fisheye frames skip the 2:1 check; their height is bounded too (2 x max_input_width), read
    from the header: the pixel data here is cut short and never decoded."""
    tall = _compressed(np.zeros((33, 16, 3), np.uint8), "PNG")
    with pytest.raises(M.InputRejected, match="taller than 2 x max_input_width=16") as info:
        M.compressed_to_rgb(CompressedImage(format="png", data=tall.data[:60]), 16, panorama=False)
    assert info.value.kind == "too_large"
    top_bottom = np.zeros((32, 16, 3), np.uint8)  # two square lenses stacked: 1:2
    assert M.compressed_to_rgb(_compressed(top_bottom, "PNG"), 16, panorama=False).shape == (32, 16, 3)


def test_negative_stamp_is_a_bad_frame():
    M.check_stamp(rgb_image_msg(RGB, Time(sec=0, nanosec=0)))
    with pytest.raises(M.InputRejected, match="negative") as info:
        M.check_stamp(rgb_image_msg(RGB, Time(sec=-3, nanosec=5)))
    assert info.value.kind == "bad_stamp"
