"""Legacy AU pickles (restricted unpickler) and OpenFace CSV import."""

from __future__ import annotations

import pickle
import shutil
from pathlib import Path

import numpy as np
import pytest

from cdan.aus import ALL_AUS, SIX_AUS
from cdan.data import load_legacy_pickle, read_openface_csv, read_openface_dir, write_legacy_pickle
from cdan.errors import CdanError

REF = Path(__file__).resolve().parents[2] / "shared" / "reference"


def _ref(rel: str) -> Path:
    p = REF / rel
    if not p.exists():
        pytest.skip(f"reference file {p} is absent")
    return p


# ---- legacy pickle -------------------------------------------------------------------------------------


def test_official_affect_pickle_loads():
    d = load_legacy_pickle(_ref("legacy/affect_HaSa_au.pkl"))
    assert len(d) == 2180
    assert {v.shape for v in d.values()} == {(6,)}
    assert all(v.dtype == np.float64 for v in d.values())
    first = d["0001e03093ae66e2416cc4240c8d7b6d8fc8504d76f4a022e0173fa3"]
    np.testing.assert_array_equal(first, [0.17, 0.0, 0.93, 1.38, 0.79, 0.38])


def test_ganimation_pickle_loads():
    d = load_legacy_pickle(_ref("real_faces_openface/aus_openface.pkl"))
    assert sorted(d) == [
        "N_0000000356_00190",
        "N_0000000437_00540",
        "N_0000001507_00202",
        "N_0000001939_00054",
    ]
    assert {v.shape for v in d.values()} == {(len(ALL_AUS),)}
    v = d["N_0000000356_00190"]
    assert v[ALL_AUS.index("AU01")] == 2.86 and v[ALL_AUS.index("AU02")] == 2.27
    assert v[ALL_AUS.index("AU25")] == 0.62


class _Evil:
    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        import os

        return (os.system, (f"touch {self.marker}",))


@pytest.mark.parametrize("protocol", [2, 5])
def test_malicious_pickle_is_refused_and_nothing_runs(tmp_path, protocol):
    marker = tmp_path / "pwned"
    bad = tmp_path / "evil.pkl"
    bad.write_bytes(pickle.dumps({"a": np.zeros(6), "b": _Evil(marker)}, protocol=protocol))
    with pytest.raises(CdanError, match=r"(posix|os)\.system"):
        load_legacy_pickle(bad)
    assert not marker.exists()
    if shutil.which("touch"):  # the payload is real: a plain unpickler does run it
        pickle.loads(bad.read_bytes())
        assert marker.exists()


def test_other_globals_refused(tmp_path):
    p = tmp_path / "x.pkl"
    p.write_bytes(pickle.dumps({"a": np.zeros(3)}, protocol=2).replace(b"numpy\nndarray", b"builtins\neval"))
    with pytest.raises(CdanError, match="builtins.eval"):
        load_legacy_pickle(p)


@pytest.mark.parametrize(
    "obj,match",
    [
        ([1, 2, 3], "holds a list"),
        ({"a": np.zeros((2, 3))}, "1-D"),
        ({"a": np.zeros(6), "b": np.zeros(5)}, "different lengths"),
        ({"a": "text"}, "1-D numeric"),
        ({}, "empty"),
    ],
)
def test_bad_content_is_a_clear_error(tmp_path, obj, match):
    p = tmp_path / "x.pkl"
    p.write_bytes(pickle.dumps(obj, protocol=2))
    with pytest.raises(CdanError, match=match):
        load_legacy_pickle(p)


def test_garbage_and_missing_files(tmp_path):
    with pytest.raises(CdanError, match="not found"):
        load_legacy_pickle(tmp_path / "nope.pkl")
    (tmp_path / "z.pkl").write_bytes(b"")
    with pytest.raises(CdanError, match="empty"):
        load_legacy_pickle(tmp_path / "z.pkl")
    (tmp_path / "g.pkl").write_bytes(b"\x80\x02garbage")
    with pytest.raises(CdanError):
        load_legacy_pickle(tmp_path / "g.pkl")


def test_write_read_round_trip(tmp_path):
    src = {"img_a": np.array([0.1, 2.5, 5.0]), "img_b": np.array([0.0, 0.33, 1.0], dtype=np.float32)}
    p = tmp_path / "sub" / "aus.pkl"
    write_legacy_pickle(p, src)
    assert p.read_bytes()[:2] == b"\x80\x02"  # protocol 2, as the official (Python 2 era) code expects
    back = load_legacy_pickle(p)
    assert sorted(back) == ["img_a", "img_b"]
    np.testing.assert_array_equal(back["img_a"], src["img_a"])
    np.testing.assert_allclose(back["img_b"], src["img_b"], rtol=1e-7)
    assert back["img_b"].dtype == np.float64
    # The plain unpickler (what the official code uses) reads it too.
    plain = pickle.loads(p.read_bytes(), encoding="latin1")
    np.testing.assert_array_equal(plain["img_a"], src["img_a"])


