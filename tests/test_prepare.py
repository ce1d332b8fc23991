"""`cdan prepare`: the acceptance run on real faces, robustness (every odd input is a skip or handled),
resume, videos, several faces, class labels, unique names, workers and the openface CSV import."""

from __future__ import annotations

import csv
import json
import shutil
import struct
import zlib
from pathlib import Path

import numpy as np
from PIL import Image

from cdan.aus import ALL_AUS, SIX_AUS
from cdan.cli import main


def _copy_faces(reference_dir: Path, dst: Path) -> list[Path]:
    dst.mkdir(parents=True, exist_ok=True)
    out = []
    for p in sorted((reference_dir / "real_faces_openface").glob("*.jpg")):
        out.append(Path(shutil.copy(p, dst / p.name)))
    return out


def _run(capsys, *args: str) -> tuple[int, dict | str]:
    code = main(["prepare", "--no-progress", *args])
    out = capsys.readouterr().out
    if "--json" in args and code == 0:
        return code, json.loads(out)
    return code, out


def _rows(dataset: Path) -> list[dict]:
    with open(dataset / "aus.csv", newline="") as f:
        return list(csv.DictReader(f))


def _face_on_canvas(img: np.ndarray, size: int = 200) -> np.ndarray:
    """A face crop pasted in the middle of a larger plain canvas (as in an ordinary photo)."""
    canvas = np.full((size, size, 3), 235, np.uint8)
    h, w = img.shape[:2]
    y, x = (size - h) // 2, (size - w) // 2
    canvas[y : y + h, x : x + w] = img
    return canvas


def _bomb_png(path: Path) -> None:
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", 30000, 30000, 8, 2, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"")))


def test_acceptance_reference_faces_plus_corrupt_file(reference_dir, tmp_path, capsys):
    src = tmp_path / "in"
    faces = _copy_faces(reference_dir, src)
    (src / "corrupt.jpg").write_bytes(faces[0].read_bytes()[:1500])
    out = tmp_path / "D"
    code, summary = _run(capsys, str(src), "--out", str(out), "--json", "--legacy-pkl")
    assert code == 0
    assert summary["written"] == 4 and summary["skipped"] == 1
    assert summary["train"] + summary["test"] == 4
    assert [s["source"] for s in summary["skips"]] == [str((src / "corrupt.jpg").resolve())]
    assert "truncated" in summary["skips"][0]["reason"]

    rows = _rows(out)
    assert sorted(r["name"] for r in rows) == sorted(p.stem for p in faces)
    assert list(rows[0])[:9] == ["name", "split", "label", *SIX_AUS]
    for r in rows:
        img = Image.open(out / "images" / f"{r['name']}.png")
        assert img.size == (112, 112) and img.mode == "RGB"
        au = np.array([float(r[a]) for a in SIX_AUS])
        assert ((0 <= au) & (au <= 5)).all()
        assert r["backend"] == summary["backend"] and float(r["box_w"]) > 50
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["counts"]["written"] == 4 and manifest["counts"]["skipped"] == 1
    assert manifest["skipped"][0]["reason"].startswith("truncated")
    assert manifest["options"]["size"] == 112

    from cdan.data import load_dataset, load_legacy_pickle

    index = load_dataset(out)
    assert len(index.records) == 4 and index.aus == SIX_AUS
    pkl = load_legacy_pickle(out / "aus.pkl")
    assert set(pkl) == {r["name"] for r in rows}
    r0 = rows[0]
    np.testing.assert_allclose(pkl[r0["name"]], [float(r0[a]) for a in SIX_AUS])

    # The same folder again without --resume is refused (one-line error, exit 2); with it, nothing is redone.
    code, _ = _run(capsys, str(src), "--out", str(out))
    assert code == 2
    code, again = _run(capsys, str(src), "--out", str(out), "--json", "--resume")
    assert code == 0 and again["processed"] == 0 and again["resumed"] == 5 and again["written"] == 4


