"""The interface every AU backend implements (mediapipe, landmarks, openface)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

import numpy as np


class AUBackend(Protocol):
    """Estimates AU intensities on OpenFace's 0-5 scale from one RGB face image."""

    name: str

    def estimate(self, image_u8: np.ndarray, aus: Sequence[str]) -> np.ndarray | None:
        """image_u8: uint8 [H,W,3] RGB (an aligned crop or a whole photo).

        Returns float32 [len(aus)] intensities in [0, 5] in the order of `aus`, or None when no face is found.
        """
        ...


class DetectingBackend:
    """Shared `estimate` / `close` for backends that detect faces themselves.

    Subclasses set `self._detector = None` and define `make_detector(num_faces)` and
    `estimate_face(face, image_u8, aus)`.
    """

    _detector = None

    def estimate(self, image_u8: np.ndarray, aus: Sequence[str]) -> np.ndarray | None:
        """AUs of the largest face in image_u8 (uint8 [H,W,3] RGB), or None when no face is found."""
        if self._detector is None:
            self._detector = self.make_detector(num_faces=2)
        faces = self._detector.detect(image_u8)
        if not faces:
            return None
        return self.estimate_face(faces[0], image_u8, aus)

    def close(self) -> None:
        if self._detector is not None:
            self._detector.close()
            self._detector = None
