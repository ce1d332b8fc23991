"""Procedural synthetic faces with known AU intensities: the embedded default dataset (`cdan synth`).

Each face is drawn at 2-3x the output size with anti-aliased OpenCV shapes and analytic soft masks, shaded,
then area-downsampled. Identity (face shape, skin tone, eye spacing/size, nose, mouth, hair colour and
style, ears, clothes, background, lighting) comes from `sample_identity(rng)`; the expression from a dict of
AU intensities on OpenFace's 0-5 scale. Everything random takes an explicit generator, so the same seed gives
the same pixels.

What each AU does to the drawing (a = intensity / 5):
    AU01 inner brow raiser   inner brow ends up (oblique brows), central forehead lines
    AU02 outer brow raiser   outer brow ends up, lateral forehead lines
    AU04 brow lowerer        brows down and drawn together, vertical lines between the brows
    AU05 upper lid raiser    upper lid up (white above the iris)
    AU06 cheek raiser        lower lid and cheeks up (eyes narrow from below), crow's feet, deeper folds
    AU07 lid tightener       both lids narrowed, lower lid straightened and darker
    AU09 nose wrinkler       wrinkles across the nose bridge, nostrils up, inner brows down a little
    AU10 upper lip raiser    upper lip up (upper teeth may show), deeper nasolabial folds
    AU12 lip corner puller   mouth corners up and out (smile), deeper nasolabial folds
    AU14 dimpler             corners tightened inward, dimples beside them
    AU15 lip corner depress. mouth corners down
    AU17 chin raiser         lower lip pushed up, chin boss and crease below the lip
    AU20 lip stretcher       mouth wider and flatter, lips thinner
    AU23 lip tightener       lips narrowed (less red), mouth slightly narrower
    AU25 lips part           lips apart: dark mouth interior and teeth
    AU26 jaw drop            mouth opens wider and the chin moves down
    AU45 blink               both eyes closed
All 17 OpenFace intensity AUs have an effect; with `--aus six` only the six official AUs are drawn (the
others stay 0), so the stored AUs describe the whole expression.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from functools import lru_cache

import numpy as np

from ..aus import ALL_AUS, SIX_AUS

log = logging.getLogger(__name__)

__all__ = [
    "EXPRESSIONS",
    "face_name",
    "write_synthetic_dataset",
    "Identity",
    "expression_classes",
    "sample_expression",
    "sample_identity",
    "synth_face",
]

_SHIFT = 4  # sub-pixel bits for OpenCV drawing
_ONE = float(1 << _SHIFT)

# ---------------------------------------------------------------------------------------------------------
# Identity
# ---------------------------------------------------------------------------------------------------------

# Skin tones from light to dark (sRGB, 0-1); identities interpolate between neighbours.
_SKIN_TONES = np.array(
    [
        [0.98, 0.85, 0.76],
        [0.93, 0.76, 0.64],
        [0.86, 0.65, 0.50],
        [0.74, 0.53, 0.38],
        [0.58, 0.39, 0.26],
        [0.42, 0.27, 0.18],
        [0.30, 0.19, 0.13],
    ],
    dtype=np.float32,
)
_HAIR_COLOURS = np.array(
    [
        [0.06, 0.05, 0.05],  # black
        [0.17, 0.11, 0.07],  # dark brown
        [0.33, 0.21, 0.12],  # brown
        [0.50, 0.27, 0.13],  # auburn
        [0.70, 0.55, 0.33],  # dark blonde
        [0.86, 0.74, 0.50],  # blonde
        [0.62, 0.60, 0.58],  # grey
    ],
    dtype=np.float32,
)
_IRIS_COLOURS = np.array(
    [
        [0.22, 0.13, 0.07],  # dark brown
        [0.36, 0.22, 0.10],  # brown
        [0.42, 0.38, 0.20],  # hazel
        [0.28, 0.42, 0.30],  # green
        [0.30, 0.45, 0.62],  # blue
        [0.45, 0.50, 0.55],  # grey
    ],
    dtype=np.float32,
)
HAIR_STYLES = ("short", "fringe", "long", "buzz")


@dataclass(frozen=True)
class Identity:
    """Everything that stays fixed for one synthetic person. Lengths are fractions of the image side;
    `fw`/`fh` are the face half-width/half-height; other sizes are relative to them as named."""

    cx: float  # face centre x
    cy: float  # face centre y
    fw: float  # face half-width
    fh: float  # face half-height (chin to skull top)
    jaw: float  # lower-face narrowing (0.55 pointed ... 0.9 square)
    skin: tuple[float, float, float]  # base skin colour (RGB 0-1)
    blush: float  # cheek redness 0-1
    eye_y: float  # eye line, fraction of face height from the top
    eye_sep: float  # half the distance between eye centres / fw
    eye_w: float  # half eye width / fw
    eye_open: float  # upper lid opening / eye half-width
    eye_tilt: float  # outer-corner lift / eye half-width
    iris: tuple[float, float, float]
    brow_gap: float  # brow height above the eye centre / eye half-width
    brow_thick: float  # brow thickness / fh
    brow_arch: float  # arch height / eye half-width
    brow_colour: tuple[float, float, float]
    nose_y: float  # nose tip, fraction of face height from the top
    nose_w: float  # nostril half-width / fw
    mouth_y: float  # lip line, fraction of face height from the top
    mouth_w: float  # mouth half-width / fw
    lip_upper: float  # upper lip thickness / face height
    lip_lower: float  # lower lip thickness / face height
    lip_colour: tuple[float, float, float]
    hair_colour: tuple[float, float, float]
    hair_style: str  # one of HAIR_STYLES
    hairline: float  # hairline height, fraction of face height from the top
    hair_volume: float  # how far hair extends beyond the skull (fraction of fw)
    ear_size: float  # ear half-height / fh
    neck_w: float  # neck half-width / fw
    clothes: tuple[float, float, float]
    bg_top: tuple[float, float, float]
    bg_bottom: tuple[float, float, float]
    light: float  # horizontal light direction -1 (from the left) ... 1
    fold_depth: float  # nasolabial fold strength at rest (age) 0-1
    texture_seed: int  # hair strands and skin texture

    def to_dict(self) -> dict:
        return asdict(self)


def _tuple3(v: np.ndarray) -> tuple[float, float, float]:
    v = np.clip(v, 0.0, 1.0)
    return (round(float(v[0]), 4), round(float(v[1]), 4), round(float(v[2]), 4))


def _pick_colour(rng: np.random.Generator, table: np.ndarray, jitter: float) -> np.ndarray:
    t = rng.uniform(0, len(table) - 1)
    i = min(int(t), len(table) - 2)
    c = table[i] * (1 - (t - i)) + table[i + 1] * (t - i)
    return c * (1 + rng.normal(0, jitter, 3).astype(np.float32))


def sample_identity(rng: np.random.Generator) -> Identity:
    """Draw one synthetic person (see Identity for the fields and their ranges)."""
    u = rng.uniform
    skin = _pick_colour(rng, _SKIN_TONES, 0.025)
    hair_idx = int(rng.choice(len(_HAIR_COLOURS), p=[0.26, 0.24, 0.16, 0.08, 0.09, 0.07, 0.10]))
    hair = _HAIR_COLOURS[hair_idx] * (1 + rng.normal(0, 0.06, 3).astype(np.float32))
    brow = hair * 0.8 if hair_idx < 4 else hair * 0.55 + skin * 0.1  # light hair: darker brows
    lip = skin * np.array([0.92, 0.62, 0.62], np.float32) + np.array([0.05, 0.0, 0.02], np.float32)
    lip = lip * u(0.85, 1.05)
    style = str(rng.choice(HAIR_STYLES, p=[0.35, 0.25, 0.3, 0.1]))
    bg_base = rng.uniform(0.15, 0.9, 3).astype(np.float32)
    bg_base = bg_base * 0.6 + bg_base.mean() * 0.4  # muted
    fw = u(0.255, 0.29)
    return Identity(
        cx=round(0.5 + u(-0.008, 0.008), 4),
        cy=round(u(0.47, 0.49), 4),
        fw=round(fw, 4),
        fh=round(fw * u(1.22, 1.40), 4),
        jaw=round(u(0.55, 0.88), 4),
        skin=_tuple3(skin),
        blush=round(u(0.0, 1.0), 4),
        eye_y=round(u(0.455, 0.49), 4),
        eye_sep=round(u(0.41, 0.48), 4),
        eye_w=round(u(0.18, 0.215), 4),
        eye_open=round(u(0.36, 0.48), 4),
        eye_tilt=round(u(-0.06, 0.14), 4),
        iris=_tuple3(_pick_colour(rng, _IRIS_COLOURS, 0.05)),
        brow_gap=round(u(0.95, 1.25), 4),
        brow_thick=round(u(0.03, 0.05), 4),
        brow_arch=round(u(0.12, 0.3), 4),
        brow_colour=_tuple3(brow),
        nose_y=round(u(0.68, 0.72), 4),
        nose_w=round(u(0.17, 0.23), 4),
        mouth_y=round(u(0.815, 0.845), 4),
        mouth_w=round(u(0.34, 0.42), 4),
        lip_upper=round(u(0.022, 0.032), 4),
        lip_lower=round(u(0.03, 0.044), 4),
        lip_colour=_tuple3(lip),
        hair_colour=_tuple3(hair),
        hair_style=style,
        hairline=round(u(0.14, 0.22) if style != "fringe" else u(0.27, 0.31), 4),
        hair_volume=round(u(0.04, 0.16), 4),
        ear_size=round(u(0.15, 0.19), 4),
        neck_w=round(u(0.48, 0.6), 4),
        clothes=_tuple3(rng.uniform(0.08, 0.85, 3)),
        bg_top=_tuple3(bg_base * u(1.0, 1.2)),
        bg_bottom=_tuple3(bg_base * u(0.7, 1.0)),
        light=round(u(-1.0, 1.0), 4),
        fold_depth=round(u(0.0, 1.0), 4),
        texture_seed=int(rng.integers(0, 2**31 - 1)),
    )


# ---------------------------------------------------------------------------------------------------------
# Expressions
# ---------------------------------------------------------------------------------------------------------

# Prototypical AU patterns (0-5) per expression class, from FACS/EMFACS descriptions.
# Each entry: AU -> (mean intensity, probability that the AU takes part).
EXPRESSIONS: dict[str, dict[str, tuple[float, float]]] = {
    "neutral": {},
    "happy": {"AU06": (2.8, 1.0), "AU12": (3.6, 1.0), "AU25": (2.2, 0.5), "AU07": (1.0, 0.3), "AU26": (1.2, 0.2)},
    "sad": {"AU01": (3.0, 1.0), "AU04": (2.2, 1.0), "AU15": (3.0, 1.0), "AU17": (1.8, 0.6), "AU06": (0.8, 0.2)},
    "surprise": {"AU01": (3.4, 1.0), "AU02": (3.2, 1.0), "AU05": (2.8, 0.9), "AU25": (3.2, 1.0), "AU26": (3.0, 0.9)},
    "angry": {"AU04": (3.8, 1.0), "AU07": (3.0, 1.0), "AU23": (2.6, 0.8), "AU05": (1.2, 0.3), "AU17": (1.5, 0.4)},
    "disgust": {"AU09": (3.2, 1.0), "AU10": (2.8, 1.0), "AU04": (1.6, 0.7), "AU15": (1.4, 0.5), "AU17": (1.4, 0.5)},
    "fear": {"AU01": (3.0, 1.0), "AU02": (2.4, 0.9), "AU04": (2.0, 0.9), "AU05": (3.0, 1.0), "AU20": (3.0, 1.0),
             "AU25": (2.6, 1.0), "AU26": (1.4, 0.4)},
}  # fmt: skip


def expression_classes(aus: Sequence[str]) -> tuple[str, ...]:
    """Expression classes for an AU set: neutral, happy, sad, surprise, angry; plus disgust and fear when
    their defining AUs (AU05, AU09, AU10, AU20) are drawn (e.g. `all`)."""
    base = ("neutral", "happy", "sad", "surprise", "angry")
    if {"AU05", "AU09", "AU10", "AU20"} <= set(aus):
        return (*base, "disgust", "fear")
    return base


def sample_expression(rng: np.random.Generator, label: str, aus: Sequence[str]) -> dict[str, float]:
    """AU intensities (0-5, two decimals like OpenFace) for one face of class `label`; AUs not in `aus` are 0.

    Prototype AUs get mean x overall strength (0.45-1.25) x per-AU jitter; other AUs mostly stay 0 and
    sometimes show a weak (< 1) activation.
    """
    proto = EXPRESSIONS[label]
    strength = rng.uniform(0.45, 1.25)
    out: dict[str, float] = {}
    for au in ALL_AUS:
        if au in proto:
            mean, prob = proto[au]
            v = mean * strength * rng.uniform(0.75, 1.25) if rng.random() < prob else 0.0
        else:
            v = rng.uniform(0.0, 0.9) if rng.random() < 0.12 else 0.0
        out[au] = round(float(np.clip(v, 0.0, 5.0)), 2) if au in aus else 0.0
    if out.get("AU45", 0.0) > 0 and label != "neutral":
        out["AU45"] = round(min(out["AU45"], 0.5), 2)  # keep eyes readable in expressive faces
    return out


# ---------------------------------------------------------------------------------------------------------
# Drawing helpers
# ---------------------------------------------------------------------------------------------------------


@lru_cache(maxsize=8)
def _grid(res: int) -> tuple[np.ndarray, np.ndarray]:
    c = (np.arange(res, dtype=np.float32) + 0.5) / res
    return c[None, :].repeat(res, 0), c[:, None].repeat(res, 1)


def _smoothstep(e0: float, e1: float, x: np.ndarray) -> np.ndarray:
    t = np.clip((x - e0) / (e1 - e0), 0.0, 1.0)
    return t * t * (3 - 2 * t)


class _Mask:
    """A soft mask (float32 0-1) that is non-zero only inside a box: `a` covers rows y0.., columns x0.."""

    __slots__ = ("y0", "x0", "a", "cv")

    def __init__(self, cv: _Canvas, y0: int, x0: int, a: np.ndarray):
        self.cv, self.y0, self.x0, self.a = cv, y0, x0, a

    @property
    def box(self) -> tuple[slice, slice]:
        return slice(self.y0, self.y0 + self.a.shape[0]), slice(self.x0, self.x0 + self.a.shape[1])

    def __mul__(self, other) -> _Mask:
        if isinstance(other, _Mask):
            y0, x0 = max(self.y0, other.y0), max(self.x0, other.x0)
            y1 = min(self.y0 + self.a.shape[0], other.y0 + other.a.shape[0])
            x1 = min(self.x0 + self.a.shape[1], other.x0 + other.a.shape[1])
            if y1 <= y0 or x1 <= x0:
                return _Mask(self.cv, 0, 0, np.zeros((0, 0), np.float32))
            a = self.a[y0 - self.y0 : y1 - self.y0, x0 - self.x0 : x1 - self.x0]
            b = other.a[y0 - other.y0 : y1 - other.y0, x0 - other.x0 : x1 - other.x0]
            return _Mask(self.cv, y0, x0, a * b)
        if isinstance(other, np.ndarray) and other.ndim == 2:
            return _Mask(self.cv, self.y0, self.x0, self.a * other[self.box])
        return _Mask(self.cv, self.y0, self.x0, self.a * np.float32(other))

    __rmul__ = __mul__

    def map(self, fn) -> _Mask:
        """Multiply by fn(x, y), evaluated on this mask's box only (x, y: normalised coordinates)."""
        ys, xs = self.box
        return _Mask(self.cv, self.y0, self.x0, self.a * fn(self.cv.x[ys, xs], self.cv.y[ys, xs]))


