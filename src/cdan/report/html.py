"""A self-contained HTML report: inline CSS, no JavaScript, no network.

    write_report("out/report.html", [
        Section("Reconstructions", text="Rows: input, reconstruction, mask ...", images=["rec_grid.png"]),
        Section("Metrics", tables=[{"caption": "first vs last", "rows": [{"metric": "PSNR", "first": 14.2}]}]),
    ])

Images inside the report's folder are linked with a relative `src`, so the folder can be moved or zipped
as a whole. Images outside it are embedded as base64 data URIs when they are small (else linked with a
relative path and a warning). A missing image is shown as a note, never an error.

Text is "markdown-ish": paragraphs split by blank lines, lines starting with "- " or "* " form a list, and
inline `code`, **bold**, *italic* and [links](relative/or/https) work. Everything else is escaped.
"""

from __future__ import annotations

import base64
import html
import logging
import math
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote

from ..utils import write_text_atomic

log = logging.getLogger(__name__)

__all__ = ["Section", "render_report", "write_report", "render_text"]

EMBED_MAX_BYTES = 1_500_000
_MIME = {
    ".png": "image/png",
    ".jpg": "image/jpeg",
    ".jpeg": "image/jpeg",
    ".gif": "image/gif",
    ".webp": "image/webp",
    ".svg": "image/svg+xml",
    ".bmp": "image/bmp",
}

CSS = """
:root { color-scheme: light; }
body { font: 15px/1.5 system-ui, -apple-system, "Segoe UI", Roboto, Helvetica, Arial, sans-serif;
       color: #1f2328; background: #fff; margin: 0; }
main { max-width: 1180px; margin: 0 auto; padding: 24px 28px 48px; }
h1 { font-size: 1.7em; margin: 0 0 4px; }
h2 { font-size: 1.3em; margin: 36px 0 10px; padding-bottom: 4px; border-bottom: 1px solid #d0d7de; }
p.subtitle { color: #57606a; margin: 0 0 16px; }
nav.toc { background: #f6f8fa; border: 1px solid #d0d7de; border-radius: 6px; padding: 8px 16px; }
nav.toc ol { margin: 4px 0; padding-left: 20px; }
a { color: #0969da; text-decoration: none; } a:hover { text-decoration: underline; }
code { font-family: ui-monospace, SFMono-Regular, Menlo, Consolas, monospace; font-size: 0.9em;
       background: #f6f8fa; padding: 1px 4px; border-radius: 4px; }
figure { margin: 14px 0; }
figure img { max-width: 100%; height: auto; border: 1px solid #d0d7de; border-radius: 4px; }
figcaption { color: #57606a; font-size: 0.9em; margin-top: 4px; }
table { border-collapse: collapse; margin: 12px 0; font-size: 0.92em; }
caption { text-align: left; color: #57606a; padding-bottom: 4px; caption-side: top; }
th, td { border: 1px solid #d0d7de; padding: 4px 10px; }
th { background: #f6f8fa; text-align: left; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
tbody tr:nth-child(even) { background: #fafbfc; }
.missing { color: #9a6700; background: #fff8c5; padding: 4px 8px; border-radius: 4px; }
footer { color: #8c959f; font-size: 0.85em; margin-top: 40px; }
"""


@dataclass
class Section:
    """One report section.

    text: a string (blank lines separate paragraphs) or a list of paragraphs.
    images: each a path, a (path, caption) tuple, or a dict with `path` and optional `caption`, `alt`,
        `embed` (True: always base64, False: always link) and `width` (CSS pixels).
    tables: each a list of dict rows, or a dict with `rows` and optional `caption` and `columns`.
    """

    title: str
    text: str | Sequence[str] | None = None
    images: Sequence[Any] = field(default_factory=list)
    tables: Sequence[Any] = field(default_factory=list)


# --------------------------------------------------------------------------------------------------------
# Text
# --------------------------------------------------------------------------------------------------------

_INLINE = [
    (re.compile(r"\*\*(.+?)\*\*"), r"<strong>\1</strong>"),
    (re.compile(r"(?<![\w*])\*(?!\s)(.+?)(?<!\s)\*(?![\w*])"), r"<em>\1</em>"),
]
_CODE = re.compile(r"`([^`]+)`")
_LINK = re.compile(r"\[([^\]]+)\]\(([^)\s]+)\)")


def _safe_href(url: str) -> str | None:
    """Relative links, #anchors, http(s) and mailto only (no javascript: or data: URLs)."""
    u = html.unescape(url).strip()
    scheme = re.match(r"^([a-zA-Z][a-zA-Z0-9+.-]*):", u)
    if scheme and scheme.group(1).lower() not in ("http", "https", "mailto"):
        return None
    return html.escape(u, quote=True)


