"""`openface` AU backend: OpenFace 2.x itself, run as a subprocess or read from its CSVs.

Two modes:
- **binary**: `FaceLandmarkImg` (photos) and `FeatureExtraction` (videos) found on PATH or given with
  `--openface-bin` (the binary itself or its folder). Each source runs once in a temporary folder with
  `-2Dfp -aus`; the CSV is parsed with `cdan.data.read_openface_csv`. Photos are passed as the decoded RGB
  image (PNG), so every format `cdan` reads works.
- **CSV import**: `--openface-csv DIR` holds CSVs made earlier, one per photo or video, matched by stem
  (`<relative path with / -> __>` first, then the plain file stem). Any 2.x layout is accepted.

Our own detector (MediaPipe when its model is found, else dlib) still finds and aligns the faces; each face
takes the OpenFace row whose 2D landmarks (`x_0..x_67`, `y_0..y_67`) lie closest to it, else the first
successful row. Video rows are matched by frame (OpenFace counts frames from 1). No row -> `AUUnavailable`,
which `prepare` records as a skip.
"""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
import tempfile
import threading
from collections import OrderedDict
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from ...errors import CdanError
from ..detect import Face, FaceDetector, find_face_landmarker
from . import AUUnavailable
from .base import DetectingBackend

log = logging.getLogger(__name__)

__all__ = ["OpenFaceAUBackend", "find_openface_binary"]

IMAGE_TOOL = "FaceLandmarkImg"
VIDEO_TOOL = "FeatureExtraction"
_CACHE_SIZE = 32


def find_openface_binary(openface_bin: str | os.PathLike | None) -> dict[str, Path | None] | None:
    """{'image': FaceLandmarkImg path or None, 'video': FeatureExtraction path or None}, or None if neither.

    openface_bin: one of the binaries, or the folder holding them; None searches PATH.
    """
    found: dict[str, Path | None] = {"image": None, "video": None}
    tools = {"image": IMAGE_TOOL, "video": VIDEO_TOOL}
    if openface_bin:
        p = Path(openface_bin).expanduser()
        if p.is_dir():
            for key, tool in tools.items():
                for cand in (p / tool, p / f"{tool}.exe", p / "bin" / tool):
                    if cand.is_file() and os.access(cand, os.X_OK):
                        found[key] = cand
                        break
        elif p.is_file() and os.access(p, os.X_OK):
            key = "video" if VIDEO_TOOL.lower() in p.name.lower() else "image"
            found[key] = p
            sibling = p.parent / (tools["image" if key == "video" else "video"] + p.suffix)
            if sibling.is_file() and os.access(sibling, os.X_OK):
                found["image" if key == "video" else "video"] = sibling
    else:
        for key, tool in tools.items():
            w = shutil.which(tool)
            found[key] = Path(w) if w else None
    return found if any(found.values()) else None


def _csv_key(source: str) -> list[str]:
    """Lookup keys for a source: relative path with '/' -> '__' (no suffix), then the plain stem."""
    p = Path(source)
    joined = "__".join((*p.parent.parts, p.stem)) if p.parent.parts else p.stem
    keys = [joined.lstrip("_"), p.stem]
    return list(dict.fromkeys(k for k in keys if k))