class _Canvas:
    """A float32 RGB [R,R,3] canvas in [0,1] with normalised (0-1) coordinates; shapes are drawn in boxes."""

    def __init__(self, res: int):
        import cv2

        self.cv2 = cv2
        self.res = res
        self.img = np.zeros((res, res, 3), np.float32)
        self.x, self.y = _grid(res)

    def _draw(self, lo: np.ndarray, hi: np.ndarray, margin: float, blur: float, draw) -> _Mask:
        """Draw with `draw(canvas_u8, offset_px)` inside the box [lo, hi] (normalised) grown by margin+blur."""
        sigma = max(blur * self.res, 0.3) if blur > 0 else 0.0
        pad = margin * self.res + 3 * sigma + 2
        x0, y0 = (max(0, int(math.floor(v * self.res - pad))) for v in lo)
        x1, y1 = (min(self.res, int(math.ceil(v * self.res + pad))) for v in hi)
        if x1 <= x0 or y1 <= y0:
            return _Mask(self, 0, 0, np.zeros((0, 0), np.float32))
        m = np.zeros((y1 - y0, x1 - x0), np.uint8)
        draw(m, np.array([x0, y0], np.float64))
        out = m.astype(np.float32) * np.float32(1 / 255)
        if sigma > 0:
            out = self.cv2.GaussianBlur(out, (0, 0), sigmaX=sigma, borderType=self.cv2.BORDER_CONSTANT)
        return _Mask(self, y0, x0, out)

    def _pts(self, pts: np.ndarray, off: np.ndarray) -> np.ndarray:
        px = np.asarray(pts, np.float64) * self.res - off
        return np.round(px * _ONE).astype(np.int32).reshape(-1, 1, 2)

    def poly(self, pts: np.ndarray, blur: float = 0.0) -> _Mask:
        pts = np.asarray(pts, np.float64)

        def draw(m, off):
            self.cv2.fillPoly(m, [self._pts(pts, off)], 255, lineType=self.cv2.LINE_AA, shift=_SHIFT)

        return self._draw(pts.min(0), pts.max(0), 0.0, blur, draw)

    def stroke(self, pts: np.ndarray, width: float, blur: float = 0.0) -> _Mask:
        pts = np.asarray(pts, np.float64)
        th = max(1, int(round(width * self.res)))

        def draw(m, off):
            self.cv2.polylines(
                m, [self._pts(pts, off)], False, 255, thickness=th, lineType=self.cv2.LINE_AA, shift=_SHIFT
            )

        return self._draw(pts.min(0), pts.max(0), width, blur, draw)

    def ellipse(
        self, cx: float, cy: float, ax: float, ay: float, angle: float = 0.0, blur: float = 0.0
    ) -> _Mask:
        r = max(ax, ay)

        def draw(m, off):
            c = (int(round((cx * self.res - off[0]) * _ONE)), int(round((cy * self.res - off[1]) * _ONE)))
            a = (max(1, int(round(ax * self.res * _ONE))), max(1, int(round(ay * self.res * _ONE))))
            self.cv2.ellipse(m, c, a, angle, 0, 360, 255, -1, lineType=self.cv2.LINE_AA, shift=_SHIFT)

        return self._draw(np.array([cx - r, cy - r]), np.array([cx + r, cy + r]), 0.0, blur, draw)

    def _split(self, mask):
        if isinstance(mask, _Mask):
            return mask.box, mask.a
        return (slice(None), slice(None)), mask

    def paint(self, mask, colour, alpha: float = 1.0) -> None:
        """Blend `colour` (RGB, or a full-canvas [R,R,3] field) over the canvas with opacity mask*alpha."""
        box, m = self._split(mask)
        if m.size == 0:
            return
        col = np.asarray(colour, np.float32)
        if col.ndim == 3:
            col = col[box]
        region = self.img[box]
        region += (m[..., None] * np.float32(alpha)) * (col - region)

    def shade(self, mask, factor: float) -> None:
        """Multiply the canvas by `factor` where mask is 1 (factor < 1 darkens, > 1 lightens)."""
        box, m = self._split(mask)
        if m.size == 0:
            return
        self.img[box] *= 1 + m[..., None] * np.float32(factor - 1)


