"""Pairing real and fake folders by stem, `cdan rec` layout, sizes and unreadable files."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from cdan.errors import CdanError
from cdan.metrics import evaluate
from cdan.metrics.pairs import load_pair, pair_images, read_rgb_u8


def _save(path: Path, value: int = 100, size: int = 16) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full((size, size, 3), value, np.uint8)).save(path)


def test_plain_pairing_counts_unpaired(tmp_path):
    for s in ("a", "b", "c"):
        _save(tmp_path / "real" / f"{s}.png")
    for s in ("b", "c", "d"):
        _save(tmp_path / "fake" / f"{s}.jpg")
    (tmp_path / "fake" / "notes.txt").write_text("not an image")
    ps = pair_images(tmp_path / "real", tmp_path / "fake")
    assert [p.stem for p in ps.pairs] == ["b", "c"]
    assert ps.unpaired_real == ["a"] and ps.unpaired_fake == ["d"]
    assert not ps.rec_layout


def test_rec_layout_uses_xrec_and_mask_input(tmp_path):
    _save(tmp_path / "real" / "face1.jpg")
    _save(tmp_path / "real" / "face2.jpg")
    for suffix in ("_xrec", "_mask_map", "_mask_input", "_mask_color", "_color_map"):
        _save(tmp_path / "rec" / f"face1{suffix}.png")
    _save(tmp_path / "rec" / "face2_xrec.png")  # no mask input for this one
    ps = pair_images(tmp_path / "real", tmp_path / "rec")
    assert ps.rec_layout
    assert [(p.stem, p.fake.name) for p in ps.pairs] == [
        ("face1", "face1_xrec.png"),
        ("face2", "face2_xrec.png"),
    ]
    assert ps.pairs[0].mask_input.name == "face1_mask_input.png"
    assert ps.pairs[1].mask_input is None
    assert ps.unpaired_fake == []


def test_no_pairs_is_a_clear_error(tmp_path):
    _save(tmp_path / "real" / "a.png")
    _save(tmp_path / "fake" / "b.png")
    with pytest.raises(CdanError, match="no image pairs"):
        pair_images(tmp_path / "real", tmp_path / "fake")
    with pytest.raises(CdanError, match="not a folder"):
        pair_images(tmp_path / "missing", tmp_path / "fake")


def test_duplicate_stems_keep_one(tmp_path):
    _save(tmp_path / "real" / "a.png")
    _save(tmp_path / "real" / "a.jpg")
    _save(tmp_path / "fake" / "a.png")
    ps = pair_images(tmp_path / "real", tmp_path / "fake")
    assert ps.pairs[0].real.name == "a.png"
    assert ps.duplicates == ["a.jpg"]


def test_fake_is_resized_to_the_real_size(tmp_path):
    _save(tmp_path / "real" / "a.png", size=32)
    _save(tmp_path / "fake" / "a.png", size=16)
    lp = load_pair(pair_images(tmp_path / "real", tmp_path / "fake").pairs[0])
    assert lp.fake_u8.shape == (32, 32, 3) and lp.fake_orig_u8.shape == (16, 16, 3)
    assert lp.resized


def test_sixteen_bit_grey_is_scaled(tmp_path):
    arr = np.full((4, 4), 65535, np.uint16)
    Image.fromarray(arr).save(tmp_path / "g.png")
    img = read_rgb_u8(tmp_path / "g.png")
    assert img.shape == (4, 4, 3) and img.dtype == np.uint8 and int(img.max()) == 255


def test_unreadable_pair_is_skipped_not_fatal(tmp_path):
    _save(tmp_path / "real" / "a.png", 10)
    _save(tmp_path / "fake" / "a.png", 20)
    _save(tmp_path / "real" / "b.png")
    (tmp_path / "fake" / "b.png").write_bytes(b"\x89PNG\r\n\x1a\n truncated")
    res = evaluate(tmp_path / "real", tmp_path / "fake", metrics="psnr")
    assert res.counts["unreadable"] == 1 and res.counts["evaluated"] == 1
    assert [r["stem"] for r in res.per_image] == ["a"]
    assert res.summary["psnr"] == pytest.approx(20 * np.log10(255 / 10))
    assert any("b:" in s for s in res.details["skipped"])


def test_all_unreadable_is_an_error(tmp_path):
    _save(tmp_path / "real" / "b.png")
    (tmp_path / "fake").mkdir()
    (tmp_path / "fake" / "b.png").write_bytes(b"")
    with pytest.raises(CdanError, match="could be read"):
        evaluate(tmp_path / "real", tmp_path / "fake", metrics="psnr")


def test_unknown_metric_is_an_error(tmp_path):
    _save(tmp_path / "real" / "a.png")
    _save(tmp_path / "fake" / "a.png")
    with pytest.raises(CdanError, match="unknown metric"):
        evaluate(tmp_path / "real", tmp_path / "fake", metrics="psnr,fidd")
