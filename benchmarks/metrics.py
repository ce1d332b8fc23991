"""Throughput of the evaluation metrics on CPU. Prints one JSON object.

    python benchmarks/metrics.py [--pairs 16] [--size 112]

Per-pair costs (ms/pair) of PSNR, SSIM, ACD (dlib), the PR HOG difference, LPIPS and Inception features when
their weights are available locally (otherwise "skipped" with the reason), plus the time of the FID distance on
2048-D features for a test-set-sized sample (sample-space path vs the D x D statistics path).
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import numpy as np

REFERENCE = Path(__file__).resolve().parents[2] / "shared" / "reference" / "real_faces_openface"


def _pairs(n: int, size: int) -> list[tuple[np.ndarray, np.ndarray]]:
    from PIL import Image

    faces = sorted(REFERENCE.glob("*.jpg"))
    rng = np.random.default_rng(0)
    out = []
    for i in range(n):
        if faces:
            real = np.asarray(Image.open(faces[i % len(faces)]).convert("RGB").resize((size, size)))
        else:
            yy, xx = np.mgrid[0:size, 0:size]
            real = np.stack([xx * 2, yy * 2, xx + yy], axis=2).astype(np.uint8)
        fake = np.clip(real.astype(int) + rng.integers(-12, 12, real.shape), 0, 255).astype(np.uint8)
        out.append((real, fake))
    return out


def _time(fn, repeats: int) -> float:
    fn()  # warm-up
    t = time.perf_counter()
    for _ in range(repeats):
        fn()
    return (time.perf_counter() - t) / repeats


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--pairs", type=int, default=16, help="pairs per measurement")
    ap.add_argument("--size", type=int, default=112, help="image side in pixels")
    args = ap.parse_args()

    import torch

    from cdan.errors import CdanError
    from cdan.metrics.fid_is import (
        InceptionFeatureExtractor,
        feature_statistics,
        fid_from_features,
        find_inception_weights,
        frechet_distance,
    )
    from cdan.metrics.image import build_lpips, lpips_distance, psnr, ssim
    from cdan.metrics.parsing import hog_difference, rgb_to_grey_u8

    pairs = _pairs(args.pairs, args.size)
    n = len(pairs)
    result: dict = {
        "pairs": n,
        "size": args.size,
        "torch_threads": torch.get_num_threads(),
        "machine": platform.machine(),
        "ms_per_pair": {},
        "skipped": {},
    }
    ms = result["ms_per_pair"]
    ms["psnr"] = 1000 * _time(lambda: [psnr(r, f) for r, f in pairs], 1) / n
    ms["ssim"] = 1000 * _time(lambda: [ssim(r, f) for r, f in pairs], 1) / n
    ms["pr_hog_difference"] = (
        1000 * _time(lambda: [hog_difference(rgb_to_grey_u8(r), rgb_to_grey_u8(f)) for r, f in pairs], 1) / n
    )
    try:
        from cdan.metrics.acd import FaceEmbedder, content_distance

        emb = FaceEmbedder()
        ms["acd"] = 1000 * _time(lambda: [content_distance(emb, r, f) for r, f in pairs], 1) / n
    except CdanError as e:
        result["skipped"]["acd"] = str(e)
    try:
        model = build_lpips("vgg")
        reals, fakes = [r for r, _ in pairs], [f for _, f in pairs]
        ms["lpips_vgg"] = 1000 * _time(lambda: lpips_distance(model, reals, fakes), 1) / n
    except CdanError as e:
        result["skipped"]["lpips_vgg"] = str(e)
    try:
        inception = InceptionFeatureExtractor(find_inception_weights(None))
        ms["inception_features_per_image"] = 1000 * _time(lambda: inception([r for r, _ in pairs]), 1) / n
    except CdanError as e:
        result["skipped"]["inception"] = str(e)

    rng = np.random.default_rng(0)
    f1, f2 = rng.standard_normal((500, 2048)), rng.standard_normal((500, 2048)) + 0.1
    t = time.perf_counter()
    fid_sample = fid_from_features(f1, f2)
    result["fid_500x2048_sample_space_s"] = round(time.perf_counter() - t, 3)
    t = time.perf_counter()
    fid_stats = frechet_distance(*feature_statistics(f1), *feature_statistics(f2))
    result["fid_500x2048_statistics_s"] = round(time.perf_counter() - t, 3)
    result["fid_paths_rel_diff"] = abs(fid_sample - fid_stats) / fid_stats
    result["ms_per_pair"] = {k: round(v, 2) for k, v in ms.items()}
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