def _inline(text: str) -> str:
    """Escape, then apply `code`, links, **bold** and *italic* (code spans are left alone)."""
    out = []
    pos = 0
    for m in _CODE.finditer(text):
        out.append(_inline_plain(text[pos : m.start()]))
        out.append(f"<code>{html.escape(m.group(1), quote=False)}</code>")
        pos = m.end()
    out.append(_inline_plain(text[pos:]))
    return "".join(out)


def _inline_plain(text: str) -> str:
    s = html.escape(text, quote=False)

    def link(m: re.Match) -> str:
        href = _safe_href(m.group(2))
        return m.group(1) if href is None else f'<a href="{href}">{m.group(1)}</a>'

    s = _LINK.sub(link, s)
    for rx, rep in _INLINE:
        s = rx.sub(rep, s)
    return s


def _flush_plain(plain: list[str], blocks: list[str]) -> None:
    if plain:
        blocks.append(f"<p>{_inline(' '.join(x.strip() for x in plain))}</p>")
        plain.clear()


def _flush_items(items: list[str], blocks: list[str]) -> None:
    if items:
        blocks.append("<ul>" + "".join(f"<li>{_inline(i)}</li>" for i in items) + "</ul>")
        items.clear()


def render_text(text: str | Sequence[str] | None) -> str:
    """Markdown-ish text -> HTML paragraphs and lists (everything escaped)."""
    if not text:
        return ""
    paras = [text] if isinstance(text, str) else list(text)
    blocks: list[str] = []
    for para in paras:
        for block in re.split(r"\n\s*\n", str(para).strip()):
            lines = [ln.rstrip() for ln in block.splitlines() if ln.strip()]
            if not lines:
                continue
            items: list[str] = []
            plain: list[str] = []
            for ln in lines:
                m = re.match(r"^\s*[-*]\s+(.*)$", ln)
                if m:
                    _flush_plain(plain, blocks)
                    items.append(m.group(1))
                elif items and ln.startswith(("  ", "\t")):
                    items[-1] += " " + ln.strip()
                else:
                    _flush_items(items, blocks)
                    plain.append(ln)
            _flush_plain(plain, blocks)
            _flush_items(items, blocks)
    return "\n".join(blocks)


# --------------------------------------------------------------------------------------------------------
# Images and tables
# --------------------------------------------------------------------------------------------------------


def _image_spec(item: Any) -> dict:
    if isinstance(item, str | os.PathLike):
        return {"path": item}
    if isinstance(item, tuple | list) and len(item) == 2:
        return {"path": item[0], "caption": item[1]}
    if isinstance(item, Mapping) and "path" in item:
        return dict(item)
    raise ValueError(f"an image must be a path, (path, caption) or a dict with 'path', got {item!r}")


def _render_image(item: Any, base: Path, embed_max_bytes: int) -> str:
    spec = _image_spec(item)
    path = Path(spec["path"])
    full = path if path.is_absolute() else (Path.cwd() / path)
    if not full.is_file() and not path.is_absolute() and (base / path).is_file():
        full = base / path  # given relative to the report folder
    caption = spec.get("caption")
    alt = html.escape(str(spec.get("alt") or caption or path.name), quote=True)
    cap = f"<figcaption>{_inline(str(caption))}</figcaption>" if caption else ""
    if not full.is_file():
        log.warning("report: image not found: %s", path)
        return f'<p class="missing">image not found: <code>{html.escape(str(path))}</code></p>'
    rel = os.path.relpath(full.resolve(), base.resolve())
    inside = not rel.startswith("..") and not os.path.isabs(rel)
    embed = spec.get("embed")
    size = full.stat().st_size
    if embed is None:
        embed = not inside and size <= embed_max_bytes
    width = spec.get("width")
    style = f' style="width:{int(width)}px"' if width else ""
    if embed:
        mime = _MIME.get(full.suffix.lower(), "application/octet-stream")
        data = base64.b64encode(full.read_bytes()).decode("ascii")
        src = f"data:{mime};base64,{data}"
    else:
        if not inside:
            log.warning("report: %s is outside the report folder and large; linked by relative path", full)
        src = html.escape(quote(Path(rel).as_posix(), safe="/._-~"), quote=True)
    return f'<figure><img src="{src}" alt="{alt}"{style}>{cap}</figure>'


