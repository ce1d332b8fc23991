"""`cdan prepare`: photos and videos -> aligned face crops + AU intensities + a deterministic split.

For every input (image files, folders searched recursively, videos every `every` frames) it reads the
pixels robustly (`cdan.faces.images`), detects faces with landmarks once (`cdan.faces.detect`), keeps the
largest face (or all with `all_faces`), estimates its AUs from the same landmarks with the chosen backend
(`cdan.faces.au`), aligns and crops it (`cdan.faces.align`) and writes it through `DatasetWriter`.

Every problem with one input (unreadable, too large, no face, no AU row...) is a recorded skip with a
one-line reason; the run never stops for one bad file. Names are a pure function of the input list:
`<path relative to its input folder, '/' -> '__', no suffix>[_f<frame>][_<face index>]`, so a run resumed
with `resume=True` finds its earlier work: finished sources are passed over, a source cut short is redone.
"""

from __future__ import annotations

import logging
import os
import re
import threading
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from ..aus import au_set
from ..errors import CdanError
from .layout import DatasetWriter, label_from_path

log = logging.getLogger(__name__)

__all__ = ["InputItem", "PrepareOptions", "collect_inputs", "prepare_dataset"]

_NAME_BAD = re.compile(r"[^A-Za-z0-9._+=,@-]+")


@dataclass
class PrepareOptions:
    """Options of `prepare_dataset` (the CLI flags of `cdan prepare`)."""

    size: int = 112  # crop side in pixels
    all_faces: bool = False  # keep every face, not only the largest
    max_faces: int = 16  # most faces per image with all_faces
    every: int = 1  # video: use one frame in `every`
    au_backend: str = "auto"  # auto | mediapipe | landmarks | openface
    aus: str = "six"  # six | all | comma list
    face_landmarker: str | None = None  # MediaPipe face_landmarker.task
    openface_bin: str | None = None  # OpenFace binary or its folder
    openface_csv: str | None = None  # folder of OpenFace CSVs to import
    test_fraction: float = 0.2
    seed: int = 0
    group_by: str | None = None  # regex: images of one group stay on one side of the split
    legacy_pkl: str | None = None  # also write the official {name: float64[K]} pickle (file name)
    resume: bool = False
    workers: int = 1  # worker threads (one detector each)
    border: str = "replicate"  # crop border: replicate | constant | reflect
    progress: bool = True  # tqdm bar on stderr


@dataclass(frozen=True)
class InputItem:
    """One input file. path: absolute path; rel: path relative to its input folder (posix); kind: image|video."""

    path: Path
    rel: str
    kind: str
    label: str | None = None
    base: str = ""  # unique name stem in the dataset

    @property
    def source(self) -> str:
        return str(self.path)


def _base_name(rel: str) -> str:
    p = Path(rel)
    stem = "__".join((*p.parent.parts, p.stem)) if p.parent.parts else p.stem
    stem = _NAME_BAD.sub("_", stem).strip("._") or "input"
    return stem


def collect_inputs(inputs: Sequence[str | os.PathLike]) -> tuple[list[InputItem], list[tuple[str, str]]]:
    """Expand files and folders into input items (images and videos), with unique base names.

    Folders are searched recursively; hidden entries and files with other extensions in folders are ignored.
    An explicit file of an unsupported type, or a path that does not exist, becomes a (source, reason) skip.
    Returns (items sorted by relative path, skips).
    """
    from ..faces.images import is_image_path, is_video_path

    found: dict[Path, InputItem] = {}
    skips: list[tuple[str, str]] = []
    if not inputs:
        raise CdanError("no inputs given")
    for raw in inputs:
        p = Path(raw).expanduser()
        if p.is_dir():
            root = p.resolve()
            for dirpath, dirnames, filenames in os.walk(root, followlinks=False):
                dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
                for fn in sorted(filenames):
                    if fn.startswith("."):
                        continue
                    f = Path(dirpath) / fn
                    kind = "image" if is_image_path(f) else "video" if is_video_path(f) else None
                    if kind is None:
                        continue
                    path = f.resolve()
                    if path not in found:
                        rel = f.relative_to(root).as_posix()
                        found[path] = InputItem(path, rel, kind, label_from_path(f, root))
        elif p.exists():
            kind = "image" if is_image_path(p) else "video" if is_video_path(p) else None
            path = p.resolve()
            if kind is None:
                skips.append((str(path), f"unsupported file type {p.suffix or '(no extension)'}"))
            elif path not in found:
                found[path] = InputItem(path, p.name, kind, None)
        else:
            skips.append((str(p.absolute()), "not found"))
    items = sorted(found.values(), key=lambda it: (it.rel, str(it.path)))
    used: set[str] = set()
    out = []
    for it in items:
        base = _base_name(it.rel)
        if base in used:
            ext = Path(it.rel).suffix.lstrip(".").lower()
            cand = f"{base}_{ext}" if ext else f"{base}_2"
            k = 2
            while cand in used:
                cand = f"{base}_{k}"
                k += 1
            base = cand
        used.add(base)
        out.append(InputItem(it.path, it.rel, it.kind, it.label, base))
    return out, skips


