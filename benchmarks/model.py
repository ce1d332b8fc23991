"""Model speed on this machine, per preset, against a plain conv stack measured in the same run.

Prints one JSON object: per preset the parameter count, GFLOP per image (torch's flop counter), forward and
forward+backward images/s at batch 4, achieved GFLOP/s, and its fraction of the ceiling: a plain stack of
3x3 convolutions at the paper's widths and resolutions (128@112, 256@56, 256@28, 512@14), no norms or
activations, in the faster of the two memory layouts: the best this machine does on this kind of
work. The model's forward is timed in its inference layout (channels_last, as `cdan rec` runs it) and in
the default layout.

    python benchmarks/model.py [--presets paper,small,tiny] [--batch 4] [--repeats 3]
"""

from __future__ import annotations

import argparse
import json
import platform
import time

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from cdan.models import build_model
from cdan.models.layout import inference_layout

LAYOUTS = {"contiguous": torch.contiguous_format, "channels_last": torch.channels_last}


def count_flops(fn) -> float:
    with FlopCounterMode(display=False) as counter:
        fn()
    return float(counter.get_total_flops())


def best_time(fn, repeats: int) -> float:
    fn()  # warm-up
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def conv_ceiling(batch: int, repeats: int) -> dict:
    """GFLOP/s of a plain conv3x3 stack at the paper's level widths/resolutions, best of both memory layouts."""
    levels = [(128, 112), (256, 56), (256, 28), (512, 14)]
    best: dict = {}
    for layout, fmt in LAYOUTS.items():
        stacks = [
            (
                nn.Sequential(*[nn.Conv2d(c, c, 3, 1, 1) for _ in range(4)]).eval().to(memory_format=fmt),
                torch.rand(batch, c, r, r).contiguous(memory_format=fmt),
            )
            for c, r in levels
        ]

        def run(stacks=stacks):
            with torch.no_grad():
                for net, x in stacks:
                    net(x)

        flops = count_flops(run)
        t = best_time(run, repeats)
        if not best or flops / t / 1e9 > best["gflops_per_s"]:
            best = {"gflop": flops / 1e9, "seconds": t, "gflops_per_s": flops / t / 1e9, "layout": layout}
    return best


def bench_preset(preset: str, batch: int, repeats: int, ceiling: float) -> dict:
    torch.manual_seed(0)
    model = build_model(preset)
    r = model.config.resolution
    x = torch.rand(batch, 3, r, r)
    g_params = sum(p.numel() for p in model.generator_parameters())
    total = sum(p.numel() for p in model.parameters())

    def fwd():
        with torch.no_grad():
            model(x)

    def fwd_bwd():
        out = model(x)
        (out.xrec.mean() + out.mask_map.mean()).backward()
        model.zero_grad(set_to_none=True)

    model.eval()
    flops_fwd = count_flops(fwd)
    t_fwd_default = best_time(fwd, repeats)
    inference_layout(model)  # what `cdan rec` / `patterns` use
    t_fwd = best_time(fwd, repeats)
    model.to(memory_format=torch.contiguous_format)  # training keeps the default layout
    model.train()
    flops_fb = count_flops(fwd_bwd)
    t_fb = best_time(fwd_bwd, max(1, repeats - 1))
    achieved = flops_fwd / t_fwd / 1e9
    return {
        "params": total,
        "params_generator": g_params,
        "gflop_per_image": flops_fwd / batch / 1e9,
        "forward_img_per_s": batch / t_fwd,  # inference layout (channels_last)
        "forward_img_per_s_default_layout": batch / t_fwd_default,
        "forward_backward_img_per_s": batch / t_fb,
        "forward_gflops_per_s": achieved,
        "forward_backward_gflops_per_s": flops_fb / t_fb / 1e9,
        "forward_fraction_of_ceiling": achieved / ceiling,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--presets", default="paper,small,tiny")
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument(
        "--rounds", type=int, default=2, help="ceiling and presets are measured alternately, best kept"
    )
    args = ap.parse_args()
    presets = args.presets.split(",")
    best_ceiling: dict | None = None
    results: dict[str, dict] = {}
    for _ in range(args.rounds):  # interleaved, so background load hits both sides alike
        c = conv_ceiling(args.batch, args.repeats)
        if best_ceiling is None or c["gflops_per_s"] > best_ceiling["gflops_per_s"]:
            best_ceiling = c
        for preset in presets:
            r = bench_preset(preset, args.batch, args.repeats, 1.0)
            old = results.get(preset)
            results[preset] = (
                r if old is None else {k: max(v, old[k]) if "per_s" in k else v for k, v in r.items()}
            )
    ceiling = best_ceiling["gflops_per_s"]
    for r in results.values():
        r["forward_fraction_of_ceiling"] = r["forward_gflops_per_s"] / ceiling
    out = {
        "machine": {
            "cpu": platform.processor() or platform.machine(),
            "threads": torch.get_num_threads(),
            "torch": torch.__version__,
        },
        "batch": args.batch,
        "ceiling_conv_stack": best_ceiling,
        "presets": results,
    }
    paper, small = results.get("paper"), results.get("small")
    if paper and small:
        out["small_over_paper_flops"] = small["gflop_per_image"] / paper["gflop_per_image"]
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
