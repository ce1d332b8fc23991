"""cdan.report: loss curves, image grids, heatmaps and the self-contained HTML report."""

from __future__ import annotations

import json
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from cdan.errors import CdanError
from cdan.report import Section, heatmap_over_face, save_image_grid, save_loss_curves, write_report
from cdan.report.plots import HeatmapRow, read_stats, save_heatmap_figure, smooth

LOSS_KEYS = ("d/adv", "d/au", "d/total", "g/adv", "g/au", "g/rec", "g/total", "g/tv")


def _stats(path: Path, steps=range(5, 305, 5)) -> Path:
    with open(path, "w") as f:
        for s in steps:
            row = {"step": s, "epoch": s // 100, "img_per_s": 12.5}
            row |= {k: float(np.exp(-s / 100) + i) for i, k in enumerate(LOSS_KEYS)}
            f.write(json.dumps(row) + "\n")
    return path


def test_read_stats_keeps_losses_skips_bad_lines_and_dedupes_steps(tmp_path):
    p = _stats(tmp_path / "stats.jsonl", steps=(10, 20, 30))
    with open(p, "a") as f:
        f.write('{"step": 20, "g/rec": 99.0, "new/key": 1}\n')  # a resumed run logs step 20 again
        f.write("[1, 2]\n")
        f.write('{"step": 40, "g/re')  # killed mid-line
    steps, values = read_stats(p)
    assert list(steps) == [10, 20, 30]
    assert set(values) == set(LOSS_KEYS) | {"new/key"}  # step, epoch and img_per_s are not losses
    assert values["g/rec"][1] == 99.0  # the later line wins
    assert np.isnan(values["d/adv"][1]) and np.isnan(values["new/key"][0])


def test_smooth_is_a_trailing_mean_ignoring_nan():
    np.testing.assert_allclose(smooth(np.array([1.0, 3.0, 5.0, 7.0]), 2), [1.0, 2.0, 4.0, 6.0])
    np.testing.assert_allclose(smooth(np.array([1.0, np.nan, 5.0]), 2), [1.0, 1.0, 5.0])


def test_save_loss_curves_writes_a_png(tmp_path):
    out = save_loss_curves(_stats(tmp_path / "stats.jsonl"), tmp_path / "plots" / "loss.png")
    with Image.open(out) as im:
        w, h = im.size
    assert w > 800 and h > 500  # 8 panels in 3 columns
    (tmp_path / "empty.jsonl").write_text("\n")
    with pytest.raises(CdanError, match="no loss values"):
        save_loss_curves(tmp_path / "empty.jsonl", tmp_path / "x.png")
    with pytest.raises(CdanError, match="cannot read"):
        save_loss_curves(tmp_path / "missing.jsonl", tmp_path / "x.png")
    assert not (tmp_path / "x.png").exists()


def test_image_grid_layout_and_pixels(tmp_path):
    a = np.zeros((10, 12, 3), np.uint8)
    a[..., 0] = 200
    grey = np.full((10, 12), 77, np.uint8)
    small_float = np.full((6, 6, 3), 0.5)
    out = save_image_grid([[a, grey, None], [small_float]], tmp_path / "g.png", pad=4)
    g = np.asarray(Image.open(out))
    assert g.shape == (2 * (10 + 4) + 4, 3 * (12 + 4) + 4, 3)
    np.testing.assert_array_equal(g[4:14, 4:16], a)
    assert (g[4:14, 20:32] == 77).all()  # grey converted to RGB
    assert (g[4:14, 36:48] == 255).all()  # None: empty cell
    assert (g[20:26, 7:13] == 128).all()  # float 0.5 -> 128, centred in its 10x12 cell
    labelled = np.asarray(
        Image.open(
            save_image_grid(
                [[a, a]], tmp_path / "l.png", row_labels=["reconstruction"], col_labels=["x", "y"]
            )
        )
    )
    assert labelled.shape[1] > g.shape[1] - 16 and labelled.shape[0] > 10 + 8  # room for the labels
    big = np.asarray(Image.open(save_image_grid([[a]], tmp_path / "s.png", scale=3, pad=0)))
    assert big.shape == (30, 36, 3)
    with pytest.raises(ValueError):
        save_image_grid([[a]], tmp_path / "bad.png", row_labels=["a", "b"])


def test_heatmap_over_face_blends_and_resizes():
    face = np.full((8, 8, 3), 100, np.uint8)
    mask = np.linspace(0, 1, 16, dtype=np.float32).reshape(4, 4)
    assert np.array_equal(heatmap_over_face(face, mask, alpha=0.0), face)
    full = heatmap_over_face(face, mask, 0.0, 1.0, cmap="gray", alpha=1.0)
    assert full.shape == (8, 8, 3) and full[0, 0, 0] < 30 and full[-1, -1, 0] > 225  # mask resized to 8x8
    nan = heatmap_over_face(face, np.full((8, 8), np.nan), alpha=1.0)
    assert np.array_equal(nan, face)
    assert heatmap_over_face(face, mask, size=32).shape == (32, 32, 3)


def test_heatmap_figure_with_na_panels(tmp_path):
    face = np.full((16, 16, 3), 120, np.uint8)
    m = np.random.default_rng(0).random((16, 16))
    rows = [
        HeatmapRow("active", [("AU01", None), ("AU12", m)]),
        HeatmapRow("diff", [("AU01", None), ("AU12", m - 0.5)], kind="diff"),
    ]
    out = save_heatmap_figure(face, rows, tmp_path / "fig.png", title="t")
    assert Image.open(out).size[0] > 200


class _Checker(HTMLParser):
    """Collects tags, attributes and text, and checks every non-void element is closed in order."""

    VOID = {"meta", "img", "br", "hr", "link", "input"}

    def __init__(self):
        super().__init__()
        self.stack: list[str] = []
        self.errors: list[str] = []
        self.tags: list[tuple[str, dict]] = []
        self.text: list[str] = []

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))
        if tag not in self.VOID:
            self.stack.append(tag)

    def handle_endtag(self, tag):
        if not self.stack or self.stack[-1] != tag:
            self.errors.append(f"unexpected </{tag}> (open: {self.stack[-3:]})")
        else:
            self.stack.pop()

    def handle_data(self, data):
        self.text.append(data)


