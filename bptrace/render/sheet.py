"""An exercise's question sheet (Markdown, LaTeX, HTML): the network, the given numbers and a
blank matrix, labelled with its step name, for each asked step.  It marks up the
`SheetView` that `bptrace.exercise.sheet_view` made; nothing here computes."""
from __future__ import annotations

from html import escape

from . import latex as tex
from .markdown import code, heading, table

INSTRUCTIONS = ("Work the backward pass by hand and fill in each matrix; indices start at {base}. "
                "Write each number with its decimals (bptrace check reads them as written).")


def _indices(count: int, base: int) -> list:
    return [str(k + base) for k in range(count)]


def markdown(view) -> str:
    out = heading(view)
    out += [f"*variant:* {view.seed}", "", "## Network", ""]
    rows = [list(row) for row in view.summary] + [["", "", "**total**", f"**{view.total_params}**"]]
    out += table(["layer", "type", "output", "parameters"], rows, left=2) + ["", "## Given", ""]
    for label, numbers in view.given:
        out += [f"{code(label)}", ""]
        out += table([""] + _indices(len(numbers[0]), view.base),
                     [[str(r + view.base)] + row for r, row in enumerate(numbers)]) + [""]
    out += ["## Asked", "", INSTRUCTIONS.format(base=view.base), ""]
    for name, shape, rows_, columns in view.asked:
        out += [f"{code(name)}  ({shape})", ""]
        out += table([""] + _indices(columns, view.base),
                     [[str(r + view.base)] + ["&nbsp;" * 12] * columns for r in range(rows_)]) + [""]
    return "\n".join(out)


def latex(view) -> str:
    # ragged right: a title too long for one line (a variant's 20-digit seed) breaks at its
    # spaces instead of running past the margin, as justified text with few spaces would
    out = [tex.PREAMBLE, tex.MACROS, r"{\Large\bfseries\raggedright " + tex.text(view.title) + r"\par}\medskip" + "\n"]
    if view.description:
        out.append(tex.text(view.description) + "\n\n")
    out.append(r"\textit{conventions:} " + tex.text(view.conventions) + r"\\" + "\n")
    if view.start:
        out.append(r"\textit{backward pass:} " + tex.text(view.start) + r"\\" + "\n")
    out.append(r"\textit{variant:} " + str(view.seed) + "\n\n")
    out.append(r"\section*{Network}" + "\n" + r"\begin{tabular}{llrr}" + "\n"
               + r"layer & type & output & parameters\\ \hline" + "\n")
    for row in view.summary:
        out.append(" & ".join(tex.text(c) for c in row) + r"\\" + "\n")
    out.append(r"\hline & & total & " + str(view.total_params) + r"\\" + "\n" + r"\end{tabular}" + "\n\n")
    out.append(r"\section*{Given}" + "\n")
    for label, numbers in view.given:
        out.append(r"\texttt{" + tex.text(label) + r"}\par\nopagebreak" + "\n")
        out.append(_latex_grid(numbers, view.base, blank=False))
    out.append(r"\section*{Asked}" + "\n" + tex.text(INSTRUCTIONS.format(base=view.base)) + "\n\n")
    for name, shape, rows, columns in view.asked:
        out.append(r"\texttt{" + tex.text(name) + r"} (" + tex.text(shape) + r")\par\nopagebreak" + "\n")
        out.append(_latex_grid([[""] * columns for _ in range(rows)], view.base, blank=True))
    return "".join(out) + r"\end{document}" + "\n"


def _latex_grid(numbers: list, base: int, blank: bool) -> str:
    columns = len(numbers[0])
    spec = "r|" + ("|p{2.2cm}" * columns if blank else "r" * columns) + ("|" if blank else "")
    lines = [r"\begin{tabular}{" + spec + "}",
             " & ".join([""] + [r"\bpidx{" + i + "}" for i in _indices(columns, base)]) + r"\\"
             + (r" \cline{2-" + str(columns + 1) + "}" if blank else "")]
    for r, row in enumerate(numbers):
        strut = r"\rule{0pt}{5ex}" if blank else ""
        cells = [tex.text(c.replace("-", "−")) if c else "" for c in row]
        lines.append(r"\bpidx{" + str(r + base) + "}" + strut + " & " + " & ".join(cells) + r"\\"
                     + (r" \cline{2-" + str(columns + 1) + "}" if blank else ""))
    lines.append(r"\end{tabular}\medskip" + "\n")
    return "\n".join(lines) + "\n"


STYLE = """body { font-family: system-ui, sans-serif; max-width: 60rem; margin: 2rem auto; padding: 0 1rem; }
table { border-collapse: collapse; margin: 0.3rem 0 1rem; }
td, th { padding: 0.2rem 0.6rem; text-align: right; font-variant-numeric: tabular-nums; }
th { color: #6b7280; font-weight: normal; }
table.summary td { text-align: left; }
table.blank td { border: 1px solid #444; width: 7rem; height: 2.2rem; }
code { font-size: 1.05em; }
.meta { color: #4b5563; }
"""


def html(view) -> str:
    parts = ["<!DOCTYPE html>", '<html lang="en">', "<head>", '<meta charset="utf-8">',
             f"<title>{escape(view.title)}</title>", f"<style>{STYLE}</style>", "</head>", "<body>"]
    parts.append(html_body(view))
    parts += ["</body>", "</html>"]
    return "\n".join(parts) + "\n"


def html_body(view, asked: bool = True) -> str:
    """The sheet's content; without the asked steps (`asked=False`) for a PrairieLearn
    question, which puts its own answer elements after it."""
    parts = [f"<h1>{escape(view.title)}</h1>"]
    if view.description:
        parts.append(f"<p>{escape(view.description)}</p>")
    parts.append(f'<p class="meta">conventions: {escape(view.conventions)}<br>'
                 + (f"backward pass: {escape(view.start)}<br>" if view.start else "")
                 + f"variant: {view.seed}</p>")
    parts.append('<h2>Network</h2>\n<table class="summary"><tr><th>layer</th><th>type</th><th>output</th>'
                 "<th>parameters</th></tr>")
    for row in view.summary:
        parts.append("<tr>" + "".join(f"<td>{escape(c)}</td>" for c in row) + "</tr>")
    parts.append(f"<tr><td></td><td></td><td>total</td><td>{view.total_params}</td></tr></table>")
    parts.append("<h2>Given</h2>")
    for label, numbers in view.given:
        parts.append(f"<p><code>{escape(label)}</code></p>" + _html_grid(numbers, view.base, ""))
    if not asked:
        return "\n".join(parts)
    parts.append(f"<h2>Asked</h2>\n<p>{escape(INSTRUCTIONS.format(base=view.base))}</p>")
    for name, shape, rows, columns in view.asked:
        parts.append(f"<p><code>{escape(name)}</code> ({escape(shape)})</p>")
        parts.append(_html_grid([[""] * columns for _ in range(rows)], view.base, "blank"))
    return "\n".join(parts)


def _html_grid(numbers: list, base: int, kind: str) -> str:
    head = "<tr><th></th>" + "".join(f"<th>{i}</th>" for i in _indices(len(numbers[0]), base)) + "</tr>"
    body = "".join(f"<tr><th>{r + base}</th>" + "".join(f"<td>{escape(c)}</td>" for c in row) + "</tr>"
                   for r, row in enumerate(numbers))
    return f'<table class="{kind or "given"}">{head}{body}</table>'

