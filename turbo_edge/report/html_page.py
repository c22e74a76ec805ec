"""The report's static ``index.html``: one page, inline CSS, a table of contents and every section's blocks."""

from __future__ import annotations

import html
import re

from turbo_edge.report.blocks import ClipGrid, Section, Table, _intro, _slug
from turbo_edge.report.plots import Plot

CSS = """
body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 1150px; padding: 0 1em; color: #222; }
h2 { border-bottom: 1px solid #ccc; padding-bottom: .2em; margin-top: 2em; }
.wide { overflow-x: auto; }
table { border-collapse: collapse; margin: .8em 0 1.4em; font-size: 14px; }
caption { text-align: left; font-weight: 600; padding-bottom: .3em; }
th, td { border: 1px solid #ccc; padding: 3px 8px; }
th { background: #f0f0f0; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
tbody tr:nth-child(even) { background: #fafafa; }
code { background: #f4f4f4; padding: 0 3px; }
.source { color: #555; font-size: 13px; }
figure { margin: 1em 0; }
figcaption { color: #555; font-size: 13px; }
figure img { max-width: 100%; }
table.clips td { text-align: center; vertical-align: top; font-size: 12px; }
table.clips img { width: 128px; height: 128px; image-rendering: pixelated; }
"""


def _code_spans(text: str) -> str:
    return re.sub(r"`([^`]*)`", r"<code>\1</code>", html.escape(text))


def _html(sections: list[Section], sources: list[str], skipped: list[str]) -> str:
    e = html.escape
    out = ["<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8"><title>turbo-edge report</title>',
           f"<style>{CSS}</style></head><body>", "<h1>turbo-edge report</h1>",
           f"<p>{_code_spans(_intro(sources, skipped))}</p>"]
    if sections:
        out.append("<ul>" + "".join(f'<li><a href="#{_slug(s.title)}">{e(s.title)}</a></li>' for s in sections) + "</ul>")
    for section in sections:
        out.append(f'<h2 id="{_slug(section.title)}">{e(section.title)}</h2>')
        if section.source:
            command = f"; command: <code>{e(section.command)}</code>" if section.command else ""
            out.append(f'<p class="source">Source: <code>{e(section.source)}</code>{command}</p>')
        for block in section.blocks:
            if isinstance(block, Table):
                out.append('<div class="wide"><table>' + (f"<caption>{e(block.caption)}</caption>" if block.caption else ""))
                out.append("<thead><tr>" + "".join(f"<th>{e(c)}</th>" for c in block.columns) + "</tr></thead><tbody>")
                for row in block.cells:
                    out.append("<tr>" + "".join(f'<td{" class=num" if n else ""}>{e(c)}</td>' for c, n in zip(row, block.numeric)) + "</tr>")
                out.append("</tbody></table></div>")
            elif isinstance(block, Plot):
                out.append(f'<figure><img src="{e(block.path)}" alt="{e(block.caption)}"><figcaption>{e(block.caption)}</figcaption></figure>')
            elif isinstance(block, ClipGrid):
                for prompt in block.prompts:
                    out.append(f'<div class="wide"><table class="clips"><caption>{e(prompt)}</caption><tr>' + "".join(f"<th>{e(r)}</th>" for r in block.rows) + "</tr><tr>")
                    for row in block.rows:
                        path = block.paths[(row, prompt)]
                        out.append(f'<td><img src="{e(path)}" alt="{e(row)}: {e(prompt)}"></td>' if path else "<td>(missing)</td>")
                    out.append("</tr></table></div>")
            else:
                out.append(f"<p>{_code_spans(block)}</p>")
    out.append("</body></html>")
    return "\n".join(out) + "\n"
