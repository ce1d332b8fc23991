"""Training: the official objective learns, both discriminators learn, exact resume, signals, DDP, aliases."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from cdan.aus import SIX_AUS
from cdan.cli import main
from cdan.config import get_config
from cdan.data.layout import DatasetWriter
from cdan.train.losses import hinge_d, tv_loss
from cdan.train.trainer import Trainer, TrainOptions, list_checkpoints


def make_stripes_dataset(root: Path, n: int = 24, seed: int = 0) -> Path:
    """Faces-free dataset whose pixels encode the AUs (6 horizontal bands), enough to test the loop."""
    rng = np.random.default_rng(seed)
    w = DatasetWriter(root, SIX_AUS, "test", {})
    for i in range(n):
        au = rng.uniform(0, 5, 6)
        img = np.zeros((112, 112, 3), np.uint8)
        for k in range(6):
            img[k * 18 : (k + 1) * 18, :, 0] = int(au[k] * 50)
        img[:, :, 1] = rng.integers(0, 255, (112, 112))
        w.add(f"img{i:03d}", img, au, source=f"s{i}.png")
    w.close(test_fraction=0.25, seed=0)
    return root


@pytest.fixture(scope="module")
def stripes(tmp_path_factory) -> Path:
    return make_stripes_dataset(tmp_path_factory.mktemp("data") / "ds")


def _trainer(data: Path, out: Path, **train) -> Trainer:
    cfg = get_config("tiny", {"train": {"log_every": 2, **train}})
    return Trainer.create(cfg, TrainOptions(data=str(data), progress=False, tensorboard=False), out)


def test_loss_closed_forms():
    assert hinge_d(torch.ones(4), -torch.ones(4)) == 0
    assert hinge_d(torch.zeros(4), torch.zeros(4)) == 1
    x = torch.zeros(2, 1, 3, 3)
    x[:, :, :, 1] = 1.0  # vertical stripe: 2 horizontal jumps per row, none vertically
    # w-direction: sum of squares = 2 per row * 3 rows * 2 images = 12, / (1*3*2) = 2; h: 0. / batch 2 -> 1
    assert tv_loss(x).item() == pytest.approx(1.0)


def test_overfit_one_batch_and_both_discriminators_learn(stripes, tmp_path):
    tr = _trainer(stripes, tmp_path, lr=2e-3)
    x = torch.stack([tr.train_set[i]["image"] for i in range(4)])
    au = torch.stack([tr.train_set[i]["au"] for i in range(4)])
    fd0 = [p.detach().clone() for p in tr.model.feature_dis.parameters()]
    ad0 = [p.detach().clone() for p in tr.model.AU_dis.parameters()]
    with torch.no_grad():
        l1_start = (tr.model(x).xrec - x).abs().mean().item()
    for _ in range(120):
        assert tr.train_step(x, au) is not None
        tr.step += 1
    with torch.no_grad():
        l1_end = (tr.model(x).xrec - x).abs().mean().item()
    assert l1_end <= 0.5 * l1_start, (l1_start, l1_end)
    assert any(not torch.equal(a, b) for a, b in zip(fd0, tr.model.feature_dis.parameters()))
    assert any(not torch.equal(a, b) for a, b in zip(ad0, tr.model.AU_dis.parameters()))


def test_resume_is_exact(stripes, tmp_path):
    n = 6
    straight = _trainer(stripes, tmp_path / "a", steps=2 * n, ckpt_every=100)
    straight.fit()
    first = _trainer(stripes, tmp_path / "b", steps=2 * n, ckpt_every=100)
    first.fit(max_steps=n)
    assert list_checkpoints(first.run_dir)[-1][0] == n
    resumed = Trainer.resume(first.run_dir, progress=False)
    assert resumed.step == n
    resumed.fit()
    assert resumed.step == straight.step == 2 * n
    sa, sb = straight.model.state_dict(), resumed.model.state_dict()
    assert all(torch.equal(sa[k], sb[k]) for k in sa)
    # And the run directory has what a user watches.
    run = resumed.run_dir
    rows = [json.loads(line) for line in (run / "stats.jsonl").read_text().splitlines()]
    assert rows[-1]["step"] == 2 * n and "d/au" in rows[-1] and "g/rec" in rows[-1]
    assert (run / "samples" / f"step_{2 * n:07d}.png").is_file()
    assert json.loads((run / "config.json").read_text())["config"]["preset"] == "tiny"


def test_non_finite_loss_stops_after_k_with_checkpoint(stripes, tmp_path, monkeypatch):
    tr = _trainer(stripes, tmp_path, steps=50, max_bad_steps=3)
    monkeypatch.setattr(tr.loss, "d_loss", lambda *a: (torch.tensor(float("nan")), {}))
    summary = tr.fit()
    assert summary["status"] == "diverged" and summary["step"] == 3
    assert list_checkpoints(tr.run_dir)[-1][0] == 3


def _cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "cdan", *args]


def _wait_for(cond, timeout=120.0):
    t0 = time.time()
    while not cond():
        if time.time() - t0 > timeout:
            raise TimeoutError
        time.sleep(0.2)


def test_sigterm_saves_and_sigkill_resumes(stripes, tmp_path):
    out = tmp_path / "runs"
    args = _cli("train", "--data", str(stripes), "--out", str(out), "--preset", "tiny", "--steps", "100000",
                "--set", "train.ckpt_every=5", "--no-progress")  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    p = subprocess.Popen(args, stderr=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env)
    _wait_for(lambda: out.exists() and any(out.iterdir()) and len(list_checkpoints(next(out.iterdir()))) >= 2)
    p.send_signal(signal.SIGTERM)
    stdout, _ = p.communicate(timeout=120)
    assert p.returncode == 0 and stdout.startswith("interrupted")
    run = next(out.iterdir())
    step_term = list_checkpoints(run)[-1][0]
    # SIGKILL mid-run: resume continues from the last complete checkpoint, none is corrupt.
    p = subprocess.Popen(
        _cli("train", "--resume", str(run), "--no-progress"), stderr=subprocess.DEVNULL, env=env
    )
    _wait_for(lambda: list_checkpoints(run)[-1][0] >= step_term + 10)
    p.kill()
    p.wait()
    last = list_checkpoints(run)[-1][0]
    code = main(["train", "--resume", str(run), "--steps", str(last + 4), "--no-progress"])
    assert code == 0
    assert list_checkpoints(run)[-1][0] == last + 4
    assert not list((run / "checkpoints").glob("*.tmp"))


def test_official_flag_aliases_and_legacy_layout(tmp_path, capsys):
    from PIL import Image

    from cdan.data import write_legacy_pickle

    crops = tmp_path / "crops"
    crops.mkdir()
    aus = {}
    rng = np.random.default_rng(0)
    for i in range(10):
        Image.fromarray(rng.integers(0, 255, (120, 100, 3), dtype=np.uint8)).save(crops / f"f{i}.jpg")
        if i != 9:  # one image without an AU row: skipped, not a crash (the official code crashes)
            aus[f"f{i}"] = rng.uniform(0, 5, 6)
    write_legacy_pickle(tmp_path / "aus.pkl", aus)
    code = main(["train", "--images_dir", str(crops), "--pkl_dir", str(tmp_path / "aus.pkl"), "--save_check",
                 str(tmp_path / "runs"), "--batch_size", "2", "--epochs", "1", "--learning_rate", "1e-4",
                 "--num_iters", "2", "--au", "6", "--preset", "tiny", "--no-progress", "--json"])  # fmt: skip
    assert code == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["status"] == "done" and summary["step"] == summary["total_steps"] > 0
    cfg = json.loads((Path(summary["run"]) / "config.json").read_text())["config"]
    assert cfg["train"]["lr"] == 1e-4 and cfg["train"]["batch_size"] == 2


def test_missing_lpips_weights_is_a_clear_error(stripes, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "empty"))
    code = main(
        ["train", "--data", str(stripes), "--out", str(tmp_path), "--preset", "tiny", "--perceptual", "lpips"]
    )
    assert code == 2
    err = capsys.readouterr().err
    assert "vgg16-397923af.pth" in err and "--perceptual none" in err


def test_lpips_with_local_weights_trains(stripes, tmp_path):
    import torchvision

    weights = tmp_path / "vgg16.pth"
    torch.save(torchvision.models.vgg16().state_dict(), weights)
    cfg = get_config("tiny", {"loss": {"perceptual": "lpips"}, "train": {"steps": 2}})
    opts = TrainOptions(data=str(stripes), lpips_weights=str(weights), progress=False, tensorboard=False)
    tr = Trainer.create(cfg, opts, tmp_path / "runs")
    tr.fit()
    row = json.loads((tr.run_dir / "stats.jsonl").read_text().splitlines()[-1])
    assert row["g/lpips"] > 0


def test_ddp_two_processes_on_cpu(stripes, tmp_path):
    out = tmp_path / "runs"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", "29533",
           "-m", "cdan", "train", "--data", str(stripes), "--out", str(out), "--preset", "tiny", "--steps", "4",
           "--batch-size", "2", "--device", "cpu", "--no-progress", "--json"]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=env)
    assert res.returncode == 0, res.stderr[-2000:]
    summaries = [json.loads(line) for line in res.stdout.splitlines() if line.startswith("{")]
    assert len(summaries) == 1 and summaries[0]["world_size"] == 2 and summaries[0]["step"] == 4
    runs = list(out.iterdir())
    assert len(runs) == 1  # only rank 0 writes
    assert list_checkpoints(runs[0])[-1][0] == 4
    # Gradients are really averaged: 2 ranks x batch 2 == 1 process x batch 4 (same images per step).
    import cdan

    ddp_model = cdan.load_model(runs[0])
    single = _trainer(stripes, tmp_path / "single", steps=4, batch_size=4)
    single.fit()
    a, b = ddp_model.state_dict(), single.model.state_dict()
    diff = torch.cat([(a[k] - b[k]).abs().flatten() for k in a if a[k].is_floating_point()])
    print("ddp vs single: mean", diff.mean().item(), "max", diff.max().item())
    # Adam turns rounding noise in near-zero gradients into up to lr-sized steps, so compare the bulk.
    assert diff.mean().item() < 1e-5, diff.mean().item()
    changed = max((a[k] - c).abs().max().item() for k, c in cdan.build_model("tiny").state_dict().items())
    assert changed > 1e-3  # and they did train


def test_au_discriminator_beats_the_mean_predictor_on_held_out_faces(tmp_path):
    from cdan.data import FaceAUDataset
    from cdan.faces.synth import write_synthetic_dataset

    write_synthetic_dataset(tmp_path / "data", 400, seed=0)
    cfg = get_config(
        "tiny", {"train": {"steps": 300, "batch_size": 16, "ckpt_every": 10**6, "sample_every": 10**6}}
    )
    tr = Trainer.create(
        cfg, TrainOptions(data=str(tmp_path / "data"), progress=False, tensorboard=False), tmp_path
    )
    test = FaceAUDataset(tr.index.test, size=56)
    x = torch.stack([test[i]["image"] for i in range(len(test))])
    au = torch.stack([test[i]["au"] for i in range(len(test))])
    mean_au = torch.stack([tr.train_set[i]["au"] for i in range(len(tr.train_set))]).mean(0)
    baseline = ((au - mean_au) ** 2).mean().item()
    tr.fit()
    with torch.no_grad():
        err = ((tr.model.AU_dis(x) - au) ** 2).mean().item()
    assert err < 0.9 * baseline, (err, baseline)


def test_tensorboard_events_when_installed(stripes, tmp_path):
    pytest.importorskip("tensorboard")
    cfg = get_config("tiny", {"train": {"steps": 4, "log_every": 2}})
    tr = Trainer.create(cfg, TrainOptions(data=str(stripes), progress=False), tmp_path)
    tr.fit()
    assert list((tr.run_dir / "tensorboard").glob("events.out.tfevents.*"))