class OpenFaceAUBackend(DetectingBackend):
    """OpenFace AUs for faces found by our detector. Thread safe (the CSV cache is locked)."""

    name = "openface"

    def __init__(
        self,
        openface_bin: str | os.PathLike | None = None,
        openface_csv: str | os.PathLike | None = None,
        face_landmarker: str | os.PathLike | None = None,
        timeout: float = 3600.0,
        **_ignored,
    ):
        from ...data.formats import read_openface_csv

        self._read_csv = read_openface_csv
        self.timeout = timeout
        self.csv_dir: Path | None = None
        self.binaries: dict[str, Path | None] | None = None
        self._csv_index: dict[str, Path] = {}
        if openface_csv:
            self.csv_dir = Path(openface_csv).expanduser()
            if not self.csv_dir.is_dir():
                raise CdanError(f"--openface-csv folder not found: {self.csv_dir}")
            for f in sorted(self.csv_dir.rglob("*.csv")):
                if f.stem in self._csv_index:
                    log.warning("two OpenFace CSVs named %s; using %s", f.stem, self._csv_index[f.stem])
                    continue
                self._csv_index[f.stem] = f
            if not self._csv_index:
                raise CdanError(f"no *.csv files in --openface-csv folder {self.csv_dir}")
        else:
            self.binaries = find_openface_binary(openface_bin)
            if self.binaries is None:
                where = (
                    f"{openface_bin} is not an OpenFace binary or folder" if openface_bin else "not on PATH"
                )
                raise CdanError(
                    f"openface backend: {IMAGE_TOOL}/{VIDEO_TOOL} {where}; install OpenFace 2.x and give "
                    "--openface-bin PATH, or import its CSVs with --openface-csv DIR"
                )
        self.face_landmarker = find_face_landmarker(face_landmarker)
        self.detector_kind = "mediapipe" if self.face_landmarker is not None else "dlib"
        self._lock = threading.Lock()
        self._cache: OrderedDict[str, object] = OrderedDict()
        self._detector: FaceDetector | None = None

    def make_detector(self, num_faces: int = 1) -> FaceDetector:
        return FaceDetector(self.detector_kind, num_faces=num_faces, face_landmarker=self.face_landmarker)

    # -- tables --------------------------------------------------------------------------------------------

    def _table(self, source: str, image_u8: np.ndarray | None, is_video: bool):
        key = f"{source}|{is_video}"
        with self._lock:
            if key in self._cache:
                self._cache.move_to_end(key)
                return self._cache[key]
        table = self._load_csv(source) if self.csv_dir is not None else self._run(source, image_u8, is_video)
        with self._lock:
            self._cache[key] = table
            while len(self._cache) > _CACHE_SIZE:
                self._cache.popitem(last=False)
        return table

    def _load_csv(self, source: str):
        for k in _csv_key(source):
            if k in self._csv_index:
                try:
                    return self._read_csv(self._csv_index[k])
                except CdanError as e:
                    raise AUUnavailable(str(e)) from None
        raise AUUnavailable(f"no OpenFace CSV named {_csv_key(source)[0]}.csv in {self.csv_dir}")

    def _run(self, source: str, image_u8: np.ndarray | None, is_video: bool):
        assert self.binaries is not None
        tool = self.binaries["video" if is_video else "image"]
        if tool is None:
            need = VIDEO_TOOL if is_video else IMAGE_TOOL
            raise AUUnavailable(f"OpenFace {need} not found (give its folder with --openface-bin)")
        with tempfile.TemporaryDirectory(prefix="cdan-openface-") as tmp:
            tmpdir = Path(tmp)
            if is_video:
                inp = Path(source)
            else:
                if image_u8 is None:
                    raise AUUnavailable("no image to pass to OpenFace")
                from PIL import Image

                inp = tmpdir / "face.png"
                Image.fromarray(np.ascontiguousarray(image_u8)).save(inp)
            out_dir = tmpdir / "out"
            cmd = [str(tool), "-f", str(inp), "-out_dir", str(out_dir), "-2Dfp", "-aus"]
            try:
                proc = subprocess.run(cmd, capture_output=True, text=True, timeout=self.timeout, check=False)
            except (OSError, subprocess.TimeoutExpired) as e:
                raise AUUnavailable(f"OpenFace failed to run: {e}") from None
            csv_path = out_dir / f"{inp.stem}.csv"
            if proc.returncode != 0 or not csv_path.is_file():
                tail = (proc.stderr or proc.stdout or "").strip().splitlines()[-1:] or ["no output"]
                raise AUUnavailable(f"OpenFace exited with {proc.returncode}: {tail[0][:200]}")
            try:
                return self._read_csv(csv_path)
            except CdanError as e:
                raise AUUnavailable(str(e)) from None

    # -- estimation ----------------------------------------------------------------------------------------

    @staticmethod
    def _pick_row(table, face: Face | None, frame: int | None) -> int:
        rows = np.flatnonzero(table.success)
        if frame is not None and table.frames is not None:
            rows = rows[table.frames[rows] == frame + 1]
        if rows.size == 0:
            where = f" at frame {frame}" if frame is not None else ""
            raise AUUnavailable(f"OpenFace tracked no face{where}")
        if face is None or rows.size == 1 or not (table.has("x_0") and table.has("y_0")):
            return int(rows[0])
        xs = np.stack([table.column(f"x_{i}") for i in range(68) if table.has(f"x_{i}")], 1)
        ys = np.stack([table.column(f"y_{i}") for i in range(68) if table.has(f"y_{i}")], 1)
        centres = np.stack([np.nanmean(xs, 1), np.nanmean(ys, 1)], 1)[rows]
        x, y, w, h = face.box
        dist = np.hypot(centres[:, 0] - (x + w / 2), centres[:, 1] - (y + h / 2))
        return int(rows[int(np.nanargmin(dist))]) if np.isfinite(dist).any() else int(rows[0])

    def estimate_face(
        self,
        face: Face | None,
        image_u8: np.ndarray | None,
        aus: Sequence[str],
        *,
        source: str | None = None,
        frame: int | None = None,
        source_path: str | os.PathLike | None = None,
    ) -> np.ndarray:
        """float32 [len(aus)] OpenFace intensities for the face of `source` (frame: 0-based video frame).

        source: the input's name relative to its folder (CSV lookup); source_path: the file itself (videos
        are passed to FeatureExtraction). Raises AUUnavailable when OpenFace has no row for it.
        """
        if source is None:
            raise AUUnavailable("the openface backend needs the source file of each face")
        is_video = frame is not None
        # CSVs are looked up by the relative name; the binary runs on the file (cached per file path).
        key_source = str(source) if self.csv_dir is not None else str(source_path or source)
        table = self._table(key_source, image_u8, is_video)
        row = self._pick_row(table, face, frame)
        vec = table.aus(aus)[row]
        missing = [a for a, v in zip(aus, vec) if not np.isfinite(v)]
        if missing:
            raise AUUnavailable(f"OpenFace output has no intensity for {', '.join(missing)}")
        return np.clip(vec.astype(np.float32), 0.0, 5.0)

    def estimate(self, image_u8: np.ndarray, aus: Sequence[str]) -> np.ndarray | None:
        """Run FaceLandmarkImg on one image (binary mode only). None when OpenFace finds no face."""
        if self.csv_dir is not None:
            raise CdanError("with --openface-csv, AUs come from CSVs matched by file name, not from pixels")
        try:
            table = self._run("<image>", image_u8, is_video=False)
            row = self._pick_row(table, None, None)
        except AUUnavailable:
            return None
        return np.clip(np.nan_to_num(table.aus(aus)[row]).astype(np.float32), 0.0, 5.0)