def test_write_report_is_well_formed_portable_and_escaped(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    rep = tmp_path / "report"
    rep.mkdir()
    Image.new("RGB", (8, 8), (255, 0, 0)).save(rep / "inside.png")
    Image.new("RGB", (8, 8), (0, 255, 0)).save(tmp_path / "outside.png")
    sections = [
        Section(
            "Overview",
            text="Trained **tiny** for `50` steps.\n\n- first point\n- second with [docs](https://example.org)\n\n"
            '<script>alert("x")</script> & [bad](javascript:alert(1))',
        ),
        Section("Reconstructions", images=[(rep / "inside.png", "input | xrec"), "outside.png", "gone.png"]),
        {
            "title": "Metrics",
            "tables": [
                {
                    "caption": "first vs last",
                    "rows": [
                        {"metric": "PSNR", "first": 12.3456789, "last": 20.0},
                        {"metric": "ED", "last": None},
                    ],
                }
            ],
        },
    ]
    out = write_report(rep / "report.html", sections, title="CDAN <demo>")
    html_text = out.read_text()
    chk = _Checker()
    chk.feed(html_text)
    chk.close()
    assert not chk.errors and chk.stack == []
    assert html_text.startswith("<!DOCTYPE html>")
    tags = [t for t, _ in chk.tags]
    assert "script" not in tags and "link" not in tags  # no JS, no external CSS
    assert tags.count("section") == 3 and tags.count("table") == 1 and tags.count("li") >= 2 + 3
    text = "".join(chk.text)
    for s in ("Overview", "Reconstructions", "Metrics", "CDAN <demo>", '<script>alert("x")</script>'):
        assert s in text  # titles present; markup in text is shown, not run
    imgs = [a["src"] for t, a in chk.tags if t == "img"]
    assert imgs[0] == "inside.png"  # inside the report folder: relative link
    assert imgs[1].startswith("data:image/png;base64,")  # outside: embedded
    assert len(imgs) == 2 and "image not found" in text and "gone.png" in text
    hrefs = [a.get("href") for t, a in chk.tags if t == "a"]
    assert "https://example.org" in hrefs and not any("javascript" in (h or "") for h in hrefs)
    assert "12.35" in text and "n/a" in text  # 4 significant digits; None -> n/a
    assert "http://" not in html_text.replace("https://example.org", "")  # nothing fetched from the network