class _Worker:
    """Per-thread state: one face detector (MediaPipe graphs and dlib objects are not thread safe)."""

    def __init__(self, backend, num_faces: int):
        self.detector = backend.make_detector(num_faces=num_faces)


def prepare_dataset(
    inputs: Sequence[str | os.PathLike], out: str | os.PathLike, options: PrepareOptions | None = None
) -> dict:
    """Build a dataset folder from photos/videos. Returns the summary (the manifest's counts and more)."""
    from ..faces.au import get_backend, resolve_backend_name

    opt = options or PrepareOptions()
    if opt.size < 16:
        raise CdanError(f"--size must be at least 16, got {opt.size}")
    if opt.every < 1:
        raise CdanError(f"--every must be at least 1, got {opt.every}")
    if opt.workers < 1:
        raise CdanError(f"--workers must be at least 1, got {opt.workers}")
    if not 0.0 <= opt.test_fraction <= 1.0:
        raise CdanError(f"--test-fraction must be in [0, 1], got {opt.test_fraction}")
    if opt.group_by:
        try:
            re.compile(opt.group_by)
        except re.error as e:
            raise CdanError(f"--group-by {opt.group_by!r} is not a valid regex: {e}") from None
    aus = au_set(opt.aus)
    backend_name = resolve_backend_name(opt.au_backend, opt.face_landmarker)
    if backend_name != "openface" and (opt.openface_bin or opt.openface_csv):
        raise CdanError("--openface-bin / --openface-csv need --au-backend openface")
    items, input_skips = collect_inputs(inputs)
    backend = get_backend(
        backend_name,
        face_landmarker=opt.face_landmarker,
        openface_bin=opt.openface_bin,
        openface_csv=opt.openface_csv,
    )
    record = {k: v for k, v in asdict(opt).items() if k != "progress"}
    record.update(au_backend=backend_name, aus=list(aus), inputs=[str(Path(p)) for p in inputs])
    if getattr(backend, "model_path", None):
        record["model"] = str(backend.model_path)
    try:
        writer = DatasetWriter(out, aus, backend_name, record, resume=opt.resume)
    except BaseException:
        backend.close()
        raise

    t0 = time.perf_counter()
    for source, reason in input_skips:
        if not writer.has_source(source):
            writer.skip(source, reason)
    todo = [it for it in items if not writer.has_source(it.source)]
    if len(todo) < len(items):
        log.info("resume: %d of %d inputs already done", len(items) - len(todo), len(items))
    num_faces = opt.max_faces if opt.all_faces else 4
    local = threading.local()
    workers: list[_Worker] = []
    workers_lock = threading.Lock()
    stats = {"frames": 0, "faces": 0}
    stats_lock = threading.Lock()

    def worker() -> _Worker:
        w = getattr(local, "worker", None)
        if w is None:
            w = _Worker(backend, num_faces)
            local.worker = w
            with workers_lock:
                workers.append(w)
        return w

    def run_one(item: InputItem) -> None:
        try:
            _process_item(item, worker(), backend, writer, aus, opt, stats, stats_lock)
        except CdanError:
            raise
        except Exception as e:  # noqa: BLE001 - one bad input must not stop the run
            log.debug("error on %s", item.source, exc_info=True)
            writer.skip(item.source, f"error: {type(e).__name__}: {' '.join(str(e).split())[:200]}")

    from tqdm import tqdm

    bar = tqdm(
        total=len(todo), unit="file", desc="prepare", disable=not opt.progress or not todo, leave=False
    )
    try:
        if opt.workers == 1:
            for item in todo:
                run_one(item)
                bar.update(1)
        else:
            with ThreadPoolExecutor(max_workers=opt.workers, thread_name_prefix="cdan-prepare") as pool:
                futures = [pool.submit(run_one, it) for it in todo]
                try:
                    for fut in as_completed(futures):
                        fut.result()
                        bar.update(1)
                except BaseException:
                    for f in futures:
                        f.cancel()
                    raise
    except BaseException:
        bar.close()
        writer.abort()  # the journal keeps the work done so far: --resume continues
        for w in workers:
            w.detector.close()
        backend.close()
        raise
    bar.close()
    for w in workers:
        w.detector.close()
    backend.close()
    elapsed = time.perf_counter() - t0
    manifest = writer.close(
        test_fraction=opt.test_fraction, seed=opt.seed, group_by=opt.group_by, legacy_pkl=opt.legacy_pkl
    )
    counts = manifest["counts"]
    return {
        "out": str(Path(out)),
        "backend": backend_name,
        "aus": list(aus),
        "inputs": len(items),
        "processed": len(todo),
        "resumed": len(items) - len(todo),
        "frames": stats["frames"],
        "faces_found": stats["faces"],
        "written": counts["written"],
        "skipped": counts["skipped"],
        "train": counts["train"],
        "test": counts["test"],
        "seconds": round(elapsed, 3),
        "skips": manifest["skipped"],
    }