def _noise(rng: np.random.Generator, res: int, cells: tuple[int, int]) -> np.ndarray:
    """Smooth value noise [res, res] in about [-1, 1], `cells` = (rows, cols) of random values."""
    import cv2

    small = rng.standard_normal(cells).astype(np.float32)
    return cv2.resize(small, (res, res), interpolation=cv2.INTER_CUBIC)


def _bezier(p0, p1, p2, n: int = 24) -> np.ndarray:
    t = np.linspace(0, 1, n)[:, None]
    p0, p1, p2 = (np.asarray(p, np.float64) for p in (p0, p1, p2))
    return (1 - t) ** 2 * p0 + 2 * (1 - t) * t * p1 + t**2 * p2


def _ribbon(curve: np.ndarray, w0: float, w1: float) -> np.ndarray:
    """A closed polygon around `curve` [n,2] whose width tapers from w0 to w1."""
    d = np.gradient(curve, axis=0)
    nrm = np.stack([-d[:, 1], d[:, 0]], 1)
    nrm /= np.linalg.norm(nrm, axis=1, keepdims=True) + 1e-12
    w = np.linspace(w0, w1, len(curve))[:, None] / 2
    return np.concatenate([curve + nrm * w, (curve - nrm * w)[::-1]])


# ---------------------------------------------------------------------------------------------------------
# The face
# ---------------------------------------------------------------------------------------------------------


