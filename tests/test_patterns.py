"""`cdan patterns` / cdan.patterns: group means, PR, empty groups, files, CLI."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from cdan.aus import SIX_AUS
from cdan.cli import main
from cdan.data import load_dataset
from cdan.infer import load_input, to_u8
from cdan.metrics.parsing import parsing_kl, rgb_to_grey_u8
from cdan.models import build_model
from cdan.models.checkpoint import save_model
from cdan.patterns import compute_patterns, write_patterns

RES = 56
LABELS = ("happy", "sad", "neutral")


def make_dataset(root: Path, n: int = 9, size: int = RES, corrupt: str | None = None) -> Path:
    """Our layout by hand (images/*.png + aus.csv): AU12 on for happy, AU15 (2.0) for sad, AU25 = 0.5*i,
    AU01/AU04/AU06 never active. Faces alternate test/train; `corrupt` names an image left unreadable."""
    rng = np.random.default_rng(0)
    (root / "images").mkdir(parents=True)
    yy, xx = np.mgrid[0:size, 0:size] / size
    rows = []
    for i in range(n):
        label = LABELS[i % 3]
        base = np.stack([xx, yy, 0.5 * (xx + yy)], -1) * 200 + rng.uniform(0, 55, (size, size, 3))
        Image.fromarray(base.astype(np.uint8)).save(root / "images" / f"f{i:02d}.png")
        au = {a: 0.0 for a in SIX_AUS}
        au["AU12"] = 3.0 if label == "happy" else 0.2
        au["AU15"] = 2.0 if label == "sad" else 0.0
        au["AU25"] = 0.5 * i
        rows.append([f"f{i:02d}", "test" if i % 2 else "train", label, *(au[a] for a in SIX_AUS)])
    if corrupt:
        (root / "images" / f"{corrupt}.png").write_bytes(b"broken")
    with open(root / "aus.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["name", "split", "label", *SIX_AUS])
        w.writerows(rows)
    return root


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return build_model("tiny").eval()


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    return make_dataset(tmp_path_factory.mktemp("ds") / "ds")


@pytest.fixture(scope="module")
def result(model, data):
    return compute_patterns(model, load_dataset(data), split="all", batch_size=4, progress=False)


def _direct(model, index):
    """Masks [N,R,R], inputs uint8 [N,R,R,3] and parsed M*x uint8, straight from the model."""
    xs = np.stack([load_input(r.path, RES)[0] for r in index.records])
    masks, parsed = [], []
    for i in range(0, len(xs), 4):  # the batches compute_patterns used (batch_size=4), for bit-equal maps
        x = torch.from_numpy(xs[i : i + 4]).permute(0, 3, 1, 2).float() / 255
        with torch.inference_mode():
            o = model(x)
        masks.append(o.mask_map[:, 0].double().numpy())
        parsed.append(to_u8(o.mask_input).permute(0, 2, 3, 1).numpy())
    return np.concatenate(masks), xs, np.concatenate(parsed)


def test_group_means_counts_and_classes_match_direct_computation(model, data, result):
    index = load_dataset(data)
    masks, _, _ = _direct(model, index)
    au = np.stack([r.au for r in index.records])
    assert result.n_faces == 9 and result.resolution == RES
    for k, a in enumerate(SIX_AUS):
        on = au[:, k] >= 1.0
        assert (result.active_count[a], result.inactive_count[a]) == (on.sum(), (~on).sum())
        if on.any():
            np.testing.assert_allclose(result.active[a], masks[on].mean(0), atol=1e-5)
        else:
            assert result.active[a] is None and result.diff(a) is None
        np.testing.assert_allclose(result.inactive[a], masks[~on].mean(0), atol=1e-5)
    assert result.active_count["AU12"] == 3 and result.active_count["AU15"] == 3
    assert result.active_count["AU25"] == 7  # 0.5*i >= 1 for i = 2..8
    np.testing.assert_allclose(result.diff("AU12"), result.active["AU12"] - result.inactive["AU12"])
    labels = np.array([r.label for r in index.records])
    assert result.class_count == {"happy": 3, "neutral": 3, "sad": 3}
    np.testing.assert_allclose(result.classes["sad"], masks[labels == "sad"].mean(0), atol=1e-5)
    np.testing.assert_allclose(result.mean_mask, masks.mean(0), atol=1e-5)


def test_pr_per_au_is_the_parsing_kl_of_the_groups(model, data, result):
    index = load_dataset(data)
    _, xs, parsed = _direct(model, index)
    grey = [rgb_to_grey_u8(x) for x in xs]
    parsed_grey = [rgb_to_grey_u8(p) for p in parsed]
    au = np.stack([r.au for r in index.records])
    for k, a in enumerate(SIX_AUS):
        on = np.flatnonzero(au[:, k] >= 1.0)
        off = np.flatnonzero(au[:, k] < 1.0)
        if len(on) == 0:
            assert result.pr[a] is None
            continue
        assert result.pr[a] == pytest.approx(parsing_kl(grey, parsed_grey, on, off), rel=1e-6)


def test_threshold_changes_the_groups(model, data):
    r = compute_patterns(model, load_dataset(data), split="all", threshold=2.5, progress=False)
    assert r.active_count["AU25"] == 4  # 0.5*i >= 2.5 for i = 5..8
    assert r.active_count["AU15"] == 0 and r.pr["AU15"] is None  # sad is 2.0 < 2.5


def test_write_patterns_files_json_npz_and_na(result, tmp_path):
    summary = write_patterns(result, tmp_path)
    with Image.open(tmp_path / "patterns.png") as im:
        assert im.size[0] > 6 * 100 and im.size[1] > 4 * 100  # 6 AU columns, 3 AU rows + the class row
    for name in ("au_AU12_active.png", "au_AU12_inactive.png", "au_AU12_diff.png", "mean_mask.png"):
        with Image.open(tmp_path / name) as im:
            assert im.mode == "RGB" and im.size == (224, 224)  # 56 px maps enlarged 4x
    for label in LABELS:
        assert (tmp_path / f"class_{label}.png").is_file()
    assert not (tmp_path / "au_AU01_active.png").exists() and (tmp_path / "au_AU01_inactive.png").is_file()
    js = json.loads((tmp_path / "patterns.json").read_text())
    assert js == json.loads(json.dumps(summary))
    assert js["aus"]["AU01"]["active"] == 0 and js["aus"]["AU01"]["mean_mask_active"] == "n/a"
    assert js["aus"]["AU01"]["pr"] == "n/a" and js["aus"]["AU01"]["files"]["diff"] == "n/a"
    assert js["aus"]["AU12"]["pr"] == pytest.approx(result.pr["AU12"], rel=1e-5)
    assert js["aus"]["AU12"]["mean_mask_active"] == pytest.approx(result.active["AU12"].mean(), abs=1e-6)
    assert js["classes"]["sad"]["count"] == 3
    npz = np.load(tmp_path / "patterns.npz")
    assert list(npz["aus"]) == list(SIX_AUS)
    assert npz["active"].shape == (6, RES, RES) and npz["class_masks"].shape == (3, RES, RES)
    assert np.isnan(npz["active"][0]).all() and np.isfinite(npz["active"][3]).all()
    np.testing.assert_allclose(npz["diff"][3], result.diff("AU12"), atol=1e-6)
    assert list(npz["active_count"]) == [result.active_count[a] for a in SIX_AUS]


def test_unreadable_image_is_a_recorded_skip(model, tmp_path):
    data = make_dataset(tmp_path / "ds", n=6, corrupt="f02")
    r = compute_patterns(model, load_dataset(data), split="all", progress=False)
    assert r.n_faces == 5 and len(r.skipped) == 1 and "f02.png" in r.skipped[0][0]
    js = write_patterns(r, tmp_path / "out")
    assert js["skipped"][0]["reason"].startswith("unreadable image")


def test_cli_patterns(model, tmp_path, capsys):
    data = make_dataset(tmp_path / "ds", size=72)  # other than the model's 56 px: resized
    ckpt = save_model(model, tmp_path / "tiny.safetensors")
    out = tmp_path / "pat"
    rc = main(
        ["patterns", "--checkpoint", str(ckpt), "--data", str(data), "--out", str(out), "--no-progress"]
    )
    line = capsys.readouterr().out.strip()
    assert rc == 0 and "\n" not in line and "AU01 n/a" in line
    assert (out / "patterns.png").is_file() and (out / "au_AU12_diff.png").is_file()
    js = json.loads((out / "patterns.json").read_text())
    assert js["faces"] == 4 and js["split"] == "test" and js["checkpoint"] == str(ckpt)
    rc = main(["patterns", "--checkpoint", str(ckpt), "--data", str(data), "--out", str(out), "--json"])
    assert rc == 0 and json.loads(capsys.readouterr().out)["faces"] == 4


def test_cli_patterns_empty_split_is_a_user_error(model, tmp_path, capsys):
    data = make_dataset(tmp_path / "ds", n=1)  # one train face, no test face
    ckpt = save_model(model, tmp_path / "tiny.safetensors")
    rc = main(["patterns", "--checkpoint", str(ckpt), "--data", str(data), "--out", str(tmp_path / "o")])
    err = capsys.readouterr().err
    assert rc == 2 and "no test faces" in err and "Traceback" not in err
