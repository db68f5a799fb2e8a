"""`run --format html`: the trace as one self-contained page.

Inline CSS and SVG, and one small inline script; no font, image, stylesheet or script from
anywhere: the file reads the same offline, opened from a disk or a mail attachment.

What the page shows, from the view every renderer reads (`view.py`):
- a sidebar listing every step by phase, each a link; a diagram of the network (layers,
  shapes, what reads what) and its summary at the top; the results at the end;
- each step's rule, with the names of other steps linked to them; its values as a table with
  row and column indices, or, for a value of more than `HEAT_LIMIT` numbers, as a heatmap on a
  diverging scale (red positive, blue negative, one scale per step) whose cells give their
  index and value on hover, the numbers themselves one click away;
- pictures: a max-pool's windows, each in its colour with its winner outlined, and the delta
  routed back to the winners; the cells a chosen element reads (a convolution's kernel window
  over its input, the input cells behind a kernel-gradient element), outlined;
- every number whose sum was recorded is a link: clicking it shows its sum term by term,
  each factor a link to the step (and the term) it came from.  The sums are written into the
  page as JSON (only steps small enough to have their sums recorded), so no server is needed;
  `page.html#explain=c1.out[0,0]` opens one on load.  Without JavaScript (an untrusted
  notebook), the links still move between steps and the sums are written under each step.
"""
from __future__ import annotations

import json
from html import escape

from .layout import DEFAULT_DIGITS
from .. import notation as nt
from ..formula import text as formula_text
from .circuit import circuit_data
from .circuit import svg as circuit_svg
from .view import HEAT_LIMIT, plain_line, step_view, trace_view, zero_note
from .common import sum_pieces

