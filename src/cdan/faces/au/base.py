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
