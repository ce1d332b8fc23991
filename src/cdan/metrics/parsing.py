"""PR, the parsing check of the official PR.py: do parsings differ between faces with and without an AU?

For every image: the HOG (8 orientations, 8x8 cells, 2x2 blocks, L1 block norm; skimage) of its grey image
minus the HOG of its parsed image (the `_mask_input` map of `cdan rec`, i.e. mask * input). Over a group of
images these differences are summed per HOG bin and divided by the total absolute difference of the group;
negative bins are set to 0. The KL divergence KL(A || B) between group A (AU active) and group B (inactive)
is computed as scipy.stats.entropy(a + 1e-10, b + 1e-10), which renormalises both to sum to 1.

Grey images use OpenCV's integer BGR2GRAY formula (the official code reads with cv2), reproduced in numpy.

The official script has a bug: for the inactive group it keeps the *active* group's values where the inactive
values are positive (`np.where(sc_norm > 0, s_norm, 0)`). We compute the intended definition; pass
`replicate_official_bug=True` to get the official numbers.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

HOG_PARAMS = {"orientations": 8, "pixels_per_cell": (8, 8), "cells_per_block": (2, 2), "block_norm": "L1"}
KL_EPS = 1e-10


def rgb_to_grey_u8(image_u8: np.ndarray) -> np.ndarray:
    """uint8 [H,W,3] RGB -> uint8 [H,W] grey, bit-exact with cv2.cvtColor(COLOR_RGB2GRAY)."""
    if image_u8.ndim == 2:
        return image_u8.astype(np.uint8)
    c = image_u8[..., :3].astype(np.uint32)
    # OpenCV's 8-bit fixed point (15-bit coefficients of 0.299, 0.587, 0.114, rounded).
    return ((c[..., 0] * 9798 + c[..., 1] * 19235 + c[..., 2] * 3735 + (1 << 14)) >> 15).astype(np.uint8)


def hog_features(grey_u8: np.ndarray) -> np.ndarray:
    """HOG of a grey image [H,W] (PR.py's parameters) -> float64 [F] (F = 5408 for 112x112)."""
    from skimage.feature import hog

    return np.asarray(hog(grey_u8, visualize=False, feature_vector=True, **HOG_PARAMS), dtype=np.float64)


def hog_difference(grey_u8: np.ndarray, parsed_grey_u8: np.ndarray) -> np.ndarray:
    """HOG(grey) - HOG(parsed), both [H,W] of the same size -> [F]."""
    if grey_u8.shape != parsed_grey_u8.shape:
        raise ValueError(f"shape mismatch {grey_u8.shape} vs {parsed_grey_u8.shape}")
    return hog_features(grey_u8) - hog_features(parsed_grey_u8)


class GroupHOG:
    """Running sum of HOG differences of one group, and its normalised distribution."""

    def __init__(self) -> None:
        self.total: np.ndarray | None = None  # [F] sum of differences
        self.abs_total = 0.0  # sum of |difference| over images and bins
        self.count = 0

    def add(self, diff: np.ndarray) -> None:
        d = np.asarray(diff, np.float64)
        if self.total is not None and self.total.shape != d.shape:
            raise ValueError(f"HOG size changed within a group: {self.total.shape} vs {d.shape}")
        self.total = d.copy() if self.total is None else self.total + d
        self.abs_total += float(np.abs(d).sum())
        self.count += 1

    def distribution(self) -> np.ndarray:
        """sum(diff) / sum(|diff|) with negative bins set to 0 -> [F]; zeros when the group has no difference."""
        if self.total is None:
            raise ValueError("empty group")
        if self.abs_total == 0.0:
            return np.zeros_like(self.total)
        return np.clip(self.total / self.abs_total, 0.0, None)


def kl_divergence(p: np.ndarray, q: np.ndarray, eps: float = KL_EPS) -> float:
    """KL(p || q) in nats after adding `eps` and renormalising (= scipy.stats.entropy(p + eps, q + eps))."""
    p = np.asarray(p, np.float64) + eps
    q = np.asarray(q, np.float64) + eps
    p, q = p / p.sum(), q / q.sum()
    return float(np.sum(p * np.log(p / q)))


def group_kl(group_a: GroupHOG, group_b: GroupHOG, replicate_official_bug: bool = False) -> float:
    """KL between the HOG-difference distributions of two groups (A: AU active, B: inactive)."""
    a = group_a.distribution()
    if replicate_official_bug:
        # PR.py: sc_norm = np.where(sc_norm > 0, s_norm, 0) (uses the active group's values).
        b = np.where(group_b.total > 0, a, 0.0)
    else:
        b = group_b.distribution()
    return kl_divergence(a, b)


def parsing_kl(
    real_grey_list: Sequence[np.ndarray],
    parsed_grey_list: Sequence[np.ndarray],
    group_a_idx: Sequence[int],
    group_b_idx: Sequence[int],
    replicate_official_bug: bool = False,
) -> float:
    """PR for two groups of images.

    real_grey_list[i], parsed_grey_list[i]: uint8 [H,W] grey image i and its parsed (masked) version.
    group_a_idx / group_b_idx: indices of group A (e.g. AU active) and B (inactive). Returns KL(A || B).
    Raises ValueError when a group is empty.
    """
    if len(real_grey_list) != len(parsed_grey_list):
        raise ValueError("real and parsed lists differ in length")
    groups = []
    for idx in (group_a_idx, group_b_idx):
        if len(idx) == 0:
            raise ValueError("PR needs two non-empty groups")
        g = GroupHOG()
        for i in idx:
            g.add(hog_difference(real_grey_list[i], parsed_grey_list[i]))
        groups.append(g)
    return group_kl(groups[0], groups[1], replicate_official_bug)


def au_active(values: np.ndarray, threshold: float) -> np.ndarray:
    """AU intensities [N,K] (0-5) -> bool [N,K], active where value >= threshold."""
    return np.asarray(values, np.float64) >= threshold


class ParsingKLAccumulator:
    """Streams images into per-AU active/inactive groups and gives the PR KL for each AU.

    `add(au, diff)`: au [K] 0-5 intensities of the image (in `aus` order), diff [F] from `hog_difference`.
    """

    def __init__(self, aus: Sequence[str], threshold: float = 1.0) -> None:
        self.aus = tuple(aus)
        self.threshold = float(threshold)
        self.active = [GroupHOG() for _ in self.aus]
        self.inactive = [GroupHOG() for _ in self.aus]

    def add(self, au: np.ndarray, diff: np.ndarray) -> None:
        flags = au_active(np.asarray(au).reshape(1, -1), self.threshold)[0]
        for k, on in enumerate(flags):
            (self.active if on else self.inactive)[k].add(diff)

    def counts(self) -> dict[str, tuple[int, int]]:
        """{AU: (active count, inactive count)}."""
        return {a: (self.active[k].count, self.inactive[k].count) for k, a in enumerate(self.aus)}

    def per_au(self, replicate_official_bug: bool = False) -> dict[str, float | None]:
        """{AU: KL(active || inactive)}, None for an AU where a group is empty."""
        out: dict[str, float | None] = {}
        for k, a in enumerate(self.aus):
            if self.active[k].count == 0 or self.inactive[k].count == 0:
                out[a] = None
            else:
                out[a] = group_kl(self.active[k], self.inactive[k], replicate_official_bug)
        return out
