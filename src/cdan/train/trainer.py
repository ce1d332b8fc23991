"""The CDAN training loop: official objective, both discriminators learning, exact resume, DDP.

Run directory (`RUN`):
    config.json                    resolved Config + data and options
    checkpoints/step_N.safetensors model weights (G and both D) with the config as metadata
    checkpoints/step_N.state.pt    optimisers, step, epoch, sampler position, RNG states (weights_only readable)
    stats.jsonl                    one JSON line per log interval, every loss term
    samples/step_N.png             fixed grid: input | xrec | mask | mask*input | colour
    loss.png                       loss curves (at the end)
    tensorboard/                   when tensorboard is installed
"""

from __future__ import annotations

import contextlib
import json
import logging
import random
import re
import signal
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn

from ..config import Config, config_from_dict
from ..errors import CdanError
from ..models import build_model
from ..models.checkpoint import CKPT_RE, save_model
from ..utils import atomic_path, resolve_device, seed_everything, write_json_atomic
from .distributed import DistInfo, barrier, broadcast_flag, cleanup, init_distributed
from .losses import CDANLoss

log = logging.getLogger(__name__)


# ----------------------------------------------------------------------------------------------- data order
class EpochSampler:
    """Deterministic order: epoch e is randperm(n) seeded by (seed, e), split by rank, resumable mid-epoch.

    Each rank gets `n // world` indices per epoch (the remainder is dropped so ranks stay in step).
    """

    def __init__(self, n: int, seed: int, rank: int = 0, world: int = 1):
        if n < world:
            raise CdanError(f"only {n} training images for {world} processes")
        self.n, self.seed, self.rank, self.world = n, seed, rank, world
        self.per_rank = n // world

    def epoch_indices(self, epoch: int) -> list[int]:
        g = torch.Generator().manual_seed(self.seed * 100003 + epoch)
        perm = torch.randperm(self.n, generator=g)[: self.per_rank * self.world]
        return perm[self.rank :: self.world].tolist()


# ----------------------------------------------------------------------------------------------- helpers
def _rng_state() -> dict:
    np_state = np.random.get_state()
    return {
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        "numpy": [np_state[0], torch.from_numpy(np_state[1].astype(np.int64)), *map(float, np_state[2:])],
        "python": [random.getstate()[0], list(random.getstate()[1]), random.getstate()[2]],
    }


def _set_rng_state(state: dict) -> None:
    torch.set_rng_state(state["torch"])
    if state.get("cuda") and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
    name, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((name, keys.numpy().astype(np.uint32), int(pos), int(has_gauss), float(cached)))
    v, internal, gauss = state["python"]
    random.setstate((v, tuple(internal), gauss))


def list_checkpoints(run_dir: Path) -> list[tuple[int, Path]]:
    """(step, weights path) of complete checkpoints (weights + state), oldest first."""
    ckdir = run_dir / "checkpoints"
    out = []
    if ckdir.is_dir():
        for p in ckdir.iterdir():
            m = CKPT_RE.match(p.name)
            if m and p.with_suffix(".state.pt").is_file():
                out.append((int(m.group(1)), p))
    return sorted(out)


def next_run_dir(parent: Path, tag: str) -> Path:
    """`parent/NNNNN-tag` with NNNNN one more than the highest existing number."""
    parent.mkdir(parents=True, exist_ok=True)
    nums = [int(m.group(1)) for p in parent.iterdir() if (m := re.match(r"^(\d{5})-", p.name))]
    run = parent / f"{(max(nums) + 1 if nums else 0):05d}-{tag}"
    run.mkdir()
    return run


@dataclass
class TrainOptions:
    """Things that are not part of the model/objective config."""

    data: str = ""  # dataset folder (our layout, or crops + legacy pickle)
    pkl: str | None = None  # legacy pickle for the official layout
    device: str = "auto"  # auto, cpu, cuda, cuda:1, mps
    lpips_weights: str | None = None  # torchvision VGG16 weights for LPIPS
    progress: bool = True  # tqdm bar on stderr
    tensorboard: bool = True  # write TensorBoard events when installed
    time_limit: float | None = None  # seconds of training after which the run saves and stops ("time limit")
    extra: dict = field(default_factory=dict)


