"""Small HTML building blocks for the report: escaping, tables, inline images, the page.

The page is one self-contained file: the stylesheet is inline and images are PNG data
URIs, so it opens anywhere (a browser, a CI artifact, the service) without its directory.
"""

from __future__ import annotations

import base64
import html
from collections.abc import Iterable, Sequence

__all__ = ["Raw", "esc", "link", "img", "table", "section", "card", "page"]


class Raw(str):
    """Trusted HTML (built by this module), inserted without escaping."""


def esc(text: object) -> str:
    return html.escape(str(text), quote=True)


def link(href: str, text: str) -> Raw:
    return Raw(f'<a href="{esc(href)}">{esc(text)}</a>')


def img(png: bytes, *, alt: str) -> Raw:
    data = base64.b64encode(png).decode("ascii")
    return Raw(f'<img class="figure" alt="{esc(alt)}" src="data:image/png;base64,{data}">')


def _cell(value: object, tag: str) -> str:
    if isinstance(value, Raw):
        return f"<{tag}>{value}</{tag}>"
    if isinstance(value, tuple):
        text, css = value
        body = text if isinstance(text, Raw) else esc(text)
        return f'<{tag} class="{esc(css)}">{body}</{tag}>'
    return f"<{tag}>{esc(value)}</{tag}>"


def table(
    headers: Sequence[str],
    rows: Iterable[Sequence[object]],
    *,
    numeric: Iterable[int] = (),
    caption: str = "",
) -> Raw:
    """An HTML table; columns in ``numeric`` are right-aligned (tabular figures). A cell is
    text (escaped), ``Raw`` HTML, or ``(text, css class)``."""
    numeric = set(numeric)
    head = "".join(
        f'<th class="num">{esc(h)}</th>' if i in numeric else f"<th>{esc(h)}</th>"
        for i, h in enumerate(headers)
    )
    body = []
    for row in rows:
        cells = []
        for i, value in enumerate(row):
            if i in numeric and not isinstance(value, tuple):
                value = (value, "num")
            cells.append(_cell(value, "td"))
        body.append("<tr>" + "".join(cells) + "</tr>")
    cap = f"<caption>{esc(caption)}</caption>" if caption else ""
    return Raw(
        f'<div class="table-wrap"><table>{cap}<thead><tr>{head}</tr></thead>'
        f"<tbody>{''.join(body)}</tbody></table></div>"
    )


def card(label: str, value: str, detail: str = "") -> Raw:
    extra = f'<div class="card-detail">{esc(detail)}</div>' if detail else ""
    return Raw(
        f'<div class="card"><div class="card-label">{esc(label)}</div>'
        f'<div class="card-value">{esc(value)}</div>{extra}</div>'
    )


def section(anchor: str, title: str, *parts: object, intro: str = "") -> Raw:
    body = "".join(p if isinstance(p, Raw) else f"<p>{esc(p)}</p>" for p in parts)
    lead = f'<p class="intro">{esc(intro)}</p>' if intro else ""
    return Raw(f'<section id="{esc(anchor)}"><h2>{esc(title)}</h2>{lead}{body}</section>')


_CSS = """
:root { --ink: #1b1f24; --muted: #5b6470; --line: #dfe3e8; --accent: #1f5fbf; --bg: #f6f7f9; }
* { box-sizing: border-box; }
body { margin: 0; font: 15px/1.5 -apple-system, "Segoe UI", Roboto, "Helvetica Neue", Arial,
       sans-serif; color: var(--ink); background: var(--bg); }
header { background: #14213d; color: #fff; padding: 22px 32px 18px; }
header h1 { margin: 0 0 4px; font-size: 24px; font-weight: 650; }
header .sub { color: #c9d3e3; font-size: 14px; }
nav { background: #fff; border-bottom: 1px solid var(--line); padding: 8px 32px;
      position: sticky; top: 0; z-index: 2; }
nav a { margin-right: 18px; color: var(--accent); text-decoration: none; font-size: 14px; }
main { max-width: 1120px; margin: 0 auto; padding: 8px 24px 48px; }
section { background: #fff; border: 1px solid var(--line); border-radius: 8px;
          padding: 18px 24px; margin: 18px 0; }
h2 { font-size: 19px; margin: 0 0 8px; }
h3 { font-size: 16px; margin: 22px 0 6px; }
p.intro, p.note { color: var(--muted); margin: 0 0 12px; font-size: 14px; }
p.warn { color: #8a4b00; background: #fff6e5; padding: 6px 10px; border-radius: 4px; }
.cards { display: flex; flex-wrap: wrap; gap: 12px; margin: 6px 0 4px; }
.card { flex: 1 1 160px; border: 1px solid var(--line); border-radius: 6px; padding: 10px 14px;
        background: #fbfcfd; }
.card-label { color: var(--muted); font-size: 12px; text-transform: uppercase;
              letter-spacing: .04em; }
.card-value { font-size: 22px; font-weight: 650; margin-top: 2px; }
.card-detail { color: var(--muted); font-size: 12px; }
img.figure { display: block; max-width: 100%; height: auto; margin: 8px auto 14px; }
.table-wrap { overflow-x: auto; margin: 8px 0 14px; }
table { border-collapse: collapse; width: 100%; font-size: 13.5px; }
caption { text-align: left; color: var(--muted); font-size: 13px; padding-bottom: 4px; }
th { text-align: left; font-weight: 600; border-bottom: 2px solid var(--line);
     padding: 6px 10px; white-space: nowrap; background: #fbfcfd; }
td { border-bottom: 1px solid var(--line); padding: 5px 10px; white-space: nowrap; }
tbody tr:nth-child(even) td { background: #fafbfc; }
tbody tr:hover td { background: #eef4fd; }
.num { text-align: right; font-variant-numeric: tabular-nums; }
td.wrap { white-space: normal; min-width: 220px; }
.good { color: #17692f; font-weight: 600; }
.config { border-top: 1px solid var(--line); margin-top: 18px; padding-top: 6px; }
.two { display: grid; grid-template-columns: 1fr 1fr; gap: 18px; }
@media (max-width: 900px) { .two { grid-template-columns: 1fr; } }
footer { color: var(--muted); font-size: 12px; text-align: center; padding: 12px; }
a { color: var(--accent); }
"""


def page(
    *, title: str, subtitle: str, nav: Sequence[tuple[str, str]], body: Sequence[Raw], footer: str
) -> str:
    links = "".join(f'<a href="#{esc(anchor)}">{esc(text)}</a>' for anchor, text in nav)
    return (
        "<!DOCTYPE html>\n"
        '<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{esc(title)}</title><style>{_CSS}</style></head><body>"
        f'<header><h1>{esc(title)}</h1><div class="sub">{esc(subtitle)}</div></header>'
        f"<nav>{links}</nav><main>{''.join(body)}</main>"
        f"<footer>{esc(footer)}</footer></body></html>\n"
    )
