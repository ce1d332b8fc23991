"""`landmarks` AU backend: geometry of dlib's 68 points, always available offline.

dlib's HOG detector and the 68-point predictor from `face-recognition-models` give the landmarks. They are
put in a frontal frame (eyes level, inter-ocular distance 1), then out-of-plane head rotation is undone with
`geometry.pose_correct`: a scaled-orthographic fit of MediaPipe's canonical 3D face to the eye corners and
nose, each point lifted back to 3D at its canonical depth. Without it a head pitched 20 degrees reads as a
smile or frown (the lip centre sits ~1 cm in front of the corners). The fitted rotation is shrunk by 8
degrees, the pitch that differences in nose-to-eye proportions alone produce. `cdan.faces.au.geometry` then
turns each AU's movement from the neutral face into 0-1 evidence, x5 for OpenFace's scale. The neutral face is the predictor's own mean shape (read from the
.dat file), so systematic differences between dlib's and MediaPipe's point placement do not count.

| AU   | geometry (change from the neutral face, in inter-ocular units)       |
|------|----------------------------------------------------------------------|
| AU01 | inner brow (21/22) higher above the inner eye corner (39/42)         |
| AU02 | outer brow (17/26) higher above the outer eye corner (36/45)         |
| AU04 | inner brows lower and closer together                                |
| AU05 | eye opening (37-38 to 41-40) wider                                   |
| AU06 | lower lid (41/40) raised above the eye-corner line                   |
| AU07 | eye opening narrower                                                 |
| AU09 | upper lip closer to the nose (33-51) with brows lowered              |
| AU10 | upper lip closer to the nose                                         |
| AU12 | lip corners (48/54) above the inner lip centre (62/66)               |
| AU15 | lip corners below the inner lip centre                               |
| AU20 | mouth wider without the corners rising                               |
| AU23 | red of the lips (51-62, 66-57) thinner with the lips closed          |
| AU25 | gap between the inner lips (62-66)                                   |
| AU26 | nose-chin distance longer                                            |
| AU45 | eye opening closed                                                   |
| AU14 | not observable from 68 points: reported as 0                         |
| AU17 | reported as 0: a chin raise shortens nose-chin by only ~5 mm, less   |
|      | than that distance varies between people and with head pitch         |

Weaker than the mediapipe backend (pose only from 2D points, no appearance cues), but needs no extra model.
"""

from __future__ import annotations

import functools
import logging
import os
from collections.abc import Sequence

import numpy as np

from ...aus import ALL_AUS
from ..detect import Face, FaceDetector, dlib_predictor_path
from . import geometry
from .base import DetectingBackend

log = logging.getLogger(__name__)

__all__ = ["LandmarksAUBackend", "UNOBSERVED"]

UNOBSERVED = ("AU14", "AU17")  # reported as 0 (see the table above)


def _dlib_int(buf: bytes, i: int) -> tuple[int, int]:
    """dlib's integer serialization: a header byte (low 4 bits: byte count, bit 7: sign), then the bytes."""
    head = buf[i]
    n = head & 0x0F
    val = int.from_bytes(buf[i + 1 : i + 1 + n], "little")
    return (-val if head & 0x80 else val), i + 1 + n


@functools.lru_cache(maxsize=2)
def dlib_mean_shape(path: str) -> np.ndarray | None:
    """The initial (mean) shape of a dlib shape_predictor file, float64 [68,2] in face-box units, or None.

    A shape_predictor starts with: version (int), then initial_shape as a column matrix (-rows, -cols,
    then rows*cols floats, each as mantissa and exponent ints). It is the mean of the training shapes.
    """
    try:
        with open(path, "rb") as f:
            buf = f.read(8192)
        version, i = _dlib_int(buf, 0)
        rows, i = _dlib_int(buf, i)
        cols, i = _dlib_int(buf, i)
        n = abs(rows) * abs(cols)
        if version != 1 or n != 136:
            raise ValueError(f"unexpected header (version {version}, {rows}x{cols})")
        vals = []
        for _ in range(n):
            mant, i = _dlib_int(buf, i)
            expo, i = _dlib_int(buf, i)
            vals.append(mant * 2.0**expo)
    except (OSError, IndexError, ValueError) as e:
        log.warning("cannot read the mean shape of %s (%s); using MediaPipe's canonical face", path, e)
        return None
    return np.asarray(vals, dtype=np.float64).reshape(68, 2)


@functools.lru_cache(maxsize=2)
def dlib_neutral(path: str) -> dict[str, float]:
    """Neutral geometry for dlib's 68 points (from its mean shape; geometry.NEUTRAL when unreadable)."""
    shape = dlib_mean_shape(path)
    if shape is None:
        return dict(geometry.NEUTRAL)
    named = geometry.pose_correct(geometry.frontal_points(shape, geometry.DLIB68, y_up=False))
    return geometry.neutral_features(named)


class LandmarksAUBackend(DetectingBackend):
    """AUs from dlib 68-point geometry. `estimate_face` is pure; `estimate` keeps its own detector."""

    name = "landmarks"
    detector_kind = "dlib"

    def __init__(self, **_ignored):
        self.model_path = dlib_predictor_path()
        self.neutral = dlib_neutral(str(self.model_path))
        self._detector: FaceDetector | None = None

    def make_detector(self, num_faces: int = 1) -> FaceDetector:
        return FaceDetector("dlib", num_faces=num_faces)

    def evidence(self, face: Face) -> dict[str, dict[str, float]]:
        """{'geometry': {AU: 0-1}} for one dlib face."""
        if face.kind != "dlib":
            raise ValueError("the landmarks AU backend needs a dlib 68-point face")
        named = geometry.pose_correct(geometry.frontal_points(face.landmarks, geometry.DLIB68, y_up=False))
        return {"geometry": geometry.geometric_evidence(geometry.features(named), self.neutral)}

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
        """float32 [len(aus)] intensities 0-5 for a face detected by dlib (image_u8 is not needed)."""
        geo = self.evidence(face)["geometry"]
        out = np.zeros(len(aus), dtype=np.float32)
        for k, au in enumerate(aus):
            if au not in ALL_AUS:
                raise ValueError(f"unknown AU {au}")
            out[k] = 0.0 if au in UNOBSERVED else 5.0 * geo.get(au, 0.0)
        return np.clip(out, 0.0, 5.0)
