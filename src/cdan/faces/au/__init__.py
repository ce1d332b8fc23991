"""AU backends behind one registry.

    backend = get_backend("auto", face_landmarker=None)   # -> mediapipe, or landmarks without its model
    au = backend.estimate(image_u8, SIX_AUS)               # float32 [6] in 0-5, or None (no face)

Names:
- `mediapipe`: MediaPipe FaceLandmarker blendshapes + 478-landmark geometry (`mediapipe_backend`).
- `landmarks`: dlib 68-point geometry, always offline (`landmarks_backend`).
- `openface`: OpenFace's own binaries (`--openface-bin` or on PATH) or existing CSVs (`--openface-csv`).
- `auto`: `mediapipe` when its model file is found, else `landmarks`.

Every backend implements `cdan.faces.au.base.AUBackend` (`estimate`), and also:
- `detector_kind`: "mediapipe" or "dlib", the detector whose faces `estimate_face` reads;
- `make_detector(num_faces) -> FaceDetector` (one per worker thread);
- `estimate_face(face, image_u8, aus, *, source=None, frame=None) -> float32 [K]`, so `prepare` detects once
  and reuses the landmarks (openface uses `source`/`frame` to find its CSV row);
- `close()`.
"""

from __future__ import annotations

import os

from ...errors import CdanError
from .base import AUBackend


class AUUnavailable(Exception):
    """A backend has no AU values for one face (e.g. no OpenFace CSV row): str(exc) is the skip reason."""


__all__ = [
    "AUBackend",
    "AUUnavailable",
    "BACKEND_NAMES",
    "available_backends",
    "get_backend",
    "resolve_backend_name",
]

BACKEND_NAMES = ("auto", "mediapipe", "landmarks", "openface")


def resolve_backend_name(name: str, face_landmarker: str | os.PathLike | None = None) -> str:
    """'auto' -> 'mediapipe' when its model file is found, else 'landmarks'; other names unchanged."""
    if name not in BACKEND_NAMES:
        raise CdanError(f"unknown AU backend {name!r}; choose from {', '.join(BACKEND_NAMES)}")
    if name != "auto":
        return name
    from ..detect import find_face_landmarker

    if face_landmarker:  # an explicit path that is wrong is an error, not a silent fallback
        return "mediapipe"
    return "mediapipe" if find_face_landmarker(None) is not None else "landmarks"


def get_backend(name: str = "auto", **options) -> AUBackend:
    """Build a backend. options: face_landmarker (mediapipe), openface_bin / openface_csv / detector
    (openface). Unknown names -> CdanError; missing model files -> MissingWeightsError."""
    name = resolve_backend_name(name, options.get("face_landmarker"))
    if name == "mediapipe":
        from .mediapipe_backend import MediaPipeAUBackend

        return MediaPipeAUBackend(face_landmarker=options.get("face_landmarker"))
    if name == "landmarks":
        from .landmarks_backend import LandmarksAUBackend

        return LandmarksAUBackend()
    from .openface_backend import OpenFaceAUBackend

    return OpenFaceAUBackend(
        openface_bin=options.get("openface_bin"),
        openface_csv=options.get("openface_csv"),
        face_landmarker=options.get("face_landmarker"),
    )


def available_backends(face_landmarker: str | os.PathLike | None = None) -> dict[str, str | None]:
    """{name: None if usable, else the reason it is not} for mediapipe, landmarks and openface."""
    from ..detect import dlib_predictor_path, find_face_landmarker
    from .openface_backend import find_openface_binary

    out: dict[str, str | None] = {}
    out["mediapipe"] = (
        None if find_face_landmarker(face_landmarker) is not None else "face_landmarker.task not found"
    )
    try:
        dlib_predictor_path()
        import importlib.util

        out["landmarks"] = None if importlib.util.find_spec("dlib") else "dlib is not installed"
    except CdanError as e:
        out["landmarks"] = str(e)
    out["openface"] = (
        None
        if find_openface_binary(None) is not None
        else "OpenFace binaries not on PATH (give --openface-bin or --openface-csv)"
    )
    return out