def _face_outline(idn: Identity, chin_drop: float, n: int = 120) -> np.ndarray:
    t = np.linspace(0, 2 * math.pi, n, endpoint=False)
    s, c = np.sin(t), np.cos(t)
    lower = np.clip(s, 0, 1)
    upper = np.clip(-s, 0, 1)
    xk = 1 - (1 - idn.jaw) * lower**2.2 - 0.04 * upper**2
    x = idn.cx + idn.fw * c * xk
    y = idn.cy + idn.fh * s + chin_drop * lower**4
    return np.stack([x, y], 1)


_DARK = np.array([0.05, 0.04, 0.04], np.float32)
_SCLERA = np.array([0.93, 0.91, 0.88], np.float32)


def synth_face(
    identity: Identity,
    au: Mapping[str, float],
    size: int = 112,
    rng: np.random.Generator | None = None,
) -> np.ndarray:
    """Draw one face. au: {AU name: 0-5 intensity} (missing AUs are 0). Returns uint8 [size, size, 3] RGB.

    `rng` adds small per-image variation (gaze, lighting jitter); None gives the canonical image.
    """
    import cv2

    unknown = set(au) - set(ALL_AUS)
    if unknown:
        raise ValueError(f"unknown AUs {sorted(unknown)}")
    if size < 16:
        raise ValueError("size must be at least 16")
    a = {k: float(np.clip(au.get(k, 0.0), 0.0, 5.0)) / 5.0 for k in ALL_AUS}
    idn = identity
    gaze = (rng.uniform(-0.25, 0.25), rng.uniform(-0.1, 0.1)) if rng is not None else (0.0, 0.0)
    light_j = rng.uniform(-0.15, 0.15) if rng is not None else 0.0
    ss = 3 if size <= 160 else 2
    cv = _Canvas(size * ss)
    x, y = cv.x, cv.y
    tex = np.random.default_rng(idn.texture_seed)

    cx, cy, fw, fh = idn.cx, idn.cy, idn.fw, idn.fh
    H = 2 * fh
    top = cy - fh
    skin = np.array(idn.skin, np.float32)
    light = float(np.clip(idn.light + light_j, -1, 1))
    jaw_drop = 0.09 * H * a["AU26"]
    chin_y = cy + fh + jaw_drop

    # Background: vertical gradient and a soft vignette.
    bt, bb = np.array(idn.bg_top, np.float32), np.array(idn.bg_bottom, np.float32)
    cv.img[:] = bt + (bb - bt) * y[..., None]
    cv.img *= (1 - 0.3 * ((x - 0.5) ** 2 + (y - 0.45) ** 2))[..., None]

    hair = np.array(idn.hair_colour, np.float32)
    strands = _noise(tex, cv.res, (5, 36)) * 0.5 + _noise(tex, cv.res, (10, 80)) * 0.5
    hair_tex = hair[None, None, :] * (1 + 0.22 * strands[..., None])
    vol = idn.hair_volume * fw

    # Long hair falls behind the head to the shoulders: a rounded top and sides ending in a soft curve.
    if idn.hair_style == "long":
        hw = fw * 1.16 + vol
        crown = ((x - cx) / hw) ** 2 + ((y - (top + 0.55 * fw)) / (0.55 * fw + vol + 0.02)) ** 2
        bottom = cy + fh * (1.05 + 0.12 * ((x - cx) / hw) ** 2)
        sides = _smoothstep(hw + 0.006, hw - 0.006, np.abs(x - cx)) * (y > top + 0.55 * fw)
        long_mask = np.maximum(
            _smoothstep(1.02, 0.98, crown), sides * _smoothstep(bottom + 0.01, bottom - 0.01, y)
        )
        cv.paint(long_mask, hair_tex * 0.85)
        cv.img *= (1 - 0.25 * long_mask * _smoothstep(0.5, 1.0, np.abs(x - cx) / hw))[..., None]

    # Shoulders (clothes), then the neck with a shadow under the jaw.
    clothes = np.array(idn.clothes, np.float32)
    shoulders = cv.ellipse(cx, 1.1, 0.5, 0.24, blur=0.004)
    cv.paint(shoulders, clothes)
    cv.shade(shoulders.map(lambda x, y: _smoothstep(0.25, 0.5, np.abs(x - cx))), 0.8)
    nw = idn.neck_w * fw
    neck_pts = np.array(
        [
            [cx - nw, cy + 0.3 * fh],
            [cx + nw, cy + 0.3 * fh],
            [cx + nw * 1.05, 0.9],
            [cx + nw * 1.35, 0.96],
            [cx, 0.99],
            [cx - nw * 1.35, 0.96],
            [cx - nw * 1.05, 0.9],
        ]
    )
    neck = cv.poly(neck_pts, blur=0.002)
    cv.paint(neck, skin * 0.8)
    cv.shade(neck.map(lambda x, y: _smoothstep(nw * 0.55, nw * 1.1, np.abs(x - cx))), 0.8)
    cv.shade(neck * cv.ellipse(cx, chin_y + 0.01, fw * 0.8, 0.045, blur=0.018), 0.65)

    # Ears, partly behind the face.
    ey = top + idn.eye_y * H
    er = idn.ear_size * fh
    for side in (-1, 1):
        ex_ = cx + side * fw * 0.96
        cv.paint(cv.ellipse(ex_, ey + 0.45 * er, er * 0.42, er, angle=side * 8, blur=0.002), skin * 0.88)
        cv.shade(
            cv.ellipse(ex_ + side * er * 0.08, ey + 0.45 * er, er * 0.2, er * 0.62, side * 8, blur=0.008),
            0.75,
        )

    # Face: darker towards the rim, lit from one side, faint skin texture.
    outline = _face_outline(idn, jaw_drop)
    face = cv.poly(outline, blur=0.0015)
    ys_, xs_ = face.box
    fx, fy = x[ys_, xs_], y[ys_, xs_]
    rr = np.sqrt(((fx - cx) / fw) ** 2 + ((fy - cy - 0.05 * fh) / (fh + 0.5 * jaw_drop)) ** 2)
    shade = 1.04 - 0.36 * np.clip(rr, 0, 1.2) ** 4 + 0.09 * light * np.clip((fx - cx) / fw, -1, 1)
    shade += _noise(tex, cv.res, (24, 24))[ys_, xs_] * 0.015
    skin_field = np.zeros_like(cv.img)
    skin_field[ys_, xs_] = skin * shade[..., None]
    cv.paint(face, skin_field)

    # Key positions.
    out_dirs = (-1, 1)  # image-left eye first; `d` points away from the midline
    ew = idn.eye_w * fw
    eye_xs = [cx + d * idn.eye_sep * fw for d in out_dirs]
    brow_base = ey - idn.brow_gap * ew
    tip_y = top + idn.nose_y * H - 0.012 * H * a["AU09"]
    nwid = idn.nose_w * fw * (1 + 0.15 * a["AU09"])
    my = top + idn.mouth_y * H + 0.35 * jaw_drop - 0.008 * H * a["AU17"]
    mw = idn.mouth_w * fw * (1 + 0.16 * a["AU12"] + 0.2 * a["AU20"] - 0.1 * a["AU14"] - 0.08 * a["AU23"])
    corner_dy = 0.07 * H * (-a["AU12"] + 0.9 * a["AU15"] - 0.25 * a["AU14"]) - 0.01 * H * a["AU20"]

    # Cheeks: blush, and the AU06 raise (cheeks move up and catch the light).
    cheek_y = ey + 0.16 * H - 0.05 * H * a["AU06"] - 0.02 * H * a["AU12"]
    for d, ex in zip(out_dirs, eye_xs):
        ccx = ex + d * 0.1 * fw
        blush = cv.ellipse(ccx, cheek_y, 0.22 * fw, 0.13 * fh, blur=0.03)
        cv.paint(blush, np.array([0.9, 0.35, 0.35]), 0.12 * idn.blush)
        cv.shade(cv.ellipse(ccx, cheek_y - 0.01, 0.17 * fw, 0.08 * fh, blur=0.025), 1 + 0.12 * a["AU06"])
        cv.shade(cv.ellipse(ccx + d * 0.05, cheek_y + 0.07 * fh, 0.12 * fw, 0.16 * fh, blur=0.03), 0.94)

    # Nasolabial folds (deeper with AU12, AU10, AU06, AU09 and age).
    fold = (
        0.1
        + 0.15 * idn.fold_depth
        + 0.45 * max(a["AU12"], 0.85 * a["AU10"], 0.6 * a["AU06"], 0.5 * a["AU09"])
    )
    for d in out_dirs:
        p0 = (cx + d * nwid * 1.25, tip_y - 0.015 * H)
        p2 = (cx + d * (mw + 0.035 * fw + 0.04 * fw * a["AU12"]), my + corner_dy * 0.6 + 0.055 * H)
        p1 = (cx + d * (nwid * 1.5 + 0.14 * fw + 0.05 * fw * a["AU12"]), (p0[1] + p2[1]) / 2 - 0.01 * H)
        curve = _bezier(p0, p1, p2)
        cv.shade(cv.stroke(curve, 0.006, blur=0.004), 1 - 0.45 * fold)
        cv.shade(cv.stroke(curve + np.array([d * 0.008, 0.0]), 0.008, blur=0.006), 1 + 0.12 * fold)

    # Forehead lines (AU01 in the centre, AU02 at the sides) and glabella lines (AU04).
    c01, c02 = a["AU01"], a["AU02"]
    if max(c01, c02) > 0.02:
        xs = np.linspace(cx - 0.6 * fw, cx + 0.6 * fw, 30)

        def weight(xx, yy):
            u = (xx - cx) / (0.6 * fw)
            return np.clip(c01 * np.exp(-((u / 0.5) ** 2)) + c02 * u**2, 0, 1)

        for k in range(3):
            yy = brow_base - (0.035 + 0.03 * k) * H
            curve = np.stack([xs, yy - 0.012 * H * np.cos((xs - cx) / fw * 2)], 1)
            cv.shade(cv.stroke(curve, 0.004, blur=0.003).map(weight), 0.7)
    if a["AU04"] > 0.02:
        for d in out_dirs:
            x0 = cx + d * 0.05 * fw
            seg = np.array([[x0, brow_base - 0.01 * H], [x0 + d * 0.01 * fw, brow_base + 0.05 * H]])
            cv.shade(cv.stroke(seg, 0.005, blur=0.003), 1 - 0.4 * a["AU04"])

    # Front hair: a cap over the skull down to a hairline (fringe styles cover the forehead).
    hx = (x - cx) / (fw * 1.04 + vol * 0.6)
    hy = (y - cy + 0.04 * fh) / (fh * 1.03 + vol)
    skull = _smoothstep(1.03, 0.97, hx**2 + hy**2)
    edge_noise = _noise(tex, cv.res, (1, 18))[0:1, :] * 0.012 * H
    hl = top + idn.hairline * H + 0.55 * H * np.clip(np.abs(x - cx) / fw, 0, 1.2) ** 4 + edge_noise
    if idn.hair_style == "fringe":
        hl = hl + 0.012 * H * np.abs(np.sin((x - cx) / fw * 14))
    cap = skull * _smoothstep(hl + 0.006, hl - 0.006, y)
    cv.paint(cap, hair_tex, 0.5 if idn.hair_style == "buzz" else 1.0)
    cv.shade(face * (_smoothstep(hl + 0.03, hl, y) * (1 - cap)), 0.88)  # shadow below the hairline

    # Eyes: socket shadow, upper-lid skin and crease, sclera, iris, pupil, highlight, lashes, lower lid.
    up_k = (
        (1 + 0.55 * a["AU05"])
        * (1 - 0.3 * a["AU07"] - 0.15 * a["AU06"] - 0.12 * a["AU04"])
        * (1 - 0.96 * a["AU45"])
    )
    lo_k = (1 - 0.6 * a["AU06"] - 0.45 * a["AU07"]) * (1 - 0.96 * a["AU45"])
    iris = np.array(idn.iris, np.float32)
    s = np.linspace(-1, 1, 33)
    for d, ex in zip(out_dirs, eye_xs):
        cv.shade(cv.ellipse(ex, ey - 0.25 * ew, 1.35 * ew, 0.9 * ew, blur=0.02), 0.86)
        tilt = -idn.eye_tilt * ew * (s * d)
        up = idn.eye_open * ew * max(up_k, 0.0)
        low = 0.62 * idn.eye_open * ew * max(lo_k, 0.0)
        xs = ex + s * ew
        skew = 1 + 0.18 * s * (-d)  # the upper lid peaks nearer the inner corner
        up_curve = np.stack([xs, ey + tilt - up * (1 - s**2) ** 0.85 * skew], 1)
        lo_curve = np.stack([xs, ey + tilt + low * (1 - s**2) ** 1.15 - 0.01 * ew * a["AU07"]], 1)
        crease = np.stack([xs, ey + tilt - (up + 0.35 * ew) * (1 - s**2) ** 0.7 * skew], 1)
        cv.shade(cv.poly(np.concatenate([crease, up_curve[::-1]]), blur=0.004), 0.88)
        cv.shade(cv.stroke(crease[4:-4], 0.005, blur=0.003), 0.75)
        if up + low > 0.02 * ew:
            eye_mask = cv.poly(np.concatenate([up_curve, lo_curve[::-1]]))
            cv.paint(eye_mask, _SCLERA * (0.95 + 0.05 * light))
            cv.shade(eye_mask.map(lambda x, y, ex=ex: _smoothstep(0.5 * ew, ew, np.abs(x - ex))), 0.85)
            ir = 0.44 * ew
            icx, icy = ex + gaze[0] * ew, ey + tilt[16] - 0.08 * idn.eye_open * ew + gaze[1] * ew
            iris_m = cv.ellipse(icx, icy, ir, ir) * eye_mask
            cv.paint(iris_m, iris)
            cv.shade(
                iris_m.map(
                    lambda x, y, c=(icx, icy, ir): _smoothstep(0.6 * c[2], c[2], np.hypot(x - c[0], y - c[1]))
                ),
                0.6,
            )
            cv.paint(cv.ellipse(icx, icy, 0.45 * ir, 0.45 * ir) * eye_mask, np.array([0.03, 0.03, 0.03]))
            cv.paint(
                cv.ellipse(icx + 0.3 * ir, icy - 0.3 * ir, 0.16 * ir, 0.16 * ir) * eye_mask, np.ones(3), 0.9
            )
            cv.shade(eye_mask * cv.stroke(up_curve, 0.01, blur=0.006), 0.7)  # lid shadow on the eyeball
        cv.paint(cv.stroke(up_curve, 0.0085, blur=0.001), _DARK, 0.95)
        corner = up_curve[0 if d < 0 else -1]
        cv.paint(
            cv.stroke(np.array([corner, corner + [d * 0.09 * ew, -0.08 * ew]]), 0.006, blur=0.001), _DARK, 0.8
        )
        cv.shade(cv.stroke(lo_curve, 0.004, blur=0.002), 0.72 - 0.15 * a["AU07"])
        if a["AU06"] > 0.02:  # lower-lid bulge and crow's feet
            bulge = np.stack([xs, ey + tilt + low + 0.28 * ew * (1 - s**2) ** 0.5], 1)[6:-6]
            cv.shade(cv.stroke(bulge, 0.005, blur=0.004), 1 - 0.35 * a["AU06"])
            for k, ang in enumerate((-0.35, 0.0, 0.35)):
                seg = np.array(
                    [
                        corner + [d * 0.18 * ew, 0.02 * ew * (k - 1)],
                        corner + [d * math.cos(ang) * 0.55 * ew, math.sin(ang) * 0.5 * ew],
                    ]
                )
                cv.shade(cv.stroke(seg, 0.0035, blur=0.002), 1 - 0.35 * a["AU06"])

    # Brows: a tapered ribbon through inner end, arch and outer end.
    brow_col = np.array(idn.brow_colour, np.float32)
    bt = idn.brow_thick * fh
    for d, ex in zip(out_dirs, eye_xs):
        in_dy = ew * (-0.7 * a["AU01"] + 0.45 * a["AU04"] + 0.15 * a["AU09"] - 0.1 * a["AU02"])
        out_dy = ew * (-0.65 * a["AU02"] + 0.18 * a["AU04"] - 0.1 * a["AU01"] + 0.05 * a["AU09"])
        pk_dy = ew * (-0.3 * a["AU01"] - 0.45 * a["AU02"] + 0.3 * a["AU04"])
        p_in = (ex - d * (0.95 * ew - 0.3 * ew * a["AU04"]), brow_base + 0.1 * ew + in_dy)
        p_out = (ex + d * 1.2 * ew, brow_base + 0.25 * ew + out_dy)
        p_pk = (ex + d * 0.3 * ew, brow_base - idn.brow_arch * ew + pk_dy)
        curve = _bezier(p_in, p_pk, p_out, 28)
        cv.paint(cv.poly(_ribbon(curve, bt * 1.15, bt * 0.45), blur=0.0025), brow_col, 0.92)

    # Nose: side shading along the bridge, tip highlight, wings, nostrils, AU09 wrinkles.
    for d in out_dirs:
        p0 = (cx + d * 0.16 * fw, ey - 0.02 * H)
        p2 = (cx + d * nwid * 0.95, tip_y - 0.03 * H)
        curve = _bezier(p0, (cx + d * 0.13 * fw, (p0[1] + p2[1]) / 2), p2)
        cv.shade(cv.stroke(curve, 0.012, blur=0.009), 0.8 - 0.05 * light * d)
        cv.shade(
            cv.ellipse(cx + d * nwid * 0.95, tip_y - 0.005 * H, 0.33 * nwid, 0.45 * nwid, blur=0.01), 0.85
        )
        wing = _bezier(
            (cx + d * nwid * 0.55, tip_y - 0.045 * H),
            (cx + d * nwid * 1.35, tip_y - 0.01 * H),
            (cx + d * nwid * 0.62, tip_y + 0.025 * H),
        )
        cv.shade(cv.stroke(wing, 0.005, blur=0.003), 0.72)
        nostril = cv.ellipse(
            cx + d * 0.42 * nwid, tip_y + 0.018 * H, 0.28 * nwid, 0.12 * nwid, -d * 18, blur=0.002
        )
        cv.paint(nostril, skin * 0.25, 0.9)
    cv.shade(cv.ellipse(cx, tip_y - 0.018 * H, 0.22 * nwid, 0.2 * nwid, blur=0.008), 1.12)
    cv.shade(cv.ellipse(cx, tip_y + 0.035 * H, 0.7 * nwid, 0.18 * nwid, blur=0.008), 0.85)
    cv.shade(cv.stroke(np.array([[cx, ey + 0.02 * H], [cx, tip_y - 0.04 * H]]), 0.012, blur=0.008), 1.07)
    if a["AU09"] > 0.02:
        for k in range(3):
            yy = ey + (0.02 + 0.025 * k) * H
            seg = np.array([[cx - 0.12 * fw, yy + 0.004], [cx, yy - 0.004], [cx + 0.12 * fw, yy + 0.004]])
            cv.shade(cv.stroke(seg, 0.0035, blur=0.002), 1 - 0.4 * a["AU09"])

    # Mouth: philtrum, lips, the opening with teeth, corners, chin.
    t = np.linspace(-1, 1, 41)
    env = 1 - t**2
    line = my + corner_dy * np.abs(t) ** 1.7
    opened = a["AU25"] > 0.004 or a["AU26"] > 0.004
    gap = H * (0.05 * a["AU25"] + 0.1 * a["AU26"]) if opened else 0.0
    up_raise = 0.02 * H * a["AU10"]
    ui = line - gap / 2 * env**0.6 - up_raise * env**2
    li = line + gap / 2 * env**0.6
    ut = idn.lip_upper * H * (1 - 0.45 * a["AU23"] - 0.25 * a["AU20"] + 0.2 * a["AU10"])
    lt = idn.lip_lower * H * (1 - 0.45 * a["AU23"] - 0.25 * a["AU20"])
    bow = 1 + 0.18 * np.exp(-(((np.abs(t) - 0.22) / 0.1) ** 2)) - 0.22 * np.exp(-((t / 0.09) ** 2))
    uo = ui - ut * env**0.45 * bow
    lo = li + lt * env**0.6 - 0.35 * lt * a["AU17"] * env
    xs = cx + t * mw
    lip = np.array(idn.lip_colour, np.float32)
    for d in out_dirs:
        seg = np.array([[cx + d * 0.05 * fw, tip_y + 0.04 * H], [cx + d * 0.07 * fw, uo[20] - 0.002]])
        cv.shade(cv.stroke(seg, 0.006, blur=0.005), 0.9)
    cv.shade(cv.ellipse(cx, lo[20] + 0.03 * H, 0.45 * mw, 0.025 * H, blur=0.012), 0.85 - 0.1 * a["AU17"])
    if a["AU17"] > 0.02:
        cv.shade(cv.ellipse(cx, lo[20] + 0.085 * H, 0.4 * mw, 0.05 * H, blur=0.015), 1 + 0.1 * a["AU17"])
    upper_m = cv.poly(np.concatenate([np.stack([xs, uo], 1), np.stack([xs, ui], 1)[::-1]]), blur=0.0015)
    lower_m = cv.poly(np.concatenate([np.stack([xs, li], 1), np.stack([xs, lo], 1)[::-1]]), blur=0.0015)
    cv.paint(upper_m, lip * 0.88)
    cv.paint(lower_m, lip)
    cv.shade(cv.ellipse(cx, (li[20] + lo[20]) / 2, 0.35 * mw, 0.3 * lt, blur=0.006) * lower_m, 1.15)
    if gap + up_raise > 0.002:
        inner = cv.poly(np.concatenate([np.stack([xs, ui], 1), np.stack([xs, li], 1)[::-1]]))
        cv.paint(inner, np.array([0.25, 0.07, 0.08]))
        teeth = np.concatenate(
            [np.stack([xs, ui], 1)[6:-6], np.stack([xs, ui + 0.05 * H * env**0.3], 1)[6:-6][::-1]]
        )
        cv.paint(cv.poly(teeth) * inner, np.array([0.93, 0.91, 0.86]))
        lower_teeth = np.concatenate(
            [np.stack([xs, li - 0.02 * H * env**0.3], 1)[10:-10], np.stack([xs, li], 1)[10:-10][::-1]]
        )
        cv.paint(
            cv.poly(lower_teeth) * inner, np.array([0.85, 0.83, 0.78]), 0.85 * min(1.0, gap / (0.06 * H))
        )
        cv.shade(inner.map(lambda x, y: _smoothstep(0.55 * mw, mw, np.abs(x - cx))), 0.5)
    seam = np.stack([xs, (ui + li) / 2], 1)[2:-2] if gap < 0.004 else np.stack([xs, ui], 1)[1:-1]
    cv.paint(cv.stroke(seam, 0.004, blur=0.0015), lip * 0.35, 0.8)
    for d in out_dirs:
        k = 0 if d < 0 else -1
        cv.shade(cv.ellipse(xs[k] - d * 0.004, line[k], 0.012, 0.008, blur=0.004), 0.75)
        if a["AU14"] > 0.02:
            cv.shade(
                cv.ellipse(xs[k] + d * 0.03 * fw, line[k] + 0.005, 0.01, 0.02, blur=0.004),
                1 - 0.35 * a["AU14"],
            )

    out = cv2.resize(np.clip(cv.img, 0, 1), (size, size), interpolation=cv2.INTER_AREA)
    return np.clip(np.rint(out * 255), 0, 255).astype(np.uint8)


