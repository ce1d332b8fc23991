"""Speed of `cdan prepare` per AU backend on CPU.

Builds a folder of photo-like inputs (the 4 real reference faces pasted on 320x320 canvases and synthetic
faces drawn at 256 px, as JPEGs), runs the whole `prepare_dataset` (read, detect, estimate AUs, align,
write PNG + journal, close) per backend with 1 worker (and optionally more), and prints one JSON object:
images/s of wall time, CPU seconds used, and images per CPU-second (the per-core figure; MediaPipe may use
more than one thread inside a worker).

    python benchmarks/prepare.py [--num 96] [--backends mediapipe,landmarks] [--workers 1,2]
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import resource
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

DEFAULT_REFERENCE = Path(__file__).resolve().parents[2] / "shared" / "reference"


def _cpu_seconds() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def make_inputs(folder: Path, num: int, reference: Path) -> int:
    """Write `num` photo-like JPEGs into folder. Returns how many came from real faces."""
    from cdan.faces.synth import sample_identity, synth_face

    folder.mkdir(parents=True, exist_ok=True)
    real = []
    ref = reference / "real_faces_openface"
    if ref.is_dir():
        real = [np.asarray(Image.open(p).convert("RGB")) for p in sorted(ref.glob("*.jpg"))]
    rng = np.random.default_rng(0)
    n_real = 0
    for k in range(num):
        if real and k % 2 == 0:
            face = real[(k // 2) % len(real)]
            canvas = np.full((320, 320, 3), int(rng.integers(150, 240)), np.uint8)
            y, x = rng.integers(40, 150, size=2)
            canvas[y : y + 128, x : x + 128] = face
            img = canvas
            n_real += 1
        else:
            idn = sample_identity(np.random.default_rng(1000 + k))
            img = synth_face(idn, {"AU12": float(rng.uniform(0, 5)), "AU25": float(rng.uniform(0, 5))}, 256)
        Image.fromarray(img).save(folder / f"img{k:04d}.jpg", quality=92)
    return n_real


def bench(inputs: Path, out: Path, backend: str, workers: int) -> dict:
    from cdan.data.prepare import PrepareOptions, prepare_dataset

    opt = PrepareOptions(au_backend=backend, workers=workers, progress=False)
    c0, t0 = _cpu_seconds(), time.perf_counter()
    summary = prepare_dataset([inputs], out, opt)
    wall, cpu = time.perf_counter() - t0, _cpu_seconds() - c0
    n = summary["inputs"]
    return {
        "backend": summary["backend"],
        "workers": workers,
        "images": n,
        "written": summary["written"],
        "wall_s": round(wall, 3),
        "cpu_s": round(cpu, 3),
        "images_per_s": round(n / wall, 2),
        "images_per_cpu_s": round(n / cpu, 2),
        "cores_used": round(cpu / wall, 2),
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--num", type=int, default=96, help="number of input images")
    ap.add_argument("--backends", default="mediapipe,landmarks", help="comma list of AU backends")
    ap.add_argument("--workers", default="1", help="comma list of worker counts")
    ap.add_argument("--reference", type=Path, default=DEFAULT_REFERENCE, help="shared/reference folder")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)

    results = []
    with tempfile.TemporaryDirectory(prefix="cdan-bench-prepare-") as tmp:
        tmpdir = Path(tmp)
        n_real = make_inputs(tmpdir / "in", args.num, args.reference)
        for backend in [b.strip() for b in args.backends.split(",") if b.strip()]:
            for workers in [int(w) for w in args.workers.split(",")]:
                results.append(bench(tmpdir / "in", tmpdir / f"out_{backend}_{workers}", backend, workers))
    print(
        json.dumps(
            {
                "machine": {"cpu_count": os.cpu_count(), "python": platform.python_version()},
                "inputs": {
                    "images": args.num,
                    "real_faces_on_320px_canvas": n_real,
                    "synthetic_256px": args.num - n_real,
                },
                "results": results,
            },
            indent=1,
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
