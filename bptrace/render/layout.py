"""Tables of numbers, for every format: how a step's numbers are written and cut into 2-D grids,
and how the terminal lays those grids out in its width.

Numbers in a table share one precision: `digits` significant digits of the step's largest
magnitude, so every cell of a step has the same decimals (trailing zeros dropped), as numpy,
MATLAB and a hand-written table do.  A step whose largest magnitude is below 0.01 or at least
10⁵ is written as multiples of one power of ten, named once (`×10⁻³`), so that a Zhang-sized
8×8 map of small deltas is at most ten characters a cell and fits 100 columns.  A non-zero
number that rounds to nothing at that precision shows as `≈0`, never as a zero.  Full
precision is in the JSON export, `check` and `explain`.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from itertools import product

from rich.cells import cell_len

from ..tensors import kept_axes
from .common import MINUS, block_title

DEFAULT_DIGITS = 7        # shows seed 001's source numbers (0.04675125, −0.06818625) as printed
SCALE_BELOW = 1e-2        # a step whose largest magnitude is below this is shown ×10^k
SCALE_FROM = 1e5          # ... or at least this
GAP = 2                   # spaces between two columns of numbers (1 when that makes a table fit)
BLOCK_GAP = 4             # spaces between two tables laid side by side
SUPERSCRIPT = str.maketrans("-0123456789", "⁻⁰¹²³⁴⁵⁶⁷⁸⁹")


# --- numbers -----------------------------------------------------------------------------

@dataclass(frozen=True)
class TableFormat:
    """How the numbers of one step are written: `decimals` after the point, of the values
    divided by 10**`exponent` (0: as they are)."""
    decimals: int
    exponent: int = 0

    @property
    def scale_text(self) -> str:
        """`×10⁻³`, or "" when the values are written as they are."""
        return f"×10{str(self.exponent).translate(SUPERSCRIPT)}" if self.exponent else ""

    def text(self, value: float) -> str:
        """One cell, with a true minus sign."""
        if value == 0:
            return "0"
        if not math.isfinite(value):
            return str(value)
        shown = value / 10.0 ** self.exponent if self.exponent else value
        text = f"{shown:.{self.decimals}f}"
        if "." in text:
            text = text.rstrip("0").rstrip(".")
        if text in ("0", "-0"):
            return "≈0"
        return MINUS + text[1:] if text.startswith("-") else text


def table_format(values, digits: int = DEFAULT_DIGITS) -> TableFormat:
    """The format of a step's numbers (a flat list of floats)."""
    largest = max((abs(v) for v in values if v == v and abs(v) != math.inf), default=0.0)
    if largest == 0:
        return TableFormat(0)
    # the exponent of the number as written with `digits` digits: 0.09999999999999999 is
    # 0.1000000 (exponent −1, as on paper), and 1.7e308 needs no power of ten that overflows
    exponent = int(f"{largest:.{max(digits, 1) - 1}e}".split("e")[1])
    scale = exponent if (largest < SCALE_BELOW or largest >= SCALE_FROM) else 0
    return TableFormat(max(0, digits - 1 - (exponent - scale)), scale)


class ExactFormat(TableFormat):
    """Exact numbers (`arithmetic: exact`): each cell written whole, as `number()` writes it."""

    def __init__(self):
        super().__init__(0, 0)

    def text(self, value) -> str:
        from .common import minus_sign, number
        return minus_sign(number(value))


EXACT_FORMAT = ExactFormat()


# --- grids ---------------------------------------------------------------------------------

@dataclass
class Grid:
    """One 2-D table of a value: `positions[r][c]` are flat positions into its numbers.
    A vector is one row whose `row_labels` is None."""
    title: str                    # "filter 2 · input map 5", "" for a 2-D value
    row_labels: list | None
    column_labels: list
    positions: list

    def columns(self, first: int, last: int, title: str | None = None) -> "Grid":
        return Grid(self.title if title is None else title, self.row_labels, self.column_labels[first:last],
                    [row[first:last] for row in self.positions])


def grids(shape, axes_names, base: int) -> tuple[list, str]:
    """A value of canonical `shape` as 2-D grids: the last two kept axes make each grid's rows
    and columns, the axes before them name the grid ("map 2", "filter 1 · input map 0").
    Returns (grids, caption), the caption naming rows and columns when they are not a map's."""
    kept = kept_axes(shape)
    sizes = [shape[a] for a in kept]
    if not sizes:
        return [], ""
    strides, step = [], 1
    for size in reversed(sizes):
        strides.append(step)
        step *= size
    strides.reverse()
    names = [axes_names[a] if a < len(axes_names) else f"axis {a}" for a in kept]
    if len(kept) == 1:
        caption = "" if names[0] in ("column", "unit") else f"index: {names[0]}"
        return [Grid("", None, [str(c + base) for c in range(sizes[0])], [list(range(sizes[0]))])], caption
    lead, (rows, cols) = sizes[:-2], sizes[-2:]
    caption = "" if names[-2:] == ["row", "column"] else f"rows: {names[-2]} · columns: {names[-1]}"
    result = []
    for outer in product(*(range(n) for n in lead)):
        offset = sum(i * s for i, s in zip(outer, strides))
        result.append(Grid(block_title(axes_names, kept[:-2], outer, base),
                           [str(r + base) for r in range(rows)], [str(c + base) for c in range(cols)],
                           [[offset + r * strides[-2] + c for c in range(cols)] for r in range(rows)]))
    return result, caption


