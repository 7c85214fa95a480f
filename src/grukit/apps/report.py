"""One self-contained HTML page for ``grukit demo``: sections of text, tables and images (PNG
files next to the page, linked relatively)."""

from __future__ import annotations

import html
import os
import platform
import time
from dataclasses import dataclass, field

from grukit._io import atomic_write_text

__all__ = ["Section", "write_html"]

_STYLE = """
body{font-family:system-ui,sans-serif;max-width:980px;margin:2em auto;padding:0 1em;color:#222}
h1{font-size:1.6em}h2{border-bottom:1px solid #ddd;padding-bottom:.2em;margin-top:2em}
table{border-collapse:collapse;margin:1em 0}td,th{padding:.25em .8em;border-bottom:1px solid #eee;
text-align:right}th{background:#f6f6f6}td:first-child,th:first-child{text-align:left}
tr.ours td{font-weight:600}img{max-width:100%;border:1px solid #eee;margin:.5em 0}
.note{color:#555;font-size:.92em}code{background:#f4f4f4;padding:0 .25em}
"""


@dataclass
class Section:
    title: str
    paragraphs: list[str] = field(default_factory=list)
    header: list[str] = field(default_factory=list)
    rows: list[list] = field(default_factory=list)
    highlight: set[int] = field(default_factory=set)  # row indices shown in bold
    images: list[str] = field(default_factory=list)  # paths relative to the page
    notes: list[str] = field(default_factory=list)


def _cell(v) -> str:
    if isinstance(v, float):
        return f"{v:.4g}" if abs(v) >= 1000 or abs(v) < 0.01 else f"{v:.3f}".rstrip("0").rstrip(".")
    return html.escape(str(v))


def write_html(path: str | os.PathLike, title: str, sections: list[Section], footer: str = "") -> None:
    import torch

    import grukit

    parts = [
        f"<!doctype html><meta charset='utf-8'><title>{html.escape(title)}</title>",
        f"<style>{_STYLE}</style><h1>{html.escape(title)}</h1>",
        f"<p class='note'>{time.strftime('%Y-%m-%d %H:%M')} &middot; grukit {grukit.__version__} "
        f"&middot; torch {torch.__version__} &middot; Python {platform.python_version()} &middot; "
        f"{torch.get_num_threads()} threads &middot; {html.escape(platform.platform())}</p>",
    ]
    for s in sections:
        parts.append(f"<h2>{html.escape(s.title)}</h2>")
        parts += [f"<p>{html.escape(p)}</p>" for p in s.paragraphs]
        if s.header:
            parts.append("<table><tr>" + "".join(f"<th>{html.escape(h)}</th>" for h in s.header) + "</tr>")
            for i, row in enumerate(s.rows):
                cls = " class='ours'" if i in s.highlight else ""
                parts.append(f"<tr{cls}>" + "".join(f"<td>{_cell(v)}</td>" for v in row) + "</tr>")
            parts.append("</table>")
        parts += [f"<img src='{html.escape(img)}' alt='{html.escape(img)}'>" for img in s.images]
        parts += [f"<p class='note'>{html.escape(n)}</p>" for n in s.notes]
    if footer:
        parts.append(f"<p class='note'>{html.escape(footer)}</p>")
    atomic_write_text(path, "\n".join(parts) + "\n")
