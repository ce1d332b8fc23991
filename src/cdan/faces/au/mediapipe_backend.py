"""`mediapipe` AU backend: MediaPipe FaceLandmarker blendshapes fused with 478-landmark geometry.

Blendshapes are not AUs (they are ARKit-style rig weights), and landmark geometry alone confuses a person's
resting face with an expression, so each AU combines both. For every face:

1. Blendshape evidence: the score b in [0,1] as is (0 is the rig at rest, 1 its full deformation, read as
   FACS intensity E). Left/right blendshapes are averaged (OpenFace reports one intensity per face).
2. Geometric evidence: the 3D landmarks are aligned (similarity, least squares on rigid points: forehead,
   nose bridge, eye corners, face sides) onto MediaPipe's canonical neutral face, which removes head pose;
   then `cdan.faces.au.geometry` measures each AU's movement from the neutral face in inter-ocular units
   with FACS/anatomical E-level ranges (see that module). Without the person's own neutral face, a measure
   only helps when people differ little in it at rest compared with the AU's full range. We keep those whose
   between-person spread is at most a quarter of the range (rough adult norms, SD / E-level movement):
   lip corner height against the lip line (~1 mm / 7.5 mm for AU12, / 5 mm for AU15), the lip gap
   (~1 mm / 10 mm, AU25) and eye closure (~1.5 mm / 9 mm, AU45). One more is kept because its blendshape
   carries almost no signal (MediaPipe's cheekSquint stays near 0 even on broad smiles): the lower lid
   raised above the eye-corner line (~1 mm / 3 mm, AU06). The others are left to the blendshapes:
   brow-eye distance (~3.5 mm / 10 mm: AU01, AU02, AU04), eye opening (~1.5 mm / 4.5 mm: AU05, AU07),
   mouth width (~3.5 mm / 13 mm: AU20), lip thickness (AU23) and nose-lip or nose-chin heights (AU09,
   AU10, AU17, AU26).
3. AU = 5 x the mean of the two evidences where both exist, else 5 x the blendshape (0-5, OpenFace's scale).
   Exceptions: AU25 (lips part) takes the larger of the lip-gap geometry and jawOpen, since an open jaw parts
   the lips but lips can also part alone. AU06 takes the largest of cheekSquint, the lower-lid geometry and
   OpenFace's own smile coupling `0.78 x max(0, AU12 - 0.25)`: in FACS the cheek raiser accompanies felt
   smiles, and OpenFace's AU06 follows its AU12 closely (r = 0.75 on the 2,180 official OpenFace labels,
   `legacy/affect_HaSa_au.pkl`; the line is a least-absolute-deviation fit there, MAE 0.49 against 1.21 for
   zeros). cheekSquint stays near 0 even on broad smiles, so averaging with it would halve the other cues.

| AU   | FACS name            | blendshape(s)                     | geometry fused (change from neutral)        |
|------|----------------------|-----------------------------------|---------------------------------------------|
| AU01 | inner brow raiser    | browInnerUp                       | (blendshape only)                           |
| AU02 | outer brow raiser    | browOuterUpLeft/Right             | (blendshape only)                           |
| AU04 | brow lowerer         | browDownLeft/Right                | (blendshape only)                           |
| AU05 | upper lid raiser     | eyeWideLeft/Right                 | (blendshape only)                           |
| AU06 | cheek raiser         | cheekSquintLeft/Right (max)       | lower lid raised (max); AU12 coupling (max) |
| AU07 | lid tightener        | eyeSquintLeft/Right               | (blendshape only)                           |
| AU09 | nose wrinkler        | noseSneerLeft/Right               | (blendshape only)                           |
| AU10 | upper lip raiser     | mouthUpperUpLeft/Right            | (blendshape only)                           |
| AU12 | lip corner puller    | mouthSmileLeft/Right              | lip corners above the lip centre            |
| AU14 | dimpler              | mouthDimpleLeft/Right             | (blendshape only)                           |
| AU15 | lip corner depressor | mouthFrownLeft/Right              | lip corners below the lip centre            |
| AU17 | chin raiser          | mouthShrugLower                   | (blendshape only)                           |
| AU20 | lip stretcher        | mouthStretchLeft/Right            | (blendshape only)                           |
| AU23 | lip tightener        | mouthPressLeft/Right              | (blendshape only)                           |
| AU25 | lips part            | jawOpen (max with geometry)       | gap between the inner lips                  |
| AU26 | jaw drop             | jawOpen                           | (blendshape only)                           |
| AU45 | blink                | eyeBlinkLeft/Right                | eye opening closed                          |

Known blendshape weaknesses (MediaPipe's blendshape network sees only 2D landmarks): browDown also fires
for brows that rest low (no person calibration is possible from one image), and eyeWide, noseSneer and
cheekSquint rarely leave 0 (google-ai-edge/mediapipe#4450). The only constants fitted to labels are the two
AU06 coupling constants, fitted to the official OpenFace training labels, never to the benchmark faces; the
agreement with OpenFace on the 4 held-out reference faces is measured by `benchmarks/au_agreement.py`.
"""