STYLE = """
:root { --ink: #1d232a; --muted: #5f6b76; --line: #d5dbe1; --soft: #f4f6f8; --accent: #1f5f99;
        --given: #8a5a00; --given-bg: #fff4db; --side: 250px; }
* { box-sizing: border-box; }
body { margin: 0; color: var(--ink); background: #fff;
       font: 15px/1.5 -apple-system, "Segoe UI", "DejaVu Sans", Helvetica, Arial, sans-serif; }
a { color: var(--accent); text-decoration: none; }
a:hover { text-decoration: underline; }
nav.steps { position: fixed; top: 0; left: 0; bottom: 0; width: var(--side); overflow-y: auto;
            padding: 14px 10px 40px 16px; background: var(--soft); border-right: 1px solid var(--line);
            font-size: 13px; }
nav.steps .phase { font-weight: bold; color: var(--accent); margin: 0.9em 0 0.2em; }
nav.steps a { display: block; font-family: "DejaVu Sans Mono", Menlo, Consolas, monospace; padding: 0 4px;
              white-space: nowrap; overflow: hidden; text-overflow: ellipsis; }
main { margin-left: var(--side); max-width: 1150px; padding: 20px 28px 64px; }
h1 { font-size: 1.6em; margin: 0.2em 0 0.3em; }
h2 { font-size: 1.25em; margin: 2em 0 0.6em; padding-bottom: 4px; border-bottom: 2px solid var(--accent);
     color: var(--accent); }
.meta { color: var(--muted); margin: 0.2em 0; }
.step { margin: 1.2em 0 1.8em; padding: 0.8em 1em 0.6em; border: 1px solid var(--line); border-radius: 6px; }
.step h3 { margin: 0 0 0.3em; font-size: 1.05em; font-family: "DejaVu Sans Mono", Menlo, Consolas, monospace; }
.step h3 .shape { color: var(--muted); font-weight: normal; margin-left: 0.6em; }
.step h3 .scale { color: var(--given); font-weight: normal; margin-left: 0.6em; }
.rule { font-family: "DejaVu Serif", Georgia, "Times New Roman", serif; font-size: 1.05em;
        background: var(--soft); padding: 6px 10px; border-left: 3px solid var(--accent); margin: 0.4em 0 0.7em;
        overflow-wrap: anywhere; }
.note { color: var(--given); background: var(--given-bg); padding: 3px 8px; border-radius: 4px;
        display: inline-block; margin: 0.2em 0 0.5em; }
.dim { color: var(--muted); font-size: 0.9em; margin: 0.3em 0; }
.scroll { overflow-x: auto; margin: 0.3em 0 0.6em; }
.block-title { color: var(--muted); font-size: 0.9em; margin: 0.5em 0 0.1em; }
.blocks { display: flex; flex-wrap: wrap; gap: 6px 22px; align-items: flex-start; }
.blocks > div { max-width: 100%; }
table.values { border-collapse: collapse; font-family: "DejaVu Sans Mono", Menlo, Consolas, monospace;
               font-size: 0.84em; }
table.values th { color: var(--muted); font-weight: normal; padding: 1px 6px; text-align: right;
                  background: var(--soft); }
table.values td { padding: 1px 6px; text-align: right; border: 1px solid var(--line); white-space: pre; }
table.values td.given { background: var(--given-bg); color: var(--given); }
table.values td.zero { color: #9aa5b1; }
table.values td.win { outline: 2px solid #333; outline-offset: -2px; font-weight: bold; }
table.values td.read { outline: 2px solid #c0392b; outline-offset: -2px; }
table.values td small { display: block; font-size: 0.75em; color: var(--muted); line-height: 1.1; }
td[data-e], a[data-e] { cursor: pointer; }
td[data-e]:hover { background: #e3eef9; }
table.heat { border-collapse: collapse; }
table.heat td { width: 13px; height: 13px; padding: 0; border: 1px solid #fff; }
table.heat th { font: 9px monospace; color: var(--muted); padding: 0 2px; }
.pictures { display: flex; flex-wrap: wrap; gap: 10px 26px; align-items: center; margin: 0.4em 0 0.8em; }
.pictures .arrow { font-size: 1.6em; color: var(--muted); }
.picture-title { font-weight: bold; margin: 0.6em 0 0.2em; font-size: 0.95em; }
details summary { cursor: pointer; color: var(--accent); font-size: 0.9em; }
table.summary { border-collapse: collapse; margin: 0.5em 0; }
table.summary th, table.summary td { padding: 2px 14px; border-bottom: 1px solid var(--line); text-align: left; }
table.summary td.num, table.summary th.num { text-align: right; }
table.summary tr.total td { font-weight: bold; border-top: 2px solid var(--ink); }
svg.network { max-width: 100%; height: auto; margin: 0.3em 0 0.8em; }
svg.network text { font: 12px "DejaVu Sans", Helvetica, Arial, sans-serif; fill: var(--ink); }
svg.network text.type { fill: var(--muted); font-size: 11px; }
ul.sums { list-style: none; padding: 0; margin: 0.4em 0 0;
          font-family: "DejaVu Sans Mono", Menlo, Consolas, monospace; font-size: 0.84em; }
ul.sums li { padding: 1px 0; overflow-wrap: anywhere; }
ul.sums .label { color: var(--accent); }
.result { border: 2px solid var(--accent); border-radius: 6px; padding: 6px 12px; margin: 0.6em 0; display: inline-block;
          max-width: 100%; }
.result .what { color: var(--muted); margin-left: 0.6em; }
code { font-family: "DejaVu Sans Mono", Menlo, Consolas, monospace; font-size: 0.9em; background: var(--soft);
       padding: 1px 4px; border-radius: 3px; }
#explain { position: fixed; right: 18px; bottom: 18px; width: min(560px, calc(100vw - var(--side) - 60px));
           max-height: 60vh; overflow: auto; background: #fff; border: 2px solid var(--accent); border-radius: 8px;
           box-shadow: 0 6px 24px rgba(0, 0, 0, 0.18); padding: 10px 14px; font-size: 14px; display: none; }
#explain.open { display: block; }
#explain .close { float: right; cursor: pointer; color: var(--muted); }
#explain table { border-collapse: collapse; font-family: "DejaVu Sans Mono", Menlo, Consolas, monospace;
                 font-size: 0.9em; margin-top: 0.4em; }
#explain td { padding: 1px 8px; border-bottom: 1px solid var(--line); text-align: right; }
footer { color: var(--muted); font-size: 0.85em; margin-top: 3em; }
table.values td.hot { color: var(--ink); }
@media print { nav.steps, #explain { display: none; } main { margin-left: 0; }
               .step { break-inside: avoid; } .scroll { overflow: visible; } }
"""

