"""Landmark geometry shared by the `landmarks` (dlib 68) and `mediapipe` (478) AU backends.

Both backends reduce their landmarks to the same named points, put them in a frontal frame (eye-corner
midpoint at the origin, eyes level, y up; MediaPipe's 3D points are frontalised before, dlib's 2D points are
pose-corrected after with `pose_correct`) and measure distances in units of the inter-ocular distance (IOD,
between the eye-corner midpoints; about 6.3 cm on an adult). Each AU's geometric evidence is the change of one
measure from its neutral value, turned into 0-1 by `ramp(delta, dead, full)`: `dead` is the change that the
spread of neutral faces between people already explains (so it is read as no action), `full` the change at
FACS intensity E (the most a face does).

Neutral values come from a reference neutral shape of each landmark scheme, measured with the same code:
- MediaPipe: its canonical face model (the neutral mesh in `face_landmarker.task`,
  `geometry_pipeline_metadata_landmarks.binarypb`; `CANONICAL_POINTS` holds its named points and a test
  re-derives them from the file). Its eyes are narrower than real MediaPipe output (0.096 IOD between the lid
  points), so the neutral eye opening is the anthropometric one instead: 0.145 IOD, ~9 mm lid separation at
  the points one third and two thirds along an adult eye of ~10 mm palpebral fissure height.
- dlib: the predictor's own mean shape (the average of its 300-W training faces, stored at the start of
  `shape_predictor_68_face_landmarks.dat`).
- For both, a relaxed closed mouth has lip gap 0 and its corners level with the lip line (reference shapes
  average in open mouths).

E-level displacements (cm from FACS/anatomy descriptions, then /6.3 cm): inner or outer brow raise 1 cm
(0.16), brow lowering and drawing together 6 mm (0.10), upper lid raise 4.5 mm (0.07), lid tightening 4.5 mm
(0.07), lower lid raised by the cheek 3 mm (0.05), lip corner raise 7.5 mm (0.12), lip corner depression 5 mm
(0.08), upper lip raise 5 mm (0.08), mouth widening 1.3 cm (0.20), lip narrowing 6 mm (0.10), lip parting 1 cm
beyond the dead zone (0.16), jaw drop 1.3 cm beyond it (0.21). Dead zones are about 2.5 mm for brows (0.04),
1-2 mm for lids and lip corners, 3 mm for the lip gap (a relaxed mouth's lips are normally up to ~3 mm apart)
and 5.5 mm for the jaw (that gap plus the spread between people).
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

__all__ = [
    "CANONICAL_POINTS",
    "DLIB68",
    "GEOMETRIC_AUS",
    "MEDIAPIPE478",
    "NEUTRAL",
    "features",
    "neutral_features",
    "frontal_points",
    "pose_correct",
    "geometric_evidence",
    "ramp",
]

# Named points, each side (image-left, image-right) or centre: dlib 68 indices and MediaPipe mesh indices
# (a tuple means the mean of those points).
DLIB68: dict[str, int | tuple[int, ...]] = {
    "brow_inner_l": 21, "brow_inner_r": 22,
    "brow_outer_l": 17, "brow_outer_r": 26,
    "eye_outer_l": 36, "eye_outer_r": 45,
    "eye_inner_l": 39, "eye_inner_r": 42,
    "lid_upper_l": (37, 38), "lid_upper_r": (43, 44),
    "lid_lower_l": (41, 40), "lid_lower_r": (47, 46),
    "mouth_corner_l": 48, "mouth_corner_r": 54,
    "lip_upper_inner": 62, "lip_lower_inner": 66,
    "lip_upper_outer": 51, "lip_lower_outer": 57,
    "chin": 8, "subnasale": 33,
    "nasion": 27, "nose_tip": 30,
}  # fmt: skip
MEDIAPIPE478: dict[str, int | tuple[int, ...]] = {
    "brow_inner_l": 107, "brow_inner_r": 336,
    "brow_outer_l": 70, "brow_outer_r": 300,
    "eye_outer_l": 33, "eye_outer_r": 263,
    "eye_inner_l": 133, "eye_inner_r": 362,
    "lid_upper_l": (160, 158), "lid_upper_r": (385, 387),
    "lid_lower_l": (144, 153), "lid_lower_r": (380, 373),
    "mouth_corner_l": 61, "mouth_corner_r": 291,
    "lip_upper_inner": 13, "lip_lower_inner": 14,
    "lip_upper_outer": 0, "lip_lower_outer": 17,
    "chin": 152, "subnasale": 2,
    "nasion": 168, "nose_tip": 4,
}  # fmt: skip

# MediaPipe's canonical (neutral) face, frontal projection of MEDIAPIPE478's points, in the frame of
# `frontal_points` (IOD units, y up). Symmetric, so one x per side.
CANONICAL_POINTS: dict[str, tuple[float, float]] = {
    "brow_inner_l": (-0.2214, 0.3788), "brow_inner_r": (0.2214, 0.3788),
    "brow_outer_l": (-0.9078, 0.2586), "brow_outer_r": (0.9078, 0.2586),
    "eye_outer_l": (-0.7054, 0.0062), "eye_outer_r": (0.7054, 0.0062),
    "eye_inner_l": (-0.2946, -0.0062), "eye_inner_r": (0.2946, -0.0062),
    "lid_upper_l": (-0.5073, 0.0508), "lid_upper_r": (0.5073, 0.0508),
    "lid_lower_l": (-0.5073, -0.0455), "lid_lower_r": (0.5073, -0.0455),
    "mouth_corner_l": (-0.3897, -1.1055), "mouth_corner_r": (0.3897, -1.1055),
    "lip_upper_inner": (0.0, -1.0503), "lip_lower_inner": (0.0, -1.1372),
    "lip_upper_outer": (0.0, -0.9570), "lip_lower_outer": (0.0, -1.2678),
    "chin": (0.0, -1.9085), "subnasale": (0.0, -0.7479),
    "nasion": (0.0, 0.1026), "nose_tip": (0.0, -0.4899),
}  # fmt: skip
# Depth of the same points in the canonical face (IOD units, toward the viewer; eye-corner midpoint at 0).
CANONICAL_DEPTH: dict[str, float] = {
    "brow_inner_l": 0.2936, "brow_inner_r": 0.2936, "brow_outer_l": -0.1007, "brow_outer_r": -0.1007,
    "eye_outer_l": -0.0464, "eye_outer_r": -0.0464, "eye_inner_l": 0.0464, "eye_inner_r": 0.0464,
    "lid_upper_l": 0.0527, "lid_upper_r": 0.0527, "lid_lower_l": 0.0382, "lid_lower_r": 0.0382,
    "mouth_corner_l": 0.1298, "mouth_corner_r": 0.1298,
    "lip_upper_inner": 0.2783, "lip_lower_inner": 0.3077, "lip_upper_outer": 0.3989, "lip_lower_outer": 0.3284,
    "chin": 0.1268, "subnasale": 0.4114, "nasion": 0.2809, "nose_tip": 0.6539,
}  # fmt: skip
# Points that expressions barely move, used to estimate head pose from 2D landmarks.
POSE_POINTS = ("eye_outer_l", "eye_outer_r", "eye_inner_l", "eye_inner_r", "nasion", "nose_tip", "subnasale")
MAX_POSE_DEG = 40.0  # beyond this the 2D pose estimate is not trusted and no correction is made
# Identity alone moves the 2D pose estimate: the eye-to-subnasale height varies ~8% (0.06 IOD) between adults,
# which at the subnasale's depth (0.41 IOD) reads as ~8 degrees of pitch. The estimated rotation is shrunk by
# that much (soft threshold), so only pose clearly beyond a face's own proportions is undone.
POSE_NOISE_DEG = 8.0

NEUTRAL_EYE_OPEN = 0.145  # anthropometric lid separation at the 1/3 and 2/3 points, IOD units (see above)

# AUs with geometric evidence (all others are blendshape-only in the mediapipe backend, 0 in landmarks).
GEOMETRIC_AUS = (
    "AU01", "AU02", "AU04", "AU05", "AU06", "AU07", "AU09", "AU10",
    "AU12", "AU15", "AU17", "AU20", "AU23", "AU25", "AU26", "AU45",
)  # fmt: skip


def frontal_points(points: np.ndarray, index: Mapping[str, int | tuple[int, ...]], y_up: bool) -> dict:
    """Named points in the frontal frame: eye-corner midpoints at (-0.5, 0) and (0.5, 0), y up.

    points: [L,2] (or [L,3]; x and y are used) landmark coordinates. index: DLIB68 or MEDIAPIPE478.
    y_up: True when the input y axis already points up (MediaPipe canonical space), False for image pixels.
    Returns {name: float64 [2]}.
    """
    pts = np.asarray(points, dtype=np.float64)[:, :2].copy()
    if not y_up:
        pts[:, 1] = -pts[:, 1]

    def get(i):
        return pts[list(i)].mean(0) if isinstance(i, tuple) else pts[i]

    raw = {name: get(i) for name, i in index.items()}
    el = (raw["eye_outer_l"] + raw["eye_inner_l"]) / 2
    er = (raw["eye_outer_r"] + raw["eye_inner_r"]) / 2
    if el[0] > er[0]:  # mirrored input: keep "l" on the image left
        el, er = er, el
    d = er - el
    iod = float(np.hypot(*d))
    if iod < 1e-9:
        raise ValueError("degenerate landmarks (eye centres coincide)")
    c, s = d / iod
    rot = np.array([[c, s], [-s, c]]) / iod
    mid = (el + er) / 2
    return {name: rot @ (p - mid) for name, p in raw.items()}


def pose_correct(p: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Undo out-of-plane head rotation of 2D named points (output of `frontal_points`) with a generic depth.

    Fits a scaled-orthographic camera (rotation R, scale, shift) mapping the canonical face's 3D POSE_POINTS
    (CANONICAL_POINTS + CANONICAL_DEPTH) onto the measured 2D points, then lifts every named point back to 3D
    assuming its depth in the face frame is the canonical one, and returns the frontal (x, y) in the frame of
    `frontal_points`. Without it, pitch moves the lip centre (about 1 cm in front of the mouth corners) against
    the corners, which reads as a smile or frown (20 degrees: ~0.05 IOD, half of AU12's full range). Returns
    the input unchanged when the fit is degenerate or the rotation exceeds MAX_POSE_DEG.
    """
    names = [n for n in POSE_POINTS if n in p]
    if len(names) < 6:
        return dict(p)
    model = np.array([[*CANONICAL_POINTS[n], CANONICAL_DEPTH[n]] for n in names])
    seen = np.array([p[n] for n in names], dtype=np.float64)
    mu_m, mu_s = model.mean(0), seen.mean(0)
    a, *_ = np.linalg.lstsq(model - mu_m, seen - mu_s, rcond=None)  # [3,2]: seen ~ model @ a
    u, sig, vt = np.linalg.svd(a.T, full_matrices=False)  # a.T = [2,3]
    if sig.min() < 1e-6 or sig.max() / sig.min() > 3.0:
        return dict(p)
    rows = u @ vt  # [2,3] orthonormal rows: the first two rows of the head rotation
    rot = np.vstack([rows, np.cross(rows[0], rows[1])])
    angle = np.degrees(np.arccos(np.clip((np.trace(rot) - 1) / 2, -1.0, 1.0)))
    if not np.isfinite(angle) or angle > MAX_POSE_DEG:
        return dict(p)
    if angle <= POSE_NOISE_DEG:
        return dict(p)
    from scipy.spatial.transform import Rotation

    rotvec = Rotation.from_matrix(rot).as_rotvec()
    rows = Rotation.from_rotvec(rotvec * (1.0 - POSE_NOISE_DEG / angle)).as_matrix()[:2]
    scale = float(sig.mean())
    shift = mu_s - scale * rows @ mu_m
    out = {}
    for name, pt in p.items():
        if name not in CANONICAL_DEPTH:
            out[name] = np.asarray(pt, dtype=np.float64)
            continue
        z = CANONICAL_DEPTH[name]
        rhs = (np.asarray(pt, dtype=np.float64) - shift) / scale - rows[:, 2] * z
        out[name] = np.linalg.solve(rows[:, :2], rhs)
    return _renormalise(out)


