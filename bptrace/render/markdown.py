"""`run --format markdown`: the trace as GitHub-flavoured Markdown.

Values are pipe tables with their indices (a header row of column indices, a first column
of row indices); each rule is display math (`$$ … $$`, which GitHub renders); the sums of
small steps are written out as code spans, so that they read the same rendered or raw.
"""
from __future__ import annotations

from .latex import math
from .layout import DEFAULT_DIGITS, split_columns
from .view import plain_line, trace_view

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


def heading(view) -> list:
    """The title, description, conventions and where the backward pass starts (a trace's
    view, or an exercise sheet's)."""
    out = [f"# {inline(view.title)}", ""]
    if view.description:
        out += [inline(view.description), ""]
    out += [f"*conventions:* {inline(view.conventions)}  "]
    if view.start:
        out += [f"*backward pass:* {inline(view.start)}  "]
    return out


def render(trace, only=None, digits: int = DEFAULT_DIGITS, summary: bool = False) -> str:
    view = trace_view(trace, only, digits, steps=not summary)
    out = heading(view)
    out += [f"*legend:* {inline(view.legend)}"]
    out += ["", "## Network", ""]
    rows = [[layer, kind, shape, params] for layer, kind, shape, params in view.summary]
    rows.append(["", "", "**total**", f"**{view.total_params}**"])
    out += table(["layer", "type", "output", "parameters"], rows, left=2) + [""]
    for title, steps in view.sections:
        out += [f"## {inline(title)}", ""]
        for step in steps:
            out += _step(step)
    out += _results(view)
    return "\n".join(out).rstrip() + "\n"


def _step(step) -> list:
    shape = f" ({step.shape_text})" if step.scalar is None else ""
    out = [f"### `{step.name}`{shape}", ""]
    if step.rule is not None:
        out += ["$$", math(step.notation), "$$", ""]
    elif step.origin:
        out += [f"*{inline(step.origin)}*", ""]
    out += [f"*{inline(note)}*" + "  " for kind, note in step.notes if kind != "note"]
    if any(kind != "note" for kind, _ in step.notes):
        out.append("")
    out += _values(step.name, step.scalar, step.values)
    if step.window_source is not None:
        out += [f"*the windows' winners in {inline(step.window_source.name)} (★):*", ""]
        out += _values(step.window_source.name, None, step.window_source)
    if step.same_as_computed:
        out += ["*(the computed values already equal the ones used)*", ""]
    if step.replaced:
        out += [f"- {code(f'{name}: computed {before} → {after} {why}')}" for name, before, after, why in step.replaced]
        out.append("")
    if step.computed is not None:
        out += ["*computed, before rounding or given values replaced them:*", ""]
        out += _values(step.name, None, step.computed)
    if step.sums:
        out += [f"- {code(plain_line(item))}" for item in step.sums] + [""]
    out += [f"*{inline(note)}*  " for note in step.sum_notes] + ([""] if step.sum_notes else [])
    out += [f"> {inline(note)}" for kind, note in step.notes if kind == "note"]
    if any(kind == "note" for kind, _ in step.notes):
        out.append("")
    return out


def _values(name, scalar, values) -> list:
    if scalar is not None:
        return [f"{code(name)} = {code(scalar)}", ""]
    if values is None:
        return []
    out = []
    scale = values.format.scale_text
    captions = [c for c in (values.caption, f"values {scale}" if scale else "", "· = 0" if values.zero_dot else "")
                if c]
    if captions:
        out += [f"*{inline(' · '.join(captions))}*", ""]
    for grid in (part for g in values.grids for part in split_columns(g, MAX_COLUMNS)):
        if grid.title:
            out += [f"**{inline(grid.title)}**", ""]
        labels = grid.row_labels if grid.row_labels is not None else [""]
        rows = [[label] + [values.texts[p] + values.marks.get(p, "").replace("*", "†") for p in row]
                for label, row in zip(labels, grid.positions)]
        out += table([""] + grid.column_labels, rows) + [""]
    return out


def _results(view) -> list:
    out = ["## Results", ""]
    if view.loss is not None:
        out += [f"{code('loss')} = {code(view.loss)}", ""]
    for result in view.results:
        out += [f"**`{result.name}`**: {inline(result.what)}", ""]
        if result.largest:
            out += [inline(result.largest), ""]
        else:
            out += _values(result.name, result.scalar, result.values)
    if view.explain:
        out += [f"every term of any number: {code(view.explain)}", ""]
    return out
