"""The official CDAN objective as one object with a D phase and a G phase (DESIGN: "The official objective").

D step (every iteration):
    adv_d_weight * hinge(Df(x), Df(xrec.detach())) + au_d_weight * MSE(Dau(x), au)
G step (every num_iters-th iteration):
    rec_weight * (L1(xrec, x) + LPIPS(x, xrec)) + adv_g_weight * mean relu(1 - Df(xrec))
    + au_g_weight * MSE(Dau(M*x), au) [+ au_color_weight * MSE(Dau(colour), 0)]
    + tv_weight * TV(M*x) + mask_l1_weight * mean(M*x)
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ..config import LossConfig
from ..models.codec import CDANOutput


def hinge_d(logits_real: torch.Tensor, logits_fake: torch.Tensor) -> torch.Tensor:
    """0.5 * (mean relu(1 - real) + mean relu(1 + fake))."""
    return 0.5 * (F.relu(1.0 - logits_real).mean() + F.relu(1.0 + logits_fake).mean())


def tv_loss(x: torch.Tensor) -> torch.Tensor:
    """Squared-difference total variation, normalised per element and divided by batch (official TVLoss)."""
    n, c, h, w = x.shape
    dh = (x[:, :, 1:, :] - x[:, :, :-1, :]).pow(2).sum() / (c * (h - 1) * w)
    dw = (x[:, :, :, 1:] - x[:, :, :, :-1]).pow(2).sum() / (c * h * (w - 1))
    return (dh + dw) / n


class CDANLoss:
    """Computes both phases. `perceptual` is an LPIPS module (x, y -> [N,1,1,1]) or None."""

    def __init__(self, cfg: LossConfig, perceptual: torch.nn.Module | None = None):
        self.cfg = cfg
        self.perceptual = perceptual

    def d_loss(self, feature_dis, au_dis, real: torch.Tensor, xrec: torch.Tensor, au_target: torch.Tensor):
        """real, xrec: [N,3,R,R]; au_target: [N,K] (AU/5). Returns (total, {term: value})."""
        n = real.shape[0]
        logits = feature_dis(torch.cat([real, xrec.detach()]))  # one call: DDP-friendly, per-sample identical
        adv = hinge_d(logits[:n], logits[n:])
        au = F.mse_loss(au_dis(real).float(), au_target)
        total = self.cfg.adv_d_weight * adv + self.cfg.au_d_weight * au
        return total, {"d/adv": adv.detach(), "d/au": au.detach(), "d/total": total.detach()}

    def g_loss(self, feature_dis, au_dis, real: torch.Tensor, out: CDANOutput, au_target: torch.Tensor):
        """Generator phase on the forward output `out` of `real`. Returns (total, {term: value})."""
        c = self.cfg
        xrec = out.xrec.float()
        l1 = (xrec - real).abs().mean()
        rec = l1
        terms = {"g/l1": l1.detach()}
        if self.perceptual is not None:
            # Official: LPIPS fed images in [0,1] (its scaling layer assumes [-1,1]); kept for fidelity.
            lp = self.perceptual(real, xrec).mean()
            rec = rec + lp
            terms["g/lpips"] = lp.detach()
        adv = F.relu(1.0 - feature_dis(xrec).float()).mean()
        mask_input = out.mask_input.float()
        au = F.mse_loss(au_dis(mask_input).float(), au_target)
        tv = tv_loss(mask_input)
        sparse = mask_input.mean()
        total = c.rec_weight * rec + c.adv_g_weight * adv + c.au_g_weight * au
        total = total + c.tv_weight * tv + c.mask_l1_weight * sparse
        if c.au_color_weight:
            au_color = F.mse_loss(au_dis(out.color_map.float()).float(), torch.zeros_like(au_target))
            total = total + c.au_color_weight * au_color
            terms["g/au_color"] = au_color.detach()
        terms.update(
            {"g/rec": rec.detach(), "g/adv": adv.detach(), "g/au": au.detach(), "g/tv": tv.detach()}
            | {"g/mask_mean": sparse.detach(), "g/total": total.detach()}
        )
        return total, terms