# ---------------------------------------------------------------------------------------------------------
# The dataset
# ---------------------------------------------------------------------------------------------------------


def face_name(identity_index: int, expression_index: int) -> str:
    """Dataset name of one synthetic face, e.g. `id0007_e03` (group by `^(id\\d+)_` for identity splits)."""
    return f"id{identity_index:04d}_e{expression_index:02d}"


def identity_rng(seed: int, identity_index: int) -> np.random.Generator:
    return np.random.default_rng([int(seed), 1, int(identity_index)])


def expression_rng(seed: int, identity_index: int, expression_index: int) -> np.random.Generator:
    return np.random.default_rng([int(seed), 2, int(identity_index), int(expression_index)])


def face_box(identity: Identity, size: int) -> tuple[float, float, float, float]:
    """(x, y, w, h) in pixels of the face oval (skull top to chin) in a `size` image."""
    idn = identity
    return ((idn.cx - idn.fw) * size, (idn.cy - idn.fh) * size, 2 * idn.fw * size, 2 * idn.fh * size)


def write_synthetic_dataset(
    out,
    num: int,
    seed: int = 0,
    aus: Sequence[str] = SIX_AUS,
    size: int = 112,
    per_identity: int = 6,
    test_fraction: float = 0.2,
    resume: bool = False,
    legacy_pkl: str | None = None,
    options: Mapping | None = None,
) -> dict:
    """Draw `num` faces into the dataset layout at `out` (see cdan.data.layout); returns the manifest.

    Faces are `per_identity` expressions of each sampled identity, named `id0007_e03`; the label is the
    expression class and the split keeps each identity on one side (stratified by class). Face k depends
    only on (seed, k), so a smaller `num` gives a prefix of a larger one, and the same seed gives the
    same bytes in every file.
    """
    from tqdm import tqdm

    from ..data.layout import DatasetWriter
    from ..errors import CdanError

    if num < 1:
        raise CdanError(f"--num must be at least 1, got {num}")
    if seed < 0:
        raise CdanError(f"--seed must be >= 0, got {seed}")
    if not 16 <= size <= 1024:
        raise CdanError(f"--size must be in [16, 1024], got {size}")
    if per_identity < 1:
        raise CdanError(f"--per-identity must be at least 1, got {per_identity}")
    aus = tuple(aus)
    classes = expression_classes(aus)
    opts = {"num": num, "seed": seed, "size": size, "per_identity": per_identity, "classes": list(classes)}
    opts.update(options or {})
    # Faces are cheap to redraw exactly, so the journal is fsynced once a second rather than per face.
    writer = DatasetWriter(out, aus, "synthetic", opts, resume=resume, sync_every=1.0)
    n_ids = -(-num // per_identity)
    try:
        with tqdm(total=num, desc="synth", unit="face", disable=None) as bar:
            for i in range(n_ids):
                idn = sample_identity(identity_rng(seed, i))
                order = np.random.default_rng([seed, 3, i]).permutation(
                    len(classes)
                )  # classes of this person
                for j in range(min(per_identity, num - i * per_identity)):
                    name = face_name(i, j)
                    bar.update(1)
                    if writer.has(name):
                        continue
                    label = classes[int(order[j % len(classes)])]
                    rng = expression_rng(seed, i, j)
                    au = sample_expression(rng, label, aus)
                    image_u8 = synth_face(idn, au, size, rng)
                    writer.add(
                        name,
                        image_u8,
                        [au[k] for k in aus],
                        source=f"synthetic:seed={seed}:{name}",
                        box=face_box(idn, size),
                        label=label,
                        group=f"id{i:04d}",
                    )
    except BaseException:
        writer.abort()
        raise
    return writer.close(test_fraction=test_fraction, seed=seed, legacy_pkl=legacy_pkl)