from __future__ import annotations

import functools
import logging
import os
import zipfile
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from ...aus import ALL_AUS
from ..detect import Face, FaceDetector, resolve_face_landmarker
from . import geometry
from .base import DetectingBackend

log = logging.getLogger(__name__)

__all__ = [
    "BLENDSHAPES",
    "MediaPipeAUBackend",
    "blendshape_evidence",
    "canonical_mesh",
    "naive_blendshape_aus",
]

# OpenFace's AU06 follows its AU12 (felt smiles raise the cheeks): least-absolute-deviation fit
# AU06 = 0.78 * max(0, AU12 - 0.25) on the 2,180 official OpenFace labels (legacy/affect_HaSa_au.pkl;
# MAE 0.49 there, vs 1.21 for zeros and 0.68 for AU06 = AU12). Not fitted to the benchmark faces.
AU06_PER_AU12 = 0.78
AU06_AU12_ONSET = 0.25

# AUs whose geometric evidence (within-feature measures) is fused with the blendshape.
GEOMETRY_AUS = ("AU06", "AU12", "AU15", "AU25", "AU45")

BLENDSHAPES: dict[str, tuple[str, ...]] = {
    "AU01": ("browInnerUp",),
    "AU02": ("browOuterUpLeft", "browOuterUpRight"),
    "AU04": ("browDownLeft", "browDownRight"),
    "AU05": ("eyeWideLeft", "eyeWideRight"),
    "AU06": ("cheekSquintLeft", "cheekSquintRight"),
    "AU07": ("eyeSquintLeft", "eyeSquintRight"),
    "AU09": ("noseSneerLeft", "noseSneerRight"),
    "AU10": ("mouthUpperUpLeft", "mouthUpperUpRight"),
    "AU12": ("mouthSmileLeft", "mouthSmileRight"),
    "AU14": ("mouthDimpleLeft", "mouthDimpleRight"),
    "AU15": ("mouthFrownLeft", "mouthFrownRight"),
    "AU17": ("mouthShrugLower",),
    "AU20": ("mouthStretchLeft", "mouthStretchRight"),
    "AU23": ("mouthPressLeft", "mouthPressRight"),
    "AU25": ("jawOpen",),
    "AU26": ("jawOpen",),
    "AU45": ("eyeBlinkLeft", "eyeBlinkRight"),
}

# The naive map (blendshape x 5) for the six official AUs, used as a baseline in benchmarks.
NAIVE_MAP = {
    "AU01": ("browInnerUp",),
    "AU04": ("browDownLeft", "browDownRight"),
    "AU06": ("cheekSquintLeft", "cheekSquintRight"),
    "AU12": ("mouthSmileLeft", "mouthSmileRight"),
    "AU15": ("mouthFrownLeft", "mouthFrownRight"),
    "AU25": ("jawOpen",),
}

