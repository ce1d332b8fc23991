"""Robust image and video reading: every odd input is either handled or a one-line UnreadableInput."""

from __future__ import annotations

import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from cdan.faces.images import UnreadableInput, iter_video_frames, read_image, to_rgb_u8


def _gradient(h: int = 40, w: int = 60) -> np.ndarray:
    y, x = np.mgrid[0:h, 0:w]
    return np.stack([x * 255 // (w - 1), y * 255 // (h - 1), np.full_like(x, 128)], 2).astype(np.uint8)


def _png_header_only(path: Path, width: int, height: int) -> None:
    """A PNG whose header claims width x height but holds almost no data (a decompression-bomb shape)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"")))


def test_rgb_round_trip(tmp_path):
    img = _gradient()
    Image.fromarray(img).save(tmp_path / "a.png")
    out = read_image(tmp_path / "a.png")
    assert out.dtype == np.uint8 and out.shape == (40, 60, 3)
    np.testing.assert_array_equal(out, img)


def test_grey_palette_cmyk_alpha_16bit(tmp_path):
    img = _gradient()
    grey = Image.fromarray(img).convert("L")
    grey.save(tmp_path / "g.png")
    out = read_image(tmp_path / "g.png")
    assert out.shape == (40, 60, 3)
    np.testing.assert_array_equal(out[:, :, 0], np.asarray(grey))
    np.testing.assert_array_equal(out[:, :, 0], out[:, :, 2])

    Image.fromarray(img).convert("P", palette=Image.Palette.ADAPTIVE).save(tmp_path / "p.png")
    assert read_image(tmp_path / "p.png").shape == (40, 60, 3)

    Image.fromarray(img).convert("CMYK").save(tmp_path / "c.jpg", quality=95)
    cmyk = read_image(tmp_path / "c.jpg")
    assert cmyk.shape == (40, 60, 3)
    assert np.abs(cmyk.astype(int) - img.astype(int)).mean() < 12

    rgba = np.zeros((40, 60, 4), np.uint8)
    rgba[..., :3] = 10
    rgba[:, 30:, 3] = 255  # left half fully transparent -> white
    Image.fromarray(rgba, "RGBA").save(tmp_path / "t.png")
    out = read_image(tmp_path / "t.png")
    assert out.shape == (40, 60, 3)
    assert (out[:, :30] == 255).all() and (out[:, 30:] == 10).all()

    Image.fromarray(rgba, "RGBA").convert("LA").save(tmp_path / "la.png")
    assert read_image(tmp_path / "la.png")[0, 0].tolist() == [255, 255, 255]

    deep = (np.arange(40 * 60, dtype=np.uint16).reshape(40, 60) * 27).astype(np.uint16)
    Image.fromarray(deep).save(tmp_path / "d.png")
    out = read_image(tmp_path / "d.png")
    assert out.shape == (40, 60, 3) and out.dtype == np.uint8
    assert out.max() > 200  # scaled from 16 bits, not clipped to 0/255
    np.testing.assert_allclose(out[..., 0], np.rint(deep / 65535 * 255), atol=1)


def test_exif_rotation_is_applied(tmp_path):
    img = _gradient(40, 60)
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise to display
    Image.fromarray(img).save(tmp_path / "r.jpg", exif=exif.tobytes(), quality=95)
    out = read_image(tmp_path / "r.jpg")
    assert out.shape == (60, 40, 3)  # upright: width and height swapped


def test_bad_files_raise_one_line_reasons(tmp_path):
    good = tmp_path / "good.jpg"
    Image.fromarray(_gradient(200, 200)).save(good, quality=90)
    cases = {
        "zero.jpg": b"",
        "text.jpg": b"this is not an image at all\n" * 10,
        "trunc.jpg": good.read_bytes()[: len(good.read_bytes()) // 3],
    }
    reasons = {}
    for name, data in cases.items():
        (tmp_path / name).write_bytes(data)
        with pytest.raises(UnreadableInput) as e:
            read_image(tmp_path / name)
        reasons[name] = str(e.value)
        assert "\n" not in reasons[name] and reasons[name]
    assert "empty" in reasons["zero.jpg"]
    assert "not an image" in reasons["text.jpg"]
    assert "truncated" in reasons["trunc.jpg"]
    with pytest.raises(UnreadableInput, match="cannot open"):
        read_image(tmp_path / "missing.jpg")


def test_decompression_bomb_guard(tmp_path):
    _png_header_only(tmp_path / "bomb.png", 20000, 20000)  # 400 MP claimed in a ~50 byte file
    with pytest.raises(UnreadableInput, match="too large"):
        read_image(tmp_path / "bomb.png")
    Image.fromarray(_gradient(100, 100)).save(tmp_path / "small.png")
    with pytest.raises(UnreadableInput, match="too large"):
        read_image(tmp_path / "small.png", max_pixels=5000)
    assert read_image(tmp_path / "small.png", max_pixels=10000).shape == (100, 100, 3)


def test_to_rgb_u8_float_mode():
    arr = np.linspace(-1, 3, 12, dtype=np.float32).reshape(3, 4)
    out = to_rgb_u8(Image.fromarray(arr, "F"))
    assert out.shape == (3, 4, 3) and out.min() == 0 and out.max() == 255


def test_video_frames_and_unreadable_video(tmp_path):
    import cv2

    path = tmp_path / "v.avi"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 10, (64, 48))
    assert writer.isOpened()
    for k in range(7):
        frame = np.full((48, 64, 3), k * 30, np.uint8)
        writer.write(frame)
    writer.release()
    frames = list(iter_video_frames(path, every=3))
    assert [i for i, _ in frames] == [0, 3, 6]
    assert all(f.shape == (48, 64, 3) and f.dtype == np.uint8 for _, f in frames)
    assert abs(int(frames[1][1].mean()) - 90) < 8

    (tmp_path / "bad.mp4").write_bytes(b"\x00\x00\x00\x18ftypmp42 definitely not a video" * 3)
    with pytest.raises(UnreadableInput):
        list(iter_video_frames(tmp_path / "bad.mp4"))
    (tmp_path / "empty.mp4").write_bytes(b"")
    with pytest.raises(UnreadableInput, match="empty"):
        list(iter_video_frames(tmp_path / "empty.mp4"))
