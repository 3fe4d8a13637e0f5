"""HTML and PNG rendering of the lake report: one self-contained page (inline CSS, images as
base64 PNG, no script, nothing fetched from the network).

Every value that comes from the data goes through `esc` (html.escape): the builders below take
plain values and escape them, so a document holding `<script>` is shown as text.
"""

from __future__ import annotations

import base64
import html
import io
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
from matplotlib.figure import Figure  # no pyplot: no display, no global figure state

STYLE = """
body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 1200px; color: #222; }
h1 { font-size: 1.6em; } h2 { border-bottom: 1px solid #ccc; margin-top: 2em; }
table { border-collapse: collapse; margin: 0.6em 0; font-size: 0.9em; }
th, td { border: 1px solid #ddd; padding: 3px 8px; text-align: left; vertical-align: top; }
th { background: #f3f3f3; } td.num { text-align: right; font-variant-numeric: tabular-nums; }
pre { white-space: pre-wrap; word-break: break-word; background: #f8f8f8; padding: 6px;
      margin: 2px 0; font-size: 0.8em; max-height: 12em; overflow: auto; }
.missing { color: #777; font-style: italic; }
.figures { display: flex; flex-wrap: wrap; gap: 8px; } .figures img { max-width: 380px; }
figure { margin: 0; } figcaption { font-size: 0.75em; color: #555; }
img.wide { max-width: 100%; }
nav a { margin-right: 1em; }
"""


def esc(value: object) -> str:
    return html.escape("" if value is None else str(value), quote=True)


def fmt(value: object) -> str:
    """Numbers readable at a glance: thousands separators, 4 significant digits."""
    if isinstance(value, bool) or value is None:
        return "" if value is None else str(value)
    if isinstance(value, int | np.integer):
        return f"{int(value):,}"
    if isinstance(value, float | np.floating):
        if not math.isfinite(value):
            return str(value)
        return f"{value:,.0f}" if abs(value) >= 1e4 else f"{value:.4g}"
    return str(value)


def truncate(text: object, limit: int) -> str:
    text = "" if text is None else str(text)
    return text if len(text) <= limit else text[:limit] + f"… [{len(text) - limit:,} more chars]"


def _cell(value: object) -> str:
    numeric = isinstance(value, int | float | np.integer | np.floating)
    if numeric and not isinstance(value, bool):
        return f'<td class="num">{esc(fmt(value))}</td>'
    return f"<td>{esc(fmt(value))}</td>"


def table(
    headers: Sequence[str], rows: Iterable[Sequence[object]], html_columns: Sequence[int] = ()
) -> str:
    """Every cell escaped, except the `html_columns`: markup built by this module (samples)."""
    head = "".join(f"<th>{esc(h)}</th>" for h in headers)
    body = "".join(
        "<tr>" + "".join(f"<td>{v}</td>" if i in html_columns else _cell(v)
                         for i, v in enumerate(row)) + "</tr>"
        for row in rows
    )
    return f"<table><tr>{head}</tr>{body}</table>"


def paragraph(text: str) -> str:
    return f"<p>{esc(text)}</p>"


def samples(texts: Iterable[str]) -> str:
    return "".join(f"<pre>{esc(text)}</pre>" for text in texts)


def image(png: bytes, alt: str, wide: bool = False) -> str:
    data = base64.b64encode(png).decode("ascii")
    css = ' class="wide"' if wide else ""
    return f'<img{css} alt="{esc(alt)}" src="data:image/png;base64,{data}">'


def figures(items: Iterable[tuple[bytes, str]]) -> str:
    """Images side by side, each captioned with its name."""
    cells = "".join(f"<figure>{image(png, name)}<figcaption>{esc(name)}</figcaption></figure>"
                    for png, name in items)
    return f'<div class="figures">{cells}</div>'


@dataclass
class Section:
    """One part of the page; `missing` (one line naming the job to run) replaces the body."""

    anchor: str
    title: str
    body: list[str] = field(default_factory=list)
    missing: str | None = None
    pngs: dict[str, bytes] = field(default_factory=dict)  # file name -> PNG, written beside

    def html(self) -> str:
        content = (f'<p class="missing">{esc(self.missing)}</p>' if self.missing
                   else "".join(self.body))
        return f'<section id="{esc(self.anchor)}"><h2>{esc(self.title)}</h2>{content}</section>'


def page(title: str, subtitle: str, sections: Sequence[Section]) -> str:
    nav = "".join(f'<a href="#{esc(s.anchor)}">{esc(s.title)}</a>' for s in sections)
    return (
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
        f"<title>{esc(title)}</title><style>{STYLE}</style></head><body>"
        f"<h1>{esc(title)}</h1><p>{esc(subtitle)}</p><nav>{nav}</nav>"
        + "".join(s.html() for s in sections)
        + "</body></html>\n"
    )


def _png(fig: Figure) -> bytes:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=90)  # fixed margins: a tight bbox renders twice
    return buffer.getvalue()


def _axes(width: float, height: float, left: float = 0.16, bottom: float = 0.16):
    fig = Figure(figsize=(width, height))
    fig.subplots_adjust(left=left, bottom=bottom, right=0.97, top=0.88)
    return fig, fig.add_subplot()


def histogram_png(name: str, edges: np.ndarray, counts: Mapping[str, np.ndarray]) -> bytes:
    """Step histograms of one column, one line per group (source), on shared bin edges."""
    fig, ax = _axes(4.2, 2.6)
    for group, values in counts.items():
        ax.stairs(values, edges, label=f"{group} ({int(values.sum()):,})", lw=1.3)
    ax.set_title(name, fontsize=9)
    ax.set_ylabel("documents", fontsize=8)
    ax.tick_params(labelsize=7)
    if len(counts) > 1:
        ax.legend(fontsize=6, loc="best")
    ax.grid(alpha=0.3)
    return _png(fig)


def funnel_png(stages: Sequence[tuple[str, int]]) -> bytes:
    fig, ax = _axes(7, 0.45 * len(stages) + 0.8, left=0.25, bottom=0.3)
    names = [name for name, _ in stages][::-1]
    values = [count for _, count in stages][::-1]
    ax.barh(names, values, color="#4a7ab5")
    for y, value in enumerate(values):
        ax.text(value, y, f" {value:,}", va="center", fontsize=8)
    ax.set_xlabel("documents")
    ax.set_xlim(0, max(values + [1]) * 1.15)
    return _png(fig)


def bars_png(title: str, labels: Sequence[str], values: Sequence[float], xlabel: str) -> bytes:
    fig, ax = _axes(7, 0.3 * len(labels) + 1, left=0.45, bottom=0.2)
    ax.barh(list(labels)[::-1], list(values)[::-1], color="#b5654a")
    ax.set_title(title, fontsize=9)
    ax.set_xlabel(xlabel, fontsize=8)
    ax.tick_params(labelsize=7)
    return _png(fig)
