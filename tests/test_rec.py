"""`cdan rec` / cdan.infer: five files per image, exact values and encodings, resume, skips, CLI."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from cdan.cli import main
from cdan.errors import CdanError
from cdan.infer import OUTPUTS, assign_stems, iter_images, load_input, reconstruct, to_u8
from cdan.models import build_model
from cdan.models.checkpoint import save_model

RES = 56  # the tiny preset


def _model(seed: int = 0):
    torch.manual_seed(seed)
    return build_model("tiny").eval()


@pytest.fixture(scope="module")
def model():
    return _model(0)


@pytest.fixture(scope="module")
def inputs(tmp_path_factory) -> Path:
    """im_a (native size), im_b (80x70 RGB, resized), im_c (grey, 40x40), bad.png (not an image)."""
    d = tmp_path_factory.mktemp("inputs")
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:RES, 0:RES]
    smooth = np.stack([xx * 4, yy * 4, (xx + yy) * 2], -1).clip(0, 255).astype(np.uint8)
    Image.fromarray(smooth).save(d / "im_a.png")
    Image.fromarray(rng.integers(0, 255, (70, 80, 3), dtype=np.uint8)).save(d / "im_b.jpg")
    Image.fromarray(rng.integers(0, 255, (40, 40), dtype=np.uint8), mode="L").save(d / "im_c.bmp")
    (d / "bad.png").write_bytes(b"this is not a png")
    (d / "notes.txt").write_text("ignored")
    return d


@pytest.fixture(scope="module")
def rec_out(model, inputs, tmp_path_factory) -> tuple[Path, dict]:
    out = tmp_path_factory.mktemp("rec")
    summary = reconstruct(model, inputs, out, batch_size=2, progress=False)
    return out, summary


def _read_u8(path: Path) -> np.ndarray:
    with Image.open(path) as im:
        return np.asarray(im).copy()


def _index(out: Path) -> dict[str, dict]:
    with open(out / "index.csv", newline="") as f:
        return {r["stem"]: r for r in csv.DictReader(f)}


def test_writes_exactly_five_files_per_image_plus_index(rec_out):
    out, summary = rec_out
    stems = ("im_a", "im_b", "im_c")
    expected = {f"{s}_{k}.png" for s in stems for k in OUTPUTS} | {"index.csv", "rec.json"}
    assert {p.name for p in out.iterdir()} == expected
    assert summary["written"] == 3 and summary["skipped"] == 1 and summary["existing"] == 0
    for s in stems:
        for k in OUTPUTS:
            with Image.open(out / f"{s}_{k}.png") as im:
                assert im.size == (RES, RES)
                assert im.mode == ("L" if k == "mask_map" else "RGB")
    assert json.loads((out / "rec.json").read_text())["written"] == 3


def test_saved_maps_equal_the_model_output_quantised(model, rec_out, inputs):
    out, _ = rec_out
    for name in ("im_a.png", "im_b.jpg", "im_c.bmp"):
        x_u8, _ = load_input(inputs / name, RES)
        x = torch.from_numpy(x_u8).permute(2, 0, 1)[None].float() / 255
        with torch.inference_mode():
            o = model(x)
        want = {
            "xrec": o.xrec,
            "mask_map": o.mask_map,
            "mask_input": o.mask_input,
            "mask_color": o.mask_color,
            "color_map": (o.color_map + 1) / 2,
        }
        stem = Path(name).stem
        for k, t in want.items():
            exp = to_u8(t)[0].permute(1, 2, 0).numpy().squeeze(-1 if k == "mask_map" else ())
            got = _read_u8(out / f"{stem}_{k}.png")
            diff = np.abs(got.astype(int) - exp.astype(int))
            assert diff.max() <= 1 and (diff == 0).mean() > 0.99, (stem, k)


def test_saved_maps_satisfy_the_dual_output_relations(rec_out, inputs):
    """xrec = M*x + (1-M)*C, mask_input = M*x, mask_color = clamp((1-M)*C), colour stored as (C+1)/2."""
    out, _ = rec_out
    x = load_input(inputs / "im_b.jpg", RES)[0] / 255.0
    m = _read_u8(out / "im_b_mask_map.png")[..., None] / 255.0
    c = _read_u8(out / "im_b_color_map.png") / 255.0 * 2 - 1
    tol = 4 / 255  # quantisation of M (1/510), C (2/510 after the (C+1)/2 mapping) and the result
    np.testing.assert_allclose(
        _read_u8(out / "im_b_xrec.png") / 255.0, np.clip(m * x + (1 - m) * c, 0, 1), atol=tol
    )
    np.testing.assert_allclose(_read_u8(out / "im_b_mask_input.png") / 255.0, m * x, atol=tol)
    np.testing.assert_allclose(
        _read_u8(out / "im_b_mask_color.png") / 255.0, np.clip((1 - m) * c, 0, 1), atol=tol
    )
    assert (c < -0.05).any(), "the colour map should use its negative range (stored as (C+1)/2 < 0.5)"


def test_index_csv_records_sizes_resize_and_skips(rec_out, inputs):
    out, _ = rec_out
    idx = _index(out)
    assert set(idx) == {"im_a", "im_b", "im_c", "bad"}
    assert (idx["im_a"]["orig_width"], idx["im_a"]["resize"]) == (str(RES), "none")
    assert (idx["im_b"]["orig_width"], idx["im_b"]["orig_height"], idx["im_b"]["resize"]) == (
        "80",
        "70",
        "bilinear-antialias",
    )
    assert idx["im_c"]["status"] == "written" and idx["im_c"]["xrec"] == "im_c_xrec.png"
    assert idx["bad"]["status"] == "skipped" and "unreadable" in idx["bad"]["note"]
    assert idx["bad"]["xrec"] == ""
    mask = _read_u8(out / "im_b_mask_map.png") / 255.0
    assert float(idx["im_b"]["mask_mean"]) == pytest.approx(mask.mean(), abs=1 / 255)
    assert Path(idx["im_b"]["source"]) == inputs / "im_b.jpg"


def test_resume_skips_done_images_and_overwrite_redoes(model, inputs, tmp_path):
    out = tmp_path / "rec"
    first = reconstruct(model, inputs, out, batch_size=4, progress=False)
    assert first["written"] == 3
    marker = out / "im_a_xrec.png"
    marker.write_bytes(b"untouched")  # a resumed run must not rewrite a finished image
    (out / "im_b_color_map.png").unlink()  # im_b is incomplete: it is redone
    again = reconstruct(model, inputs, out, batch_size=4, progress=False)
    assert (again["written"], again["existing"], again["skipped"]) == (1, 2, 1)
    assert marker.read_bytes() == b"untouched"
    assert (out / "im_b_color_map.png").is_file()
    idx = _index(out)
    assert idx["im_a"]["status"] == "existing" and idx["im_b"]["status"] == "written"
    redo = reconstruct(model, inputs, out, batch_size=4, progress=False, overwrite=True)
    assert redo["written"] == 3
    assert marker.read_bytes() != b"untouched"


def test_iter_images_filters_sorts_and_recurses(tmp_path):
    for p in ("b.PNG", "a.jpg", "c.webp", "d.txt", ".hidden.png", "sub/e.png", ".git/f.png"):
        (tmp_path / p).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / p).write_bytes(b"x")
    assert [p.name for p in iter_images(tmp_path)] == ["a.jpg", "b.PNG", "c.webp"]
    assert [p.name for p in iter_images(tmp_path, recursive=True)] == ["a.jpg", "b.PNG", "c.webp", "e.png"]
    assert iter_images(tmp_path / "a.jpg") == [tmp_path / "a.jpg"]
    with pytest.raises(CdanError, match="not found"):
        iter_images(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(CdanError, match="no images"):
        iter_images(tmp_path / "empty")


def test_duplicate_stems_get_unique_names(tmp_path):
    files = [tmp_path / p for p in ("x.png", "happy/x.png", "sad/x.png", "y.png", "y.jpg", "z.png")]
    stems = [it.stem for it in assign_stems(files, tmp_path)]
    assert stems == ["x", "happy__x", "sad__x", "y__png", "y__jpg", "z"]
    assert len(set(stems)) == len(stems)


def test_duplicate_stems_in_subfolders_all_written(model, tmp_path):
    src = tmp_path / "in"
    img = np.full((RES, RES, 3), 128, np.uint8)
    for p in ("a.png", "happy/a.png", "sad/a.png"):
        (src / p).parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(img).save(src / p)
    s = reconstruct(model, src, tmp_path / "out", recursive=True, progress=False)
    assert s["written"] == 3 and s["renamed"] == 2
    for stem in ("a", "happy__a", "sad__a"):
        assert all((tmp_path / "out" / f"{stem}_{k}.png").is_file() for k in OUTPUTS)


# ---------------------------------------------------------------------------------------------------------
# CLI
# ---------------------------------------------------------------------------------------------------------


def _mask_means(out: Path) -> dict[str, float]:
    return {s: float(r["mask_mean"]) for s, r in _index(out).items() if r["status"] == "written"}


def test_cli_rec_from_safetensors_resizes_and_prints_json(inputs, tmp_path, capsys):
    ckpt = save_model(_model(3), tmp_path / "tiny.safetensors")
    rc = main(
        ["rec", "--checkpoint", str(ckpt), "--images", str(inputs), "--out", str(tmp_path / "o"), "--json"]
    )
    assert rc == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["written"] == 3 and summary["resolution"] == RES and summary["checkpoint"] == str(ckpt)
    rc = main(["rec", "--checkpoint", str(ckpt), "--images", str(inputs), "--out", str(tmp_path / "o")])
    line = capsys.readouterr().out.strip()
    assert rc == 0 and line.startswith("rec: 0 written, 3 already done, 1 skipped") and "\n" not in line


def test_cli_rec_from_run_directory_uses_latest_checkpoint(inputs, tmp_path, capsys):
    run = tmp_path / "run"
    (run / "checkpoints").mkdir(parents=True)
    save_model(_model(1), run / "checkpoints" / "step_5.safetensors")
    latest = _model(2)
    save_model(latest, run / "checkpoints" / "step_10.safetensors")
    assert main(["rec", "--checkpoint", str(run), "--images", str(inputs), "--out", str(tmp_path / "o")]) == 0
    direct = reconstruct(latest, inputs, tmp_path / "direct", progress=False)
    assert direct["written"] == 3
    got, want = _mask_means(tmp_path / "o"), _mask_means(tmp_path / "direct")
    assert got == pytest.approx(want, abs=1e-5)


def _dataset(root: Path) -> Path:
    (root / "images").mkdir(parents=True)
    rows = []
    for i in range(4):
        Image.fromarray(np.full((RES, RES, 3), 60 * i, np.uint8)).save(root / "images" / f"f{i}.png")
        rows.append([f"f{i}", "test" if i % 2 else "train", "", *([1.0] * 6)])
    with open(root / "aus.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["name", "split", "label", "AU01", "AU04", "AU06", "AU12", "AU15", "AU25"])
        w.writerows(rows)
    return root


def test_cli_rec_on_a_dataset_split(tmp_path, capsys):
    ckpt = save_model(_model(0), tmp_path / "tiny.safetensors")
    data = _dataset(tmp_path / "ds")
    assert main(["rec", "--checkpoint", str(ckpt), "--data", str(data), "--out", str(tmp_path / "t")]) == 0
    assert set(_mask_means(tmp_path / "t")) == {"f1", "f3"}  # the test split by default
    args = [
        "rec",
        "--checkpoint",
        str(ckpt),
        "--data",
        str(data),
        "--split",
        "all",
        "--out",
        str(tmp_path / "a"),
    ]
    assert main(args) == 0
    assert set(_mask_means(tmp_path / "a")) == {"f0", "f1", "f2", "f3"}


def test_cli_rec_user_errors_are_one_line(inputs, tmp_path, capsys):
    ckpt = save_model(_model(0), tmp_path / "tiny.safetensors")
    assert main(["rec", "--checkpoint", str(ckpt), "--out", str(tmp_path / "o")]) == 2
    assert "give --images" in capsys.readouterr().err
    assert (
        main(["rec", "--checkpoint", str(tmp_path / "no.safetensors"), "--images", str(inputs), "--out", "o"])
        == 2
    )
    assert "not found" in capsys.readouterr().err
    (tmp_path / "empty").mkdir()
    assert main(["rec", "--checkpoint", str(ckpt), "--images", str(tmp_path / "empty"), "--out", "o"]) == 2
    err = capsys.readouterr().err.strip()
    assert "no images" in err and "\n" not in err and "Traceback" not in err


def test_rec_grid_from_rec_output(rec_out, tmp_path):
    from cdan.report.plots import REC_ROWS, save_rec_grid

    out, _ = rec_out
    png = save_rec_grid(out, tmp_path / "grid.png", scale=1)
    with Image.open(png) as im:
        w, h = im.size
    assert h >= len(REC_ROWS) * RES and w >= 3 * RES  # 6 rows of maps, one column per written face
