"""Face alignment: a similarity transform from the two eye centres to fixed positions, then a square crop.

The target geometry matches the OpenFace-style crops the official release trains on (the 128 px references
in shared/reference/real_faces_openface measure an inter-ocular distance of 0.37-0.47 of the crop width,
mean 0.42, with the eye line at 0.25-0.34 of the height, mean 0.30, and the mouth near 0.75): the eyes are
level, `EYE_DISTANCE * size` apart, centred horizontally, at height `EYE_HEIGHT * size`. The face then fills
the crop from mid-forehead to the chin, as in those crops.

Pure numpy + OpenCV (cv2.warpAffine), deterministic. Large downscales are pre-filtered with INTER_AREA so
crops from big photos are not aliased.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

__all__ = ["EYE_DISTANCE", "EYE_HEIGHT", "align_face", "alignment_matrix", "transform_points"]

EYE_DISTANCE = 0.42  # inter-ocular distance / crop side
EYE_HEIGHT = 0.30  # eye line / crop side, from the top

_BORDERS = {"replicate", "constant", "reflect"}


def alignment_matrix(
    left_eye: Sequence[float],
    right_eye: Sequence[float],
    size: int = 112,
    eye_distance: float = EYE_DISTANCE,
    eye_height: float = EYE_HEIGHT,
) -> np.ndarray:
    """float64 [2,3] affine matrix (similarity) mapping image pixels to crop pixels.

    left_eye / right_eye: (x, y) centres of the eye on the image left and the image right.
    """
    le = np.asarray(left_eye, dtype=np.float64)
    re = np.asarray(right_eye, dtype=np.float64)
    d = re - le
    dist = float(np.hypot(d[0], d[1]))
    if not np.isfinite(dist) or dist < 1e-6:
        raise ValueError("eye centres coincide")
    scale = eye_distance * size / dist
    cos, sin = d[0] / dist * scale, d[1] / dist * scale
    # Rotation by -angle and scaling: [[cos, sin], [-sin, cos]] maps the eye vector onto +x.
    a = np.array([[cos, sin], [-sin, cos]])
    mid = (le + re) / 2.0
    target = np.array([size / 2.0, eye_height * size])
    t = target - a @ mid
    return np.concatenate([a, t[:, None]], axis=1)


def transform_points(points: np.ndarray, matrix: np.ndarray) -> np.ndarray:
    """Apply a [2,3] affine matrix to points [N,2] -> [N,2]."""
    pts = np.asarray(points, dtype=np.float64)
    return pts @ matrix[:, :2].T + matrix[:, 2]


def align_face(
    image_u8: np.ndarray,
    left_eye: Sequence[float],
    right_eye: Sequence[float],
    size: int = 112,
    border: str = "replicate",
    eye_distance: float = EYE_DISTANCE,
    eye_height: float = EYE_HEIGHT,
) -> tuple[np.ndarray, np.ndarray]:
    """Crop an aligned face. Returns (crop uint8 [size,size,3], matrix float64 [2,3] image -> crop).

    border: "replicate" (default), "constant" (black) or "reflect" for crop pixels outside the image.
    """
    import cv2

    if border not in _BORDERS:
        raise ValueError(f"border must be one of {sorted(_BORDERS)}")
    img = np.asarray(image_u8)
    if img.dtype != np.uint8 or img.ndim != 3:
        raise ValueError(f"image must be uint8 [H,W,C], got {img.dtype} {img.shape}")
    matrix = alignment_matrix(left_eye, right_eye, size, eye_distance, eye_height)
    h, w = img.shape[:2]

    # Only the source region that lands in the crop is needed: cut it out (with a margin) first.
    inv = cv2.invertAffineTransform(matrix)
    corners = np.array([[0, 0], [size, 0], [0, size], [size, size]], dtype=np.float64)
    src = transform_points(corners, inv)
    margin = 4.0 + 2.0 / max(float(np.hypot(*matrix[:, 0])), 1e-6)
    x0 = int(np.clip(np.floor(src[:, 0].min() - margin), 0, w))
    y0 = int(np.clip(np.floor(src[:, 1].min() - margin), 0, h))
    x1 = int(np.clip(np.ceil(src[:, 0].max() + margin), 0, w))
    y1 = int(np.clip(np.ceil(src[:, 1].max() + margin), 0, h))
    if x1 <= x0 or y1 <= y0:  # the crop lies entirely outside the image: use the whole image
        x0, y0, x1, y1 = 0, 0, w, h
    roi = img[y0:y1, x0:x1]
    local = matrix.copy()
    local[:, 2] += matrix[:, :2] @ np.array([x0, y0], dtype=np.float64)

    # Downscale by more than 2x: area-filter first to a size where bilinear warping does not alias.
    scale = float(np.hypot(*matrix[:, 0]))
    if scale < 0.5:
        pre = min(1.0, 2.0 * scale)
        rw, rh = max(1, round(roi.shape[1] * pre)), max(1, round(roi.shape[0] * pre))
        fx, fy = rw / roi.shape[1], rh / roi.shape[0]
        roi = cv2.resize(roi, (rw, rh), interpolation=cv2.INTER_AREA)
        local = local @ np.array([[1.0 / fx, 0, 0], [0, 1.0 / fy, 0], [0, 0, 1.0]])
    mode = {
        "replicate": cv2.BORDER_REPLICATE,
        "constant": cv2.BORDER_CONSTANT,
        "reflect": cv2.BORDER_REFLECT_101,
    }[border]
    crop = cv2.warpAffine(
        np.ascontiguousarray(roi),
        local,
        (size, size),
        flags=cv2.INTER_LINEAR,
        borderMode=mode,
        borderValue=(0, 0, 0),
    )
    return np.ascontiguousarray(crop), matrix
