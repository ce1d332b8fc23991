"""Training speed and peak memory per preset on this machine.

For each preset it runs a few training iterations in a fresh process (so peak RSS is that run's own) twice:
`lazy` (ours: on iterations without a G update, G's forward builds no graph) and `always_graph` (G's graph
built every iteration, as the official trainer does). Prints one JSON object.

    python benchmarks/train.py [--presets small,tiny] [--steps 6] [--batch 4]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile

CHILD = r"""
import json, resource, sys, time
import numpy as np, torch
from cdan.aus import SIX_AUS
from cdan.config import get_config
from cdan.data.layout import DatasetWriter
from cdan.train.trainer import Trainer, TrainOptions
preset, steps, batch, variant, tmp = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4], sys.argv[5]
rng = np.random.default_rng(0)
w = DatasetWriter(tmp + "/data", SIX_AUS, "bench", {})
for i in range(max(16, 2 * batch)):
    w.add(f"i{i}", rng.integers(0, 255, (112, 112, 3), dtype=np.uint8), rng.uniform(0, 5, 6), source=f"{i}")
w.close(test_fraction=0.0)
cfg = get_config(preset, {"train": {"batch_size": batch, "steps": 10**6, "log_every": 10**6,
                                    "ckpt_every": 10**6, "sample_every": 10**6}, "loss": {"perceptual": "none"}})
tr = Trainer(cfg, TrainOptions(data=tmp + "/data", progress=False, tensorboard=False), tmp + "/run")
tr.always_build_graph = variant == "always_graph"
batches = tr._batches()
x, au = next(batches)
tr.train_step(x, au); tr.step += 1; tr.train_step(x, au); tr.step += 1  # warm-up: one G and one D-only step
t0 = time.perf_counter()
for _ in range(steps):
    tr.train_step(x, au)
    tr.step += 1
dt = time.perf_counter() - t0
print(json.dumps({"img_per_s": steps * batch / dt, "seconds_per_iter": dt / steps,
                  "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--presets", default="small,tiny")
    ap.add_argument("--steps", type=int, default=6, help="timed iterations (even: half have a G step)")
    ap.add_argument("--batch", type=int, default=4)
    args = ap.parse_args()
    out: dict = {"batch": args.batch, "steps": args.steps, "perceptual": "none", "presets": {}}
    for preset in args.presets.split(","):
        res = {}
        for variant in ("lazy", "always_graph"):
            with tempfile.TemporaryDirectory() as tmp:
                cmd = [sys.executable, "-c", CHILD, preset, str(args.steps), str(args.batch), variant, tmp]
                proc = subprocess.run(cmd, capture_output=True, text=True, check=True)
                res[variant] = json.loads(proc.stdout.strip().splitlines()[-1])
        res["speedup_lazy_over_always"] = res["lazy"]["img_per_s"] / res["always_graph"]["img_per_s"]
        res["memory_saving_mb"] = res["always_graph"]["peak_rss_mb"] - res["lazy"]["peak_rss_mb"]
        out["presets"][preset] = res
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    sys.exit(main())
