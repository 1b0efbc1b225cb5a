"""The report as one self-contained HTML page: inline CSS, plots as ``data:`` images, no script.

The page carries its own Content-Security-Policy (``<meta http-equiv>``), so even opened from disk
it can make no request. Its figures are also embedded as a JSON data block (``#report-data``, never
executed) for programs that read reports.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Sequence
from html import escape
from typing import Any

from training.report.plots import Plot

PAGE_CSP = "default-src 'none'; style-src 'unsafe-inline'; img-src data:; base-uri 'none'; form-action 'none'"
CSS = """
body { font: 14px/1.45 system-ui, sans-serif; margin: 0 auto; max-width: 1000px; padding: 1em 1.5em; color: #222; }
h1 { font-size: 1.5em; margin-bottom: .2em; } h2 { margin-top: 1.8em; border-bottom: 1px solid #ddd; }
table { border-collapse: collapse; margin: .6em 0; } caption { text-align: left; font-weight: 600; }
th, td { padding: .2em .7em; border-bottom: 1px solid #eee; text-align: right; }
th:first-child, td:first-child { text-align: left; }
.decision { padding: .8em 1em; border-radius: 6px; font-size: 1.1em; }
.promoted { background: #e6f4ea; } .rejected { background: #fdf3e1; } .failed { background: #fde8e8; }
.win { color: #137333; } .loss { color: #b3261e; } code { font-size: .95em; }
figure { margin: 1em 0; } figure img { max-width: 100%; height: auto; } figcaption { color: #555; }
nav a { margin-right: .8em; } .muted { color: #666; } pre { white-space: pre-wrap; background: #f6f6f6; padding: .6em; }
"""


def usd(value: float | None, digits: int = 2) -> str:
    """``1,234.56``; ``—`` for none, ``∞`` for a model that left rows unpriced."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "—"
    if math.isinf(value):
        return "∞ (unpriced rows)"
    return f"{value:,.{digits}f}"


def table(headers: Sequence[str], rows: Iterable[Sequence[str]], caption: str = "", css: str = "") -> str:
    """A table of already-escaped cells."""
    head = "".join(f"<th>{escape(h)}</th>" for h in headers)
    body = "".join("<tr>" + "".join(f"<td>{cell}</td>" for cell in row) + "</tr>" for row in rows)
    cap = f"<caption>{escape(caption)}</caption>" if caption else ""
    cls = f' class="{css}"' if css else ""
    return f"<table{cls}>{cap}<thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def figure(plot: Plot) -> str:
    """A plot as a ``<figure>``: its image inline, its title (and its note, if any) as the caption."""
    note = f'<span class="note">: {escape(plot.note)}</span>' if plot.note else ""
    return (
        f'<figure><img src="{plot.uri}" alt="{escape(plot.alt)}">'
        f"<figcaption>{escape(plot.title)}{note}</figcaption></figure>"
    )


def data_block(summary: dict[str, Any]) -> str:
    """The summary as a JSON data block; ``<`` is escaped so no value can close the element."""
    text = json.dumps(_strict(summary), indent=1, allow_nan=False).replace("<", "\\u003c")
    return f'<script type="application/json" id="report-data">{text}</script>'


def render(title: str, decision: str, sections: Sequence[tuple[str, str, str]], summary: dict[str, Any]) -> str:
    """The page: a title, then each (anchor, heading, body HTML) section, with a table of contents."""
    nav = "".join(f'<a href="#{anchor}">{escape(heading)}</a>' for anchor, heading, _ in sections)
    body = "".join(
        f'<section id="{anchor}"><h2>{escape(heading)}</h2>{html}</section>' for anchor, heading, html in sections
    )
    return (
        "<!doctype html>\n"
        f'<html lang="en"><head><meta charset="utf-8">'
        f'<meta http-equiv="Content-Security-Policy" content="{PAGE_CSP}">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{escape(title)}</title><style>{CSS}</style></head>"
        f'<body data-decision="{escape(decision)}"><h1>{escape(title)}</h1><nav>{nav}</nav>{body}'
        f"{data_block(summary)}</body></html>\n"
    )


def _strict(value: Any) -> Any:
    """JSON without NaN or Infinity: a non-finite number becomes null."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {str(k): _strict(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_strict(v) for v in value]
    return value