def test_robustness_every_odd_input_is_handled_or_skipped(reference_dir, tmp_path, capsys):
    src = tmp_path / "in"
    src.mkdir()
    face = np.asarray(
        Image.open(sorted((reference_dir / "real_faces_openface").glob("*.jpg"))[1]).convert("RGB")
    )
    photo = _face_on_canvas(face)
    Image.fromarray(photo).save(src / "plain.png")
    Image.fromarray(photo).convert("L").save(src / "grey.png")
    Image.fromarray(photo).convert("CMYK").save(src / "cmyk.jpg", quality=95)
    rgba = np.dstack([photo, np.full(photo.shape[:2], 255, np.uint8)])
    rgba[:20, :20, 3] = 0
    Image.fromarray(rgba, "RGBA").save(src / "rgba.png")
    Image.fromarray((photo.mean(2) * 257).astype(np.uint16)).save(src / "deep16.png")
    exif = Image.Exif()
    exif[0x0112] = 8  # stored rotated; displayed upright after a 90 degree turn
    Image.fromarray(np.ascontiguousarray(np.rot90(photo, -1))).save(
        src / "exif.jpg", exif=exif.tobytes(), quality=95
    )
    # Problems: each one recorded skip.
    (src / "zero.jpg").write_bytes(b"")
    (src / "notes.png").write_text("not an image\n")
    (src / "trunc.jpg").write_bytes(
        (reference_dir / "real_faces_openface" / "N_0000000356_00190.jpg").read_bytes()[:900]
    )
    _bomb_png(src / "huge.png")
    Image.fromarray(np.full((160, 160, 3), 90, np.uint8)).save(src / "wall.png")
    (src / "broken.mp4").write_bytes(b"\x00\x00\x00\x18ftypisom not really a video" * 4)
    (src / "readme.txt").write_text("ignored: not an image or video\n")

    out = tmp_path / "D"
    code, summary = _run(capsys, str(src), "--out", str(out), "--json")
    assert code == 0
    written = {r["name"] for r in _rows(out)}
    assert written == {"plain", "grey", "cmyk", "rgba", "deep16", "exif"}
    reasons = {Path(s["source"]).name: s["reason"] for s in summary["skips"]}
    assert set(reasons) == {"zero.jpg", "notes.png", "trunc.jpg", "huge.png", "wall.png", "broken.mp4"}
    assert "empty" in reasons["zero.jpg"]
    assert "not an image" in reasons["notes.png"]
    assert "truncated" in reasons["trunc.jpg"]
    assert "too large" in reasons["huge.png"]
    assert "no face" in reasons["wall.png"]
    assert "video" in reasons["broken.mp4"]
    # The EXIF-rotated photo gives the same aligned face as the upright one.
    a = np.asarray(Image.open(out / "images" / "plain.png"), dtype=np.float32)
    b = np.asarray(Image.open(out / "images" / "exif.png"), dtype=np.float32)
    assert np.abs(a - b).mean() < 12


def test_all_faces_and_largest_face(reference_dir, tmp_path, capsys):
    imgs = [
        np.asarray(Image.open(p).convert("RGB"))
        for p in sorted((reference_dir / "real_faces_openface").glob("*.jpg"))
    ]
    small = np.asarray(Image.fromarray(imgs[2]).resize((96, 96)))
    group = np.full((240, 480, 3), 230, np.uint8)
    group[40:168, 30:158] = imgs[0]  # 128 px face
    group[60:156, 330:426] = small  # 96 px face
    src = tmp_path / "in"
    src.mkdir()
    Image.fromarray(group).save(src / "group.png")

    code, one = _run(capsys, str(src), "--out", str(tmp_path / "A"), "--json")
    assert code == 0 and one["written"] == 1
    (row,) = _rows(tmp_path / "A")
    assert row["name"] == "group" and float(row["box_x"]) < 200  # the larger face, on the left

    code, every = _run(capsys, str(src), "--out", str(tmp_path / "B"), "--json", "--all-faces")
    assert code == 0 and every["written"] == 2
    rows = sorted(_rows(tmp_path / "B"), key=lambda r: r["name"])
    assert [r["name"] for r in rows] == ["group_0", "group_1"]
    assert float(rows[0]["box_w"]) > float(rows[1]["box_w"])


