"""load_dataset (our layout and the official one) and FaceAUDataset."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from cdan.aus import ALL_AUS, SIX_AUS
from cdan.data import DatasetWriter, FaceAUDataset, Record, load_dataset, write_legacy_pickle
from cdan.errors import CdanError

REF = Path(__file__).resolve().parents[2] / "shared" / "reference"


def _img(i: int, size: int = 16) -> np.ndarray:
    return np.random.default_rng(i).integers(0, 256, (size, size, 3), dtype=np.uint8)


def test_load_our_layout(tmp_path):
    w = DatasetWriter(tmp_path / "ds", SIX_AUS, "b", {})
    for i in range(20):
        lab = ["happy", "sad"][i % 2]
        w.add(f"x{i:02d}", _img(i), np.full(6, i / 4), source=f"{lab}/x{i}.jpg", label=lab)
    w.close(test_fraction=0.2, seed=0)
    ix = load_dataset(tmp_path / "ds")
    assert ix.aus == SIX_AUS and len(ix) == 20 and ix.skipped == []
    assert len(ix.test) == 4 and len(ix.train) == 16 and ix.labels == ["happy", "sad"]
    r = next(r for r in ix.records if r.name == "x05")
    np.testing.assert_array_equal(r.au, np.full(6, 1.25))
    assert r.label == "sad" and r.path == tmp_path / "ds" / "images" / "x05.png"
    sub = load_dataset(tmp_path / "ds", aus=["AU12", "AU01"])
    assert sub.aus == ("AU12", "AU01") and sub.records[0].au.shape == (2,)
    with pytest.raises(CdanError, match="AU02"):
        load_dataset(tmp_path / "ds", aus=["AU02"])
    # A missing image becomes a recorded skip, not a crash.
    (tmp_path / "ds" / "images" / "x03.png").unlink()
    ix2 = load_dataset(tmp_path / "ds")
    assert len(ix2) == 19 and ix2.skipped == [("x03", "image missing")]


def _official(tmp_path: Path, k: int = 6) -> Path:
    root = tmp_path / "official"
    table = {}
    for lab in ("happy", "sad"):
        (root / lab).mkdir(parents=True)
        for i in range(10):
            stem = f"{lab}_{i:02d}"
            Image.fromarray(_img(i)).save(root / lab / f"{stem}.jpg")
            table[stem] = np.arange(k, dtype=np.float64) * 0.1 + i
    del table["sad_07"]  # an image with no AU row: the official loader crashes on it
    write_legacy_pickle(tmp_path / "aus.pkl", table)  # next to the folder
    return root


def test_load_official_layout(tmp_path):
    root = _official(tmp_path)
    ix = load_dataset(root, seed=0)
    assert ix.aus == SIX_AUS
    assert len(ix) == 19 and len(ix.skipped) == 1 and ix.skipped[0][0] == "sad/sad_07.jpg"
    assert ix.labels == ["happy", "sad"]
    assert sorted(r.label for r in ix.test) == ["happy", "happy", "sad", "sad"]  # 20% per class
    r = next(r for r in ix.records if r.name == "happy_03")
    np.testing.assert_allclose(r.au, [3.0, 3.1, 3.2, 3.3, 3.4, 3.5])
    assert [r.split for r in ix.records] == [r.split for r in load_dataset(root, seed=0).records]
    assert [r.split for r in ix.records] != [r.split for r in load_dataset(root, seed=5).records]


def test_official_layout_train_test_folders_and_17_aus(tmp_path):
    root = tmp_path / "o"
    table = {}
    for split in ("train", "test"):
        (root / split / "happy").mkdir(parents=True)
        for i in range(3):
            Image.fromarray(_img(i)).save(root / split / "happy" / f"{split}{i}.png")
            table[f"{split}{i}"] = np.full(17, float(i))
    write_legacy_pickle(root / "au17.pkl", table)
    ix = load_dataset(root)
    assert ix.aus == ALL_AUS
    assert sorted(r.name for r in ix.test) == ["test0", "test1", "test2"]
    assert {r.label for r in ix.records} == {"happy"}
    six = load_dataset(root, aus=SIX_AUS)
    assert six.records[0].au.shape == (6,)


def test_load_errors(tmp_path):
    with pytest.raises(CdanError, match="not found"):
        load_dataset(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(CdanError, match="pkl"):
        load_dataset(tmp_path / "empty")
    root = _official(tmp_path)
    write_legacy_pickle(tmp_path / "second.pkl", {"a": np.zeros(6)})
    with pytest.raises(CdanError, match="several"):
        load_dataset(root)
    ix = load_dataset(root, pkl=tmp_path / "aus.pkl")
    assert len(ix) == 19


def test_reference_faces_official_layout(tmp_path):
    src = REF / "real_faces_openface"
    if not src.exists():
        pytest.skip(f"reference folder {src} is absent")
    ix = load_dataset(src)
    assert ix.aus == ALL_AUS and len(ix) == 4 and ix.skipped == []
    item = FaceAUDataset(ix.records, size=112)[0]
    assert item["image"].shape == (3, 112, 112) and item["au"].shape == (17,)


def test_face_au_dataset_items_and_modes(tmp_path):
    rgb = _img(1, 112)
    Image.fromarray(rgb).save(tmp_path / "rgb.png")
    Image.fromarray(_img(2, 50)).resize((64, 48)).save(tmp_path / "small.png")
    Image.fromarray(rgb[:, :, 0]).save(tmp_path / "grey.png")
    rgba = np.concatenate([rgb, np.full((112, 112, 1), 255, np.uint8)], axis=2)
    rgba[:10, :10, 3] = 0  # transparent corner -> white
    Image.fromarray(rgba).save(tmp_path / "rgba.png")
    Image.fromarray(rgb).convert("CMYK").save(tmp_path / "cmyk.jpg")
    Image.fromarray(rgb[:, :, 1].astype(np.uint16) * 257).save(tmp_path / "grey16.png")
    names = ["rgb", "small", "grey", "rgba", "cmyk", "grey16"]
    exts = {"cmyk": ".jpg"}
    recs = [
        Record(n, tmp_path / f"{n}{exts.get(n, '.png')}", np.array([5.0, 2.5, 0.0]), "train", None)
        for n in names
    ]
    ds = FaceAUDataset(recs, size=112)
    assert isinstance(ds, torch.utils.data.Dataset) and len(ds) == 6
    items = {n: ds[i] for i, n in enumerate(names)}
    for n, it in items.items():
        assert it["image"].shape == (3, 112, 112) and it["image"].dtype == torch.float32, n
        assert 0.0 <= it["image"].min() and it["image"].max() <= 1.0
    assert items["rgb"]["au"].tolist() == [1.0, 0.5, 0.0] and items["grey"]["index"] == 2
    torch.testing.assert_close(items["rgb"]["image"], torch.from_numpy(rgb).permute(2, 0, 1).float() / 255)
    g = items["grey"]["image"]
    torch.testing.assert_close(g[0], g[2])
    torch.testing.assert_close(g[0], torch.from_numpy(rgb[:, :, 0]).float() / 255)
    torch.testing.assert_close(items["grey16"]["image"][1], torch.from_numpy(rgb[:, :, 1]).float() / 255)
    assert items["rgba"]["image"][:, :10, :10].min() == 1.0
    torch.testing.assert_close(items["rgba"]["image"][:, 20:, 20:], items["rgb"]["image"][:, 20:, 20:])
    assert (items["cmyk"]["image"] - items["rgb"]["image"]).abs().mean() < 0.1  # JPEG + CMYK round trip
    batch = next(iter(torch.utils.data.DataLoader(ds, batch_size=6)))
    assert batch["image"].shape == (6, 3, 112, 112) and batch["au"].shape == (6, 3)


def test_face_au_dataset_rejects_missing_au_and_bad_files(tmp_path):
    with pytest.raises(ValueError):
        FaceAUDataset([Record("a", tmp_path / "a.png", None, "train")])
    (tmp_path / "bad.png").write_bytes(b"not an image")
    ds = FaceAUDataset([Record("bad", tmp_path / "bad.png", np.zeros(6), "train")])
    with pytest.raises(CdanError, match="bad.png"):
        ds[0]


def test_resize_is_antialiased(tmp_path):
    # A 1-px checkerboard downscaled must average to grey, not alias to black or white.
    board = ((np.indices((224, 224)).sum(0) % 2) * 255).astype(np.uint8)
    Image.fromarray(np.stack([board] * 3, -1)).save(tmp_path / "b.png")
    img = FaceAUDataset([Record("b", tmp_path / "b.png", np.zeros(1), "train")], size=112)[0]["image"]
    assert abs(img.mean().item() - 0.5) < 0.02 and img.std().item() < 0.05