def split_columns(grid: Grid, most: int) -> list:
    """A grid in balanced column blocks of at most `most` columns, each titled with its columns
    (a vector becomes rows of `most`, each labelled with the index it starts at)."""
    ncols = len(grid.column_labels)
    if ncols <= most:
        return [grid]
    size = -(-ncols // -(-ncols // most))
    if grid.row_labels is None:
        flat = grid.positions[0]
        return [Grid(grid.title, [grid.column_labels[s] for s in range(0, ncols, size)],
                     [f"+{k}" for k in range(size)], [flat[s:s + size] for s in range(0, ncols, size)])]
    parts = []
    for first in range(0, ncols, size):
        last = min(ncols, first + size)
        span = f"columns {grid.column_labels[first]}…{grid.column_labels[last - 1]}"
        parts.append(grid.columns(first, last, " · ".join(t for t in (grid.title, span) if t)))
    return parts


# --- the terminal's layout -------------------------------------------------------------------

def _point(text: str) -> int:
    """Where the integer part of a number's text ends (its decimal point)."""
    point = text.find(".")
    if point < 0:
        point = text.find("e")
    return len(text) if point < 0 else point


class TextTable:
    """A grid's cells aligned on the decimal point (within the grid: one tiny value elsewhere
    does not widen it), with its row and column indices, ready to be laid out."""

    def __init__(self, grid: Grid, texts, marks=None, styles=None, label=None, gap: int = GAP):
        self.grid, self.gap = grid, gap
        self.label = grid.title if label is None else label
        marks = marks or {}
        mark_width = 1 if marks else 0
        flat = [p for row in grid.positions for p in row]
        points = {p: _point(texts[p]) for p in flat}
        vector = grid.row_labels is None
        extra = 1 if vector else 0                  # a vector's `[k]` bracket stands over the point
        col_ids = [f"[{c}]" for c in grid.column_labels] if vector else grid.column_labels
        int_width = max(max(points.values()), max(len(c) for c in col_ids) - extra)
        frac_width = max(max(len(texts[p]) - points[p] for p in flat), extra)
        self.col_width = int_width + frac_width + mark_width
        self.cells = [[" " * (int_width - points[p]) + texts[p] + marks.get(p, " " * mark_width)
                       + " " * (frac_width - len(texts[p]) + points[p]) for p in row] for row in grid.positions]
        self.styles = [[styles.get(p) for p in row] for row in grid.positions] if styles else None
        self.headers = [c.rjust(int_width + extra).ljust(self.col_width) for c in col_ids]
        self.row_ids = None if vector else grid.row_labels
        self.row_width = max(len(r) for r in self.row_ids) if self.row_ids else 0
        self.lead = self.row_width + gap if self.row_ids else 0
        n = len(col_ids)
        self.table_width = self.lead + n * self.col_width + (n - 1) * gap

    @property
    def width(self) -> int:
        return max(self.table_width, cell_len(self.label))

    def lines(self, cols, label_style=None, index_style=None, label=None):
        """Lines (lists of (text, style) pieces) of this table restricted to columns `cols`."""
        gap = " " * self.gap
        label = self.label if label is None else label
        lines = [[(label, label_style)]] if label else []
        lines.append([(" " * self.lead + gap.join(self.headers[c] for c in cols), index_style)])
        for r, row_id in enumerate(self.row_ids or [None]):
            pieces = [(row_id.rjust(self.row_width) + gap, index_style)] if row_id is not None else []
            cells, styles = self.cells[r], self.styles[r] if self.styles else None
            if not styles or not any(styles[c] for c in cols):
                pieces.append((gap.join(cells[c] for c in cols), None))
            else:
                pieces += [((gap if k else "") + cells[c], styles[c]) for k, c in enumerate(cols)]
            lines.append(pieces)
        return lines


def line_width(pieces) -> int:
    return sum(cell_len(text) for text, _ in pieces)


def text_tables(grids_, texts, marks=None, styles=None, width: int = 10 ** 9):
    """TextTables of `grids_`, each with one-space gaps when only that makes it fit `width`."""
    tables = []
    for grid in grids_:
        table = TextTable(grid, texts, marks, styles)
        if table.width > width:
            narrow = TextTable(grid, texts, marks, styles, gap=1)
            table = narrow if narrow.width <= width else table
        tables.append(table)
    return tables


def arrange(tables, width: int, label_style=None, index_style=None):
    """Lay tables out for `width` cells: side by side on a grid when several fit, one under
    another otherwise, and split into column blocks (each keeping its column indices, titled
    "continued") when one is too wide."""
    out = []
    if all(t.width <= width for t in tables):
        for per_line in range(len(tables), 0, -1):
            slots = [max(t.width for t in tables[k::per_line]) for k in range(per_line)]
            if sum(slots) + (per_line - 1) * BLOCK_GAP <= width:
                break
        for start in range(0, len(tables), per_line):
            group = [t.lines(range(len(t.headers)), label_style, index_style) for t in tables[start:start + per_line]]
            if start:
                out.append([])
            for k in range(max(len(lines) for lines in group)):
                line = []
                for g, lines in enumerate(group):
                    pieces = lines[k] if k < len(lines) else []
                    if g:
                        line.append((" " * BLOCK_GAP, None))
                    line.extend(pieces)
                    if g < len(group) - 1:
                        line.append((" " * (slots[g] - line_width(pieces)), None))
                out.append(line)
        return out
    for b, table in enumerate(tables):
        ncols = len(table.headers)
        fit = max(1, (width - table.lead + table.gap) // (table.col_width + table.gap))
        size = -(-ncols // -(-ncols // fit))
        for start in range(0, ncols, size):
            if b or start:
                out.append([])
            out.extend(table.lines(range(start, min(ncols, start + size)), label_style, index_style,
                                   f"{table.label}, continued" if table.label and start else None))
    return out