# ---- OpenFace CSV --------------------------------------------------------------------------------------


def test_openface_image_mode():
    t = read_openface_csv(_ref("openface/of220_FaceLandmarkImg_img1.csv"))
    assert len(t) == 1 and len(t.columns) == 711
    assert t.columns[:2] == ("face", "confidence")
    assert t.frames is None
    assert t.face_ids.tolist() == [0]
    assert t.confidence.tolist() == [0.975]
    assert t.success.tolist() == [True]  # no success column in image mode
    assert t.available_aus == ALL_AUS and "AU28" not in t.available_aus
    six = t.aus(SIX_AUS)
    assert six.dtype == np.float32 and six.shape == (1, 6)
    np.testing.assert_array_equal(six[0], np.float32([0.53, 1.73, 2.38, 1.99, 0.45, 1.62]))
    au = t.aus(["AU45", "AU28", "AU07"])
    assert au[0, 0] == np.float32(1.56) and np.isnan(au[0, 1]) and au[0, 2] == np.float32(2.50)


def test_openface_sequence_mode():
    t = read_openface_csv(_ref("openface/of220_FeatureExtraction_video1_frame1.csv"))
    assert len(t) == 1 and len(t.columns) == 714
    assert t.columns[:5] == ("frame", "face_id", "timestamp", "confidence", "success")
    assert t.frames.tolist() == [1] and t.face_ids.tolist() == [0]
    assert t.confidence.tolist() == [0.98] and t.success.tolist() == [True]
    np.testing.assert_array_equal(t.aus(SIX_AUS)[0], np.float32([0.34, 0.43, 2.64, 2.26, 0.37, 0.62]))
    assert t.aus(["AU02", "AU26"]).tolist() == [[np.float32(0.36), np.float32(0.19)]]


def test_openface_legacy_sequence_layout():
    t = read_openface_csv(_ref("openface/openface_legacy_sequence_100frames.csv"))
    assert len(t) == 100
    assert t.columns[:4] == ("frame", "timestamp", "confidence", "success")  # stripped of the ", " spaces
    assert t.face_ids is None
    assert t.frames[0] == 1 and t.frames[-1] == 100
    assert t.success.all()
    au = t.aus(["AU01", "AU02", "AU04", "AU05", "AU45"])
    np.testing.assert_array_equal(au[0], np.float32([0.6773, 0.4275, 0.2435, 0.3434, 0.02348]))
    assert au[-1, 0] == np.float32(0.1951) and au[-1, 2] == np.float32(0.6953)
    assert au[49, 4] == np.float32(0.3698)  # the 50th frame
    assert t.column("timestamp")[-1] == pytest.approx(0.099)


def test_openface_bad_csvs(tmp_path):
    (tmp_path / "empty.csv").write_text("")
    with pytest.raises(CdanError, match="empty"):
        read_openface_csv(tmp_path / "empty.csv")
    (tmp_path / "other.csv").write_text("a,b\n1,2\n")
    with pytest.raises(CdanError, match="OpenFace"):
        read_openface_csv(tmp_path / "other.csv")
    (tmp_path / "ragged.csv").write_text("face, confidence, AU01_r\n0, 0.9, 1.0\n0, 0.9\n")
    with pytest.raises(CdanError, match="line 3"):
        read_openface_csv(tmp_path / "ragged.csv")


def test_read_openface_dir(tmp_path):
    for name in ("of220_FaceLandmarkImg_img1.csv", "openface_legacy_sequence_100frames.csv"):
        shutil.copy(_ref(f"openface/{name}"), tmp_path / name)
    (tmp_path / "failed.csv").write_text(
        "frame, face_id, timestamp, confidence, success, AU01_r\n1, 0, 0, 0.1, 0, 3.0\n"
    )
    (tmp_path / "broken.csv").write_bytes(b"\xff\xfe\x00garbage")
    skipped: list = []
    d = read_openface_dir(tmp_path, SIX_AUS, skipped=skipped)
    assert sorted(d) == ["of220_FaceLandmarkImg_img1", "openface_legacy_sequence_100frames"]
    np.testing.assert_allclose(
        d["of220_FaceLandmarkImg_img1"], [0.53, 1.73, 2.38, 1.99, 0.45, 1.62], atol=1e-6
    )
    assert d["openface_legacy_sequence_100frames"][0] == pytest.approx(0.6773, abs=1e-6)
    assert sorted(s[0] for s in skipped) == ["broken.csv", "failed.csv"]
    with pytest.raises(CdanError):
        read_openface_dir(tmp_path / "missing", SIX_AUS)
