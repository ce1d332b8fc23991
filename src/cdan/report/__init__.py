"""Figures and the HTML report: `cdan.report.plots` (matplotlib, Agg canvas) and `cdan.report.html`.

Both import their heavy dependencies inside the functions, so importing this package is cheap.
"""

from __future__ import annotations

from .html import Section, write_report
from .plots import (
    heatmap_over_face,
    save_heatmap_figure,
    save_image_grid,
    save_loss_curves,
    save_png,
    save_rec_grid,
)

__all__ = [
    "Section",
    "heatmap_over_face",
    "save_heatmap_figure",
    "save_image_grid",
    "save_loss_curves",
    "save_png",
    "save_rec_grid",
    "write_report",
]