def _renormalise(p: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Re-centre named points on the eye-corner midpoints with unit IOD (as `frontal_points`)."""
    el = (p["eye_outer_l"] + p["eye_inner_l"]) / 2
    er = (p["eye_outer_r"] + p["eye_inner_r"]) / 2
    d = er - el
    iod = float(np.hypot(*d))
    c, s = d / iod
    rot = np.array([[c, s], [-s, c]]) / iod
    mid = (el + er) / 2
    return {name: rot @ (pt - mid) for name, pt in p.items()}


def _pair(p: Mapping[str, np.ndarray], name: str) -> tuple[np.ndarray, np.ndarray]:
    return p[f"{name}_l"], p[f"{name}_r"]


def features(p: Mapping[str, np.ndarray]) -> dict[str, float]:
    """Geometric measures (IOD units) from frontal named points. Side pairs are averaged."""

    def y(name):
        if f"{name}_l" in p:
            a, b = _pair(p, name)
            return float(a[1] + b[1]) / 2
        return float(p[name][1])

    eye_line = (y("eye_inner") + y("eye_outer")) / 2
    lip_centre = (y("lip_upper_inner") + y("lip_lower_inner")) / 2
    bi_l, bi_r = _pair(p, "brow_inner")
    mc_l, mc_r = _pair(p, "mouth_corner")
    return {
        "inbrow_h": y("brow_inner") - y("eye_inner"),
        "outbrow_h": y("brow_outer") - y("eye_outer"),
        "brow_gap": float(np.hypot(*(bi_r - bi_l))),
        "eye_open": y("lid_upper") - y("lid_lower"),
        "lowlid_h": y("lid_lower") - eye_line,
        "corner_h": y("mouth_corner") - lip_centre,
        "mouth_w": float(np.hypot(*(mc_r - mc_l))),
        "lip_gap": max(0.0, y("lip_upper_inner") - y("lip_lower_inner")),
        "lip_red": (y("lip_upper_outer") - y("lip_upper_inner"))
        + (y("lip_lower_inner") - y("lip_lower_outer")),
        "lower_face": y("subnasale") - y("chin") - max(0.0, y("lip_upper_inner") - y("lip_lower_inner")),
        "upper_lip": y("subnasale") - y("lip_upper_outer"),
    }


def neutral_features(named: Mapping[str, np.ndarray], eye_open: float | None = None) -> dict[str, float]:
    """Neutral values of `features` from a reference neutral shape's frontal named points.

    Two values are set by definition rather than measured: the lip gap of a relaxed closed mouth is 0 and its
    corners are level with the lip line (reference shapes such as dlib's mean shape average in open mouths).
    eye_open: override the neutral eye opening (used for MediaPipe's canonical mesh, whose eyes are narrow).
    """
    f = features(named)
    f["lip_gap"] = 0.0
    f["corner_h"] = 0.0
    if eye_open is not None:
        f["eye_open"] = float(eye_open)
    return f


# Neutral values for MediaPipe landmarks: the canonical mesh, with the anthropometric eye opening.
NEUTRAL: dict[str, float] = neutral_features(
    {k: np.asarray(v, dtype=np.float64) for k, v in CANONICAL_POINTS.items()}, eye_open=NEUTRAL_EYE_OPEN
)


def ramp(x: float, dead: float, full: float) -> float:
    """0 up to `dead`, linear to 1 at `full`, 1 beyond."""
    return float(np.clip((x - dead) / (full - dead), 0.0, 1.0))


def geometric_evidence(
    f: Mapping[str, float], neutral: Mapping[str, float] | None = None
) -> dict[str, float]:
    """Per-AU geometric evidence in [0,1] (1 = FACS intensity E) from `features` output.

    neutral: the neutral values for this landmark scheme (default NEUTRAL, MediaPipe's canonical face).
    """
    neutral = NEUTRAL if neutral is None else neutral
    d = {k: f[k] - neutral[k] for k in neutral}
    corner_up = ramp(d["corner_h"], 0.015, 0.12)
    corner_down = ramp(-d["corner_h"], 0.015, 0.08)
    widen = ramp(d["mouth_w"], 0.03, 0.20)
    lip_gap = ramp(f["lip_gap"], 0.05, 0.21)
    closure = 1.0 - f["eye_open"] / neutral["eye_open"]
    return {
        "AU01": ramp(d["inbrow_h"], 0.04, 0.16),
        "AU02": ramp(d["outbrow_h"], 0.04, 0.16),
        "AU04": (ramp(-d["inbrow_h"], 0.03, 0.10) + ramp(-d["brow_gap"], 0.03, 0.10)) / 2,
        "AU05": ramp(d["eye_open"], 0.02, 0.07),
        "AU06": ramp(d["lowlid_h"], 0.015, 0.05),
        "AU07": ramp(-d["eye_open"], 0.02, 0.07),
        "AU09": ramp(-d["upper_lip"], 0.02, 0.08) * ramp(-d["inbrow_h"], 0.0, 0.05),
        "AU10": ramp(-d["upper_lip"], 0.02, 0.08),
        "AU12": corner_up,
        "AU15": corner_down,
        "AU17": ramp(-d["lower_face"], 0.02, 0.08) * (1.0 - lip_gap),
        "AU20": widen * (1.0 - corner_up),
        "AU23": ramp(-d["lip_red"], 0.02, 0.10) * (1.0 - lip_gap),
        "AU25": lip_gap,
        "AU26": ramp(d["lower_face"] + f["lip_gap"], 0.09, 0.30),
        "AU45": ramp(closure, 0.5, 0.9),
    }