def _fmt(v: Any) -> tuple[str, bool]:
    """A table cell -> (html, is_number)."""
    if v is None:
        return "n/a", False
    if isinstance(v, bool):
        return ("yes" if v else "no"), False
    if isinstance(v, int):
        return f"{v:,}" if abs(v) >= 10_000 else str(v), True
    if isinstance(v, float):
        if math.isnan(v):
            return "n/a", False
        if math.isinf(v):
            return ("∞" if v > 0 else "−∞"), True
        return f"{v:.4g}", True
    try:
        import numpy as np

        if isinstance(v, np.generic):
            return _fmt(v.item())
    except ImportError:  # pragma: no cover
        pass
    return _inline(str(v)), False


def _render_table(item: Any) -> str:
    if isinstance(item, Mapping):
        rows = list(item.get("rows") or [])
        caption = item.get("caption")
        columns = list(item.get("columns") or [])
    else:
        rows, caption, columns = list(item), None, []
    if not columns:
        for r in rows:
            for k in r:
                if k not in columns:
                    columns.append(k)
    if not rows or not columns:
        return '<p class="missing">(empty table)</p>'
    head = "".join(f"<th>{html.escape(str(c))}</th>" for c in columns)
    body = []
    for r in rows:
        cells = []
        for c in columns:
            text, num = _fmt(r.get(c))
            cells.append(f'<td class="num">{text}</td>' if num else f"<td>{text}</td>")
        body.append("<tr>" + "".join(cells) + "</tr>")
    cap = f"<caption>{_inline(str(caption))}</caption>" if caption else ""
    return f"<table>{cap}<thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"


def _as_section(s: Section | Mapping) -> Section:
    if isinstance(s, Section):
        return s
    if isinstance(s, Mapping):
        unknown = set(s) - {"title", "text", "images", "tables"}
        if unknown or "title" not in s:
            raise ValueError(f"a section needs 'title' and may have text/images/tables; got {sorted(s)}")
        return Section(s["title"], s.get("text"), s.get("images") or [], s.get("tables") or [])
    raise ValueError(f"not a section: {s!r}")


def _slug(title: str, used: set[str]) -> str:
    base = re.sub(r"[^a-z0-9]+", "-", title.lower()).strip("-") or "section"
    slug, k = base, 2
    while slug in used:
        slug, k = f"{base}-{k}", k + 1
    used.add(slug)
    return slug


# --------------------------------------------------------------------------------------------------------
# The page
# --------------------------------------------------------------------------------------------------------


def render_report(
    sections: Sequence[Section | Mapping],
    base_dir: str | os.PathLike,
    title: str = "CDAN report",
    subtitle: str | None = None,
    embed_max_bytes: int = EMBED_MAX_BYTES,
) -> str:
    """The report as an HTML string; image paths are made relative to `base_dir`."""
    from .. import __version__

    base = Path(base_dir)
    secs = [_as_section(s) for s in sections]
    used: set[str] = set()
    slugs = [_slug(s.title, used) for s in secs]
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en">',
        "<head>",
        '<meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>{html.escape(title)}</title>",
        f"<style>{CSS}</style>",
        "</head>",
        "<body>",
        "<main>",
        f"<h1>{html.escape(title)}</h1>",
    ]
    if subtitle:
        parts.append(f'<p class="subtitle">{_inline(subtitle)}</p>')
    if len(secs) > 1:
        items = "".join(
            f'<li><a href="#{slug}">{html.escape(s.title)}</a></li>' for s, slug in zip(secs, slugs)
        )
        parts.append(f'<nav class="toc"><strong>Contents</strong><ol>{items}</ol></nav>')
    for s, slug in zip(secs, slugs):
        parts.append(f'<section id="{slug}">')
        parts.append(f"<h2>{html.escape(s.title)}</h2>")
        body = render_text(s.text)
        if body:
            parts.append(body)
        for t in s.tables:
            parts.append(_render_table(t))
        for im in s.images:
            parts.append(_render_image(im, base, embed_max_bytes))
        parts.append("</section>")
    parts += [
        f"<footer>Written by cdan {html.escape(__version__)}.</footer>",
        "</main>",
        "</body>",
        "</html>",
        "",
    ]
    return "\n".join(parts)


def write_report(
    out_html: str | os.PathLike,
    sections: Sequence[Section | Mapping],
    title: str = "CDAN report",
    subtitle: str | None = None,
    embed_max_bytes: int = EMBED_MAX_BYTES,
) -> Path:
    """Write the report atomically to `out_html` and return its path (see the module docstring)."""
    out = Path(out_html)
    out.parent.mkdir(parents=True, exist_ok=True)
    text = render_report(
        sections, out.parent, title=title, subtitle=subtitle, embed_max_bytes=embed_max_bytes
    )
    write_text_atomic(out, text)
    return out
