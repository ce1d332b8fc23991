"""Action Unit names and orders used across the package."""

from __future__ import annotations

# The official CDAN set (DESIGN: AU01, AU04, AU06, AU12, AU15, AU25), OpenFace 0-5 intensities.
SIX_AUS: tuple[str, ...] = ("AU01", "AU04", "AU06", "AU12", "AU15", "AU25")

# OpenFace 2.x intensity AUs (the `_r` columns), in GANimation's pickle order.
ALL_AUS: tuple[str, ...] = (
    "AU01", "AU02", "AU04", "AU05", "AU06", "AU07", "AU09", "AU10", "AU12",
    "AU14", "AU15", "AU17", "AU20", "AU23", "AU25", "AU26", "AU45",
)  # fmt: skip

# OpenFace's presence threshold on the 0-5 intensity scale.
AU_ACTIVE_THRESHOLD = 1.0
# The model sees AU intensities divided by this (official code: au / 5).
AU_SCALE = 5.0


def au_set(name: str) -> tuple[str, ...]:
    """'six' -> SIX_AUS, 'all' -> ALL_AUS, or a comma list such as 'AU01,AU12'."""
    if name == "six":
        return SIX_AUS
    if name == "all":
        return ALL_AUS
    out = tuple(a.strip().upper() for a in name.split(",") if a.strip())
    bad = [a for a in out if a not in ALL_AUS]
    if bad or not out:
        from .errors import CdanError

        raise CdanError(f"unknown AU set {name!r}: use 'six', 'all' or a comma list of {', '.join(ALL_AUS)}")
    return out
