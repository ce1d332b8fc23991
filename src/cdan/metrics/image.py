"""Per-pair image metrics: PSNR, SSIM (scikit-image) and LPIPS (the `lpips` package).

PSNR and SSIM take uint8 [H,W,3] RGB images, compared as floats in [0, 1] (data_range=1). PSNR floors the
MSE at 1e-10, so identical images give 100 dB instead of infinity (keeps means and JSON finite).
SSIM is scikit-image's default (7x7 uniform window, per channel, averaged).

LPIPS v0.1 uses the linear layers shipped inside the `lpips` package and an ImageNet backbone
(torchvision VGG16 or AlexNet) read from a local file: `--lpips-weights PATH`, else the torch hub cache
(`$TORCH_HOME/hub/checkpoints/vgg16-397923af.pth` or `alexnet-owt-7be5be79.pth`). Nothing is downloaded.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

log = logging.getLogger(__name__)

PSNR_MSE_FLOOR = 1e-10


def _to_float(image_u8: np.ndarray) -> np.ndarray:
    return np.asarray(image_u8, dtype=np.float64) / 255.0


def psnr(real_u8: np.ndarray, fake_u8: np.ndarray) -> float:
    """PSNR in dB between two uint8 [H,W,3] images (data range 1; MSE floored at 1e-10 -> at most 100 dB)."""
    if real_u8.shape != fake_u8.shape:
        raise ValueError(f"shape mismatch {real_u8.shape} vs {fake_u8.shape}")
    mse = float(np.mean((_to_float(real_u8) - _to_float(fake_u8)) ** 2))
    return float(10.0 * np.log10(1.0 / max(mse, PSNR_MSE_FLOOR)))


def ssim(real_u8: np.ndarray, fake_u8: np.ndarray) -> float:
    """SSIM between two uint8 [H,W,3] images (skimage.metrics.structural_similarity, data_range=1)."""
    from skimage.metrics import structural_similarity

    if real_u8.shape != fake_u8.shape:
        raise ValueError(f"shape mismatch {real_u8.shape} vs {fake_u8.shape}")
    return float(
        structural_similarity(_to_float(real_u8), _to_float(fake_u8), data_range=1.0, channel_axis=2)
    )


def build_lpips(net: str = "vgg", weights_path: str | Path | None = None, device: str = "cpu"):
    """A frozen eval-mode `lpips.LPIPS(net)` with its backbone read from a local file (`cdan.perceptual`).

    Raises MissingWeightsError naming the expected file when it is absent.
    """
    import torch

    from ..perceptual import load_lpips

    return load_lpips(net, weights_path).to(torch.device(device)).eval()


def lpips_distance(model, real_u8: list[np.ndarray], fake_u8: list[np.ndarray]) -> np.ndarray:
    """LPIPS per pair for lists of uint8 [H,W,3] images (pairs share a size) -> float64 [N].

    Pairs are grouped by size, so the result does not depend on how the caller batches them.
    """
    import torch

    n = len(real_u8)
    out = np.zeros(n, np.float64)
    device = next(model.parameters()).device
    groups: dict[tuple[int, ...], list[int]] = {}
    for i, im in enumerate(real_u8):
        groups.setdefault(tuple(im.shape), []).append(i)

    def to_tensor(images):  # uint8 [H,W,3] list -> float [N,3,H,W] in [0,1]
        return torch.from_numpy(np.stack(images)).permute(0, 3, 1, 2).float().div(255.0).to(device)

    with torch.no_grad():
        for idx in groups.values():
            d = model(
                to_tensor([real_u8[i] for i in idx]), to_tensor([fake_u8[i] for i in idx]), normalize=True
            )
            out[idx] = d.reshape(-1).double().cpu().numpy()
    return out
