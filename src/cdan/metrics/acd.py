"""ACD, the Average Content Distance: identity kept between a real face and its reconstruction.

As the official ACD_ED.py (through the `face_recognition` library): dlib's HOG frontal face detector with one
upsampling, the 5-point shape predictor, the 128-D ResNet face embedding (one jitter) of the first detected
face, and the L2 distance between the real and the fake embedding, averaged over the pairs where both faces
are found. The .dat model files come from the `face_recognition_models` package, located by path.

Face boxes (`box_mode`):
    own    (default, official) detect on each image; a pair is dropped when either image has no face.
    real   detect on the real image and reuse its box on the fake (pairs are pixel-aligned reconstructions);
           a pair is dropped only when the real image has no face.
    whole  the whole image is the face box on both sides; no detection, nothing is dropped (small crops).
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from ..errors import CdanError, MissingWeightsError

log = logging.getLogger(__name__)

BOX_MODES = ("own", "real", "whole")
SHAPE_PREDICTOR = "shape_predictor_5_face_landmarks.dat"  # face_recognition's default ("small") model
EMBEDDING_MODEL = "dlib_face_recognition_resnet_model_v1.dat"


def face_models_dir() -> Path:
    """The `models` folder of the installed `face_recognition_models` package (no import of its __init__)."""
    from ..faces.detect import package_dir

    pkg = package_dir("face_recognition_models")
    if pkg is None:
        raise MissingWeightsError(
            f"dlib face models not found: pip install face-recognition-models (needs {EMBEDDING_MODEL})"
        )
    d = pkg / "models"
    if (d / EMBEDDING_MODEL).is_file() and (d / SHAPE_PREDICTOR).is_file():
        return d
    raise MissingWeightsError(f"{EMBEDDING_MODEL} / {SHAPE_PREDICTOR} not found in face_recognition_models")


class FaceEmbedder:
    """dlib face detector + 5-point landmarks + 128-D face embedding (the `face_recognition` pipeline)."""

    def __init__(self, upsample: int = 1, jitters: int = 1) -> None:
        try:
            import dlib
        except ImportError as e:
            raise CdanError(f"ACD needs dlib (pip install dlib-bin): {e}") from None
        d = face_models_dir()
        self._dlib = dlib
        self.detector = dlib.get_frontal_face_detector()
        self.predictor = dlib.shape_predictor(str(d / SHAPE_PREDICTOR))
        self.encoder = dlib.face_recognition_model_v1(str(d / EMBEDDING_MODEL))
        self.upsample = int(upsample)
        self.jitters = int(jitters)

    def detect(self, image_u8: np.ndarray):
        """The first face box dlib finds in uint8 [H,W,3] RGB (face_recognition's `[0]`), or None."""
        faces = self.detector(np.ascontiguousarray(image_u8), self.upsample)
        return faces[0] if len(faces) else None

    def whole_box(self, image_u8: np.ndarray):
        h, w = image_u8.shape[:2]
        return self._dlib.rectangle(0, 0, w - 1, h - 1)

    def embed(self, image_u8: np.ndarray, box) -> np.ndarray:
        """128-D embedding float64 [128] of the face in `box` (a dlib rectangle) of uint8 [H,W,3] RGB."""
        img = np.ascontiguousarray(image_u8)
        shape = self.predictor(img, box)
        return np.asarray(self.encoder.compute_face_descriptor(img, shape, self.jitters), dtype=np.float64)


def content_distance(
    embedder: FaceEmbedder, real_u8: np.ndarray, fake_u8: np.ndarray, box_mode: str = "own"
) -> float | None:
    """L2 between the face embeddings of a real and a fake uint8 [H,W,3] image, or None if a face is missing."""
    if box_mode not in BOX_MODES:
        raise CdanError(f"unknown ACD box mode {box_mode!r}: use one of {', '.join(BOX_MODES)}")
    if box_mode == "whole":
        real_box, fake_box = embedder.whole_box(real_u8), embedder.whole_box(fake_u8)
    else:
        real_box = embedder.detect(real_u8)
        if real_box is None:
            return None
        fake_box = real_box if box_mode == "real" else embedder.detect(fake_u8)
        if fake_box is None:
            return None
    e_real = embedder.embed(real_u8, real_box)
    e_fake = embedder.embed(fake_u8, fake_box)
    return float(np.linalg.norm(e_real - e_fake))
