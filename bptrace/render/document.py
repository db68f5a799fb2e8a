"""What the document formats (Markdown, LaTeX, HTML) show, as plain pieces they then mark up.

A trace becomes: a heading, the network summary, sections by phase, and per step its rule,
its values cut into labelled 2-D blocks, and (for steps the engine expanded) each element's
sum written out.  Each format marks these pieces up in its own syntax; none of them
computes: every number is one the trace holds, formatted by `common.number`.
"""
from __future__ import annotations

import itertools
from dataclasses import dataclass

import numpy as np

from ..tensors import kept_axes
from .common import (
    axis_names, block_title, element, factor_label, minus_sign, number, product_text,
    shape_text, sum_pieces, trace_factors, type_text,
)


SECTIONS = {"input": "Forward pass", "parameter": "Forward pass", "forward": "Forward pass",
            "loss": "Loss", "backward": "Backward pass", "update": "Update (one SGD step)"}


@dataclass
class Block:
    """One 2-D table of a step's values."""
    title: str                 # "map 2" for a slice of a 3-D value, "" otherwise
    row_labels: list           # index of each row as written ("" for a vector's one row)
    column_labels: list        # index of each column as written
    cells: list                # rows of formatted numbers
    given: list                # rows of bools: the element was pinned by `given`
    caption: str               # what rows and columns are, e.g. "rows i, columns j"


@dataclass
class SumLine:
    """One element written out: `label = body = total`."""
    label: str                 # "c1.out[0,0]"
    kind: str                  # "sum", "max", "apply"
    terms: list                # sum: list of (negative, [factor texts]); max: candidate texts
    fn: str | None             # apply: the function's symbol
    winner: int | None         # max: which candidate won
    winner_label: str | None   # max: the winning element, e.g. "c1.out[1,1]"
    tie: bool
    total: str                 # the engine's result for this element
    used: str | None           # what later steps use, when rounding or `given` replaced it
    zero_terms: int = 0        # sum: terms with a zero factor, left out of `terms`


def sections(trace, only=None):
    """[(section title, [steps])] in trace order; consecutive phases of one kind merge."""
    result = []
    for step in trace.steps:
        if only is not None and step.name not in only:
            continue
        title = SECTIONS.get(step.phase, step.phase)
        if step.phase == "update" and trace.update not in ("", "one SGD step"):
            title = f"Update: {trace.update}"
        if step.training_step:          # a scenario that trains several steps
            title = f"Training step {step.training_step} — {title}"
        if not result or result[-1][0] != title:
            result.append((title, []))
        result[-1][1].append(step)
    return result


def conventions_text(trace) -> str:
    c = trace.conventions
    return (f"kernel: {c['kernel']} · flatten: {c['flatten']} · indices from {c['index_base']}")


# What each canonical axis of a value is (BRIEF section 2), to label the blocks of a 3-D or
# 4-D value as a person says them: "map 1", "filter 2 · input map 5", "sample 0 · map 3".
def scalar(step) -> str | None:
    """The value of a single-number step, else None."""
    return number(step.values.reshape(-1)[0]) if step.values.size == 1 else None


# --- tables ----------------------------------------------------------------------------


def blocks(step, base: int, max_columns: int, values=None) -> list:
    """A step's values as 2-D blocks of at most `max_columns` columns.

    The last two kept axes make each block's rows and columns; the axes before them name
    the block ("map 2", "filter 1 · input map 0").  A vector longer than `max_columns` is folded into rows, each
    labelled with the index it starts at."""
    values = step.values if values is None else values
    shape = values.shape
    kept = kept_axes(shape)
    given = step.given if step.given is not None else np.zeros(shape, dtype=bool)
    flat_values = values.reshape([shape[a] for a in kept])
    flat_given = given.reshape([shape[a] for a in kept])
    if len(kept) == 0:
        return []
    if len(kept) == 1:
        size = flat_values.shape[0]
        width = min(size, max_columns)
        rows = range(0, size, width)
        cells = [[number(flat_values[k]) for k in range(start, min(start + width, size))] for start in rows]
        marks = [[bool(flat_given[k]) for k in range(start, min(start + width, size))] for start in rows]
        if size <= max_columns:
            return [Block("", [""], [str(k + base) for k in range(size)], cells, marks, "")]
        return [Block("", [str(start + base) for start in rows], [f"+{k}" for k in range(width)], cells, marks,
                      f"row r, column +c holds element r + c (elements {base}…{size - 1 + base})")]
    lead = flat_values.shape[:-2]
    rows, cols = flat_values.shape[-2:]
    names = axis_names(step.name, shape)
    result = []
    for outer in itertools.product(*(range(n) for n in lead)):
        title = block_title(names, kept[:-2], outer, base)
        for first in range(0, cols, max_columns):
            last = min(first + max_columns, cols)
            part = f"columns {first + base}…{last - 1 + base}" if cols > max_columns else ""
            result.append(Block(
                title=" · ".join(t for t in (title, part) if t),
                row_labels=[str(r + base) for r in range(rows)],
                column_labels=[str(c + base) for c in range(first, last)],
                cells=[[number(flat_values[outer + (r, c)]) for c in range(first, last)] for r in range(rows)],
                given=[[bool(flat_given[outer + (r, c)]) for c in range(first, last)] for r in range(rows)],
                caption=""))
    return result