def test_video_input_with_every(reference_dir, tmp_path, capsys):
    import cv2

    imgs = [
        np.asarray(Image.open(p).convert("RGB"))
        for p in sorted((reference_dir / "real_faces_openface").glob("*.jpg"))
    ]
    src = tmp_path / "in"
    src.mkdir()
    path = src / "clip.avi"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 5, (200, 200))
    frames = [_face_on_canvas(imgs[k % 4]) for k in range(6)]
    frames[4] = np.full((200, 200, 3), 120, np.uint8)  # a frame without a face
    for f in frames:
        writer.write(cv2.cvtColor(f, cv2.COLOR_RGB2BGR))
    writer.release()

    code, summary = _run(
        capsys, str(path), "--out", str(tmp_path / "D"), "--json", "--every", "2", "--aus", "all"
    )
    assert code == 0
    rows = sorted(_rows(tmp_path / "D"), key=lambda r: r["name"])
    assert [r["name"] for r in rows] == ["clip_f000000", "clip_f000002"]
    assert [r["frame"] for r in rows] == ["0", "2"]
    assert all(a in rows[0] for a in ALL_AUS)
    assert summary["frames"] == 3
    assert [s["source"].rsplit("#", 1)[1] for s in summary["skips"]] == ["frame4"]


def test_resume_after_an_interruption(reference_dir, tmp_path, capsys, monkeypatch):
    import cdan.data.prepare as prep

    src = tmp_path / "in"
    _copy_faces(reference_dir, src)
    out = tmp_path / "D"
    real = prep._process_image
    calls = []

    def flaky(item, *args, **kwargs):
        calls.append(item.rel)
        if len(calls) == 3:
            raise KeyboardInterrupt  # killed while working on the third image
        return real(item, *args, **kwargs)

    monkeypatch.setattr(prep, "_process_image", flaky)
    assert main(["prepare", "--no-progress", str(src), "--out", str(out)]) == 130
    assert len(list((out / "images").glob("*.png"))) == 2 and not (out / "aus.csv").exists()

    calls.clear()
    code, summary = _run(capsys, str(src), "--out", str(out), "--json", "--resume")
    assert code == 0
    assert summary["resumed"] == 2 and summary["processed"] == 2 and summary["written"] == 4
    assert len(calls) == 2  # the two finished images were not processed again


def test_labels_names_workers_and_group_by(reference_dir, tmp_path, capsys):
    src = tmp_path / "in"
    faces = sorted((reference_dir / "real_faces_openface").glob("*.jpg"))
    for label, picks in (("happy", faces[:2]), ("sad", faces[2:])):
        (src / label).mkdir(parents=True)
        for p in picks:
            shutil.copy(p, src / label / p.name)
    shutil.copy(faces[0], src / "x.jpg")
    Image.open(faces[1]).save(src / "x.png")

    code, s1 = _run(capsys, str(src), "--out", str(tmp_path / "A"), "--json", "--workers", "1")
    code2, s2 = _run(capsys, str(src), "--out", str(tmp_path / "B"), "--json", "--workers", "2")
    assert code == code2 == 0 and s1["written"] == s2["written"] == 6
    assert (tmp_path / "A" / "aus.csv").read_text() == (tmp_path / "B" / "aus.csv").read_text()
    rows = {r["name"]: r for r in _rows(tmp_path / "A")}
    assert set(rows) == {f"happy__{p.stem}" for p in faces[:2]} | {f"sad__{p.stem}" for p in faces[2:]} | {
        "x",
        "x_png",
    }
    assert rows[f"happy__{faces[0].stem}"]["label"] == "happy" and rows["x"]["label"] == ""
    for label in ("happy", "sad"):  # stratified: one of each class's two faces is in test
        assert sorted(r["split"] for r in rows.values() if r["label"] == label) == ["test", "train"]

    # --group-by: the two copies of one person (x.jpg and happy/<same file>) land on the same side.
    code, _ = _run(
        capsys, str(src), "--out", str(tmp_path / "C"), "--group-by", r"(N_\d+)", "--test-fraction", "0.5"
    )
    assert code == 0
    crow = {r["name"]: r for r in _rows(tmp_path / "C")}
    assert crow["x"]["split"] == crow[f"happy__{faces[0].stem}"]["split"]


