"""Agreement of the built-in AU backends with OpenFace on real faces.

Reads the 4 real faces in shared/reference/real_faces_openface and their OpenFace 2.x intensities
(aus_openface.pkl, GANimation's 17-AU order), runs each backend's `estimate` on every image, and prints one
JSON object: per backend the per-AU mean absolute error, Pearson correlation (null when either side is
constant) and the mean MAE over the AUs, plus the predictions. Baselines: `naive` (the issue's map:
browInnerUp, browDown, cheekSquint, mouthSmile, mouthFrown, jawOpen, x5, left/right averaged) and `zeros`.

    python benchmarks/au_agreement.py [--reference ../shared/reference] [--aus six|all]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

from cdan.aus import ALL_AUS, au_set
from cdan.data import load_legacy_pickle
from cdan.faces.images import read_image

DEFAULT_REFERENCE = Path(__file__).resolve().parents[2] / "shared" / "reference"


def pearson(a: np.ndarray, b: np.ndarray) -> float | None:
    if np.std(a) < 1e-9 or np.std(b) < 1e-9:
        return None
    return float(np.corrcoef(a, b)[0, 1])


def score(pred: np.ndarray, truth: np.ndarray, aus: tuple[str, ...]) -> dict:
    """pred, truth: [N,K]. Per-AU MAE and Pearson r, the mean MAE, and the correlation over all values."""
    err = np.abs(pred - truth)
    return {
        "mean_mae": round(float(err.mean()), 4),
        "pooled_r": None if (r := pearson(pred.ravel(), truth.ravel())) is None else round(r, 4),
        "per_au": {
            au: {
                "mae": round(float(err[:, k].mean()), 4),
                "r": None if (r := pearson(pred[:, k], truth[:, k])) is None else round(r, 4),
            }
            for k, au in enumerate(aus)
        },
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--reference", type=Path, default=DEFAULT_REFERENCE, help="shared/reference folder")
    ap.add_argument("--aus", default="six", help="six, all, or a comma list")
    ap.add_argument("--backends", default="mediapipe,landmarks", help="comma list of backends")
    args = ap.parse_args(argv)

    folder = args.reference / "real_faces_openface"
    if not folder.is_dir():
        print(json.dumps({"error": f"{folder} not found"}))
        return 1
    aus = au_set(args.aus)
    truth_all = load_legacy_pickle(folder / "aus_openface.pkl")
    cols = [ALL_AUS.index(a) for a in aus]
    names = sorted(truth_all)
    images = [read_image(folder / f"{n}.jpg") for n in names]
    truth = np.stack([truth_all[n][cols] for n in names])

    from cdan.faces.au import get_backend
    from cdan.faces.au.mediapipe_backend import naive_blendshape_aus

    out: dict = {"faces": names, "aus": list(aus), "truth": truth.round(3).tolist(), "backends": {}}
    for bname in [b.strip() for b in args.backends.split(",") if b.strip()]:
        backend = get_backend(bname)
        detector = backend.make_detector(num_faces=2)
        preds, naive = [], []
        for img in images:
            faces = detector.detect(img)  # the same detection `estimate` and `prepare` use
            if not faces:
                preds.append(np.full(len(aus), np.nan))
                continue
            preds.append(backend.estimate_face(faces[0], img, aus))
            if faces[0].blendshapes is not None:
                naive.append(naive_blendshape_aus(faces[0].blendshapes, aus))
        detector.close()
        backend.close()
        pred = np.stack(preds).astype(np.float64)
        res = score(np.nan_to_num(pred), truth, aus)
        res["faces_found"] = int(np.isfinite(pred).all(1).sum())
        res["pred"] = np.nan_to_num(pred).round(3).tolist()
        out["backends"][bname] = res
        if naive and len(naive) == len(images) and "naive_blendshapes" not in out["backends"]:
            nv = np.stack(naive).astype(np.float64)
            keep = [k for k, a in enumerate(aus) if np.isfinite(nv[:, k]).all()]
            nres = score(nv[:, keep], truth[:, keep], tuple(aus[k] for k in keep))
            nres["pred"] = nv[:, keep].round(3).tolist()
            out["backends"]["naive_blendshapes"] = nres
    out["backends"]["zeros"] = score(np.zeros_like(truth), truth, aus)
    json.dump(out, sys.stdout, indent=1)
    print()
    return 0


if __name__ == "__main__":
    sys.exit(main())
