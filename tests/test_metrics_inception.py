"""IS / FID / KID through the real code path, with a random-weights InceptionV3 file of the right architecture."""

from __future__ import annotations

import json
import os
import pickle
import socket
from pathlib import Path
from unittest import mock

import numpy as np
import pytest
import torch
from PIL import Image

from cdan.cli import main
from cdan.errors import CdanError, MissingWeightsError
from cdan.metrics import evaluate
from cdan.metrics.fid_is import INCEPTION_WEIGHTS_NAME, InceptionFeatureExtractor, find_inception_weights

N_IMAGES = 4


@pytest.fixture
def offline(monkeypatch, tmp_path):
    """An empty TORCH_HOME and no sockets: any download attempt fails loudly."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch_home"))

    def refuse(*args, **kwargs):
        raise AssertionError("network access attempted")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", refuse)


@pytest.fixture(scope="module")
def random_inception(tmp_path_factory) -> Path:
    """torch-fidelity's InceptionV3 with random (He-initialised) weights, saved under the expected name."""
    import torch_fidelity.feature_extractor_inceptionv3 as fe

    cls = fe.FeatureExtractorInceptionV3
    with (
        mock.patch.object(fe, "load_state_dict_from_url", lambda *a, **k: {}),
        mock.patch.object(cls, "load_state_dict", lambda self, sd, *a, **k: None),
    ):
        model = cls("inception-v3-compat", ["2048"])
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, torch.nn.Conv2d):
                m.weight.copy_(torch.randn(m.weight.shape, generator=g) * (2.0 / m.weight[0].numel()) ** 0.5)
            elif isinstance(m, torch.nn.Linear):
                m.weight.copy_(torch.randn(m.weight.shape, generator=g) * 3.0 / m.in_features**0.5)
                m.bias.zero_()
    path = tmp_path_factory.mktemp("inception") / INCEPTION_WEIGHTS_NAME
    torch.save(model.state_dict(), path)
    return path


@pytest.fixture(scope="module")
def folders(tmp_path_factory) -> tuple[Path, Path]:
    """N real 64x64 images and N fakes (blurred, tinted, one of a different size)."""
    root = tmp_path_factory.mktemp("images")
    real, fake = root / "real", root / "fake"
    real.mkdir()
    fake.mkdir()
    rng = np.random.default_rng(0)
    for i in range(N_IMAGES):
        yy, xx = np.mgrid[0:64, 0:64]
        base = np.stack([xx * (i + 1), yy * 3, (xx + yy) * (4 - i)], axis=2) % 256
        img = np.clip(base + rng.integers(0, 40, base.shape), 0, 255).astype(np.uint8)
        Image.fromarray(img).save(real / f"im{i}.png")
        out = Image.fromarray(np.clip(img * 0.8 + 30, 0, 255).astype(np.uint8))
        if i == 1:
            out = out.resize((48, 48))  # a fake of another size: Inception resizes each image itself
        out.save(fake / f"im{i}.png")
    return real, fake


def test_missing_weights_names_the_file(offline):
    with pytest.raises(MissingWeightsError, match=INCEPTION_WEIGHTS_NAME):
        find_inception_weights(None)


def test_weights_found_in_torch_hub_cache(offline, tmp_path):
    target = tmp_path / "torch_home" / "hub" / "checkpoints" / INCEPTION_WEIGHTS_NAME
    target.parent.mkdir(parents=True)
    target.write_bytes(b"x")
    assert find_inception_weights(None) == target


def test_hostile_weights_file_is_refused_without_running_it(tmp_path):
    marker = tmp_path / "pwned"

    class Payload:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))

    bad = tmp_path / INCEPTION_WEIGHTS_NAME
    with open(bad, "wb") as f:
        pickle.dump({"x": Payload()}, f, protocol=2)
    with pytest.raises(CdanError, match="not a readable PyTorch state dict"):
        InceptionFeatureExtractor(bad)
    assert not marker.exists()


def test_wrong_architecture_is_a_clear_error(tmp_path):
    bad = tmp_path / "other.pth"
    torch.save({"fc.weight": torch.zeros(3, 3)}, bad)
    with pytest.raises(CdanError, match="does not hold torch-fidelity InceptionV3 weights"):
        InceptionFeatureExtractor(bad)


def test_is_fid_kid_cli_path_matches_torch_fidelity_and_ignores_batch_size(
    offline, random_inception, folders, tmp_path, capsys
):
    """The CLI (batch 3) and the API (batch 4) agree with each other and with torch-fidelity's own run."""
    import torch_fidelity

    real, fake = folders
    csv_path = tmp_path / "rows.csv"
    argv = ["eval", "--real", str(real), "--fake", str(fake), "--metrics", "is,fid,kid,psnr"]
    argv += ["--inception-weights", str(random_inception), "--is-splits", "2", "--batch-size", "3"]
    assert main([*argv, "--out-csv", str(csv_path), "--json"]) == 0
    cli = json.loads(capsys.readouterr().out)
    for key in ("is", "fid", "kid", "psnr"):
        assert isinstance(cli[key], float) and np.isfinite(cli[key]), key
        assert key not in cli["unavailable"]
    assert cli["counts"]["resized"] == 1
    assert csv_path.read_text().count("\n") == N_IMAGES + 1
    assert cli["fid"] > 0

    api = evaluate(
        real, fake, metrics="is,fid,kid", inception_weights=random_inception, is_splits=2, batch_size=N_IMAGES
    )
    for key in ("is", "fid", "kid"):
        assert api.summary[key] == pytest.approx(cli[key], rel=1e-4, abs=1e-9), key

    # torch-fidelity on the same folders and weights. IS and KID agreeing shows the features agree; FID on
    # features is checked against torch-fidelity's formula in test_metrics_fid_is (its FID here would spend
    # tens of seconds in a 2048x2048 non-symmetric eigvals on a busy CPU).
    theirs = torch_fidelity.calculate_metrics(
        input1=str(fake),
        input2=str(real),
        cuda=False,
        isc=True,
        kid=True,
        isc_splits=2,
        kid_subset_size=N_IMAGES,
        feature_extractor_weights_path=str(random_inception),
        batch_size=1,  # torch-fidelity cannot batch images of different sizes; we can
        save_cpu_ram=True,
        cache=False,
        verbose=False,
    )
    assert cli["is"] == pytest.approx(theirs["inception_score_mean"], rel=1e-4)
    assert cli["details"]["is_std"] == pytest.approx(theirs["inception_score_std"], rel=1e-3, abs=1e-6)
    assert cli["kid"] == pytest.approx(theirs["kernel_inception_distance_mean"], rel=1e-3, abs=1e-9)