# Opens a number's sum in the #explain panel: from a click on anything with data-e, or from
# the page's address (#explain=name[index]).  The sums are the JSON in #bp-sums.
SCRIPT = """
(function () {
  var sums = JSON.parse(document.getElementById('bp-sums').textContent);
  var panel = document.getElementById('explain');
  function esc(s) { return s.replace(/&/g, '&amp;').replace(/</g, '&lt;'); }
  function step(label) { return 's-' + label.replace(/\\[.*$/, ''); }
  function link(label, text) {
    var known = sums[label] ? ' data-e="' + esc(label) + '"' : '';
    return '<a href="#' + esc(step(label)) + '"' + known + '>' + esc(text) + '</a>';
  }
  function open(label) {
    var e = sums[label];
    if (!e) { return false; }
    var rows = e.terms.map(function (t, k) {
      var factors = t.f.map(function (f) { return f[1] ? link(f[1], f[0]) + '<br><small>' + esc(f[1]) + '</small>' : esc(f[0]); });
      return '<tr><td>' + (k + 1) + '</td><td>' + factors.join('</td><td>·</td><td>') + '</td><td>' + esc(t.s) + '</td></tr>';
    });
    panel.innerHTML = '<span class="close" title="close">✕</span><b>' + link(label, label) + ' = ' + esc(e.v) + '</b>' +
      '<div class="dim">' + esc(e.r) + '</div>' + '<div>' + esc(e.b) + '</div>' +
      (rows.length ? '<table>' + rows.join('') + '</table>' : '') + (e.n ? '<div class="dim">' + esc(e.n) + '</div>' : '');
    panel.className = 'open';
    panel.setAttribute('data-open', label);
    return true;
  }
  document.addEventListener('click', function (event) {
    var target = event.target.closest('[data-e]');
    if (event.target.classList.contains('close')) { panel.className = ''; return; }
    if (target && open(target.getAttribute('data-e')) && target.tagName !== 'A') { event.preventDefault(); }
  });
  var hash = decodeURIComponent(location.hash || '');
  // the panel is fixed on the screen: it opens where the page is, its first link goes to the step
  if (hash.indexOf('#explain=') === 0) { open(hash.slice(9)); }
})();
"""

# Said only where the script runs: a notebook shows the page without it (bptrace/api.py).
CLICK_HINT = " · click a number to see its sum"

WINDOW_COLOURS = ("#e8f0fc", "#fdedd9", "#e7f4e4", "#f5e7f7", "#fdf6d6", "#dff3f6")
WINNER_COLOURS = ("#2166ac", "#b35806", "#2e7d32", "#8e2a8e", "#8a6d00", "#00767e")


def anchor(name: str) -> str:
    return "s-" + name


def render(trace, only=None, digits: int = DEFAULT_DIGITS, summary: bool = False) -> str:
    view = trace_view(trace, only, digits, steps=not summary)
    by_name = {step.name: step for _, steps in view.sections for step in steps}
    page = Page(view, by_name)
    parts = ["<!DOCTYPE html>", '<html lang="en">', "<head>", '<meta charset="utf-8">',
             '<meta name="viewport" content="width=device-width, initial-scale=1">',
             f"<title>{escape(view.title)}</title>", f"<style>{STYLE}{HEAT_CSS}</style>", "</head>", "<body>",
             page.sidebar(), "<main>", f'<h1 id="top">{escape(view.title)}</h1>']
    if view.description:
        parts.append(f"<p>{escape(view.description)}</p>")
    parts.append(f'<p class="meta">conventions: {escape(view.conventions)}</p>')
    if view.start:
        parts.append(f'<p class="meta">backward pass: {escape(view.start)}</p>')
    parts.append(f'<p class="meta">legend: {escape(view.legend)}{CLICK_HINT}</p>')
    parts += ['<h2 id="network">Network</h2>', network_svg(view), _summary(view)]
    circuit = circuit_data(trace, digits)           # an expression graph: its circuit, before the steps
    if circuit:
        parts += ['<h2 id="circuit">Circuit</h2>', f'<div class="scroll">{circuit_svg(circuit)}</div>']
    for title, steps in view.sections:
        parts.append(f'<h2 id="{escape(anchor("phase-" + title.split(",")[0]))}">{escape(title)}</h2>')
        parts += [page.step(step) for step in steps]
    parts.append(page.results())
    parts += ["<footer>written by bptrace</footer>", "</main>", '<div id="explain"></div>',
              f'<script type="application/json" id="bp-sums">{page.sums_json()}</script>',
              f"<script>{SCRIPT}</script>", "</body>", "</html>", ""]
    return "\n".join(parts)


