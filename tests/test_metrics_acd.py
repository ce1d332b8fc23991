"""ACD with dlib face embeddings on the real reference faces."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from cdan.metrics import evaluate
from cdan.metrics.acd import FaceEmbedder, content_distance

REFERENCE = Path(__file__).resolve().parents[2] / "shared" / "reference"


@pytest.fixture
def faces() -> list[Path]:
    d = REFERENCE / "real_faces_openface"
    if not d.is_dir():
        pytest.skip(f"reference faces not found at {d}")
    return sorted(d.glob("*.jpg"))


@pytest.fixture(scope="module")
def embedder() -> FaceEmbedder:
    return FaceEmbedder()


def _rgb(path: Path) -> np.ndarray:
    return np.asarray(Image.open(path).convert("RGB"))


def test_acd_of_identical_folders_is_zero_and_blank_pairs_are_dropped(faces, tmp_path):
    real, fake = tmp_path / "real", tmp_path / "fake"
    real.mkdir()
    fake.mkdir()
    for p in faces:
        shutil.copy(p, real / p.name)
        shutil.copy(p, fake / p.name)
    blank = np.full((128, 128, 3), 128, np.uint8)  # no face: the pair is dropped, as in ACD_ED.py
    Image.fromarray(blank).save(real / "blank.png")
    Image.fromarray(blank).save(fake / "blank.png")
    res = evaluate(real, fake, metrics="acd")
    assert res.summary["acd"] == pytest.approx(0.0, abs=1e-9)
    assert res.counts["acd_pairs"] == len(faces)
    assert res.counts["acd_dropped"] == 1
    rows = {r["stem"]: r for r in res.per_image}
    assert rows["blank"]["acd"] is None


def test_acd_separates_people(faces, embedder):
    a, b = _rgb(faces[0]), _rgb(faces[1])
    same = content_distance(embedder, a, np.clip(a.astype(int) + 8, 0, 255).astype(np.uint8))
    other = content_distance(embedder, a, b)
    assert same is not None and other is not None
    assert same < 0.2 < other


def test_box_modes(faces, embedder):
    face = _rgb(faces[0])
    blank = np.full_like(face, 128)
    assert content_distance(embedder, face, blank, "own") is None  # no face in the fake
    assert content_distance(embedder, face, blank, "real") > 0.3  # the real image's box reused
    assert content_distance(embedder, blank, blank, "real") is None
    assert content_distance(embedder, blank, blank, "whole") == pytest.approx(0.0, abs=1e-9)
