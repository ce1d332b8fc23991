"""Eye-based similarity alignment: eyes land on the target, level, deterministic, any border mode."""

from __future__ import annotations

import numpy as np
import pytest

from cdan.faces.align import EYE_DISTANCE, EYE_HEIGHT, align_face, alignment_matrix, transform_points


def _dots_image(h: int, w: int, eyes: list[tuple[float, float]], radius: int) -> np.ndarray:
    """Grey image with two dark round 'eyes' at the given centres."""
    import cv2

    img = np.full((h, w, 3), 200, np.uint8)
    for x, y in eyes:
        cv2.circle(img, (int(round(x)), int(round(y))), radius, (0, 0, 0), -1, lineType=cv2.LINE_AA)
    return img


def _dark_centroids(crop: np.ndarray) -> list[np.ndarray]:
    dark = crop.mean(2) < 100
    ys, xs = np.nonzero(dark)
    left = xs < crop.shape[1] / 2
    return [np.array([xs[m].mean(), ys[m].mean()]) for m in (left, ~left)]


def test_matrix_maps_eyes_to_targets_and_levels_them():
    left, right = (130.0, 210.0), (250.0, 170.0)  # tilted face
    m = alignment_matrix(left, right, size=112)
    out = transform_points(np.array([left, right]), m)
    d = EYE_DISTANCE * 112
    np.testing.assert_allclose(out[0], [56 - d / 2, EYE_HEIGHT * 112], atol=1e-9)
    np.testing.assert_allclose(out[1], [56 + d / 2, EYE_HEIGHT * 112], atol=1e-9)
    a = m[:, :2]
    np.testing.assert_allclose(a @ a.T, np.eye(2) * (a[0] @ a[0]), atol=1e-9)  # similarity: no shear
    with pytest.raises(ValueError):
        alignment_matrix((5, 5), (5, 5))


@pytest.mark.parametrize(
    "shape, eyes, radius",
    [
        ((300, 400, 3), [(150.0, 140.0), (240.0, 120.0)], 9),  # upscale-ish, tilted
        ((2400, 3000, 3), [(1200.0, 1100.0), (1900.0, 1180.0)], 60),  # big photo: pre-filtered downscale
    ],
)
def test_crop_puts_eyes_on_target(shape, eyes, radius):
    img = _dots_image(shape[0], shape[1], eyes, radius)
    crop, m = align_face(img, eyes[0], eyes[1], size=112)
    assert crop.shape == (112, 112, 3) and crop.dtype == np.uint8
    got = _dark_centroids(crop)
    d = EYE_DISTANCE * 112
    np.testing.assert_allclose(got[0], [56 - d / 2, EYE_HEIGHT * 112], atol=0.8)
    np.testing.assert_allclose(got[1], [56 + d / 2, EYE_HEIGHT * 112], atol=0.8)
    crop2, m2 = align_face(img, eyes[0], eyes[1], size=112)
    np.testing.assert_array_equal(crop, crop2)  # deterministic
    np.testing.assert_array_equal(m, m2)


def test_border_modes_and_size():
    img = np.full((60, 60, 3), 255, np.uint8)
    eyes = ((5.0, 5.0), (25.0, 5.0))  # crop reaches far outside the image
    rep, _ = align_face(img, *eyes, size=64, border="replicate")
    con, _ = align_face(img, *eyes, size=64, border="constant")
    assert (rep == 255).all()
    assert (con[0, 0] == 0).all() and (con == 255).any()
    big, _ = align_face(img, *eyes, size=200)
    assert big.shape == (200, 200, 3)
    with pytest.raises(ValueError):
        align_face(img, *eyes, border="wrap")
