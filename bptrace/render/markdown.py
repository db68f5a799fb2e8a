"""`run --format markdown`: the trace as GitHub-flavoured Markdown.

Values are pipe tables with their indices (a header row of column indices, a first column
of row indices); each rule is display math (`$$ … $$`, which GitHub renders); the sums of
small steps are written out as code spans, so that they read the same rendered or raw.
"""
from __future__ import annotations

from . import document as doc
from .common import minus_sign, signed
from .latex import math

MAX_COLUMNS = 12


def cell(value: str) -> str:
    """Table cell text: a pipe would end the cell, a backslash escape the next character."""
    return value.replace("\\", "\\\\").replace("|", "\\|")


def inline(value: str) -> str:
    """Prose from the scenario (names, descriptions): Markdown's specials escaped."""
    out = []
    for char in value:
        out.append("\\" + char if char in "\\`*_[]<>|~" else char)
    return "".join(out)


def code(value: str) -> str:
    """A code span that survives backticks inside it."""
    fence = "``" if "`" in value else "`"
    pad = " " if value.startswith("`") or value.endswith("`") else ""
    return f"{fence}{pad}{value}{pad}{fence}"


def table(header: list, rows: list, left: int = 1) -> list:
    """A pipe table; the first `left` columns (labels) align left, the rest (numbers) right."""
    lines = ["| " + " | ".join(cell(h) for h in header) + " |",
             "|" + "|".join(":---" if k < left else "---:" for k in range(len(header))) + "|"]
    lines += ["| " + " | ".join(cell(c) for c in row) + " |" for row in rows]
    return lines


def render(trace, only=None) -> str:
    base = trace.conventions["index_base"]
    out = [f"# {inline(trace.name)}", ""]
    if trace.description:
        out += [inline(trace.description.strip()), ""]
    out += [f"*conventions:* {inline(doc.conventions_text(trace))}  "]
    if trace.start:
        out += [f"*backward pass:* {inline(trace.start)}"]
    out += ["", "## Network", ""]
    rows = [[layer, kind, shape, params if kind else ""] for layer, kind, shape, params in doc.summary_rows(trace)]
    rows.append(["", "", "**total**", f"**{trace.total_params}**"])
    out += table(["layer", "type", "output", "parameters"], rows, left=2) + [""]
    for title, steps in doc.sections(trace, only):
        out += [f"## {inline(title)}", ""]
        for step in steps:
            out += _step(step, trace, base)
    return "\n".join(out).rstrip() + "\n"


def _step(step, trace, base) -> list:
    shape = f" ({doc.shape_text(step.shape)})" if step.values.size > 1 else ""
    out = [f"### `{step.name}`{shape}", "", "$$", math(step.rule), "$$", ""]
    note = doc.replaced_note(step)
    if note:
        out += [f"*{inline(note)}*", ""]
    out += _values(step, base, step.values)
    if step.computed is not None and (step.computed != step.values).any():
        out += ["*computed by the engine before that:*", ""]
        out += _values(step, base, step.computed, marks=False)
    out += [f"> {inline(note)}" for note in step.notes] + ([""] if step.notes else [])
    lines = doc.sum_lines(step, trace)
    if lines:
        out += [f"- {code(doc.plain_line(line))}" for line in lines] + [""]
    return out


def _values(step, base, values, marks=True) -> list:
    if values.size == 1:
        return [f"{code(step.name)} = {code(signed(values.reshape(-1)[0]))}", ""]
    out = []
    for block in doc.blocks(step, base, MAX_COLUMNS, values=values):
        if block.title:
            out += [f"**{inline(block.title)}**", ""]
        if block.caption:
            out += [f"*{inline(block.caption)}*", ""]
        rows = [[label] + [minus_sign(c) + ("†" if g and marks else "") for c, g in zip(cells, given)]
                for label, cells, given in zip(block.row_labels, block.cells, block.given)]
        out += table([""] + block.column_labels, rows) + [""]
    return out