def step_html(step, trace, digits: int = DEFAULT_DIGITS) -> str:
    """One step's section (for a step shown on its own in a notebook)."""
    view = step_view(step, trace, digits)
    return Page(None, {view.name: view}).step(view)


def _summary(view) -> str:
    rows = ['<table class="summary">', '<tr><th>layer</th><th>type</th><th class="num">output</th>'
            '<th class="num">parameters</th></tr>']
    for layer, kind, shape, params in view.summary:
        rows.append(f"<tr><td>{escape(layer)}</td><td>{escape(kind)}</td><td class=\"num\">{escape(shape)}</td>"
                    f"<td class=\"num\">{escape(params)}</td></tr>")
    rows.append(f'<tr class="total"><td></td><td></td><td class="num">total</td>'
                f'<td class="num">{view.total_params}</td></tr>')
    rows.append("</table>")
    return "\n".join(rows)


def network_svg(view) -> str:
    """The network as boxes in the plan's order (inputs first), an arrow for what each layer
    reads: the row above, or what the summary says it reads (`add ← c2, input`)."""
    rows = view.summary
    box, gap = 104, 22
    top = 46 if any("←" in kind for _, kind, _, _ in rows) else 6
    width = len(rows) * (box + gap) - gap + 20
    x = {layer: 10 + k * (box + gap) for k, (layer, _, _, _) in enumerate(rows)}
    arcs, parts = [], []
    for k, (layer, kind, shape, params) in enumerate(rows):
        if not kind:
            continue
        reads = [r.strip() for r in kind.split("←", 1)[1].split(",")] if "←" in kind else [rows[k - 1][0]]
        for source in reads:
            if source not in x:
                continue
            if x[layer] - x[source] == box + gap:
                end, y = x[layer], top + 24
                parts.append(f'<line x1="{x[source] + box}" y1="{y}" x2="{end - 6}" y2="{y}" stroke="#5f6b76" '
                             f'stroke-width="1.5"/><polygon points="{end},{y} {end - 8},{y - 4} {end - 8},{y + 4}" '
                             'fill="#5f6b76"/>')
            else:
                a, b = x[source] + box // 2, x[layer] + box // 2
                lift = min(40, 12 + (b - a) // 12)
                arcs.append(f'<path d="M {a} {top} C {a} {top - lift}, {b} {top - lift}, {b} {top - 6}" fill="none" '
                            f'stroke="#1f5f99" stroke-width="1.5"/><polygon points="{b},{top} {b - 4},{top - 8} '
                            f'{b + 4},{top - 8}" fill="#1f5f99"/>')
    for layer, kind, shape, params in rows:
        name = kind.split("←")[0].strip() or "input"
        href = escape(anchor(f"{layer}.out" if kind else layer))
        parts.append(f'<a href="#{href}"><rect x="{x[layer]}" y="{top}" width="{box}" height="48" rx="6" '
                     f'fill="{"#e8f0fc" if kind else "#f4f6f8"}" stroke="#1f5f99"/>'
                     f'<text x="{x[layer] + box / 2}" y="{top + 17}" text-anchor="middle" font-weight="bold">'
                     f'{escape(layer)}</text>'
                     f'<text class="type" x="{x[layer] + box / 2}" y="{top + 31}" text-anchor="middle">'
                     f'{escape(name)}</text>'
                     f'<text class="type" x="{x[layer] + box / 2}" y="{top + 44}" text-anchor="middle">'
                     f'{escape(shape)}</text></a>')
    return (f'<svg class="network" width="{width}" height="{top + 60}" viewBox="0 0 {width} {top + 60}" role="img" '
            'aria-label="the network: each layer with its output shape, arrows from what it reads">'
            + "".join(arcs + parts) + "</svg>")


HEAT_STEPS = 10      # shades each side of zero: a class per shade keeps a big page small


def heat_colour(fraction: float) -> str:
    """A diverging scale: red for positive, blue for negative, white at 0; |fraction| ≤ 1."""
    a = min(1.0, abs(fraction)) * 0.85
    return f"rgba(178,24,43,{a:.2f})" if fraction > 0 else f"rgba(33,102,172,{a:.2f})"


def heat_class(fraction: float) -> str:
    """The shade of `fraction` (−1…1) as a class: `hp7` (positive), `hn3` (negative), `h0`."""
    step = round(min(1.0, abs(fraction)) * HEAT_STEPS)
    return "h0" if step == 0 else f"h{'p' if fraction > 0 else 'n'}{step}"


HEAT_CSS = "\n".join(f".h{sign}{k} {{ background: {heat_colour((1 if sign == 'p' else -1) * k / HEAT_STEPS)}; }}"
                     for sign in "pn" for k in range(1, HEAT_STEPS + 1))




class Page:
    """The HTML of one trace view: knows every step shown, to link names and draw pictures."""

    def __init__(self, view, steps: dict):
        self.view, self.steps = view, steps

    # -- links ---------------------------------------------------------------------------

    def rule(self, rule, own: str = "") -> str:
        """A rule (bptrace.notation) as HTML: every name of another step on the page linked
        to it, Σ_u as Σ<sub>u</sub>; the words and symbols as the text form writes them."""
        def link(name):
            linkable = name in self.steps and name != own
            return f'<a href="#{escape(anchor(name))}">{escape(name)}</a>' if linkable else escape(name)

        def walk(n):
            if isinstance(n, nt.Ref):
                return link(n.name) + (escape(f"[{','.join(n.index)}]") if n.index else "")
            if isinstance(n, nt.Sum):
                return ("".join(f"Σ<sub>{escape(letter)}</sub> " for letter in n.letters) or "Σ ") + walk(n.body)
            if isinstance(n, nt.Formula):
                traced = dict(n.names)
                marks = {f"\x00{k}\x00": link(value) for k, value in enumerate(traced.values())}
                keys = {value: mark for mark, value in zip(marks, traced.values())}
                written = escape(formula_text(n.tree, lambda v: keys[traced[v]]))
                for mark, html in marks.items():
                    written = written.replace(mark, html)
                return written
            parts = nt.children(n)
            if not parts:
                return escape(nt.text(n))
            # a composite node: its text form, with each child's HTML in place of its text
            return nt.text(n, inner=walk, escape=escape)

        return walk(nt.node(rule))

    def element_link(self, label: str, text: str | None = None) -> str:
        name = label.split("[", 1)[0]
        text = escape(label if text is None else text)
        if name not in self.steps:
            return text
        return f'<a href="#{escape(anchor(name))}" data-e="{escape(label)}" title="{escape(label)}">{text}</a>'

    # -- the sidebar -------------------------------------------------------------------------

    def sidebar(self) -> str:
        parts = ['<nav class="steps" aria-label="steps">', '<a href="#top">top</a>', '<a href="#network">network</a>']
        for title, steps in self.view.sections:
            parts.append(f'<div class="phase">{escape(title.split(",")[0])}</div>')
            parts += [f'<a href="#{escape(anchor(s.name))}">{escape(s.name)}</a>' for s in steps]
        parts += ['<div class="phase"><a href="#results">results</a></div>', "</nav>"]
        return "\n".join(parts)

    # -- one step ----------------------------------------------------------------------------

    def step(self, step) -> str:
        shape = f'<span class="shape">{escape(step.shape_text)}</span>' if step.scalar is None else ""
        scale = step.values.format.scale_text if step.values is not None else ""
        scale = f'<span class="scale">values {escape(scale)}</span>' if scale else ""
        value = f" = {escape(step.scalar)}" if step.scalar is not None else ""
        parts = [f'<section class="step" id="{escape(anchor(step.name))}">',
                 f"<h3>{escape(step.name)}{value}{shape}{scale}</h3>"]
        if step.rule is not None:
            parts.append(f'<div class="rule">{self.rule(step.notation, step.name)}</div>')
        elif step.origin:
            parts.append(f'<div class="dim">{escape(step.origin)}</div>')
        parts += [f'<div class="note">{escape(note)}</div>' for kind, note in step.notes if kind != "note"]
        explained = {s.label for s in step.sums}
        if step.window_source is not None and step.windows:
            parts.append(self.pooling(step, explained))
        elif step.windows and step.values is not None:
            parts.append(self.routing(step, explained))
        elif step.values is not None:
            parts.append(self.values(step.values, explained))
        if step.same_as_computed:
            parts.append('<div class="dim">(the computed values already equal the ones used)</div>')
        if step.replaced:
            parts.append('<ul class="sums">' + "".join(
                f"<li>{escape(label)}: computed {escape(before)} → {escape(after)} {escape(why)}</li>"
                for label, before, after, why in step.replaced) + "</ul>")
        if step.computed is not None:
            parts.append('<div class="block-title">computed, before rounding or given values replaced them:</div>')
            parts.append(self.values(step.computed, set()))
        parts.append(self.window_picture(step))
        if step.sums:
            parts.append('<ul class="sums">' + "".join(self.sum_line(item) for item in step.sums) + "</ul>")
        parts += [f'<div class="dim">{self.explain_note(note)}</div>' for note in step.sum_notes]
        parts += [f'<div class="note">{escape(note)}</div>' for kind, note in step.notes if kind == "note"]
        parts.append("</section>")
        return "\n".join(p for p in parts if p)

    @staticmethod
    def explain_note(note: str) -> str:
        head, found, command = note.partition("see any element's terms: ")
        return escape(head) + (f"see any element's terms: <code>{escape(command)}</code>" if found else "")

    def values(self, values, explained, cell_style=None, notes=None) -> str:
        """A value as tables (with index labels), or as a heatmap with the tables folded away."""
        parts = []
        if values.caption:
            parts.append(f'<div class="block-title">{escape(values.caption)}</div>')
        big = len(values.texts) > HEAT_LIMIT and cell_style is None
        if big and values.largest and all(len(g.column_labels) <= 8 and g.row_labels for g in values.grids):
            # small grids (5×5 kernels, 8×8 maps): the numbers themselves, shaded on the scale
            largest = values.largest
            parts.append(self.heat_legend(values))
            parts.append(self.tables(values, explained, lambda p: "", notes,
                                     lambda p: heat_class(values.numbers[p] / largest)))
            return "\n".join(parts)
        tables = self.tables(values, explained, cell_style, notes)
        if not big:
            return "\n".join(parts + [tables])
        parts.append(self.heatmap(values))
        parts.append(f"<details><summary>the {len(values.texts)} numbers</summary>{tables}</details>")
        return "\n".join(parts)

    def tables(self, values, explained, cell_style=None, notes=None, cell_class=None) -> str:
        # numbers align on the point: each padded on the right to the widest fraction (monospace)
        points = [len(t) - (t.find(".") if "." in t else len(t)) for t in values.texts]
        widest = max(points, default=0)
        texts = [t + " " * (widest - k) for t, k in zip(values.texts, points)]
        blocks = []
        for grid in values.grids:
            rows = ["<tr><th></th>" + "".join(f"<th>{escape(c)}</th>" for c in grid.column_labels) + "</tr>"]
            labels = grid.row_labels if grid.row_labels is not None else [""]
            for label, row in zip(labels, grid.positions):
                cells = []
                for p in row:
                    kind = values.kinds.get(p, "")
                    css = {"given": "given", "zero": "zero", "winner": "win"}.get(kind, "")
                    if cell_class:
                        css = (css + " " + cell_class(p)).strip()
                    attrs = f' class="{css}"' if css else ""
                    element = values.label(p)
                    if element in explained:
                        attrs += f' data-e="{escape(element)}"'
                    style = cell_style(p) if cell_style else ""
                    if style:
                        attrs += f' style="{style}"'
                    mark = "†" if values.marks.get(p) == "*" else ""
                    note = f"<small>{escape(notes[p])}</small>" if notes and p in notes else ""
                    cells.append(f"<td{attrs}>{escape(texts[p])}{mark}{note}</td>")
                rows.append(f"<tr><th>{escape(label)}</th>{''.join(cells)}</tr>")
            title = f'<div class="block-title">{escape(grid.title)}</div>' if grid.title else ""
            blocks.append(f'<div>{title}<div class="scroll"><table class="values">{"".join(rows)}</table></div></div>')
        return '<div class="blocks">' + "".join(blocks) + "</div>"

    def heatmap(self, values) -> str:
        """Each grid as small coloured squares, index and value on hover; one scale per step."""
        largest = values.largest or 1.0
        name = len(values.name)

        def index(p):       # `[2,5,1]`, the element's index (its name is the step's)
            return values.label(p)[name:]

        blocks = []
        for grid in values.grids:
            rows = []
            labels = grid.row_labels if grid.row_labels is not None else [""]
            for label, row in zip(labels, grid.positions):
                cells = "".join(f'<td class="{heat_class(values.numbers[p] / largest)}" '
                                f'title="{index(p)} {escape(values.texts[p])}"></td>' for p in row)
                rows.append(f"<tr><th>{escape(label)}</th>{cells}</tr>")
            title = f'<div class="block-title">{escape(grid.title)}</div>' if grid.title else ""
            blocks.append(f'<div>{title}<div class="scroll"><table class="heat">{"".join(rows)}</table></div></div>')
        return self.heat_legend(values, "; hover a square for its value") + '<div class="blocks">' + "".join(blocks) + "</div>"

    @staticmethod
    def heat_legend(values, more: str = "") -> str:
        scale = f" {values.format.scale_text}" if values.format.scale_text else ""
        return (f'<div class="dim">shaded: red positive, blue negative, strongest at ±'
                f'{escape(values.format.text(values.largest))}{escape(scale)} (one scale for the whole step){more}</div>')

    # -- pictures ------------------------------------------------------------------------------

    def pooling(self, step, explained) -> str:
        """Max-pool forward: its input with each window in its colour and the winner outlined,
        then the output, each element in its window's colour, saying where it came from."""
        source = step.window_source
        colour, out_colour, notes = {}, {}, {}
        for k, (out_flat, cells, winner) in enumerate(step.windows):
            for cell in cells:
                colour.setdefault(cell, WINDOW_COLOURS[k % len(WINDOW_COLOURS)])
            out_colour[out_flat] = WINDOW_COLOURS[k % len(WINDOW_COLOURS)]
            notes[out_flat] = "from " + source.label(cells[winner]).split("[", 1)[1].join(("[", ""))
        left = self.values(source, set(), lambda p: f"background:{colour[p]}" if p in colour else "")
        if step.values is not None:
            right = self.values(step.values, explained, lambda p: f"background:{out_colour.get(p, '#fff')}", notes)
        else:                     # one window, one number: no table to colour
            right = f'<div class="scalar">{escape(step.scalar)}</div>'
        return (f'<div class="picture-title">{escape(source.name)}: each window in its colour, its winner outlined'
                f'</div><div class="pictures"><div>{left}</div><div class="arrow">⟶ max ⟶</div><div>{right}</div></div>')

    def routing(self, step, explained) -> str:
        """The delta a max-pool routes back: each window in its colour, the winner filled with
        the delta it received, zeros elsewhere."""
        values = step.values
        colour, notes, fill = {}, {}, {}
        pool_delta = next((name for name in step.reads if name.endswith(".delta")), None)
        for k, (out_flat, cells, winner) in enumerate(step.windows):
            for cell in cells:
                colour.setdefault(cell, WINDOW_COLOURS[k % len(WINDOW_COLOURS)])
            fill[cells[winner]] = WINNER_COLOURS[k % len(WINNER_COLOURS)]
            if pool_delta and pool_delta in self.steps and self.steps[pool_delta].values is not None:
                notes[cells[winner]] = "← " + self.steps[pool_delta].values.label(out_flat).replace(pool_delta, "")

        def style(p):
            if p in fill:
                return f"background:{fill[p]};color:#fff"
            return f"background:{colour[p]}" if p in colour else ""

        title = ("each window's delta goes back to its winner; the other cells get 0"
                 + (f" (from {pool_delta})" if pool_delta else ""))
        return (f'<div class="picture-title">{escape(title)}</div>'
                + self.values(values, explained, style, {p: n for p, n in notes.items()}))

    def window_picture(self, step) -> str:
        """For a convolution's output or kernel gradient: the cells one element reads, outlined
        in each value it reads (the kernel window over the input)."""
        if step.layer_type != "conv" or not step.sums or not (step.name.endswith(".out") or ".grad.kernel" in step.name):
            return ""
        item = step.sums[1] if len(step.sums) > 1 and ".grad." in step.name else step.sums[0]
        reads = {}
        for factors in item.sources:
            for label in factors:
                if label:
                    name = label.split("[", 1)[0]
                    reads.setdefault(name, set()).add(label)
        pictures = []
        for name, labels in reads.items():
            shown = self.steps.get(name)
            if shown is None or shown.values is None or name == step.name:
                continue
            values = shown.values
            cells = {p for p in range(len(values.texts)) if values.label(p) in labels}
            pictures.append(f"<div><div class=\"block-title\">{escape(name)}</div>"
                            + self.tables(values, set(), lambda p: "outline:2px solid #c0392b;outline-offset:-2px;"
                                          "background:#fdecea" if p in cells else "") + "</div>")
        if not pictures:
            return ""
        return (f'<div class="picture-title">what {self.element_link(item.label)} reads (outlined): '
                f'{len(item.products)} terms</div><div class="pictures">' + "".join(pictures) + "</div>")

    # -- sums ----------------------------------------------------------------------------------

    def sum_line(self, item) -> str:
        label = self.element_link(item.label)
        if item.kind == "max":
            body = "max(" + ", ".join(self.element_link(src[0], t) + ("★" if k == item.winner else "") if src[0]
                                      else escape(t) for k, (t, src) in enumerate(zip(item.products, item.sources))) + ")"
            tail = f", from {self.element_link(item.winner_label)}" + (" (a tie: the first maximum wins)" if item.tie else "")
        elif item.kind == "apply":
            src = item.sources[0][0]
            body = f"{escape(item.fn)}({self.element_link(src, item.products[0]) if src else escape(item.products[0])})"
            tail = ""
        elif item.kind == "copy":
            body, tail = self.element_link(item.products[0]), ""
        else:
            pieces = []
            for k, ((negative, texts), sources) in enumerate(zip(item.products, item.sources)):
                factors = "·".join(self.element_link(src, text) if src else escape(text)
                                   for text, src in zip(texts, sources))
                sign = ("−" if negative else "") if k == 0 else (" − " if negative else " + ")
                pieces.append(sign + factors)
            body, tail = "".join(pieces), ""
        if item.used is not None:
            tail += f" → {escape(item.used)} {escape(item.why)}"
        note = zero_note(item)
        if note:
            tail += f"   ({escape(note)})"
        return f'<li><span class="label">{label}</span> = {body} = {escape(item.total)}{tail}</li>'

    def sums_json(self) -> str:
        """Every written-out sum, for the explain panel: value, rule, the sum as written, and
        each term's factors with where they came from."""
        data = {}
        for step in self.steps.values():
            for item in step.sums:
                entry = {"v": item.total, "r": step.rule or "", "b": plain_line(item), "terms": []}
                if item.kind == "sum":
                    running = sum_pieces(item.products)
                    for (negative, texts), sources, piece in zip(item.products, item.sources, running):
                        signs = ["−" if negative and k == 0 else "" for k in range(len(texts))]
                        entry["terms"].append({"f": [[sign + t, s] for sign, t, s in zip(signs, texts, sources)],
                                               "s": piece.strip()})
                elif item.kind in ("max", "apply", "copy"):
                    entry["terms"] = [{"f": [[t if item.kind != "copy" else t, s[0] if s else None]],
                                       "s": ("★ winner" if item.kind == "max" and k == item.winner else "")}
                                      for k, (t, s) in enumerate(zip(item.products, item.sources))]
                note = zero_note(item)
                entry["n"] = note + (" left out" if note else "")
                data[item.label] = entry
        # `</` would end the script element early
        return json.dumps(data, ensure_ascii=False, separators=(",", ":")).replace("</", "<\\/")

    # -- results -------------------------------------------------------------------------------

    def results(self) -> str:
        view = self.view
        parts = ['<h2 id="results">Results</h2>']
        if view.loss is not None:
            parts.append(f'<div><div class="result"><b>loss = {escape(view.loss)}</b></div></div>')
        for result in view.results:
            head = f"<b>{self.element_link(result.name)}</b>"
            what = f'<span class="what">{escape(result.what)}</span>'
            if result.scalar is not None:
                parts.append(f'<div><div class="result">{head} = {escape(result.scalar)}{what}</div></div>')
            elif result.largest:
                parts.append(f'<div><div class="result">{head}{what}<div class="dim">{escape(result.largest)}</div>'
                             + (self.heatmap(self.steps[result.name].values) if result.name in self.steps else "")
                             + "</div></div>")
            else:
                scale = result.values.format.scale_text
                scale = f'<span class="what">values {escape(scale)}</span>' if scale else ""
                parts.append(f'<div><div class="result">{head}{what}{scale}'
                             f'{self.values(result.values, set())}</div></div>')
        if view.explain:
            parts.append(f'<p class="dim">every term of any number: <code>{escape(view.explain)}</code></p>')
        return "\n".join(parts)
