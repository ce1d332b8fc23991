"""PSNR, SSIM and LPIPS (with a random-weights AlexNet backbone file, so nothing is downloaded)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from cdan.metrics import evaluate
from cdan.metrics.image import build_lpips, lpips_distance, psnr, ssim


@pytest.fixture
def offline_home(monkeypatch, tmp_path):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch_home"))

    def refuse(*args, **kwargs):
        raise AssertionError("download attempted")

    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", refuse)


@pytest.fixture(scope="module")
def alex_weights(tmp_path_factory):
    import torchvision

    torch.manual_seed(0)
    features = torchvision.models.alexnet(weights=None).features.state_dict()
    path = tmp_path_factory.mktemp("alex") / "alexnet-owt-7be5be79.pth"
    torch.save({f"features.{k}": v for k, v in features.items()}, path)
    return path


def _img(seed: int, size: int = 32) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (size, size, 3), dtype=np.uint8)


def test_psnr_closed_form():
    a = np.full((8, 8, 3), 100, np.uint8)
    b = a + 10  # every pixel off by 10/255
    assert psnr(a, b) == pytest.approx(20 * np.log10(255 / 10), rel=1e-12)
    assert psnr(a, a) == pytest.approx(100.0)  # MSE floor, not infinity


def test_ssim_identical_is_one_and_matches_skimage():
    from skimage.metrics import structural_similarity

    a, b = _img(1), _img(2)
    assert ssim(a, a) == pytest.approx(1.0)
    ref = structural_similarity(a / 255.0, b / 255.0, data_range=1.0, channel_axis=2)
    assert ssim(a, b) == pytest.approx(ref)
    assert ssim(a, b) < 0.2


def test_lpips_zero_for_identical_and_positive_otherwise(alex_weights):
    model = build_lpips("alex", alex_weights)
    a, b = _img(3), _img(4)
    d = lpips_distance(model, [a, a, b], [a, b, b])
    assert d[0] == pytest.approx(0.0, abs=1e-7)
    assert d[2] == pytest.approx(0.0, abs=1e-7)
    assert d[1] > 1e-4


def test_lpips_missing_weights_is_unavailable_with_file_name(offline_home, tmp_path):
    real, fake = tmp_path / "r", tmp_path / "f"
    real.mkdir()
    fake.mkdir()
    Image.fromarray(_img(5)).save(real / "a.png")
    Image.fromarray(_img(6)).save(fake / "a.png")
    res = evaluate(real, fake, metrics="lpips,psnr")
    assert res.summary["lpips"] is None
    assert "vgg16-397923af.pth" in res.unavailable["lpips"]
    assert res.summary["psnr"] is not None


def test_image_metrics_do_not_depend_on_batch_size(alex_weights, tmp_path):
    real, fake = tmp_path / "r", tmp_path / "f"
    real.mkdir()
    fake.mkdir()
    for i in range(5):
        a = _img(10 + i)
        Image.fromarray(a).save(real / f"x{i}.png")
        Image.fromarray(np.clip(a.astype(int) + 20, 0, 255).astype(np.uint8)).save(fake / f"x{i}.png")
    kw = dict(metrics="psnr,ssim,lpips", lpips_net="alex", lpips_weights=alex_weights)
    r1 = evaluate(real, fake, batch_size=1, **kw)
    r5 = evaluate(real, fake, batch_size=5, **kw)
    for key in ("psnr", "ssim", "lpips"):
        assert r1.summary[key] == pytest.approx(r5.summary[key], rel=1e-6), key
        a = [row[key] for row in r1.per_image]
        b = [row[key] for row in r5.per_image]
        np.testing.assert_allclose(a, b, rtol=1e-6)
    assert r1.summary["lpips"] > 0
