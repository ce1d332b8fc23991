"""IS, FID and KID: InceptionV3 features from torch-fidelity, then our own statistics and distances.

Layers (each a pure function, tested against closed forms):
    images --InceptionFeatureExtractor--> features [N,2048] and logits [N,1008]
    features --feature_statistics--> (mu [D], sigma [D,D]) --frechet_distance--> FID
    logits --inception_score--> IS (mean, std over splits)
    features x2 --kernel_inception_distance--> KID (mean, std over subsets; unbiased polynomial MMD^2)

The definitions follow torch-fidelity 0.3/0.4 (the tool behind the paper's `fidelity --isc` numbers): IS uses the
'logits_unbiased' layer, 10 splits, a shuffle seeded 2020; KID uses the cubic polynomial kernel
(x.y / D + 1)^3, 100 subsets of min(1000, N) samples, seed 2020; FID uses the 2048-D pool features.

The network is torch-fidelity's `FeatureExtractorInceptionV3`. Its weights are never downloaded here: they come
from an explicit path or the torch hub cache (`$TORCH_HOME/hub/checkpoints/<INCEPTION_WEIGHTS_NAME>`).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from ..errors import CdanError, MissingWeightsError

log = logging.getLogger(__name__)

INCEPTION_WEIGHTS_NAME = "weights-inception-2015-12-05-6726825d.pth"
INCEPTION_WEIGHTS_URL = (
    "https://github.com/toshas/torch-fidelity/releases/download/v0.2.0/" + INCEPTION_WEIGHTS_NAME
)
POOL_FEATURES = "2048"  # FID / KID layer
LOGITS = "logits_unbiased"  # IS layer (torch-fidelity's default)
DEFAULT_SEED = 2020  # torch-fidelity's rng_seed


# ----------------------------------------------------------------------------------------------- statistics


def feature_statistics(features: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """features [N,D] -> (mu [D], sigma [D,D]), float64, sigma the unbiased covariance (N-1)."""
    f = np.asarray(features, dtype=np.float64)
    if f.ndim != 2 or f.shape[0] < 2:
        raise ValueError(f"need features [N>=2, D], got shape {f.shape}")
    return f.mean(axis=0), np.cov(f, rowvar=False)


def _sqrtm_psd(a: np.ndarray) -> np.ndarray:
    """Square root of a symmetric positive semi-definite matrix [D,D] (negative round-off eigenvalues -> 0)."""
    a = (a + a.T) / 2
    w, v = np.linalg.eigh(a)
    return (v * np.sqrt(np.clip(w, 0.0, None))) @ v.T


def frechet_distance(mu1: np.ndarray, sigma1: np.ndarray, mu2: np.ndarray, sigma2: np.ndarray) -> float:
    """Frechet distance between N(mu1, sigma1) and N(mu2, sigma2); mu [D], sigma [D,D].

    |mu1 - mu2|^2 + tr(s1) + tr(s2) - 2 tr((s1 s2)^1/2). The trace term is computed as
    tr((s1^1/2 s2 s1^1/2)^1/2), whose argument is symmetric PSD, so singular covariances (N < D) are fine.
    """
    mu1, mu2 = np.asarray(mu1, np.float64), np.asarray(mu2, np.float64)
    s1, s2 = np.asarray(sigma1, np.float64), np.asarray(sigma2, np.float64)
    if mu1.shape != mu2.shape or s1.shape != s2.shape or s1.shape != (mu1.size, mu1.size):
        raise ValueError(f"shape mismatch: mu {mu1.shape} {mu2.shape}, sigma {s1.shape} {s2.shape}")
    root1 = _sqrtm_psd(s1)
    middle = root1 @ s2 @ root1
    eig = np.linalg.eigvalsh((middle + middle.T) / 2)
    tr_covmean = float(np.sqrt(np.clip(eig, 0.0, None)).sum())
    diff = mu1 - mu2
    fid = float(diff @ diff + np.trace(s1) + np.trace(s2) - 2.0 * tr_covmean)
    return max(fid, 0.0)  # round-off can give -1e-12 for identical statistics


def fid_from_features(features1: np.ndarray, features2: np.ndarray) -> float:
    """FID between two feature sets [N1,D] and [N2,D] (the same value as `frechet_distance` of their statistics).

    With fewer samples than dimensions (the usual test set against D=2048) it works in sample space:
    with centred features A1 [N1,D], A2 [N2,D], tr((S1 S2)^1/2) is the nuclear norm of A1 A2^T divided by
    sqrt((N1-1)(N2-1)), so no D x D matrix is ever decomposed.
    """
    f1 = np.asarray(features1, dtype=np.float64)
    f2 = np.asarray(features2, dtype=np.float64)
    if f1.ndim != 2 or f2.ndim != 2 or f1.shape[1] != f2.shape[1] or min(len(f1), len(f2)) < 2:
        raise ValueError(f"need features [N>=2, D] of the same D, got {f1.shape} and {f2.shape}")
    n1, n2, d = len(f1), len(f2), f1.shape[1]
    if max(n1, n2) >= d:
        return frechet_distance(*feature_statistics(f1), *feature_statistics(f2))
    mu1, mu2 = f1.mean(axis=0), f2.mean(axis=0)
    a1, a2 = f1 - mu1, f2 - mu2
    tr1 = float((a1 * a1).sum()) / (n1 - 1)
    tr2 = float((a2 * a2).sum()) / (n2 - 1)
    tr_covmean = float(np.linalg.svd(a1 @ a2.T, compute_uv=False).sum()) / np.sqrt((n1 - 1) * (n2 - 1))
    diff = mu1 - mu2
    return max(float(diff @ diff + tr1 + tr2 - 2.0 * tr_covmean), 0.0)


def inception_score(
    logits: np.ndarray, splits: int = 10, shuffle: bool = True, seed: int = DEFAULT_SEED
) -> tuple[float, float]:
    """IS from classifier logits [N,C]: exp(E_x KL(p(y|x) || p(y))) per split -> (mean, std) over splits.

    As torch-fidelity: rows are shuffled with RandomState(seed) first; split i holds rows
    [i*N//splits, (i+1)*N//splits). `splits` is capped at N so that no split is empty.
    """
    z = np.asarray(logits, dtype=np.float64)
    if z.ndim != 2 or z.shape[0] < 1:
        raise ValueError(f"need logits [N>=1, C], got shape {z.shape}")
    n = z.shape[0]
    if shuffle:
        z = z[np.random.RandomState(seed).permutation(n)]
    z = z - z.max(axis=1, keepdims=True)
    log_p = z - np.log(np.exp(z).sum(axis=1, keepdims=True))
    p = np.exp(log_p)
    splits = max(1, min(int(splits), n))
    scores = []
    for i in range(splits):
        lo, hi = i * n // splits, (i + 1) * n // splits
        p_c, log_p_c = p[lo:hi], log_p[lo:hi]
        log_q = np.log(p_c.mean(axis=0, keepdims=True))
        kl = (p_c * (log_p_c - log_q)).sum(axis=1).mean()
        scores.append(float(np.exp(kl)))
    return float(np.mean(scores)), float(np.std(scores))


def polynomial_kernel(
    x: np.ndarray, y: np.ndarray, degree: int = 3, gamma: float | None = None, coef0: float = 1.0
) -> np.ndarray:
    """k(x, y) = (gamma x.y + coef0)^degree for x [N,D], y [M,D] -> [N,M]; gamma defaults to 1/D."""
    if gamma is None:
        gamma = 1.0 / x.shape[1]
    return (x @ y.T * gamma + coef0) ** degree


def mmd2_unbiased(k_xx: np.ndarray, k_xy: np.ndarray, k_yy: np.ndarray) -> float:
    """Unbiased MMD^2 from kernel matrices [m,m] (diagonals of k_xx, k_yy left out; k_xy in full)."""
    m = k_xx.shape[0]
    if m < 2 or k_xx.shape != (m, m) or k_xy.shape != (m, m) or k_yy.shape != (m, m):
        raise ValueError(f"need square kernel matrices of the same size >= 2, got {k_xx.shape}")
    sum_xx = k_xx.sum() - np.trace(k_xx)
    sum_yy = k_yy.sum() - np.trace(k_yy)
    return float((sum_xx + sum_yy) / (m * (m - 1)) - 2.0 * k_xy.sum() / (m * m))


def kernel_inception_distance(
    features1: np.ndarray,
    features2: np.ndarray,
    subsets: int = 100,
    subset_size: int = 1000,
    seed: int = DEFAULT_SEED,
) -> tuple[float, float]:
    """KID between [N1,D] and [N2,D] -> (mean, std) of the unbiased cubic-polynomial MMD^2 over subsets.

    Each subset draws min(subset_size, N1, N2) rows without replacement from each set (features1 first, as
    torch-fidelity's input1), with one RandomState(seed) for all draws.
    """
    f1 = np.asarray(features1, dtype=np.float64)
    f2 = np.asarray(features2, dtype=np.float64)
    m = min(int(subset_size), len(f1), len(f2))
    if m < 2:
        raise ValueError("KID needs at least 2 samples per set")
    rng = np.random.RandomState(seed)
    mmds = np.zeros(int(subsets))
    for i in range(int(subsets)):
        x = f1[rng.choice(len(f1), m, replace=False)]
        y = f2[rng.choice(len(f2), m, replace=False)]
        mmds[i] = mmd2_unbiased(polynomial_kernel(x, x), polynomial_kernel(x, y), polynomial_kernel(y, y))
    return float(mmds.mean()), float(mmds.std())


# ----------------------------------------------------------------------------------------------- features


def default_inception_weights_path() -> Path:
    """Where torch-fidelity would cache the weights: `$TORCH_HOME/hub/checkpoints/<INCEPTION_WEIGHTS_NAME>`."""
    import torch

    return Path(torch.hub.get_dir()) / "checkpoints" / INCEPTION_WEIGHTS_NAME


def find_inception_weights(path: str | Path | None = None) -> Path:
    """The Inception weights file to use: `path` if given, else the torch hub cache. Never downloads.

    Raises MissingWeightsError naming the file to provide.
    """
    if path is not None:
        p = Path(path).expanduser()
        if not p.is_file():
            raise MissingWeightsError(f"Inception weights not found: {p} (expected {INCEPTION_WEIGHTS_NAME})")
        return p
    p = default_inception_weights_path()
    if not p.is_file():
        raise MissingWeightsError(
            f"Inception weights not found: put {INCEPTION_WEIGHTS_NAME} in {p.parent} "
            f"or pass --inception-weights PATH (download it from {INCEPTION_WEIGHTS_URL})"
        )
    return p


def _first_line(e: BaseException) -> str:
    text = str(e).strip()
    return text.splitlines()[0] if text else type(e).__name__


class InceptionFeatureExtractor:
    """torch-fidelity's InceptionV3 ('inception-v3-compat') loaded from a local file, in eval mode.

    Calling it on a list of uint8 [H,W,3] images returns {"2048": float32 [N,2048], "logits_unbiased":
    float32 [N,1008]}. Images may have any size (the network resizes to 299 like TF1); images of different
    sizes are run in separate sub-batches, so results do not depend on how the caller batches them.
    """

    def __init__(self, weights_path: str | Path, device: str = "cpu") -> None:
        import torch
        from torch_fidelity.feature_extractor_inceptionv3 import FeatureExtractorInceptionV3

        path = Path(weights_path)
        # torch-fidelity unpickles the file with weights_only=False; check first that it holds nothing but
        # tensors, so a hostile file is refused before it can run code.
        try:
            torch.load(path, map_location="cpu", weights_only=True)
        except Exception as e:  # noqa: BLE001 - any failure means "not a plain state dict"
            raise CdanError(f"{path} is not a readable PyTorch state dict: {_first_line(e)}") from None
        try:
            model = FeatureExtractorInceptionV3(
                "inception-v3-compat", [POOL_FEATURES, LOGITS], feature_extractor_weights_path=str(path)
            )
        except RuntimeError as e:
            raise CdanError(
                f"{path} does not hold torch-fidelity InceptionV3 weights: {_first_line(e)}"
            ) from None
        self.device = torch.device(device)
        self.model = model.to(self.device).eval()
        self.weights_path = path

    def __call__(self, images_u8: Sequence[np.ndarray]) -> dict[str, np.ndarray]:
        import torch

        n = len(images_u8)
        out = {POOL_FEATURES: np.zeros((n, 2048), np.float32), LOGITS: np.zeros((n, 1008), np.float32)}
        by_shape: dict[tuple[int, ...], list[int]] = {}
        for i, im in enumerate(images_u8):
            by_shape.setdefault(tuple(im.shape), []).append(i)
        with torch.no_grad():
            for idx in by_shape.values():
                x = torch.from_numpy(np.stack([images_u8[i] for i in idx])).permute(0, 3, 1, 2).contiguous()
                feats, logits = self.model(x.to(self.device))
                out[POOL_FEATURES][idx] = feats.cpu().numpy()
                out[LOGITS][idx] = logits.cpu().numpy()
        return out