def test_openface_csv_import(reference_dir, tmp_path, capsys):
    from cdan.data import read_openface_csv

    src = tmp_path / "in"
    faces = _copy_faces(reference_dir, src)
    csv_dir = tmp_path / "csv"
    csv_dir.mkdir()
    ref_csv = reference_dir / "openface" / "of220_FaceLandmarkImg_img1.csv"
    for p in faces[:3]:  # the fourth image has no CSV: a recorded skip
        shutil.copy(ref_csv, csv_dir / f"{p.stem}.csv")
    code, summary = _run(
        capsys, str(src), "--out", str(tmp_path / "D"), "--json", "--au-backend", "openface",
        "--openface-csv", str(csv_dir),
    )  # fmt: skip
    assert code == 0 and summary["backend"] == "openface"
    assert summary["written"] == 3 and summary["skipped"] == 1
    assert "no OpenFace CSV" in summary["skips"][0]["reason"]
    want = read_openface_csv(ref_csv).aus(SIX_AUS)[0]
    for r in _rows(tmp_path / "D"):
        np.testing.assert_allclose([float(r[a]) for a in SIX_AUS], np.clip(want, 0, 5), atol=1e-5)


def test_user_errors_are_one_line(tmp_path, capsys):
    assert main(["prepare", "--no-progress", str(tmp_path), "--out", str(tmp_path / "D"), "--size", "8"]) == 2
    err = capsys.readouterr().err
    assert "--size" in err and "Traceback" not in err
    code = main(
        ["prepare", "--no-progress", str(tmp_path), "--out", str(tmp_path / "E"), "--openface-csv", "x"]
    )
    assert code == 2
    code = main(["prepare", "--no-progress", str(tmp_path), "--out", str(tmp_path / "F"), "--group-by", "("])
    assert code == 2
    # An input that does not exist is a recorded skip, not a crash.
    code, summary = _run(capsys, str(tmp_path / "missing.jpg"), "--out", str(tmp_path / "G"), "--json")
    assert code == 0 and summary["written"] == 0 and summary["skips"][0]["reason"] == "not found"


def test_openface_binary_on_a_video(reference_dir, tmp_path, capsys):
    """A stand-in FeatureExtraction (copies a real 100-frame OpenFace CSV): rows are matched by frame."""
    import os
    import stat

    import cv2

    from cdan.data import read_openface_csv

    if os.name != "posix":
        return
    ref_csv = reference_dir / "openface" / "openface_legacy_sequence_100frames.csv"
    tool = tmp_path / "bin" / "FeatureExtraction"
    tool.parent.mkdir()
    tool.write_text(
        "#!/bin/sh\n"
        'while [ $# -gt 0 ]; do case "$1" in -f) f="$2"; shift;; -out_dir) o="$2"; shift;; esac; shift; done\n'
        'mkdir -p "$o"; b=$(basename "$f"); cp "' + str(ref_csv) + '" "$o/${b%.*}.csv"\n'
    )
    tool.chmod(tool.stat().st_mode | stat.S_IXUSR)
    face = np.asarray(
        Image.open(sorted((reference_dir / "real_faces_openface").glob("*.jpg"))[0]).convert("RGB")
    )
    video = tmp_path / "talk.avi"
    writer = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"MJPG"), 5, (200, 200))
    for _ in range(5):
        writer.write(cv2.cvtColor(_face_on_canvas(face), cv2.COLOR_RGB2BGR))
    writer.release()
    code, summary = _run(
        capsys, str(video), "--out", str(tmp_path / "D"), "--json", "--every", "2",
        "--au-backend", "openface", "--openface-bin", str(tool.parent),
    )  # fmt: skip
    assert code == 0 and summary["written"] == 3
    table = read_openface_csv(ref_csv)
    for r in _rows(tmp_path / "D"):
        row = int(np.flatnonzero(table.frames == int(r["frame"]) + 1)[0])
        np.testing.assert_allclose(
            [float(r[a]) for a in SIX_AUS], np.clip(table.aus(SIX_AUS)[row], 0, 5), atol=1e-5
        )
