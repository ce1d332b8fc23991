"""The dataset folder that `cdan prepare` and `cdan synth` write, and the deterministic train/test split.

```
DATASET/images/<name>.png   aligned crops (RGB PNG)
DATASET/aus.csv             name,split,label,<AU cols...>,source,frame,box_x,box_y,box_w,box_h,backend
DATASET/manifest.json       versions, backend, options, aus, counts, every skipped input with its reason
DATASET/<legacy>.pkl        optional official pickle {name: float64[K]}
DATASET/.journal.jsonl      one JSON line per written face / skip / finished source (for --resume)
```
Images are written atomically and then journaled (flushed and fsynced), so a killed run loses at most the
file in flight; `DatasetWriter(..., resume=True)` reloads the journal and continues.
"""

from __future__ import annotations

import csv
import io
import json
import logging
import os
import platform
import re
import threading
import time
from collections import Counter, defaultdict
from collections.abc import Sequence
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import CdanError
from ..utils import atomic_path, write_json_atomic, write_text_atomic

log = logging.getLogger(__name__)

__all__ = ["DatasetWriter", "assign_splits", "label_from_path", "AUS_CSV", "MANIFEST", "JOURNAL", "IMAGES"]

AUS_CSV = "aus.csv"
MANIFEST = "manifest.json"
JOURNAL = ".journal.jsonl"
IMAGES = "images"
# Decimal places kept for AU intensities (0-5 scale) on disk, so CSV, journal and pickle agree exactly.
AU_DECIMALS = 6

# aus.csv columns after the AU columns.
TRAILING_COLUMNS = ("source", "frame", "box_x", "box_y", "box_w", "box_h", "backend")

_NAME_BAD = re.compile(r"[\x00-\x1f/\\:*?\"<>|]")


def label_from_path(path: str | os.PathLike, root: str | os.PathLike) -> str | None:
    """Class label convention: the name of the folder an input sits in, relative to the input root.

    `root/happy/img.jpg` -> 'happy'; `root/img.jpg` -> None; `root/s01/happy/img.jpg` -> 'happy'.
    """
    rel = Path(os.path.relpath(path, root))
    return rel.parent.name if len(rel.parts) > 1 else None


def _check_name(name: str) -> str:
    if not isinstance(name, str) or not name or name.startswith(".") or _NAME_BAD.search(name):
        raise ValueError(f"invalid dataset name {name!r}: use a plain file stem (no '/', no leading '.')")
    return name


# --------------------------------------------------------------------------------------------------------
# Splits
# --------------------------------------------------------------------------------------------------------


def _n_test(n: int, test_fraction: float) -> int:
    """Test count for a class of n items: round(n*f), keeping at least one on each side when n >= 2."""
    if n == 0 or test_fraction <= 0:
        return 0
    if test_fraction >= 1:
        return n
    k = int(np.floor(n * test_fraction + 0.5))
    if n >= 2:
        k = min(max(k, 1), n - 1)
    return k


