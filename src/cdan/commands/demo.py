"""`cdan demo`: the whole job on the embedded synthetic dataset, offline, within a time budget."""

from __future__ import annotations

import argparse
import json

NAME = "demo"
HELP = "run synth, prepare, train, rec, eval and patterns on synthetic faces and write report.html"
ORDER = 5


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--out", default="demo_out", help="output folder (resumes if it exists)")
    p.add_argument(
        "--minutes", type=float, default=10.0, help="time budget for the whole demo (training takes the rest)"
    )
    p.add_argument("--num", type=int, default=600, help="synthetic faces to draw")
    p.add_argument("--seed", type=int, default=0, help="random seed")
    p.add_argument("--preset", default="small", choices=["small", "tiny", "paper"], help="network preset")
    p.add_argument("--au-backend", default="auto", help="AU backend for prepare and ED")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda or mps")
    p.add_argument("--fresh", action="store_true", help="delete --out first instead of resuming")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.add_argument("--json", action="store_true", help="print the summary as JSON")


def run(args: argparse.Namespace) -> int:
    from ..demo import run_demo

    s = run_demo(args.out, minutes=args.minutes, num=args.num, seed=args.seed, preset=args.preset,
                 device=args.device, au_backend=args.au_backend, fresh=args.fresh, progress=not args.no_progress)  # fmt: skip
    if args.json:
        print(json.dumps(s, default=str))
        return 0
    c = s["comparison"]
    print(f"report: {s['out']}/report.html")
    print(
        f"trained {s['train']['step']} steps in {s['timings_s']['train']:.0f} s; total {s['timings_s']['total']:.0f} s"
    )
    for key in ("psnr", "ssim", "ed", "acd", "pr"):
        v = c[key]
        if v["change"] is not None:
            print(f"{key.upper():5s} first {v['first']:.4f}  last {v['last']:.4f}  change {v['change']:+.4f}")
    print(
        "learned: yes"
        if s["learned"]
        else "learned: NO (last checkpoint does not beat the first on PSNR and ED)"
    )
    return 0