class _Generator(nn.Module):
    """The generator part of CDAN as its own module (shared parameters), so DDP can wrap G alone."""

    def __init__(self, model):
        super().__init__()
        object.__setattr__(self, "_cdan", model)  # not registered: D's parameters stay out of G's DDP
        self.parts = nn.ModuleList(
            [model.encoder, model.decoder1, model.decoder2, model.quant_conv, model.post_quant_conv]
        )

    def forward(self, x):
        return self._cdan(x)


class Trainer:
    """Trains one run. `Trainer(cfg, opts, run_dir).fit()`; use `Trainer.resume(run_dir)` to continue."""

    def __init__(self, cfg: Config, opts: TrainOptions, run_dir: Path, dist_info: DistInfo | None = None):
        from ..data import FaceAUDataset, load_dataset

        self.cfg, self.opts, self.run_dir = cfg, opts, Path(run_dir)
        self.device = resolve_device(opts.device)
        self.dist = dist_info or DistInfo()
        seed_everything(cfg.train.seed, self.dist.rank)

        index = load_dataset(opts.data, pkl=opts.pkl)
        train_records = [r for r in index.train if r.au is not None]
        if not train_records:
            raise CdanError(f"no training images with AUs in {opts.data}")
        if index.skipped:
            log.warning(
                "skipped %d images without AU rows (e.g. %s)", len(index.skipped), index.skipped[0][0]
            )
        if tuple(index.aus) != tuple(cfg.model.aus):
            raise CdanError(
                f"dataset AUs {','.join(index.aus)} differ from the model's {','.join(cfg.model.aus)} "
                f"(set model.aus to match)"
            )
        self.index = index
        size = cfg.model.resolution
        self.train_set = FaceAUDataset(train_records, size=size)
        sample_records = (index.test or train_records)[:4]
        self.sample_batch = torch.stack(
            [FaceAUDataset(sample_records, size=size)[i]["image"] for i in range(len(sample_records))]
        )
        self.sampler = EpochSampler(len(self.train_set), cfg.train.seed, self.dist.rank, self.dist.world_size)

        self.model = build_model(cfg).to(self.device)
        unused = self.model.official_unused_parameters()
        for p in unused:
            p.requires_grad_(False)  # never used by the official forward: no gradient, and DDP must not wait
        unused_ids = {id(p) for p in unused}
        self.g_params = [p for p in self.model.generator_parameters() if id(p) not in unused_ids]
        self.d_params = list(self.model.feature_dis.parameters()) + list(self.model.AU_dis.parameters())
        t = cfg.train
        self.opt_g = torch.optim.Adam(self.g_params, lr=t.lr, betas=(t.beta1, t.beta2))
        self.opt_d = torch.optim.Adam(self.d_params, lr=t.lr, betas=(t.beta1, t.beta2))

        perceptual = None
        if cfg.loss.perceptual == "lpips":
            from ..perceptual import load_lpips

            perceptual = load_lpips(cfg.loss.perceptual_net, opts.lpips_weights).to(self.device)
        self.loss = CDANLoss(cfg.loss, perceptual)

        self.g_forward: nn.Module = _Generator(self.model)
        self.feature_dis: nn.Module = self.model.feature_dis
        self.au_dis: nn.Module = self.model.AU_dis
        if self.dist.enabled:
            from torch.nn.parallel import DistributedDataParallel as DDP

            ids = [self.device.index] if self.device.type == "cuda" else None
            self.g_forward = DDP(self.g_forward, device_ids=ids)
            self.feature_dis = DDP(self.model.feature_dis, device_ids=ids)
            self.au_dis = DDP(self.model.AU_dis, device_ids=ids)

        amp = t.amp if t.amp != "auto" else ("bf16" if self.device.type == "cuda" else "none")
        self.autocast_dtype = torch.bfloat16 if amp == "bf16" else None

        self.step = 0  # iterations done
        self.epoch = 0
        self.pos = 0  # position inside the epoch's index list
        self.bad_steps = 0
        self.total_steps = (
            t.steps if t.steps > 0 else t.epochs * max(1, self.sampler.per_rank // t.batch_size)
        )
        self._stop = False
        self.tb = None
        self.always_build_graph = False  # benchmarks only: build G's graph on D-only iterations too

    # ------------------------------------------------------------------------------------------- run dir
    @classmethod
    def create(
        cls, cfg: Config, opts: TrainOptions, out_parent: Path, dist_info: DistInfo | None = None
    ) -> Trainer:
        info = dist_info or DistInfo()
        run = None
        if info.is_main:
            tag = f"{cfg.preset}-{Path(opts.data).name or 'data'}"
            run = next_run_dir(Path(out_parent), re.sub(r"[^A-Za-z0-9_.-]+", "_", tag))
        if info.enabled:
            import torch.distributed as dist

            holder = [str(run) if run else None]
            dist.broadcast_object_list(holder, src=0)
            run = Path(holder[0])
        trainer = cls(cfg, opts, run, info)
        if info.is_main:
            write_json_atomic(
                run / "config.json",
                {
                    "config": cfg.to_dict(),
                    "options": {k: v for k, v in vars(opts).items()},
                    "world_size": info.world_size,
                },
            )
        return trainer

    @classmethod
    def resume(cls, run_dir: Path, overrides: dict | None = None, dist_info: DistInfo | None = None,
               device: str | None = None, progress: bool = True) -> Trainer:  # fmt: skip
        run_dir = Path(run_dir)
        cfg_path = run_dir / "config.json"
        if not cfg_path.is_file():
            raise CdanError(f"{run_dir} is not a cdan run directory (no config.json)")
        stored = json.loads(cfg_path.read_text())
        cfg_dict = stored["config"]
        if overrides:
            for section, values in overrides.items():
                cfg_dict.setdefault(section, {}).update(values)
        cfg = config_from_dict(cfg_dict)
        opts = TrainOptions(**stored["options"])
        if device:
            opts.device = device
        opts.progress = progress
        trainer = cls(cfg, opts, run_dir, dist_info)
        ckpts = list_checkpoints(run_dir)
        if ckpts:
            trainer.load_checkpoint(ckpts[-1][1])
        else:
            log.warning("no checkpoint in %s: starting from step 0", run_dir)
        return trainer

    # ------------------------------------------------------------------------------------------- checkpoints
    def save_checkpoint(self) -> Path | None:
        if not self.dist.is_main:
            return None
        ckdir = self.run_dir / "checkpoints"
        ckdir.mkdir(parents=True, exist_ok=True)
        weights = ckdir / f"step_{self.step:07d}.safetensors"
        state = {
            "step": self.step,
            "epoch": self.epoch,
            "pos": self.pos,
            "bad_steps": self.bad_steps,
            "opt_g": self.opt_g.state_dict(),
            "opt_d": self.opt_d.state_dict(),
            "rng": _rng_state(),
            "world_size": self.dist.world_size,
        }
        with atomic_path(weights.with_suffix(".state.pt")) as tmp:
            torch.save(state, tmp)
        self.model.run_config = self.cfg
        save_model(self.model, weights, extra={"step": self.step, "epoch": self.epoch})
        # Keep the last `keep_last`, and always the step-0 checkpoint (the untrained baseline for comparisons).
        for _, old in [c for c in list_checkpoints(self.run_dir) if c[0] > 0][: -self.cfg.train.keep_last]:
            old.unlink(missing_ok=True)
            old.with_suffix(".state.pt").unlink(missing_ok=True)
        log.info("saved %s", weights)
        return weights

    def load_checkpoint(self, weights: Path) -> None:
        from safetensors.torch import load_file

        self.model.load_state_dict(load_file(str(weights), device=str(self.device)), strict=True)
        state = torch.load(weights.with_suffix(".state.pt"), map_location=self.device, weights_only=True)
        self.opt_g.load_state_dict(state["opt_g"])
        self.opt_d.load_state_dict(state["opt_d"])
        self.step, self.epoch, self.pos = state["step"], state["epoch"], state["pos"]
        self.bad_steps = state.get("bad_steps", 0)
        if state.get("world_size", 1) == self.dist.world_size:
            _set_rng_state(state["rng"])
        else:
            log.warning("resuming with a different number of processes: data order changes")
        log.info("resumed from %s (step %d, epoch %d)", weights, self.step, self.epoch)

    # ------------------------------------------------------------------------------------------- loop
    def _batches(self):
        """Yield (x, au) batches forever from (epoch, pos), keeping self.epoch/self.pos current."""
        bs = self.cfg.train.batch_size
        while True:
            order = self.sampler.epoch_indices(self.epoch)
            if len(order) < bs:
                raise CdanError(
                    f"batch size {bs} is larger than the training split per process ({len(order)})"
                )
            while self.pos + bs <= len(order):
                items = [self.train_set[i] for i in order[self.pos : self.pos + bs]]
                self.pos += bs
                yield (
                    torch.stack([it["image"] for it in items]).to(self.device),
                    torch.stack([it["au"] for it in items]).to(self.device),
                )
            self.epoch += 1
            self.pos = 0

    def _autocast(self):
        if self.autocast_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(device_type=self.device.type, dtype=self.autocast_dtype)

    def train_step(self, x: torch.Tensor, au: torch.Tensor) -> dict[str, float] | None:
        """One iteration: a D step, and a G step when step % num_iters == 0. None if the loss was non-finite."""
        g_step = self.step % self.cfg.train.num_iters == 0
        self.model.train()
        with self._autocast(), torch.set_grad_enabled(g_step or self.always_build_graph):
            out = self.g_forward(x)  # no graph on D-only iterations
        # D phase
        for p in self.d_params:
            p.requires_grad_(True)
        with self._autocast():
            d_total, terms = self.loss.d_loss(self.feature_dis, self.au_dis, x, out.xrec.detach(), au)
        if not torch.isfinite(d_total):
            return None
        self.opt_d.zero_grad(set_to_none=True)
        d_total.backward()
        self.opt_d.step()
        if g_step:  # G phase: D frozen, called without its DDP wrapper (no D update here)
            for p in self.d_params:
                p.requires_grad_(False)
            with self._autocast():
                g_total, g_terms = self.loss.g_loss(self.model.feature_dis, self.model.AU_dis, x, out, au)
            for p in self.d_params:
                p.requires_grad_(True)
            if not torch.isfinite(g_total):
                return None
            self.opt_g.zero_grad(set_to_none=True)
            g_total.backward()
            self.opt_g.step()
            terms.update(g_terms)
        return {k: float(v) for k, v in terms.items()}

    def _install_signals(self):
        def handler(signum, _frame):
            log.warning("signal %d: saving a checkpoint and stopping", signum)
            self._stop = True

        old = {}
        with contextlib.suppress(ValueError):  # not in the main thread
            for s in (signal.SIGINT, signal.SIGTERM):
                old[s] = signal.signal(s, handler)
        return old

    def fit(self, max_steps: int | None = None) -> dict:
        """Train until total_steps (or `max_steps` more iterations). Returns a summary dict."""
        t = self.cfg.train
        end = self.total_steps if max_steps is None else min(self.total_steps, self.step + max_steps)
        old_handlers = self._install_signals()
        stats_path = self.run_dir / "stats.jsonl"
        if self.dist.is_main and self.opts.tensorboard:
            with contextlib.suppress(Exception):
                from torch.utils.tensorboard import SummaryWriter

                self.tb = SummaryWriter(str(self.run_dir / "tensorboard"))
        bar = None
        if self.opts.progress and self.dist.is_main:
            from tqdm import tqdm

            bar = tqdm(total=end, initial=self.step, desc="train", unit="it", dynamic_ncols=True)
        acc: dict[str, list[float]] = {}
        t_log, n_img = time.perf_counter(), 0
        status = "done"
        if self.step == 0 and self.dist.is_main:
            self.save_checkpoint()  # step 0: the "first checkpoint" the demo compares against
            self.save_samples()
        batches = self._batches()
        limit, t_start, start_step = self.opts.time_limit, time.perf_counter(), self.step
        try:
            while self.step < end:
                x, au = next(batches)
                terms = self.train_step(x, au)
                self.step += 1
                n_img += x.shape[0] * self.dist.world_size
                if terms is None:
                    self.bad_steps += 1
                    log.warning(
                        "non-finite loss at step %d: step skipped (%d in a row)", self.step, self.bad_steps
                    )
                    if self.bad_steps >= t.max_bad_steps:
                        status = "diverged"
                        break
                else:
                    self.bad_steps = 0
                    for k, v in terms.items():
                        acc.setdefault(k, []).append(v)
                if self.step % t.log_every == 0 or self.step == end:
                    dt = time.perf_counter() - t_log
                    row = {"step": self.step, "epoch": self.epoch, "img_per_s": n_img / max(dt, 1e-9)}
                    row |= {k: float(np.mean(v)) for k, v in acc.items()}
                    if self.dist.is_main:
                        with open(stats_path, "a") as f:
                            f.write(json.dumps(row) + "\n")
                        if self.tb is not None:
                            for k, v in row.items():
                                self.tb.add_scalar(k, v, self.step)
                    if bar is not None:
                        short = {
                            k.split("/")[0][0] + k.split("/")[1][:3]: f"{v:.3g}"
                            for k, v in row.items()
                            if "/" in k and k.endswith(("total", "adv", "au", "l1"))
                        }
                        bar.set_postfix(short | {"img/s": f"{row['img_per_s']:.1f}"}, refresh=False)
                    acc, t_log, n_img = {}, time.perf_counter(), 0
                if bar is not None:
                    if limit is not None:  # a time budget: the bar's total is what fits in the time left
                        elapsed = time.perf_counter() - t_start
                        done = self.step - start_step
                        bar.total = min(end, self.step + int(done / elapsed * max(0.0, limit - elapsed)) + 1)
                    bar.update(1)
                if self.step % t.sample_every == 0 and self.dist.is_main:
                    self.save_samples()
                out_of_time = limit is not None and time.perf_counter() - t_start > limit
                stop = broadcast_flag(self._stop or out_of_time, self.dist, self.device)
                if self.step % t.ckpt_every == 0 or stop:
                    self.save_checkpoint()
                if stop:
                    status = "time limit" if out_of_time and not self._stop else "interrupted"
                    break
        finally:
            if bar is not None:
                bar.close()
            for s, h in old_handlers.items():
                signal.signal(s, h)
        if not list_checkpoints(self.run_dir) or list_checkpoints(self.run_dir)[-1][0] != self.step:
            self.save_checkpoint()
        if self.dist.is_main:
            self.save_samples()
            with contextlib.suppress(Exception):
                from ..report.plots import save_loss_curves

                save_loss_curves(stats_path, self.run_dir / "loss.png")
            if self.tb is not None:
                self.tb.close()
        barrier(self.dist)
        return {"run": str(self.run_dir), "step": self.step, "epoch": self.epoch, "status": status}

    @torch.no_grad()
    def save_samples(self) -> Path | None:
        """Grid for the fixed sample images: rows input | xrec | mask | mask*input | colour."""
        from torchvision.utils import save_image

        if not self.dist.is_main or len(self.sample_batch) == 0:
            return None
        was_training = self.model.training
        self.model.eval()
        x = self.sample_batch.to(self.device)
        out = self.model(x)
        rows = [x, out.xrec, out.mask_map.expand_as(x), out.mask_input, (out.color_map + 1) / 2]
        grid = torch.cat([r.float().clamp(0, 1).cpu() for r in rows])
        path = self.run_dir / "samples" / f"step_{self.step:07d}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        with atomic_path(path) as tmp:
            save_image(grid, str(tmp), nrow=len(x), padding=2, format="png")
        self.model.train(was_training)
        return path


def run_training(cfg: Config, opts: TrainOptions, out_parent: Path | None, resume: Path | None,
                 steps_override: int | None = None) -> dict:  # fmt: skip
    """CLI entry: starts DDP when under torchrun, trains, cleans up. Returns the summary."""
    device = resolve_device(opts.device)
    info = init_distributed(device.type)
    if info.enabled and device.type == "cuda":
        opts.device = f"cuda:{info.local_rank}"
    try:
        if resume is not None:
            over = {"train": {"steps": steps_override}} if steps_override else None
            trainer = Trainer.resume(resume, over, info, device=opts.device, progress=opts.progress)
        else:
            trainer = Trainer.create(cfg, opts, out_parent or Path("runs"), info)
        summary = trainer.fit()
        summary["world_size"] = info.world_size
        summary["total_steps"] = trainer.total_steps
        return summary
    finally:
        cleanup(info)
