"""DatasetWriter (layout, journal, resume, skips) and assign_splits."""

from __future__ import annotations

import csv
import json
import threading
from collections import Counter

import numpy as np
import pytest
from PIL import Image

from cdan.data import DatasetWriter, assign_splits, label_from_path, load_legacy_pickle
from cdan.errors import CdanError

AUS = ("AU01", "AU12")


def _img(i: int, h: int = 12, w: int = 10) -> np.ndarray:
    return np.random.default_rng(i).integers(0, 256, (h, w, 3), dtype=np.uint8)


def _rows(root):
    with open(root / "aus.csv", newline="") as f:
        return list(csv.DictReader(f))


def test_writer_layout(tmp_path):
    root = tmp_path / "ds"
    w = DatasetWriter(root, AUS, "testbackend", {"size": 12})
    for i in range(5):
        w.add(
            f"face{i}", _img(i), [0.5 * i, 5 - i], source=f"in/{i}.jpg", box=(1, 2, 30.5, 40), label="happy"
        )
        w.mark_done(f"in/{i}.jpg")
    w.add("vid_f3", _img(9), np.array([1.25, 0.0], dtype=np.float32), source="clip.mp4", frame=3)
    w.skip("in/bad.jpg", "cannot identify image file\n(truncated)")
    assert w.has("face0") and not w.has("face9")
    assert w.has_source("in/0.jpg") and w.has_source("in/bad.jpg") and not w.has_source("clip.mp4")
    m = w.close(test_fraction=0.2, seed=0, legacy_pkl="legacy.pkl")

    assert sorted(p.name for p in (root / "images").iterdir()) == [f"face{i}.png" for i in range(5)] + [
        "vid_f3.png"
    ]
    assert not list(root.rglob("*.tmp"))
    np.testing.assert_array_equal(np.asarray(Image.open(root / "images" / "face2.png")), _img(2))

    header = (root / "aus.csv").read_text().splitlines()[0]
    assert header == "name,split,label,AU01,AU12,source,frame,box_x,box_y,box_w,box_h,backend"
    rows = _rows(root)
    assert [r["name"] for r in rows] == ["face0", "face1", "face2", "face3", "face4", "vid_f3"]
    r3 = rows[3]
    assert (r3["AU01"], r3["AU12"], r3["label"], r3["source"]) == ("1.5", "2.0", "happy", "in/3.jpg")
    assert (r3["box_x"], r3["box_w"], r3["frame"], r3["backend"]) == ("1.0", "30.5", "", "testbackend")
    assert rows[5]["frame"] == "3" and rows[5]["label"] == "" and rows[5]["AU01"] == "1.25"
    assert Counter(r["split"] for r in rows) == Counter(train=m["counts"]["train"], test=m["counts"]["test"])

    man = json.loads((root / "manifest.json").read_text())
    assert man == m
    assert man["counts"] == {
        "written": 6,
        "skipped": 1,
        "train": m["counts"]["train"],
        "test": m["counts"]["test"],
    }
    assert man["skipped"] == [{"source": "in/bad.jpg", "reason": "cannot identify image file (truncated)"}]
    assert man["aus"] == list(AUS) and man["backend"] == "testbackend" and man["options"] == {"size": 12}
    assert {"cdan", "python", "numpy", "torch"} <= set(man["versions"])

    pkl = load_legacy_pickle(root / "legacy.pkl")
    np.testing.assert_array_equal(pkl["face3"], [1.5, 2.0])
    assert len(pkl) == 6


def test_non_empty_folder_refused_without_resume(tmp_path):
    (tmp_path / "ds").mkdir()
    (tmp_path / "ds" / "x.txt").write_text("hi")
    with pytest.raises(CdanError, match="--resume"):
        DatasetWriter(tmp_path / "ds", AUS, "b", {})
    (tmp_path / "empty").mkdir()
    DatasetWriter(tmp_path / "empty", AUS, "b", {}).abort()  # an empty folder is fine


def test_crash_and_resume(tmp_path):
    root = tmp_path / "ds"
    w = DatasetWriter(root, AUS, "b", {})
    for i in range(3):
        w.add(f"f{i}", _img(i), [i, i], source=f"s{i}")
        w.mark_done(f"s{i}")
    w.skip("s_bad", "no face")
    # Simulate a kill: no close(); the journal ends with a half-written line; an orphan temp file exists.
    w._journal.close()
    with open(root / ".journal.jsonl", "a") as f:
        f.write('{"type": "add", "name": "f3", "au": [3')
    (root / "images" / ".f3.png.abc.tmp").write_bytes(b"partial")
    # A face journaled but whose image got lost is redone.
    (root / "images" / "f2.png").unlink()
    assert not (root / "aus.csv").exists()

    with pytest.raises(CdanError, match="--resume"):
        DatasetWriter(root, AUS, "b", {})
    with pytest.raises(CdanError, match="AUs"):
        DatasetWriter(root, ("AU01",), "b", {}, resume=True)

    w2 = DatasetWriter(root, AUS, "b", {}, resume=True)
    assert w2.has("f0") and w2.has("f1") and not w2.has("f2")
    assert w2.has_source("s0") and w2.has_source("s_bad") and not w2.has_source("s3")
    todo = [i for i in range(5) if not w2.has_source(f"s{i}")]
    assert todo == [2, 3, 4]
    for i in todo:
        w2.add(f"f{i}", _img(i), [i, i], source=f"s{i}")
        w2.mark_done(f"s{i}")
    m = w2.close()
    assert m["counts"]["written"] == 5 and m["counts"]["skipped"] == 1
    assert not list(root.rglob("*.tmp"))
    assert [r["name"] for r in _rows(root)] == [f"f{i}" for i in range(5)]
    for line in (root / ".journal.jsonl").read_text().splitlines():
        json.loads(line)  # the truncated line is gone