def assign_splits(
    names: Sequence[str],
    labels: Sequence[str | None] | None = None,
    groups: Sequence[str | None] | None = None,
    test_fraction: float = 0.2,
    seed: int = 0,
) -> list[str]:
    """'train'/'test' for each name, in input order.

    Deterministic in `seed` and independent of the input order (items are sorted by name first).
    Stratified by label when labels exist (as the official random 80/20 split per expression class): each
    class gets round(n*test_fraction) test items (at least one per side when it has two or more).
    With `groups` (e.g. one person), every group lands entirely on one side: groups are visited in a seeded
    random order and a group goes to test when that brings the per-class test counts closer to their
    targets, so the split stays close to stratified. A group of None means the item is its own group.
    """
    n = len(names)
    if labels is not None and len(labels) != n:
        raise ValueError("labels and names differ in length")
    if groups is not None and len(groups) != n:
        raise ValueError("groups and names differ in length")
    if not 0.0 <= test_fraction <= 1.0:
        raise CdanError(f"--test-fraction must be in [0, 1], got {test_fraction}")
    if len(set(names)) != n:
        raise ValueError("names must be unique")
    labels = list(labels) if labels is not None else [None] * n
    lab_key = ["" if lab is None else str(lab) for lab in labels]
    order = sorted(range(n), key=lambda i: names[i])
    rng = np.random.default_rng(np.random.SeedSequence([int(seed) & 0xFFFFFFFF, 0x5B11]))
    split = ["train"] * n

    if groups is None or all(g is None for g in groups):
        by_label: dict[str, list[int]] = defaultdict(list)
        for i in order:
            by_label[lab_key[i]].append(i)
        for lab in sorted(by_label):
            idx = by_label[lab]
            perm = rng.permutation(len(idx))
            for j in perm[: _n_test(len(idx), test_fraction)]:
                split[idx[j]] = "test"
        return split

    members: dict[str, list[int]] = defaultdict(list)
    for i in order:
        g = groups[i]
        members["\x00" + names[i] if g is None else "\x01" + str(g)].append(i)
    keys = sorted(members)
    total = Counter(lab_key)
    target = {lab: _n_test(c, test_fraction) for lab, c in total.items()}
    got: Counter[str] = Counter()
    for gi in rng.permutation(len(keys)):
        idx = members[keys[gi]]
        add = Counter(lab_key[i] for i in idx)
        before = sum(abs(got[lab] - target[lab]) for lab in add)
        after = sum(abs(got[lab] + c - target[lab]) for lab, c in add.items())
        if after < before:
            got.update(add)
            for i in idx:
                split[i] = "test"
    return split


def _group_of(pattern: re.Pattern, name: str, source: str | None) -> str | None:
    for text in (name, source or ""):
        m = pattern.search(text)
        if m:
            return m.group(1) if m.re.groups else m.group(0)
    return None


# --------------------------------------------------------------------------------------------------------
# Writer
# --------------------------------------------------------------------------------------------------------


