"""IS / FID / KID math against closed forms, scipy and torch-fidelity's own functions."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.linalg

from cdan.metrics.fid_is import (
    feature_statistics,
    fid_from_features,
    frechet_distance,
    inception_score,
    kernel_inception_distance,
    mmd2_unbiased,
    polynomial_kernel,
)


def random_spd(rng: np.random.Generator, d: int) -> np.ndarray:
    a = rng.standard_normal((d, d))
    return a @ a.T / d + 0.1 * np.eye(d)


def test_fid_zero_for_identical_statistics():
    rng = np.random.default_rng(0)
    mu, sigma = rng.standard_normal(16), random_spd(rng, 16)
    assert frechet_distance(mu, sigma, mu, sigma) == pytest.approx(0.0, abs=1e-9)


def test_fid_equal_covariances_is_squared_mean_distance():
    rng = np.random.default_rng(1)
    sigma = random_spd(rng, 12)
    mu1, mu2 = rng.standard_normal(12), rng.standard_normal(12)
    expected = float(np.sum((mu1 - mu2) ** 2))
    assert frechet_distance(mu1, sigma, mu2, sigma) == pytest.approx(expected, rel=1e-9)


@pytest.mark.parametrize("seed", [2, 3, 4])
def test_fid_agrees_with_scipy_sqrtm_reference(seed):
    rng = np.random.default_rng(seed)
    d = 20
    mu1, mu2 = rng.standard_normal(d), rng.standard_normal(d)
    s1, s2 = random_spd(rng, d), random_spd(rng, d)
    covmean = scipy.linalg.sqrtm(s1 @ s2).real
    reference = np.sum((mu1 - mu2) ** 2) + np.trace(s1) + np.trace(s2) - 2 * np.trace(covmean)
    assert frechet_distance(mu1, s1, mu2, s2) == pytest.approx(reference, rel=1e-8)


def test_fid_with_singular_covariances_matches_torch_fidelity():
    """Fewer samples than dimensions (rank-deficient covariance), as with small test sets."""
    from torch_fidelity.metric_fid import fid_statistics_to_metric

    rng = np.random.default_rng(5)
    f1 = rng.standard_normal((10, 32))
    f2 = rng.standard_normal((10, 32)) * 1.5 + 0.3
    ours = fid_from_features(f1, f2)
    s1, s2 = feature_statistics(f1), feature_statistics(f2)
    theirs = fid_statistics_to_metric(
        {"mu": s1[0], "sigma": s1[1]}, {"mu": s2[0], "sigma": s2[1]}, verbose=False
    )["frechet_inception_distance"]
    assert ours == pytest.approx(theirs, rel=1e-6)
    assert ours > 1.0


@pytest.mark.parametrize(("n1", "n2", "d"), [(5, 9, 40), (30, 12, 16), (4, 6, 300)])
def test_fid_sample_space_path_equals_statistics_path(n1, n2, d):
    rng = np.random.default_rng(n1 + n2 + d)
    f1 = rng.standard_normal((n1, d))
    f2 = rng.standard_normal((n2, d)) * 0.7 + 0.1
    s1, s2 = feature_statistics(f1), feature_statistics(f2)
    assert fid_from_features(f1, f2) == pytest.approx(frechet_distance(*s1, *s2), rel=1e-6)
    assert fid_from_features(f1, f1) == pytest.approx(0.0, abs=1e-8 * d)


def test_feature_statistics_shapes_and_values():
    f = np.array([[0.0, 1.0], [2.0, 3.0], [4.0, 8.0]])
    mu, sigma = feature_statistics(f)
    np.testing.assert_allclose(mu, [2.0, 4.0])
    np.testing.assert_allclose(sigma, np.cov(f, rowvar=False))
    with pytest.raises(ValueError):
        feature_statistics(np.zeros((1, 3)))


@pytest.mark.parametrize("k", [2, 5, 10])
def test_is_of_uniform_one_hot_predictions_equals_k(k):
    logits = np.full((k * 7, k), -1000.0)
    logits[np.arange(k * 7), np.arange(k * 7) % k] = 1000.0  # confident, every class equally often
    mean, std = inception_score(logits, splits=1)
    assert mean == pytest.approx(k, rel=1e-9)
    assert std == 0.0


def test_is_of_a_single_class_is_one():
    logits = np.zeros((20, 8))
    logits[:, 3] = 50.0
    assert inception_score(logits, splits=4)[0] == pytest.approx(1.0, abs=1e-9)


def test_is_matches_torch_fidelity_with_splits_and_shuffle():
    import torch
    from torch_fidelity.metric_isc import isc_features_to_metric

    rng = np.random.default_rng(6)
    logits = (rng.standard_normal((40, 30)) * 3).astype(np.float32)
    mean, std = inception_score(logits, splits=10)
    theirs = isc_features_to_metric(torch.from_numpy(logits), splits=10, shuffle=True, rng_seed=2020)
    assert mean == pytest.approx(theirs["inception_score_mean"], rel=1e-9)
    assert std == pytest.approx(theirs["inception_score_std"], rel=1e-7)


def test_is_caps_splits_at_sample_count():
    logits = np.random.default_rng(7).standard_normal((3, 5))
    assert np.isfinite(inception_score(logits, splits=10)[0])


def test_mmd2_unbiased_matches_brute_force():
    rng = np.random.default_rng(8)
    x, y = rng.standard_normal((7, 4)), rng.standard_normal((7, 4)) + 0.5
    kxx, kxy, kyy = polynomial_kernel(x, x), polynomial_kernel(x, y), polynomial_kernel(y, y)
    m = 7
    brute = 0.0
    for i in range(m):
        for j in range(m):
            if i != j:
                brute += (kxx[i, j] + kyy[i, j]) / (m * (m - 1))
            brute -= 2 * kxy[i, j] / (m * m)
    assert mmd2_unbiased(kxx, kxy, kyy) == pytest.approx(brute, rel=1e-12)
    # the kernel itself: (x.y / d + 1)^3
    assert kxy[2, 5] == pytest.approx((x[2] @ y[5] / 4 + 1) ** 3)


def test_kid_of_identical_sets_is_near_zero_and_shift_is_not():
    rng = np.random.default_rng(9)
    f = rng.standard_normal((300, 16))
    same, _ = kernel_inception_distance(f, f.copy(), subsets=20, subset_size=100)
    shifted, _ = kernel_inception_distance(f, f + 1.0, subsets=20, subset_size=100)
    assert abs(same) < 0.02 * shifted
    assert shifted > 0.1


def test_kid_matches_torch_fidelity():
    import torch
    from torch_fidelity.metric_kid import kid_features_to_metric

    rng = np.random.default_rng(10)
    f1 = rng.standard_normal((30, 8))
    f2 = rng.standard_normal((25, 8)) + 0.2
    mean, std = kernel_inception_distance(f1, f2, subsets=15, subset_size=20, seed=2020)
    theirs = kid_features_to_metric(
        torch.from_numpy(f1),
        torch.from_numpy(f2),
        kid_subsets=15,
        kid_subset_size=20,
        rng_seed=2020,
        verbose=False,
    )
    assert mean == pytest.approx(theirs["kernel_inception_distance_mean"], rel=1e-9)
    assert std == pytest.approx(theirs["kernel_inception_distance_std"], rel=1e-9)