def test_duplicate_names_and_bad_input(tmp_path):
    w = DatasetWriter(tmp_path / "ds", AUS, "b", {})
    w.add("a", _img(0), [1, 1], source="x.jpg")
    w.add("a", _img(1), [2, 2], source="x.jpg")  # same source: replaced (idempotent redo)
    with pytest.raises(CdanError, match="already used"):
        w.add("a", _img(2), [1, 1], source="y.jpg")
    assert w.unique_name("a") == "a_1" and w.unique_name("a") == "a_2"
    with pytest.raises(ValueError):
        w.add("../evil", _img(0), [1, 1], source="z")
    with pytest.raises(ValueError):
        w.add("b", _img(0), [1, 1, 1], source="z")
    with pytest.raises(ValueError):
        w.add("b", _img(0), [np.nan, 1], source="z")
    w.add("grey", _img(0)[:, :, 0], [0, 0], source="g")  # grey is stored as RGB
    m = w.close()
    assert m["counts"]["written"] == 2
    assert np.asarray(Image.open(tmp_path / "ds" / "images" / "grey.png")).shape == (12, 10, 3)
    assert _rows(tmp_path / "ds")[0]["AU01"] == "2.0"


def test_threaded_adds(tmp_path):
    w = DatasetWriter(tmp_path / "ds", AUS, "b", {})

    def work(k):
        for i in range(k * 10, k * 10 + 10):
            w.add(f"t{i:03d}", _img(i, 8, 8), [i % 5, 1], source=f"s{i}")
            if i % 7 == 0:
                w.skip(f"bad{i}", "no face")

    threads = [threading.Thread(target=work, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    m = w.close()
    assert m["counts"]["written"] == 40 and m["counts"]["skipped"] == 6
    assert len((tmp_path / "ds" / ".journal.jsonl").read_text().splitlines()) == 1 + 40 + 6


def test_group_by_regex_in_close(tmp_path):
    w = DatasetWriter(tmp_path / "ds", AUS, "b", {})
    for p in range(10):
        for e in range(4):
            w.add(f"id{p:02d}_e{e}", _img(p * 4 + e, 4, 4), [0, 0], source=f"p{p}/{e}.jpg")
    w.close(test_fraction=0.3, seed=1, group_by=r"^(id\d+)_")
    rows = _rows(tmp_path / "ds")
    by_person: dict[str, set] = {}
    for r in rows:
        by_person.setdefault(r["name"][:4], set()).add(r["split"])
    assert all(len(s) == 1 for s in by_person.values())
    assert sum(r["split"] == "test" for r in rows) == 12
    with pytest.raises(CdanError, match="regex"):
        DatasetWriter(tmp_path / "ds2", AUS, "b", {}).close(group_by="(")


# ---- splits --------------------------------------------------------------------------------------------


def test_splits_deterministic_and_order_independent():
    names = [f"img{i:03d}" for i in range(100)]
    a = assign_splits(names, None, None, 0.2, seed=3)
    assert a == assign_splits(names, None, None, 0.2, seed=3)
    assert a.count("test") == 20
    perm = np.random.default_rng(0).permutation(100)
    b = assign_splits([names[i] for i in perm], None, None, 0.2, seed=3)
    assert dict(zip([names[i] for i in perm], b)) == dict(zip(names, a))
    assert a != assign_splits(names, None, None, 0.2, seed=4)


def test_splits_stratified():
    names = [f"n{i:03d}" for i in range(100)]
    labels = ["happy"] * 50 + ["sad"] * 30 + ["neutral"] * 15 + ["rare"] * 5
    s = assign_splits(names, labels, None, 0.2, seed=0)
    test = Counter(lab for lab, sp in zip(labels, s) if sp == "test")
    assert test == Counter(happy=10, sad=6, neutral=3, rare=1)  # 20% of each class, like the official split


def test_splits_grouped():
    names, labels, groups = [], [], []
    for p in range(20):
        for e, lab in enumerate(["happy", "sad", "neutral"]):
            names.append(f"p{p}_{e}")
            labels.append(lab)
            groups.append(f"p{p}")
    s = assign_splits(names, labels, groups, 0.25, seed=0)
    sides = {}
    for g, sp in zip(groups, s):
        sides.setdefault(g, set()).add(sp)
    assert all(len(v) == 1 for v in sides.values())
    assert s.count("test") == 15  # 5 of 20 people
    perm = list(reversed(range(len(names))))
    s2 = assign_splits(
        [names[i] for i in perm], [labels[i] for i in perm], [groups[i] for i in perm], 0.25, 0
    )
    assert dict(zip([names[i] for i in perm], s2)) == dict(zip(names, s))


def test_small_classes_and_bounds():
    assert assign_splits(["a"], None, None, 0.2, 0) == ["train"]
    assert sorted(assign_splits(["a", "b"], None, None, 0.2, 0)) == ["test", "train"]
    assert assign_splits(["a", "b"], None, None, 0.0, 0) == ["train", "train"]
    with pytest.raises(CdanError):
        assign_splits(["a"], None, None, 1.5, 0)


def test_label_from_path(tmp_path):
    assert label_from_path(tmp_path / "happy" / "x.jpg", tmp_path) == "happy"
    assert label_from_path(tmp_path / "x.jpg", tmp_path) is None
