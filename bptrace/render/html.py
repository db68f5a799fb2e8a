"""`run --format html`: the trace as one self-contained page.

Inline CSS, no script, no font, image or stylesheet from anywhere: the file reads the same
offline, opened from a disk or a mail attachment.  Rules keep their Unicode form (Σ, ·, ⊙)
in a serif face; values are tables with their row and column indices; wide tables scroll
sideways inside their own box rather than widening the page; the sums of small steps are
written out under their table.
"""
from __future__ import annotations

import re
from html import escape

from . import document as doc
from .circuit import circuit_data
from .circuit import svg as circuit_svg
from .common import minus_sign, signed

MAX_COLUMNS = 16

STYLE = """
:root { --ink: #1d232a; --muted: #5f6b76; --line: #d5dbe1; --soft: #f4f6f8; --accent: #1f5f99;
        --given: #8a5a00; --given-bg: #fff4db; }
* { box-sizing: border-box; }
body { margin: 0; color: var(--ink); background: #fff;
       font: 15px/1.5 -apple-system, "Segoe UI", "DejaVu Sans", Helvetica, Arial, sans-serif; }
main { max-width: 1100px; margin: 0 auto; padding: 24px 28px 64px; }
h1 { font-size: 1.6em; margin: 0.2em 0 0.3em; }
h2 { font-size: 1.25em; margin: 2em 0 0.6em; padding-bottom: 4px; border-bottom: 2px solid var(--accent);
     color: var(--accent); }
.meta { color: var(--muted); margin: 0.2em 0; }
.step { margin: 1.2em 0 1.8em; padding: 0.8em 1em 0.6em; border: 1px solid var(--line); border-radius: 6px; }
.step h3 { margin: 0 0 0.3em; font-size: 1.05em; font-family: "DejaVu Sans Mono", Menlo, Consolas, monospace; }
.step h3 .shape { color: var(--muted); font-weight: normal; margin-left: 0.6em; }
.rule { font-family: "DejaVu Serif", Georgia, "Times New Roman", serif; font-size: 1.05em;
        background: var(--soft); padding: 6px 10px; border-left: 3px solid var(--accent); margin: 0.4em 0 0.7em;
        overflow-wrap: anywhere; }
.note { color: var(--given); background: var(--given-bg); padding: 3px 8px; border-radius: 4px;
        display: inline-block; margin: 0.2em 0 0.5em; }
.scroll { overflow-x: auto; margin: 0.3em 0 0.6em; }
.block-title { color: var(--muted); font-size: 0.9em; margin: 0.5em 0 0.1em; }
table.values { border-collapse: collapse; font-family: "DejaVu Sans Mono", Menlo, Consolas, monospace;
               font-size: 0.86em; }
table.values th { color: var(--muted); font-weight: normal; padding: 1px 8px; text-align: right;
                  background: var(--soft); }
table.values td { padding: 1px 8px; text-align: right; border: 1px solid var(--line); white-space: nowrap; }
table.values td.given { background: var(--given-bg); color: var(--given); }
table.values td.zero { color: #9aa5b1; }
table.summary { border-collapse: collapse; margin: 0.5em 0; }
table.summary th, table.summary td { padding: 2px 14px; border-bottom: 1px solid var(--line); text-align: left; }
table.summary td.num, table.summary th.num { text-align: right; }
table.summary tr.total td { font-weight: bold; border-top: 2px solid var(--ink); }
ul.sums { list-style: none; padding: 0; margin: 0.4em 0 0;
          font-family: "DejaVu Sans Mono", Menlo, Consolas, monospace; font-size: 0.84em; }
ul.sums li { padding: 1px 0; overflow-wrap: anywhere; }
ul.sums .label { color: var(--accent); }
footer { color: var(--muted); font-size: 0.85em; margin-top: 3em; }
@media print { .step { break-inside: avoid; } .scroll { overflow: visible; } }
"""


