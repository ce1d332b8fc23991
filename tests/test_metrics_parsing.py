"""PR: HOG differences, group distributions and KL, against a direct transcription of the definition."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.stats import entropy
from skimage.feature import hog

from cdan.metrics.parsing import (
    ParsingKLAccumulator,
    hog_difference,
    hog_features,
    kl_divergence,
    parsing_kl,
    rgb_to_grey_u8,
)


def _images(n: int, seed: int = 0, size: int = 32) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """n grey images and their 'parsed' versions (a random soft mask times the image)."""
    rng = np.random.default_rng(seed)
    grey, parsed = [], []
    for _ in range(n):
        g = rng.integers(0, 256, (size, size)).astype(np.uint8)
        mask = np.clip(rng.random((size, size)) * 1.5, 0, 1)
        grey.append(g)
        parsed.append((g * mask).astype(np.uint8))
    return grey, parsed


def _reference_pr(grey, parsed, a_idx, b_idx, bug=False):
    """The definition written out step by step (HOG(img) - HOG(parsed), sum / sum|.|, clip, entropy)."""

    def h(img):
        return hog(img, orientations=8, pixels_per_cell=(8, 8), cells_per_block=(2, 2), block_norm="L1")

    def dist(idx):
        diffs = np.array([h(grey[i]) - h(parsed[i]) for i in idx])
        return np.sum(diffs, axis=0) / np.sum(np.abs(diffs))

    s = dist(a_idx)
    s = np.where(s > 0, s, 0)
    sc = dist(b_idx)
    sc = np.where(sc > 0, s if bug else sc, 0)
    return entropy(s + 1e-10, sc + 1e-10)


def test_grey_conversion_matches_opencv():
    import cv2

    rgb = np.random.default_rng(1).integers(0, 256, (40, 30, 3)).astype(np.uint8)
    np.testing.assert_array_equal(rgb_to_grey_u8(rgb), cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY))


def test_hog_size_for_112_crops():
    assert hog_features(np.zeros((112, 112), np.uint8)).shape == (13 * 13 * 2 * 2 * 8,)


def test_kl_matches_scipy_entropy():
    rng = np.random.default_rng(2)
    p, q = rng.random(50), rng.random(50)
    p[:5] = 0
    assert kl_divergence(p, q) == pytest.approx(entropy(p + 1e-10, q + 1e-10), rel=1e-12)
    assert kl_divergence(p, p) == pytest.approx(0.0, abs=1e-12)


def test_parsing_kl_matches_the_definition():
    grey, parsed = _images(8)
    a, b = [0, 1, 2], [3, 4, 5, 6, 7]
    ours = parsing_kl(grey, parsed, a, b)
    assert ours == pytest.approx(_reference_pr(grey, parsed, a, b), rel=1e-9)
    assert ours > 0.01
    # the official script's inactive-group bug, reproduced on request
    bug = parsing_kl(grey, parsed, a, b, replicate_official_bug=True)
    assert bug == pytest.approx(_reference_pr(grey, parsed, a, b, bug=True), rel=1e-9)
    assert bug != pytest.approx(ours)


def test_parsing_kl_of_the_same_group_is_zero():
    grey, parsed = _images(4, seed=3)
    assert parsing_kl(grey, parsed, [0, 1, 2, 3], [0, 1, 2, 3]) == pytest.approx(0.0, abs=1e-12)
    # parsed == image everywhere: no difference at all, identical (uniform) distributions
    assert parsing_kl(grey, grey, [0, 1], [2, 3]) == pytest.approx(0.0, abs=1e-12)


def test_parsing_kl_needs_two_groups():
    grey, parsed = _images(2)
    with pytest.raises(ValueError):
        parsing_kl(grey, parsed, [0, 1], [])


def test_accumulator_per_au_equals_parsing_kl():
    grey, parsed = _images(6, seed=4)
    aus = ("AU01", "AU12")
    values = np.array([[0, 3], [2, 0], [0, 1], [1.5, 4], [0, 0], [0.5, 2]])
    acc = ParsingKLAccumulator(aus, threshold=1.0)
    for i in range(6):
        acc.add(values[i], hog_difference(grey[i], parsed[i]))
    per_au = acc.per_au()
    for k, au in enumerate(aus):
        active = [i for i in range(6) if values[i, k] >= 1.0]
        inactive = [i for i in range(6) if values[i, k] < 1.0]
        assert per_au[au] == pytest.approx(parsing_kl(grey, parsed, active, inactive), rel=1e-12)
    assert acc.counts() == {"AU01": (2, 4), "AU12": (4, 2)}


def test_accumulator_gives_none_without_both_groups():
    grey, parsed = _images(2, seed=5)
    acc = ParsingKLAccumulator(("AU04",), threshold=1.0)
    for i in range(2):
        acc.add(np.array([0.0]), hog_difference(grey[i], parsed[i]))
    assert acc.per_au() == {"AU04": None}
