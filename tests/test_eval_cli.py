"""`cdan eval` in-process: offline (no Inception/LPIPS weights) every other metric still prints."""

from __future__ import annotations

import csv
import json
import shutil
import socket
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from cdan.cli import main

REFERENCE = Path(__file__).resolve().parents[2] / "shared" / "reference"
# AU intensities (SIX_AUS order) of the four faces: every AU has active (>= 1) and inactive faces.
AUS = np.array(
    [
        [0.0, 2.0, 0.0, 3.0, 0.0, 1.5],
        [1.2, 0.0, 2.0, 0.0, 1.0, 0.0],
        [0.0, 1.1, 0.3, 2.5, 0.0, 2.0],
        [2.0, 0.0, 1.4, 0.0, 3.0, 0.2],
    ]
)


@pytest.fixture
def offline(monkeypatch, tmp_path):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "empty_torch_home"))

    def refuse(*args, **kwargs):
        raise AssertionError("network access attempted")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", refuse)


@pytest.fixture
def workspace(tmp_path) -> dict[str, Path]:
    """A dataset of the 4 reference faces, `cdan rec`-style output for them, and OpenFace CSVs for ED."""
    faces = sorted((REFERENCE / "real_faces_openface").glob("*.jpg"))
    of_csv = REFERENCE / "openface" / "of220_FaceLandmarkImg_img1.csv"
    if len(faces) < 4 or not of_csv.is_file():
        pytest.skip(f"reference faces / OpenFace CSV not found under {REFERENCE}")
    from cdan.aus import SIX_AUS
    from cdan.data import DatasetWriter

    data = tmp_path / "data"
    writer = DatasetWriter(data, SIX_AUS, backend="test")
    rec, of_real, of_fake = tmp_path / "rec", tmp_path / "of_real", tmp_path / "of_fake"
    for d in (rec, of_real, of_fake):
        d.mkdir()
    yy, xx = np.mgrid[0:128, 0:128]
    for i, path in enumerate(faces[:4]):
        img = np.asarray(Image.open(path).convert("RGB"))
        name = f"f{i}"
        writer.add(name, img, AUS[i], source=str(path))
        xrec = np.clip(img.astype(int) + (i + 1) * 3, 0, 255).astype(np.uint8)
        Image.fromarray(xrec).save(rec / f"{name}_xrec.png")
        mask = ((yy > 40 + 10 * i) | (xx < 20 * i)).astype(np.float64)[..., None]  # a different parsing each
        Image.fromarray((img * mask).astype(np.uint8)).save(rec / f"{name}_mask_input.png")
        Image.fromarray((mask[..., 0] * 255).astype(np.uint8)).save(rec / f"{name}_mask_map.png")
        shutil.copy(of_csv, of_real / f"{name}.csv")
        shutil.copy(of_csv, of_fake / f"{name}_xrec.csv")
    writer.close(test_fraction=0.5, seed=0)
    return {"data": data, "real": data / "images", "rec": rec, "of_real": of_real, "of_fake": of_fake}


def _argv(ws: dict[str, Path], *extra: str) -> list[str]:
    return [
        "eval",
        "--real",
        str(ws["real"]),
        "--fake",
        str(ws["rec"]),
        "--data",
        str(ws["data"]),
        "--openface-csv-real",
        str(ws["of_real"]),
        "--openface-csv-fake",
        str(ws["of_fake"]),
        *extra,
    ]


def test_offline_table_reports_missing_inception_and_prints_the_rest(offline, workspace, capsys):
    assert main(_argv(workspace)) == 0
    out = capsys.readouterr().out
    lines = {
        line.split("|")[1].strip().split(" ")[0]: line for line in out.splitlines() if line.startswith("| ")
    }
    for name in ("IS", "FID", "KID"):
        assert "| unavailable |" in lines[name], out
        assert "weights-inception-2015-12-05-6726825d.pth" in lines[name]
    assert "| unavailable |" in lines["LPIPS"] and "vgg16-397923af.pth" in lines["LPIPS"]
    for name in ("ACD", "ED", "PSNR", "SSIM", "PR"):
        value = lines[name].split("|")[2].strip()
        assert float(value) >= 0.0, lines[name]
    assert "pairs: 4" in out

    rows = list(csv.DictReader((workspace["rec"] / "eval_per_image.csv").open()))
    assert [r["stem"] for r in rows] == ["f0", "f1", "f2", "f3"]
    assert float(rows[0]["psnr"]) > 30 and float(rows[0]["ed"]) == 0.0 and rows[0]["lpips"] == ""


def test_offline_json(offline, workspace, capsys, tmp_path):
    out_csv = tmp_path / "elsewhere" / "rows.csv"
    assert main(_argv(workspace, "--json", "--out-csv", str(out_csv))) == 0
    res = json.loads(capsys.readouterr().out)
    for key in ("is", "fid", "kid", "lpips"):
        assert res[key] is None and key in res["unavailable"]
    for key in ("acd", "ed", "psnr", "ssim", "pr"):
        assert isinstance(res[key], float), (key, res["unavailable"].get(key))
    assert res["ed"] == 0.0  # identical OpenFace rows on both sides
    assert res["counts"]["pairs"] == 4 and res["counts"]["acd_dropped"] + res["counts"]["acd_pairs"] == 4
    assert set(res["details"]["pr_per_au"]) == {"AU01", "AU04", "AU06", "AU12", "AU15", "AU25"}
    assert res["pr"] > 0
    assert out_csv.is_file() and not (workspace["rec"] / "eval_per_image.csv").exists()


def test_data_alone_evaluates_its_test_split(offline, workspace, capsys):
    argv = ["eval", "--data", str(workspace["data"]), "--fake", str(workspace["rec"]), "--metrics", "psnr,pr"]
    assert main([*argv, "--json"]) == 0
    res = json.loads(capsys.readouterr().out)
    assert res["counts"]["pairs"] == 2  # test_fraction 0.5 of 4 faces
    assert res["psnr"] > 25


def test_pr_without_groups_is_unavailable(offline, workspace, capsys):
    argv = ["eval", "--real", str(workspace["real"]), "--fake", str(workspace["rec"]), "--metrics", "pr,ssim"]
    assert main([*argv, "--json"]) == 0
    res = json.loads(capsys.readouterr().out)
    assert res["pr"] is None and "--data" in res["unavailable"]["pr"]
    assert res["ssim"] > 0.5


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--fake", "/nonexistent/fake"], "not a folder"),
        (["--fake", "{rec}", "--real", "{real}", "--inception-weights", "/no/such.pth"], "file not found"),
        (["--fake", "{rec}", "--real", "{real}", "--metrics", "fid,bogus"], "unknown metric"),
        (["--fake", "{rec}"], "--real"),
    ],
)
def test_user_errors_are_one_line(offline, workspace, capsys, extra, message):
    argv = ["eval", *[a.format(rec=workspace["rec"], real=workspace["real"]) for a in extra]]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("cdan eval: error:") and message in err[-1]