def render(trace, only=None) -> str:
    base = trace.conventions["index_base"]
    parts = ["<!DOCTYPE html>", '<html lang="en">', "<head>", '<meta charset="utf-8">',
             '<meta name="viewport" content="width=device-width, initial-scale=1">',
             f"<title>{escape(trace.name)}</title>", f"<style>{STYLE}</style>", "</head>", "<body>", "<main>",
             f"<h1>{escape(trace.name)}</h1>"]
    if trace.description:
        parts.append(f"<p>{escape(trace.description.strip())}</p>")
    parts.append(f'<p class="meta">conventions: {escape(doc.conventions_text(trace))}</p>')
    if trace.start:
        parts.append(f'<p class="meta">backward pass: {escape(trace.start)}</p>')
    parts += ["<h2>Network</h2>", _summary(trace)]
    circuit = circuit_data(trace)           # an expression graph: its circuit, before the steps
    if circuit:
        parts += ["<h2>Circuit</h2>", f'<div class="scroll">{circuit_svg(circuit)}</div>']
    for title, steps in doc.sections(trace, only):
        parts.append(f"<h2>{escape(title)}</h2>")
        for step in steps:
            parts.append(_step(step, trace, base))
    parts += ["<footer>written by bptrace</footer>", "</main>", "</body>", "</html>", ""]
    return "\n".join(parts)


def _summary(trace) -> str:
    rows = ['<table class="summary">', '<tr><th>layer</th><th>type</th><th class="num">output</th>'
            '<th class="num">parameters</th></tr>']
    for layer, kind, shape, params in doc.summary_rows(trace):
        rows.append(f"<tr><td>{escape(layer)}</td><td>{escape(kind)}</td><td class=\"num\">{escape(shape)}</td>"
                    f"<td class=\"num\">{escape(params) if kind else ''}</td></tr>")
    rows.append(f'<tr class="total"><td></td><td></td><td class="num">total</td>'
                f'<td class="num">{trace.total_params}</td></tr>')
    rows.append("</table>")
    return "\n".join(rows)


def _step(step, trace, base) -> str:
    shape = f'<span class="shape">{escape(doc.shape_text(step.shape))}</span>' if step.values.size > 1 else ""
    parts = [f'<section class="step" id="{escape(step.name)}">', f"<h3>{escape(step.name)}{shape}</h3>",
             f'<div class="rule">{_rule(step.rule)}</div>']
    note = doc.replaced_note(step)
    if note:
        parts.append(f'<div class="note">{escape(note)}</div>')
    parts.append(_values(step, base, step.values))
    if step.computed is not None and (step.computed != step.values).any():
        parts.append('<div class="block-title">computed by the engine before that:</div>')
        parts.append(_values(step, base, step.computed, marks=False))
    parts += [f'<div class="note">{escape(note)}</div>' for note in step.notes]
    lines = doc.sum_lines(step, trace)
    if lines:
        parts.append('<ul class="sums">')
        for line in lines:
            text = doc.plain_line(line)
            head, _, rest = text.partition(" = ")
            parts.append(f'<li><span class="label">{escape(head)}</span> = {escape(rest)}</li>')
        parts.append("</ul>")
    parts.append("</section>")
    return "\n".join(parts)


def _rule(rule: str) -> str:
    """The rule with its summation letters as subscripts: Σ_u → Σ<sub>u</sub>."""
    return re.sub(r"Σ_(\w)", r"Σ<sub>\1</sub>", escape(rule))


def _values(step, base, values, marks=True) -> str:
    if values.size == 1:
        return f'<div class="scroll"><table class="values"><tr><td>{escape(signed(values.reshape(-1)[0]))}' \
               "</td></tr></table></div>"
    parts = []
    for block in doc.blocks(step, base, MAX_COLUMNS, values=values):
        if block.title or block.caption:
            parts.append(f'<div class="block-title">{escape(" · ".join(t for t in (block.title, block.caption) if t))}</div>')
        rows = ["<tr><th></th>" + "".join(f"<th>{escape(c)}</th>" for c in block.column_labels) + "</tr>"]
        for label, cells, given in zip(block.row_labels, block.cells, block.given):
            tds = []
            for value, pinned in zip(cells, given):
                css = "given" if pinned and marks else ("zero" if value == "0" else "")
                tds.append(f'<td class="{css}">{escape(minus_sign(value))}</td>' if css else f"<td>{escape(minus_sign(value))}</td>")
            rows.append(f"<tr><th>{escape(label)}</th>{''.join(tds)}</tr>")
        parts.append('<div class="scroll"><table class="values">' + "".join(rows) + "</table></div>")
    return "\n".join(parts)