# Canonical-mesh points that expressions barely move: forehead, nose bridge and tip, eye corners, face sides.
RIGID_POINTS = (10, 151, 9, 8, 168, 6, 197, 195, 5, 4, 33, 133, 362, 263, 127, 356, 234, 454, 93, 323)
_CANONICAL_ENTRY = "geometry_pipeline_metadata_landmarks.binarypb"


def _mean_score(blend: dict[str, float], names: Sequence[str]) -> float:
    return float(np.mean([blend.get(n, 0.0) for n in names]))


def naive_blendshape_aus(blend: dict[str, float], aus: Sequence[str]) -> np.ndarray:
    """The naive baseline: blendshape x 5 (left/right averaged), float32 [K]; AUs outside NAIVE_MAP are NaN."""
    return np.array(
        [5.0 * _mean_score(blend, NAIVE_MAP[a]) if a in NAIVE_MAP else np.nan for a in aus], dtype=np.float32
    )


def blendshape_evidence(blend: dict[str, float]) -> dict[str, float]:
    """Per-AU blendshape evidence in [0,1] (see the module docstring)."""
    return {au: float(np.clip(_mean_score(blend, names), 0.0, 1.0)) for au, names in BLENDSHAPES.items()}


# ---------------------------------------------------------------------------------------------------------
# Canonical face model (read from the .task bundle)
# ---------------------------------------------------------------------------------------------------------


def _varint(buf: bytes, i: int) -> tuple[int, int]:
    out = shift = 0
    while True:
        byte = buf[i]
        i += 1
        out |= (byte & 0x7F) << shift
        shift += 7
        if not byte & 0x80:
            return out, i


def _fields(buf: bytes):
    """Protocol-buffer wire format: yield (field number, wire type, value bytes or int)."""
    i = 0
    while i < len(buf):
        key, i = _varint(buf, i)
        num, wire = key >> 3, key & 7
        if wire == 0:
            val, i = _varint(buf, i)
        elif wire == 1:
            val, i = buf[i : i + 8], i + 8
        elif wire == 2:
            n, i = _varint(buf, i)
            val, i = buf[i : i + n], i + n
        elif wire == 5:
            val, i = buf[i : i + 4], i + 4
        else:
            raise ValueError(f"unsupported protobuf wire type {wire}")
        yield num, wire, val


@functools.lru_cache(maxsize=4)
def canonical_mesh(task_path: str | os.PathLike) -> np.ndarray | None:
    """MediaPipe's canonical neutral face, float64 [468,3] in cm (x right, y up, z toward the viewer).

    Read from the GeometryPipelineMetadata in the .task bundle (canonical_mesh.vertex_buffer holds x, y, z,
    u, v per vertex). None when the bundle does not have it.
    """
    try:
        with zipfile.ZipFile(task_path) as z:
            meta = z.read(_CANONICAL_ENTRY)
        mesh = next(v for n, w, v in _fields(meta) if n == 1 and w == 2)
        floats: list[float] = []
        for n, w, v in _fields(mesh):
            if n != 3:
                continue
            if w == 5:
                floats.append(float(np.frombuffer(v, "<f4")[0]))
            elif w == 2:  # packed encoding
                floats.extend(np.frombuffer(v, "<f4").tolist())
        verts = np.asarray(floats, dtype=np.float64).reshape(-1, 5)[:, :3]
    except (OSError, KeyError, StopIteration, ValueError, zipfile.BadZipFile) as e:
        log.warning("no canonical face model in %s (%s): AU geometry disabled", task_path, e)
        return None
    if verts.shape[0] < 468:
        log.warning("canonical face model in %s has %d vertices: AU geometry disabled", task_path, len(verts))
        return None
    return verts[:468]