def _versions() -> dict[str, str]:
    from .. import __version__

    out = {"cdan": __version__, "python": platform.python_version(), "numpy": np.__version__}
    for pkg in ("torch", "pillow", "opencv-python-headless", "mediapipe"):
        try:
            out[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            pass
    return out


def _nonempty(path: Path) -> bool:
    try:
        return path.stat().st_size > 0
    except OSError:
        return False


def _png_bytes(image_u8: np.ndarray) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(image_u8).save(buf, format="PNG", compress_level=6)
    return buf.getvalue()


def _as_rgb_u8(image_u8: np.ndarray) -> np.ndarray:
    img = np.asarray(image_u8)
    if img.dtype != np.uint8:
        raise ValueError(f"image must be uint8, got {img.dtype}")
    if img.ndim == 2:
        img = np.repeat(img[:, :, None], 3, axis=2)
    if img.ndim != 3 or img.shape[2] not in (3, 4) or img.shape[0] < 1 or img.shape[1] < 1:
        raise ValueError(f"image must be [H,W,3] uint8, got shape {img.shape}")
    return np.ascontiguousarray(img[:, :, :3])


class DatasetWriter:
    """Writes the dataset layout (see module docstring). Thread-safe: `add`/`skip` may run in worker threads.

    root: the DATASET folder. aus: AU names (the order of every AU vector). backend: AU backend name
    recorded per row. options: the run's options, stored in the manifest. resume: continue a folder that
    already holds a journal; without it a non-empty folder is refused. sync_every: seconds between fsyncs
    of the journal (0: after every line). Every line is flushed at once, so a killed process loses only the
    face in flight either way; the interval only bounds what an OS crash or power cut can lose.
    """

    def __init__(
        self,
        root: str | os.PathLike,
        aus: Sequence[str],
        backend: str,
        options: dict | None = None,
        resume: bool = False,
        sync_every: float = 0.0,
    ):
        self.root = Path(root)
        self.aus = tuple(aus)
        self.backend = str(backend)
        self.options = dict(options or {})
        self._lock = threading.Lock()
        self._sync_every = float(sync_every)
        self._last_sync = 0.0
        self._records: dict[str, dict[str, Any]] = {}
        self._skips: dict[tuple[str, str], None] = {}  # ordered set of (source, reason)
        self._done: set[str] = set()
        self._skipped_sources: set[str] = set()
        self._reserved: set[str] = set()
        if self.root.exists() and not self.root.is_dir():
            raise CdanError(f"{self.root} exists and is not a folder")
        if self.root.is_dir() and any(self.root.iterdir()) and not resume:
            raise CdanError(f"{self.root} exists and is not empty; use --resume or a new folder")
        (self.root / IMAGES).mkdir(parents=True, exist_ok=True)
        self._journal_path = self.root / JOURNAL
        if resume:
            for tmp in (self.root / IMAGES).glob(".*.tmp"):  # files in flight when a run was killed
                tmp.unlink(missing_ok=True)
        if resume and self._journal_path.exists():
            self._reload()
        elif resume and (self.root / AUS_CSV).exists():
            raise CdanError(f"{self.root} has no journal ({JOURNAL}) to resume from; use a new folder")
        self._journal = open(self._journal_path, "a", encoding="utf-8")  # noqa: SIM115 (closed in close())
        if self._journal.tell() == 0:
            self._append({"type": "header", "aus": list(self.aus), "backend": self.backend})

    # -- journal ------------------------------------------------------------------------------------------

    def _reload(self) -> None:
        lines = self._journal_path.read_bytes().split(b"\n")
        entries: list[dict[str, Any]] = []
        for k, raw in enumerate(lines):
            if not raw.strip():
                continue
            try:
                entries.append(json.loads(raw))
            except ValueError:
                if k >= len(lines) - 2:  # the last line, cut by a crash: drop it
                    log.warning("dropping a truncated last line of %s", self._journal_path)
                    continue
                raise CdanError(
                    f"{self._journal_path} is corrupt at line {k + 1}; use a new folder"
                ) from None
        # A face whose image is missing is redone, and so is its whole source.
        lost = {
            e["source"]
            for e in entries
            if e.get("type") == "add" and not _nonempty(self.root / IMAGES / f"{e['name']}.png")
        }
        kept: list[dict[str, Any]] = []
        for entry in entries:
            kind = entry.get("type")
            if kind == "header":
                if tuple(entry.get("aus", ())) != self.aus:
                    raise CdanError(
                        f"{self.root} was written with AUs {','.join(entry.get('aus', ()))}; "
                        f"cannot resume it with {','.join(self.aus)}"
                    )
                if entry.get("backend") != self.backend:
                    raise CdanError(
                        f"{self.root} was written with backend {entry.get('backend')}; "
                        f"cannot resume it with {self.backend}"
                    )
            elif kind == "add":
                if entry["source"] in lost:
                    continue
                self._records[entry["name"]] = entry
            elif kind == "skip":
                self._skips[(entry["source"], entry["reason"])] = None
                self._skipped_sources.add(entry["source"])
            elif kind == "done":
                if entry["source"] in lost:
                    continue
                self._done.add(entry["source"])
            kept.append(entry)
        if lost:
            log.warning("%d source(s) have images missing and will be redone", len(lost))
        # Rewrite the journal without dropped lines so the next append starts on a clean line.
        write_text_atomic(self._journal_path, "".join(json.dumps(e, sort_keys=True) + "\n" for e in kept))
        log.info(
            "resuming %s: %d faces, %d skips, %d finished sources",
            self.root,
            len(self._records),
            len(self._skips),
            len(self._done),
        )

    def _append(self, entry: dict[str, Any]) -> None:
        """Caller holds the lock (or is __init__)."""
        self._journal.write(json.dumps(entry, sort_keys=True) + "\n")
        self._journal.flush()
        now = time.monotonic()
        if self._sync_every <= 0 or now - self._last_sync >= self._sync_every:
            os.fsync(self._journal.fileno())
            self._last_sync = now

    def _close_journal(self) -> None:
        """Caller holds the lock."""
        if not self._journal.closed:
            self._journal.flush()
            os.fsync(self._journal.fileno())
            self._journal.close()

    # -- queries ------------------------------------------------------------------------------------------

    def has(self, name: str) -> bool:
        """True when `name` is already written (journaled with its image on disk)."""
        with self._lock:
            return name in self._records

    def has_source(self, source: str) -> bool:
        """True when `source` was marked done or recorded as skipped (so a resumed run can pass over it)."""
        with self._lock:
            return source in self._done or source in self._skipped_sources

    def unique_name(self, base: str) -> str:
        """`base`, or `base_1`, `base_2`... the first name not written or reserved yet. Reserves it."""
        _check_name(base)
        with self._lock:
            name, k = base, 0
            while name in self._records or name in self._reserved:
                k += 1
                name = f"{base}_{k}"
            self._reserved.add(name)
            return name

    def __len__(self) -> int:
        with self._lock:
            return len(self._records)

    # -- writing ------------------------------------------------------------------------------------------

    def add(
        self,
        name: str,
        image_u8: np.ndarray,
        au: Sequence[float] | np.ndarray,
        *,
        source: str,
        frame: int | None = None,
        box: Sequence[float] | None = None,
        label: str | None = None,
        group: str | None = None,
    ) -> None:
        """Write `images/<name>.png` (image_u8: uint8 [H,W,3] RGB) and journal the row.

        au: float [K] intensities on the 0-5 scale in `self.aus` order (must be finite). box: (x, y, w, h)
        of the face in the source. Writing the same name again from the same source replaces it; a name
        already used by another source is a CdanError (use `unique_name`).
        """
        _check_name(name)
        vec = np.asarray(au, dtype=np.float64).reshape(-1)
        if vec.shape[0] != len(self.aus):
            raise ValueError(f"AU vector for {name} has {vec.shape[0]} values, expected {len(self.aus)}")
        if not np.all(np.isfinite(vec)):
            raise ValueError(f"AU vector for {name} has non-finite values: {vec.tolist()}")
        if box is not None and len(box) != 4:
            raise ValueError(f"box must be (x, y, w, h), got {box!r}")
        with self._lock:
            prev = self._records.get(name)
        if prev is not None and prev.get("source") != str(source):
            raise CdanError(
                f"dataset name {name!r} is already used by {prev.get('source')}; names must be unique"
            )
        png = _png_bytes(_as_rgb_u8(image_u8))  # encode outside the lock: this is the slow part
        # Atomic (temp file + os.replace): a killed run never leaves a partial PNG under its final name.
        with atomic_path(self.root / IMAGES / f"{name}.png") as tmp:
            tmp.write_bytes(png)
        entry = {
            "type": "add",
            "name": name,
            "au": [round(float(v), AU_DECIMALS) for v in vec],
            "source": str(source),
            "frame": None if frame is None else int(frame),
            "box": None if box is None else [round(float(v), 2) for v in box],
            "label": None if label is None else str(label),
            "group": None if group is None else str(group),
        }
        with self._lock:
            self._records[name] = entry
            self._reserved.discard(name)
            self._append(entry)

    def skip(self, source: str, reason: str) -> None:
        """Record that `source` (a file, or `file#frame`) was skipped and why. Counts as processed."""
        reason = " ".join(str(reason).split())  # one line
        log.info("skipped %s: %s", source, reason)
        with self._lock:
            key = (str(source), reason)
            if key in self._skips:
                return
            self._skips[key] = None
            self._skipped_sources.add(key[0])
            self._append({"type": "skip", "source": key[0], "reason": reason})

    def mark_done(self, source: str) -> None:
        """Journal that `source` is fully processed (has_source(source) is then True, also after resume)."""
        with self._lock:
            if str(source) in self._done:
                return
            self._done.add(str(source))
            self._append({"type": "done", "source": str(source)})

    # -- finishing ----------------------------------------------------------------------------------------

    def close(
        self,
        test_fraction: float = 0.2,
        seed: int = 0,
        group_by: str | None = None,
        legacy_pkl: str | os.PathLike | None = None,
    ) -> dict:
        """Assign splits, write aus.csv, manifest.json (and the legacy pickle) atomically; return the manifest.

        group_by: a regex applied to each name (then its source); its first group (or whole match) is the
        group kept on one side of the split. Without it, the `group` given to `add` is used, if any.
        legacy_pkl: file name (relative to the dataset folder) or path of the official `{name: float64[K]}`
        pickle to write too. The journal is kept, so the folder can be resumed and closed again.
        """
        pattern = None
        if group_by:
            try:
                pattern = re.compile(group_by)
            except re.error as e:
                raise CdanError(f"--group-by {group_by!r} is not a valid regex: {e}") from None
        with self._lock:
            records = [self._records[k] for k in sorted(self._records)]
            skips = sorted(self._skips)
        names = [r["name"] for r in records]
        labels = [r.get("label") for r in records]
        if pattern is not None:
            groups = [_group_of(pattern, r["name"], r.get("source")) for r in records]
        else:
            groups = [r.get("group") for r in records]
        splits = assign_splits(names, labels, groups, test_fraction, seed)

        buf = io.StringIO()
        w = csv.writer(buf, lineterminator="\n")
        w.writerow(["name", "split", "label", *self.aus, *TRAILING_COLUMNS])
        for r, split in zip(records, splits):
            box = r.get("box") or [None] * 4
            w.writerow(
                [
                    r["name"],
                    split,
                    "" if r.get("label") is None else r["label"],
                    *(repr(v) for v in r["au"]),
                    r.get("source", ""),
                    "" if r.get("frame") is None else r["frame"],
                    *("" if v is None else repr(v) for v in box),
                    self.backend,
                ]
            )
        write_text_atomic(self.root / AUS_CSV, buf.getvalue())

        pkl_name = None
        if legacy_pkl is not None:
            from .formats import write_legacy_pickle

            pkl_path = Path(legacy_pkl)
            if not pkl_path.is_absolute():
                pkl_path = self.root / pkl_path
            write_legacy_pickle(pkl_path, {r["name"]: np.asarray(r["au"], dtype=np.float64) for r in records})
            pkl_name = (
                str(pkl_path.relative_to(self.root)) if pkl_path.is_relative_to(self.root) else str(pkl_path)
            )

        n_test = sum(s == "test" for s in splits)
        label_counts = Counter(lab for lab in labels if lab is not None)
        manifest = {
            "format": "cdan-dataset-1",
            "versions": _versions(),
            "backend": self.backend,
            "options": self.options,
            "aus": list(self.aus),
            "split": {"test_fraction": test_fraction, "seed": seed, "group_by": group_by},
            "counts": {
                "written": len(records),
                "skipped": len(skips),
                "train": len(records) - n_test,
                "test": n_test,
            },
            "labels": dict(sorted(label_counts.items())),
            "legacy_pkl": pkl_name,
            "skipped": [{"source": s, "reason": r} for s, r in skips],
        }
        write_json_atomic(self.root / MANIFEST, manifest)
        with self._lock:
            self._close_journal()
        log.info(
            "dataset %s: %d faces (%d train, %d test), %d skipped",
            self.root,
            len(records),
            len(records) - n_test,
            n_test,
            len(skips),
        )
        return manifest

    def abort(self) -> None:
        """Close the journal without writing aus.csv/manifest (the folder can be resumed later)."""
        with self._lock:
            self._close_journal()

    def __enter__(self) -> DatasetWriter:
        return self

    def __exit__(self, *exc) -> None:
        self.abort()