def _process_item(item, w: _Worker, backend, writer: DatasetWriter, aus, opt: PrepareOptions, stats, lock):
    from ..faces.images import UnreadableInput, iter_video_frames, read_image

    if item.kind == "image":
        try:
            frames = [(None, read_image(item.path))]
        except UnreadableInput as e:
            writer.skip(item.source, str(e))
            return
    else:
        frames = iter_video_frames(item.path, opt.every)
    any_face = False
    try:
        for frame, image_u8 in frames:
            with lock:
                stats["frames"] += 1
            found = _process_image(item, frame, image_u8, w, backend, writer, aus, opt, stats, lock)
            any_face = any_face or found
    except UnreadableInput as e:
        writer.skip(item.source, str(e))
        return
    if not any_face:
        writer.skip(item.source, "no face found" if item.kind == "image" else "no face found in any frame")
    writer.mark_done(item.source)


def _process_image(item, frame, image_u8, w, backend, writer, aus, opt, stats, lock) -> bool:
    """Detect, estimate, align and write the faces of one image or frame. True if a face was found (faces
    without AU values are recorded as skips here)."""
    from ..faces.align import align_face
    from ..faces.au import AUUnavailable

    faces = w.detector.detect(image_u8)
    if not faces:
        if frame is not None:
            writer.skip(f"{item.source}#frame{frame}", "no face found")
        return False
    if not opt.all_faces:
        faces = faces[:1]
    with lock:
        stats["faces"] += len(faces)
    base = item.base if frame is None else f"{item.base}_f{frame:06d}"
    for k, face in enumerate(faces):
        name = f"{base}_{k}" if opt.all_faces else base
        where = item.source if frame is None else f"{item.source}#frame{frame}"
        if opt.all_faces:
            where += f"#face{k}"
        try:
            au = backend.estimate_face(
                face, image_u8, aus, source=item.rel, frame=frame, source_path=item.path
            )
        except AUUnavailable as e:
            writer.skip(where, str(e))
            continue
        au = np.clip(np.nan_to_num(np.asarray(au, dtype=np.float64), nan=0.0), 0.0, 5.0)
        crop, _ = align_face(image_u8, *face.eye_centres(), size=opt.size, border=opt.border)
        try:
            writer.add(name, crop, au, source=item.source, frame=frame, box=face.box, label=item.label)
        except CdanError:  # the name is taken by another input (rare: a file named like a frame)
            writer.add(writer.unique_name(name), crop, au, source=item.source, frame=frame, box=face.box,
                       label=item.label)  # fmt: skip
    return True
