"""ED: L2 between AU vectors (0-5 scale) from an AU backend or from OpenFace CSVs."""

from __future__ import annotations

import csv
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from cdan.aus import SIX_AUS
from cdan.errors import CdanError
from cdan.metrics import evaluate
from cdan.metrics.ed import expression_distance

REFERENCE = Path(__file__).resolve().parents[2] / "shared" / "reference"


class ColourBackend:
    """A stand-in AU backend: AU k = mean of colour channel k % 3, scaled to 0-5; None on black images."""

    name = "colour"

    def estimate(self, image_u8, aus):
        if image_u8.max() == 0:
            return None
        means = image_u8.reshape(-1, 3).mean(axis=0) / 51.0
        return np.array([means[k % 3] for k in range(len(aus))], np.float32)


def _folders(tmp_path: Path, shift: int) -> tuple[Path, Path]:
    real, fake = tmp_path / "real", tmp_path / "fake"
    real.mkdir()
    fake.mkdir()
    for i, colour in enumerate([(40, 80, 120), (200, 10, 60), (0, 0, 0)]):
        img = np.zeros((16, 16, 3), np.uint8) + np.array(colour, np.uint8)
        Image.fromarray(img).save(real / f"p{i}.png")
        out = img if i == 2 else np.clip(img.astype(int) + shift, 0, 255).astype(np.uint8)
        Image.fromarray(out).save(fake / f"p{i}_xrec.png")  # `cdan rec` naming
    return real, fake


def test_expression_distance_closed_form():
    assert expression_distance(np.array([0, 0, 0]), np.array([3, 4, 0])) == pytest.approx(5.0)
    with pytest.raises(ValueError):
        expression_distance(np.zeros(3), np.zeros(4))


def test_ed_of_identical_folders_is_zero(tmp_path):
    real, fake = _folders(tmp_path, shift=0)
    res = evaluate(real, fake, metrics="ed", au_backend=ColourBackend())
    assert res.summary["ed"] == pytest.approx(0.0, abs=1e-12)
    assert res.counts["ed_dropped"] == 1  # the black pair: no "face"
    assert res.counts["ed_pairs"] == 2


def test_ed_value_and_per_image_rows(tmp_path):
    real, fake = _folders(tmp_path, shift=51)  # every channel +1.0 on the 0-5 scale
    res = evaluate(real, fake, metrics="ed", au_backend=ColourBackend(), aus=SIX_AUS)
    rows = {r["stem"]: r for r in res.per_image}
    # +51 on every channel (no clipping) -> each of the 6 AUs moves by 1.0 -> L2 = sqrt(6).
    assert rows["p0"]["ed"] == pytest.approx(np.sqrt(6.0), rel=1e-5)
    assert rows["p1"]["ed"] == pytest.approx(np.sqrt(6.0), rel=1e-5)
    assert rows["p2"]["ed"] is None  # black: no "face" -> dropped
    assert res.summary["ed"] == pytest.approx(np.sqrt(6.0), rel=1e-5)


def _write_openface_csv(src: Path, dst: Path, au12: float | None = None) -> None:
    rows = list(csv.reader(src.open()))
    if au12 is not None:
        col = [h.strip() for h in rows[0]].index("AU12_r")
        rows[1][col] = f"{au12}"
    with dst.open("w", newline="") as f:
        csv.writer(f).writerows(rows)


def test_ed_from_openface_csvs(tmp_path):
    src = REFERENCE / "openface" / "of220_FaceLandmarkImg_img1.csv"
    if not src.is_file():
        pytest.skip(f"reference OpenFace CSV not found at {src}")
    real, fake = _folders(tmp_path, shift=0)
    csv_real, csv_fake = tmp_path / "of_real", tmp_path / "of_fake"
    csv_real.mkdir()
    csv_fake.mkdir()
    _write_openface_csv(src, csv_real / "p0.csv")
    _write_openface_csv(src, csv_fake / "p0_xrec.csv", au12=4.99)  # reference AU12_r is 1.99
    _write_openface_csv(src, csv_real / "p1.csv")
    _write_openface_csv(src, csv_fake / "p1_xrec.csv")
    res = evaluate(
        real, fake, metrics="ed", openface_csv_real=csv_real, openface_csv_fake=csv_fake, aus=SIX_AUS
    )
    rows = {r["stem"]: r for r in res.per_image}
    assert rows["p0"]["ed"] == pytest.approx(3.0, abs=1e-6)
    assert rows["p1"]["ed"] == pytest.approx(0.0, abs=1e-12)
    assert res.counts["ed_dropped"] == 1  # p2 has no CSV
    assert res.summary["ed"] == pytest.approx(1.5, abs=1e-6)


def test_ed_needs_both_openface_folders(tmp_path):
    real, fake = _folders(tmp_path, shift=0)
    with pytest.raises(CdanError, match="both"):
        evaluate(real, fake, metrics="ed", openface_csv_real=tmp_path)


def test_ed_with_the_default_backend_on_identical_faces(tmp_path):
    faces = REFERENCE / "real_faces_openface"
    if not faces.is_dir():
        pytest.skip(f"reference faces not found at {faces}")
    try:
        from cdan.faces.au import get_backend

        backend = get_backend("auto")
    except (ImportError, CdanError) as e:
        pytest.skip(f"default AU backend unavailable: {e}")
    real, fake = tmp_path / "real", tmp_path / "fake"
    real.mkdir()
    fake.mkdir()
    for p in sorted(faces.glob("*.jpg"))[:2]:
        shutil.copy(p, real / p.name)
        shutil.copy(p, fake / p.name)
    res = evaluate(real, fake, metrics="ed", au_backend="auto")
    assert res.summary["ed"] == pytest.approx(0.0, abs=1e-6), res.unavailable
    assert res.counts["ed_pairs"] == 2
    assert getattr(backend, "name", None)