# --- written-out sums ----------------------------------------------------------------------


def sum_lines(step, trace) -> list:
    """Every expanded element of a step, in index order."""
    if not step.expansions:
        return []
    base = trace.conventions["index_base"]
    lines = []
    for index in sorted(step.expansions):
        expansion = step.expansions[index]
        label = element(step.name, step.shape, index, base)
        total = number(step.computed[index] if step.computed is not None else step.values[index])
        used = number(step.values[index]) if number(step.values[index]) != total else None
        if expansion.kind == "max":
            terms = [number(f.value) for (f,) in expansion.terms]
            winner = expansion.terms[expansion.winner][0]
            lines.append(SumLine(label, "max", terms, None, expansion.winner,
                                 element(winner.name, trace[winner.name].shape, winner.index, base)
                                 if winner.name in trace else winner.name, expansion.tie, total, used))
        elif expansion.kind == "apply":
            lines.append(SumLine(label, "apply", [number(expansion.terms[0][0].value)], expansion.fn,
                                 None, None, False, total, used))
        elif len(expansion.terms) == 1 and len(expansion.terms[0]) == 1 and expansion.terms[0][0].index is not None:
            # a copied value (flatten, max-pool routing) reads better by where it comes from
            terms = [(False, [factor_label(expansion.terms[0][0], trace, step, base)])]
            lines.append(SumLine(label, "sum", terms, None, None, None, False, total, used))
        else:
            # as on the terminal: a term with a zero factor adds nothing, so it is left out and counted
            kept = [factors for factors in expansion.terms if not any(f.value == 0 for f in factors)]
            terms = [product_text(trace_factors(factors)) for factors in kept]
            lines.append(SumLine(label, "sum", terms, None, None, None, False, total, used,
                                 zero_terms=len(expansion.terms) - len(kept)))
    return lines


def plain_body(line: SumLine, dot: str = "·") -> str:
    """The right-hand side in plain Unicode: `0.61·0.25 + 0.02·(−0.15)`, `max(…)`, `σ(0.3164)`."""
    if line.kind == "max":
        return "max(" + ", ".join(minus_sign(t) + ("★" if k == line.winner else "") for k, t in enumerate(line.terms)) + ")"
    if line.kind == "apply":
        return f"{line.fn}({minus_sign(line.terms[0])})"
    if not line.terms:
        return "0 (every term has a zero factor)" if line.zero_terms else "0 (nothing reaches it)"
    return "".join(sum_pieces(line.terms, dot))


def zero_note(line: SumLine) -> str | None:
    """`+2 zero terms left out` for a sum whose terms with a zero factor were left out."""
    if not line.terms or not line.zero_terms:
        return None
    return f"+{line.zero_terms} zero term{'s' * (line.zero_terms != 1)} left out"


def plain_line(line: SumLine) -> str:
    text = f"{line.label} = {plain_body(line)} = {minus_sign(line.total)}"
    if line.kind == "max":
        text += f", from {line.winner_label}" + (" (a tie: the first maximum wins)" if line.tie else "")
    if line.used is not None:
        text += f" → {minus_sign(line.used)} used"
    note = zero_note(line)
    if note:
        text += f"   ({note})"
    return text


def summary_rows(trace) -> list:
    """(layer, type, output shape, parameters) rows and the total."""
    return [(row.layer, type_text(row), shape_text(row.out_shape), str(row.params)) for row in trace.summary]


def replaced_note(step) -> str | None:
    """Why the values shown are not the engine's own: rounding and/or `given`."""
    parts = []
    if step.rounded:
        parts.append(f"rounded to {step.rounded}")
    if step.given is not None and step.given.any():
        count, total = int(step.given.sum()), step.given.size
        parts.append("pinned to the given values" if count == total else f"{count} of {total} elements pinned "
                     "to given values (marked †)")
    if not parts:
        return None
    return "; ".join(parts) + ": later steps use these values"
