"""Frame decoding: every supported encoding, padded rows, and the errors bad frames must give."""

import cv2
import numpy as np
import pytest

from mtshare_ros.runtime.decode import FrameError, compressed_to_rgb, raw_to_rgb


@pytest.fixture
def rgb() -> np.ndarray:
    return np.random.default_rng(1).integers(0, 256, (7, 5, 3), dtype=np.uint8)  # odd size on purpose


@pytest.mark.parametrize(
    "encoding,convert",
    [
        ("rgb8", lambda x: x),
        ("bgr8", lambda x: x[..., ::-1]),
        ("rgba8", lambda x: np.dstack([x, np.full(x.shape[:2], 7, np.uint8)])),
        ("bgra8", lambda x: np.dstack([x[..., ::-1], np.full(x.shape[:2], 7, np.uint8)])),
    ],
)
def test_colour_encodings_decode_to_rgb(rgb, encoding, convert):
    raw = np.ascontiguousarray(convert(rgb))
    out = raw_to_rgb(encoding, 7, 5, raw.shape[1] * raw.shape[2], raw.tobytes())
    np.testing.assert_array_equal(out, rgb)


def test_mono8_replicates_channels():
    gray = np.arange(35, dtype=np.uint8).reshape(7, 5)
    out = raw_to_rgb("mono8", 7, 5, 5, gray.tobytes())
    assert out.shape == (7, 5, 3)
    np.testing.assert_array_equal(out[..., 1], gray)


def test_padded_rows_are_cropped(rgb):
    step = 5 * 3 + 9
    padded = np.zeros((7, step), np.uint8)
    padded[:, :15] = rgb.reshape(7, 15)
    padded[:, 15:] = 255  # garbage in the padding must not leak into the image
    np.testing.assert_array_equal(raw_to_rgb("rgb8", 7, 5, step, padded.tobytes()), rgb)
    # some drivers omit the last row's padding
    np.testing.assert_array_equal(raw_to_rgb("rgb8", 7, 5, step, padded.tobytes()[:-9]), rgb)


@pytest.mark.parametrize(
    "args,message",
    [
        (("16UC1", 2, 2, 4, bytes(8)), "unsupported encoding"),
        (("rgb8", 0, 0, 0, b""), "empty image"),
        (("rgb8", 2, 2, 5, bytes(10)), "step 5 is smaller"),
        (("rgb8", 4, 4, 12, bytes(20)), "data has 20 bytes"),
    ],
)
def test_bad_frames_raise_clear_errors(args, message):
    with pytest.raises(FrameError, match=message):
        raw_to_rgb(*args)


def test_compressed_roundtrip_and_corrupt(rgb):
    ok, png = cv2.imencode(".png", rgb[..., ::-1])
    assert ok
    np.testing.assert_array_equal(compressed_to_rgb("png", png.tobytes()), rgb)
    with pytest.raises(FrameError, match="corrupt compressed frame"):
        compressed_to_rgb("jpeg", b"\xff\xd8\xff\xe0 not really a jpeg")
    with pytest.raises(FrameError, match="empty compressed frame"):
        compressed_to_rgb("jpeg", b"")