def _umeyama(src: np.ndarray, dst: np.ndarray) -> tuple[float, np.ndarray, np.ndarray]:
    """Similarity (scale, R [3,3], t [3]) minimising |scale * R @ src + t - dst|^2. src, dst: [N,3]."""
    mu_s, mu_d = src.mean(0), dst.mean(0)
    s0, d0 = src - mu_s, dst - mu_d
    u, sig, vt = np.linalg.svd(d0.T @ s0 / len(src))
    fix = np.eye(3)
    if np.linalg.det(u @ vt) < 0:
        fix[2, 2] = -1.0
    rot = u @ fix @ vt
    var = s0.var(0).sum()
    scale = float(np.trace(np.diag(sig) @ fix) / var) if var > 0 else 1.0
    return scale, rot, mu_d - scale * rot @ mu_s


def frontalise(landmarks_3d: np.ndarray, canonical: np.ndarray) -> np.ndarray:
    """Image landmarks [>=468,3] (pixels, y down, z away) -> canonical frame [468,3] (cm, y up, z toward)."""
    pts = np.asarray(landmarks_3d, dtype=np.float64)[:468] * np.array([1.0, -1.0, -1.0])
    rigid = list(RIGID_POINTS)
    scale, rot, t = _umeyama(pts[rigid], canonical[rigid])
    return (scale * (rot @ pts.T)).T + t


# ---------------------------------------------------------------------------------------------------------
# Backend
# ---------------------------------------------------------------------------------------------------------


class MediaPipeAUBackend(DetectingBackend):
    """AUs from MediaPipe blendshapes + landmarks. `estimate` keeps its own detector (not thread safe);
    `estimate_face` is pure and safe to call from any thread with faces from `make_detector()`."""

    name = "mediapipe"
    detector_kind = "mediapipe"

    def __init__(self, face_landmarker: str | os.PathLike | None = None, **_ignored):
        self.model_path: Path = resolve_face_landmarker(face_landmarker)
        self.canonical = canonical_mesh(str(self.model_path))
        self._detector: FaceDetector | None = None

    def make_detector(self, num_faces: int = 1) -> FaceDetector:
        return FaceDetector("mediapipe", num_faces=num_faces, face_landmarker=self.model_path)

    def evidence(self, face: Face) -> dict[str, dict[str, float]]:
        """{'blendshape': {AU: 0-1}, 'geometry': {AU: 0-1}} for one MediaPipe face."""
        if face.kind != "mediapipe" or face.blendshapes is None:
            raise ValueError("the mediapipe AU backend needs a MediaPipe face (with blendshapes)")
        out = {"blendshape": blendshape_evidence(face.blendshapes), "geometry": {}}
        if self.canonical is not None and face.landmarks_3d is not None:
            front = frontalise(face.landmarks_3d, self.canonical)
            named = geometry.frontal_points(front, geometry.MEDIAPIPE478, y_up=True)
            geo = geometry.geometric_evidence(geometry.features(named), geometry.NEUTRAL)
            out["geometry"] = {au: geo[au] for au in GEOMETRY_AUS}
        return out

    def estimate_face(
        self,
        face: Face,
        image_u8: np.ndarray | None,
        aus: Sequence[str],
        *,
        source: str | None = None,
        frame: int | None = None,
        source_path: str | os.PathLike | None = None,
    ) -> np.ndarray:
        """float32 [len(aus)] intensities 0-5 for a face detected by MediaPipe (image_u8 is not needed)."""
        ev = self.evidence(face)
        bs, geo = ev["blendshape"], ev["geometry"]

        def fused(au: str) -> float:  # 0-5
            if au == "AU25":
                return 5.0 * max(bs[au], geo.get(au, 0.0))
            if au == "AU06":  # cheekSquint is dead: lid geometry or OpenFace's smile coupling
                coupled = AU06_PER_AU12 * max(0.0, fused("AU12") - AU06_AU12_ONSET)
                return max(5.0 * max(bs[au], geo.get(au, 0.0)), coupled)
            if au in geo:
                return 5.0 * (bs[au] + geo[au]) / 2.0
            return 5.0 * bs[au]

        out = np.zeros(len(aus), dtype=np.float32)
        for k, au in enumerate(aus):
            if au not in ALL_AUS:
                raise ValueError(f"unknown AU {au}")
            out[k] = fused(au)
        return np.clip(out, 0.0, 5.0)
