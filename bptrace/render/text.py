"""`run` as text: the trace laid out for a terminal with rich.

`render(trace, only)` returns a rich `Group`; it never prints and never computes: every
number shown is a value the trace holds, formatted by `common.number`.

Tables of numbers are not rich `Table`s.  A 24×24 map or a 12×6×5×5 kernel gradient has
thousands of cells and must fit 80 columns without losing any, so each step is a small
renderable that learns the width when rich renders it, and lays its numbers out as plain
lines: decimal points aligned, indices in the scenario's index base, several small blocks
side by side when they fit, wide matrices split into column blocks that each keep their
column indices.  Nothing is ever cropped: a line that cannot fit is wrapped, never cut.
"""
from __future__ import annotations

from itertools import product

import numpy as np
from rich.cells import cell_len
from rich.console import Group
from rich.segment import Segment
from rich.style import Style

from ..tensors import kept_axes, squeezed_shape
from .common import (
    AXES, axis_names, block_title, element, factor_label, product_text, shape_text, signed,
    sum_pieces, trace_factors, type_text,
)
INDENT = 2
GAP = 2            # spaces between two columns of numbers
BLOCK_GAP = 4      # spaces between two blocks laid side by side
LIST_LIMIT = 16    # up to this many replaced elements are listed one by one, else a matrix
TERMS_PER_SUM = 24     # a written-out sum with more (non-zero) terms than this is not written
TERMS_PER_STEP = 320   # nor are a step's sums when together they have more terms than this

# Styles are built once: parsing a style string per cell would cost more than the layout.
NAME = Style(bold=True, color="cyan")
DIM = Style(dim=True)
INDEX = Style(color="bright_black")
RULE = Style(italic=True)
GIVEN = Style(color="yellow", bold=True)
WINNER = Style(color="magenta", bold=True)
NOTE = Style(color="yellow")
PHASE = Style(bold=True, color="blue")
TITLE = Style(bold=True)

NEWLINE = Segment.line()

PHASE_OF = {"input": "forward", "parameter": "forward", "forward": "forward",
            "loss": "loss", "backward": "backward", "update": "update"}


def render(trace, only=None) -> Group:
    """The whole trace as one rich renderable: heading, network summary, then each step
    (only the steps named in `only`, when given) under its phase's header."""
    base = trace.conventions.get("index_base", 0)
    layer_types = {row.layer: row.type for row in trace.summary}
    parts = [Heading(trace), Summary(trace)]
    phase = None
    for step in trace.steps:
        if only is not None and step.name not in only:
            continue
        # a scenario that trains several steps has each phase once per training step
        if (step.training_step, PHASE_OF[step.phase]) != phase:
            phase = (step.training_step, PHASE_OF[step.phase])
            title = _phase_title(phase[1], trace)
            parts.append(PhaseHeader(f"training step {step.training_step} · {title}" if step.training_step else title))
        parts.append(StepView(step, trace, base, layer_types))
    return Group(*parts)


# --- heading and summary ------------------------------------------------------------------


class Heading:
    """The trace's name, its description and the conventions it was traced with."""

    def __init__(self, trace):
        conv = trace.conventions
        self.name = trace.name
        self.description = " ".join((trace.description or "").split())
        self.conventions = (f"conventions: kernel={conv.get('kernel')} · flatten={conv.get('flatten')} · "
                            f"indices from {conv.get('index_base', 0)}")

    def __rich_console__(self, console, options):
        width = options.max_width
        yield from _text_lines(self.name, width, TITLE, indent=0, hang=0)
        if self.description:
            yield from _text_lines(self.description, width, None, indent=0, hang=0)
        yield from _text_lines(self.conventions, width, DIM, indent=0, hang=0)
        yield NEWLINE


class Summary:
    """The network, Keras/torchinfo style: layer, type, output shape (length-1 axes
    dropped), parameters, and the total."""

    def __init__(self, trace):
        self.header = ("layer", "type", "output", "params")
        self.rows = [(row.layer, type_text(row), shape_text(row.out_shape), str(row.params) if row.type else "")
                     for row in trace.summary]
        self.total = ("", "", "total", str(trace.total_params))

    def _line(self, cells, widths):
        *left, right = cells
        return "   ".join(c.ljust(w) for c, w in zip(left, widths)) + "   " + right.rjust(widths[-1])

    def __rich_console__(self, console, options):
        table = [self.header] + self.rows + [self.total]
        widths = [max(cell_len(row[k]) for row in table) for k in range(4)]
        rule = "─" * (sum(widths) + 3 * 3)
        lines = [(self._line(self.header, widths), TITLE), (rule, DIM)]
        lines += [(self._line(row, widths), None) for row in self.rows]
        lines += [(rule, DIM), (self._line(self.total, widths), TITLE)]
        for text, style in lines:
            for part in _wrap(text.rstrip(), options.max_width, 2):
                yield Segment(part, style)
                yield NEWLINE


def _phase_title(phase, trace) -> str:
    if phase == "backward" and trace.start:
        return f"backward, {trace.start}"
    if phase == "update":
        return "update (one SGD step)" if trace.update in ("", "one SGD step") else f"update, {trace.update}"
    return phase


class PhaseHeader:
    """`━━ backward, from the loss, half_sse ━━━━━━` across the width."""

    def __init__(self, title: str):
        self.title = title

    def __rich_console__(self, console, options):
        width = options.max_width
        yield NEWLINE
        words = _wrap(self.title, width - 6, 0)
        for k, line in enumerate(words):
            lead = "━━ " if k == 0 else "   "
            tail = " " + "━" * max(0, width - cell_len(lead + line) - 1) if k == len(words) - 1 else ""
            yield Segment(lead + line + tail, PHASE)
            yield NEWLINE


# --- plain-line layout helpers -------------------------------------------------------------


def _wrap(text: str, width: int, indent: int) -> list[str]:
    """Word-wrap `text` into lines of at most `width` cells, keeping its leading spaces;
    continuation lines are prefixed by `indent` spaces; a word longer than a line is
    folded, never cut."""
    width = max(width, indent + 8)
    body = text.lstrip(" ")
    lines, line = [], text[:len(text) - len(body)]
    for word in body.split(" "):
        candidate = f"{line} {word}" if line.strip() else line + word
        if cell_len(candidate) <= width or not line.strip():
            line = candidate
        else:
            lines.append(line)
            line = " " * indent + word
        while cell_len(line) > width:
            lines.append(line[:width])
            line = " " * indent + line[width:]
    lines.append(line)
    return lines


def _text_lines(text: str, width: int, style=None, indent: int = INDENT, hang: int = 2):
    for line in _wrap(text, width - indent, hang):
        yield Segment(" " * indent)
        yield Segment(line, style)
        yield NEWLINE


def _split(text: str) -> int:
    """Where the integer part of a number's text ends (its decimal point)."""
    point = text.find(".")
    if point < 0:
        point = text.find("e")
    return len(text) if point < 0 else point


# --- matrices ------------------------------------------------------------------------------


class Cells:
    """One step's numbers as text, with an optional marker (★, *) and style per element,
    indexed by flat position in the canonical array."""

    def __init__(self, values, markers=None, styles=None, zero_dot=False):
        flat = values.reshape(-1).tolist()
        texts = [signed(v) for v in flat]
        styles = dict(styles or {})
        if zero_dot:
            texts = ["·" if v == 0 else t for v, t in zip(flat, texts)]
            for k, v in enumerate(flat):
                if v == 0:
                    styles.setdefault(k, DIM)
        self.texts = texts
        self.points = [_split(t) for t in texts]
        self.markers = markers or {}
        self.mark_width = 1 if markers else 0
        self.styles = styles


class Block:
    """One 2-D table (or a 1-D row) of a step, with a label such as `sample 0 · map 3`.

    Its numbers are aligned on the decimal point within the block: one tiny value in
    another block does not widen this one."""

    def __init__(self, label, row_ids, col_ids, positions):
        self.label = label          # str or ""
        self.row_ids = row_ids      # displayed row indices (strings), or None for a 1-D row
        self.col_ids = col_ids      # displayed column indices (strings)
        self.positions = positions  # positions[r][c] -> flat position in Cells
        # a vector's indices are written `[k]`, the bracket standing over the decimal point
        self.anchor_extra = 0 if row_ids else 1

    def align(self, cells):
        flat = [p for row in self.positions for p in row]
        points, texts = cells.points, cells.texts
        extra = self.anchor_extra
        longest = max(len(label) for label in self.col_ids) - extra
        int_width = max(max(points[p] for p in flat), longest)
        frac_width = max(max(len(texts[p]) - points[p] for p in flat), extra)
        mark = " " * cells.mark_width
        markers = cells.markers
        self.col_width = int_width + frac_width + cells.mark_width
        self.cells = [[" " * (int_width - points[p]) + texts[p] + markers.get(p, mark)
                       + " " * (frac_width - len(texts[p]) + points[p]) for p in row]
                      for row in self.positions]
        self.styles = [[cells.styles.get(p) for p in row] for row in self.positions] if cells.styles else None
        self.headers = [label.rjust(int_width + extra).ljust(self.col_width) for label in self.col_ids]
        self.row_width = max(len(r) for r in self.row_ids) if self.row_ids else 0
        self.lead = self.row_width + GAP if self.row_ids else 0
        ncols = len(self.col_ids)
        self.table_width = self.lead + ncols * self.col_width + (ncols - 1) * GAP
        return self

    @property
    def width(self) -> int:
        return max(self.table_width, cell_len(self.label))

    def lines(self, cols, label=None):
        """Lines (lists of (text, style) pieces) of this block restricted to columns `cols`."""
        gap = " " * GAP
        lines = []
        label = self.label if label is None else label
        if label:
            lines.append([(label, DIM)])
        lines.append([(" " * self.lead + gap.join(self.headers[c] for c in cols), INDEX)])
        rows = self.row_ids if self.row_ids else [None]
        for r, row_id in enumerate(rows):
            pieces = [(row_id.rjust(self.row_width) + gap, INDEX)] if row_id is not None else []
            cells = self.cells[r]
            styles = self.styles[r] if self.styles else None
            if not styles or not any(styles[c] for c in cols):
                pieces.append((gap.join(cells[c] for c in cols), None))
            else:
                for k, c in enumerate(cols):
                    pieces.append(((gap if k else "") + cells[c], styles[c]))
            lines.append(pieces)
        return lines


def _blocks(shape, axes_names, base, cells):
    """Split a displayed value into 2-D blocks: the last two kept axes form each table,
    the axes before them label the blocks.  Returns (blocks, caption)."""
    kept = kept_axes(shape)
    sizes = [shape[a] for a in kept]
    strides = []
    step = 1
    for size in reversed(sizes):
        strides.append(step)
        step *= size
    strides.reverse()
    names = [axes_names[a] if a < len(axes_names) else f"axis {a}" for a in kept]
    if len(kept) == 1:
        cols = [f"[{c + base}]" for c in range(sizes[0])]
        caption = "" if names[0] in ("column", "unit") else f"index: {names[0]}"
        return [Block("", None, cols, [list(range(sizes[0]))]).align(cells)], caption
    lead, (rows, cols) = sizes[:-2], sizes[-2:]
    row_ids = [str(r + base) for r in range(rows)]
    col_ids = [str(c + base) for c in range(cols)]
    caption = "" if names[-2:] == ["row", "column"] else f"rows: {names[-2]} · columns: {names[-1]}"
    blocks = []
    for outer in product(*(range(n) for n in lead)):
        offset = sum(i * s for i, s in zip(outer, strides))
        label = block_title(axes_names, kept[:-2], outer, base)
        positions = [[offset + r * strides[-2] + c for c in range(cols)] for r in range(rows)]
        blocks.append(Block(label, row_ids, col_ids, positions).align(cells))
    return blocks, caption


def _line_width(pieces) -> int:
    return sum(cell_len(text) for text, _ in pieces)


def _matrix_lines(blocks, width):
    """Lay blocks out for `width` cells: side by side on a grid when several fit, one
    under another otherwise, and split into column blocks (each keeping its column
    indices) when one is too wide."""
    out = []
    if all(b.width <= width for b in blocks):
        # the most grid columns that fit, each as wide as its widest block
        for per_line in range(len(blocks), 0, -1):
            slots = [max(b.width for b in blocks[k::per_line]) for k in range(per_line)]
            if sum(slots) + (per_line - 1) * BLOCK_GAP <= width:
                break
        for start in range(0, len(blocks), per_line):
            group = [b.lines(range(len(b.col_ids))) for b in blocks[start:start + per_line]]
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
                        line.append((" " * (slots[g] - _line_width(pieces)), None))
                out.append(line)
        return out
    for b, block in enumerate(blocks):
        ncols = len(block.col_ids)
        fit = max(1, (width - block.lead + GAP) // (block.col_width + GAP))
        size = -(-ncols // -(-ncols // fit))      # balanced column blocks of at most `fit`
        for start in range(0, ncols, size):
            if b or start:
                out.append([])
            out.extend(block.lines(range(start, min(ncols, start + size)),
                                   f"{block.label}, continued" if block.label and start else None))
    return out


def _emit(lines, indent=INDENT):
    """Segments of laid-out lines, the indent joined to each line's first piece (a big
    trace has tens of thousands of lines: fewer segments, less work for rich)."""
    pad = " " * indent
    for pieces in lines:
        if pieces:
            last = len(pieces) - 1
            for k, (text, style) in enumerate(pieces):
                if k == last:
                    text = text.rstrip()
                yield Segment(pad + text if k == 0 else text, style)
        yield NEWLINE


# --- written-out sums ----------------------------------------------------------------------


class Sum:
    """One written-out element: `label = piece piece … = total tail`, wrapped between pieces
    with continuation lines under the first piece and the total under the first `=`."""

    def __init__(self, label, pieces, total, tail=""):
        self.label, self.pieces, self.total, self.tail = label, pieces, total, tail

    def lines(self, width):
        head = f"{self.label} = "
        hang = len(head) if len(head) <= width // 2 else 4
        lines, line = [], head
        for k, piece in enumerate(self.pieces):
            if k and cell_len(line) + cell_len(piece) > width:
                lines.append(line.rstrip())
                line = " " * hang + piece.lstrip()
            else:
                line += piece
            while cell_len(line) > width:
                lines.append(line[:width])
                line = " " * hang + line[width:]
        end = f" = {self.total}{self.tail}"
        if cell_len(line) + cell_len(end) <= width:
            lines.append(line + end)
        else:
            lines.append(line)
            lines.extend(_wrap(" " * max(0, hang - 2) + end.lstrip(), width, hang))
        return lines


def _zero_term(term) -> bool:
    return any(f.value == 0 for f in term)


class StepView:
    """One step: header, rule, its numbers as a table, what replaced the computed values,
    the written-out sums, and notes."""

    def __init__(self, step, trace, base, layer_types):
        self.step, self.trace, self.base = step, trace, base
        self.layer_type = layer_types.get(step.layer, "")
        self.shown_shape = squeezed_shape(step.shape)
        self.pinned = step.computed is not None
        self.zero_dot = False
        self.explained = set()      # elements whose sum is written out (with computed → used)
        self.sums, self.sum_notes = self._sums()
        self.blocks, self.caption = self._table()

    # -- what is shown ---------------------------------------------------------------------

    def _axes(self):
        return axis_names(self.step.name, self.step.shape, self.layer_type)

    def _table(self):
        step = self.step
        if not self.shown_shape:
            return None, ""
        markers, styles = {}, {}
        shape = step.shape
        if step.given is not None:
            for k, pinned in enumerate(step.given.reshape(-1).tolist()):
                if pinned:
                    markers[k], styles[k] = "*", GIVEN
        zero_dot = step.name.endswith(".delta") and bool((step.values == 0).any())
        self.zero_dot = zero_dot
        cells = Cells(step.values, markers, styles, zero_dot=zero_dot)
        blocks, caption = _blocks(shape, self._axes(), self.base, cells)
        return blocks, caption

    def _winner_view(self):
        """For a max-pool's forward step: its input with each window's winner starred."""
        step = self.step
        if self.layer_type != "maxpool" or step.phase != "forward" or not step.expansions:
            return None
        source, winners = None, []
        for expansion in step.expansions.values():
            if expansion.kind != "max" or expansion.winner is None:
                continue
            factor = expansion.terms[expansion.winner][0]
            if factor.name not in self.trace or factor.index is None:
                return None
            source = factor.name
            winners.append(factor.index)
        if source is None:
            return None
        src = self.trace[source]
        flat = [int(np.ravel_multi_index(index, src.shape)) for index in winners]
        cells = Cells(src.values, {k: "★" for k in flat}, {k: WINNER for k in flat})
        blocks, _ = _blocks(src.shape, AXES["map"], self.base, cells)
        return source, blocks

    def _sums(self):
        step = self.step
        if not step.expansions:
            return [], []
        kinds = {e.kind for e in step.expansions.values()}
        if kinds == {"sum"}:
            counts = [sum(1 for t in e.terms if not _zero_term(t)) for e in step.expansions.values()]
            if max(counts) > TERMS_PER_SUM or sum(counts) > TERMS_PER_STEP:
                longest = max(len(e.terms) for e in step.expansions.values())
                return [], [f"the sums are not written out: up to {longest} terms each, too many to read"]
        used = step.values
        computed = step.computed if step.computed is not None else step.values
        sums, zero_elements, skips = [], [], []
        for index, expansion in sorted(step.expansions.items()):
            label = element(step.name, step.shape, index, self.base)
            total = signed(computed[index])
            tail = ""
            if step.computed is not None and used[index] != computed[index]:
                why = "given" if step.given is not None and step.given[index] else "rounded"
                tail = f" → {signed(used[index])} {why}"
            skipped = 0
            if expansion.kind == "apply":
                factor = expansion.terms[0][0]
                pieces = [f"{expansion.fn}({signed(factor.value)})"]
            elif expansion.kind == "max":
                pieces = self._max_pieces(expansion)
                factor = expansion.terms[expansion.winner][0]
                tail = f" from {self._factor_element(factor)}" + tail
            else:
                terms = [t for t in expansion.terms if not _zero_term(t)]
                skipped = len(expansion.terms) - len(terms)
                if not terms:
                    zero_elements.append(label)
                    continue
                pieces = self._sum_pieces(terms)
            sums.append(Sum(label, pieces, total, tail))
            skips.append((skipped, len(expansion.terms)))
            self.explained.add(index)
        notes = []
        if {k for k, _ in skips} - {0}:
            if len(set(skips)) == 1:
                skipped, count = skips[0]
                notes.append(f"left out of {'each sum' if len(sums) > 1 else 'the sum'}: {skipped} of its "
                             f"{count} terms, which have a zero factor")
            else:
                for item, (skipped, _) in zip(sums, skips):
                    if skipped:
                        item.tail += f"   (+{skipped} zero term{'s' if skipped != 1 else ''})"
                notes.append("(+n zero terms): terms with a zero factor, left out")
        if zero_elements:
            count = len(zero_elements)
            if count <= 4:
                notes.append(f"{', '.join(zero_elements)} = 0: every term has a zero factor")
            else:
                notes.append(f"{'the other' if sums else 'all'} {count} elements are 0: every term of "
                             "their sums has a zero factor")
        return sums, notes

    def _factor_element(self, factor):
        return factor_label(factor, self.trace, self.step, self.base)

    def _sum_pieces(self, terms):
        if len(terms) == 1 and len(terms[0]) == 1 and terms[0][0].index is not None:
            factor = terms[0][0]
            return [self._factor_element(factor)]
        return sum_pieces(product_text(trace_factors(term)) for term in terms)

    def _max_pieces(self, expansion):
        pieces = []
        best = expansion.terms[expansion.winner][0].value
        last = len(expansion.terms) - 1
        for k, (factor,) in enumerate(expansion.terms):
            mark = "★" if k == expansion.winner else ("☆" if factor.value == best else "")
            text = signed(factor.value) + mark
            text = ("max(" if k == 0 else " ") + text + (")" if k == last else ",")
            pieces.append(text)
        return pieces

    # -- layout ------------------------------------------------------------------------------

    def _header(self):
        step = self.step
        pieces = [(step.name, NAME)]
        if not self.shown_shape:
            pieces.append((" = " + signed(step.values.reshape(-1)[0]), TITLE))
        else:
            pieces.append(("  " + "×".join(str(d) for d in self.shown_shape), DIM))
            if self.zero_dot:
                pieces.append(("  (· = 0)", DIM))
        if step.phase in ("input", "parameter"):
            pieces.append(("  " + step.origin, DIM))
        return pieces

    def __rich_console__(self, console, options):
        width = options.max_width
        step = self.step
        inner = width - INDENT
        yield NEWLINE
        header = self._header()
        if _line_width(header) <= width:
            yield from _emit([header], indent=0)
        else:
            yield from _text_lines("".join(t for t, _ in header), width, NAME, indent=0, hang=2)
        if step.phase not in ("input", "parameter"):
            yield from _text_lines(step.rule, width, RULE)
        if self.caption:
            yield from _text_lines(self.caption, width, DIM)
        if step.rounded:
            yield from _text_lines(f"rounded: {step.rounded}; later steps use the rounded values",
                                   width, NOTE)
        if step.given is not None:
            count, total = int(step.given.sum()), step.given.size
            which = "the value" if total == 1 else f"all {total} values" if count == total else \
                f"{count} of {total} values"
            yield from _text_lines(f"given: {which} pinned by the scenario (*); later steps use "
                                   f"{'it' if total == 1 else 'these'}, not the computed "
                                   f"{'one' if total == 1 else 'ones'}", width, GIVEN)
        winners = self._winner_view()
        if winners and self.blocks and len(self.blocks) == 1 and len(winners[1]) == 1:
            # one small map: the pool's output and its input with the winners, side by side
            source, (block,) = winners
            self.blocks[0].label = step.name
            block.label = f"{source}  ★ = winner"
            yield from _emit(_matrix_lines([self.blocks[0], block], inner))
            winners = None
        elif self.blocks:
            yield from _emit(_matrix_lines(self.blocks, inner))
        if self.pinned:
            yield from self._replaced(width)
        if winners:
            source, blocks = winners
            yield NEWLINE
            yield from _text_lines(f"the windows' winners in {source} (★):", width, DIM)
            yield from _emit(_matrix_lines(blocks, inner))
        if self.sums:
            yield NEWLINE
            for item in self.sums:
                for line in item.lines(inner):
                    yield Segment(" " * INDENT)
                    yield Segment(line)
                    yield NEWLINE
        if self.sum_notes and not self.sums:
            yield NEWLINE
        for note in self.sum_notes:
            yield from _text_lines(note, width, DIM)
        for note in step.notes:
            yield from _text_lines(f"note: {note}", width, NOTE)

    def _replaced(self, width):
        """Computed vs used values of a step that rounding or `given` changed (those whose
        sums are written out say it there)."""
        step = self.step
        used, computed = step.values, step.computed
        changed = [index for index in _indices(step.shape) if used[index] != computed[index]]
        if not changed:
            yield from _text_lines("(the computed values already equal the ones used)", width, DIM)
            return
        changed = [index for index in changed if index not in self.explained]
        if not changed:
            return
        yield NEWLINE
        if len(changed) <= LIST_LIMIT:
            rows = []
            for index in changed:
                why = "given" if step.given is not None and step.given[index] else "rounded"
                rows.append((element(step.name, step.shape, index, self.base),
                             signed(computed[index]), signed(used[index]), why))
            w0 = max(len(r[0]) for r in rows)
            w1 = max(len(r[1]) for r in rows)
            for name, before, after, why in rows:
                yield from _text_lines(f"{name.ljust(w0)}   computed {before.ljust(w1)}   → {after} {why}",
                                       width, None, hang=4)
            return
        yield from _text_lines("computed, before rounding or given values replaced them:", width, DIM)
        cells = Cells(computed)
        blocks, _ = _blocks(step.shape, self._axes(), self.base, cells)
        yield from _emit(_matrix_lines(blocks, width - INDENT))


def _indices(shape):
    return list(np.ndindex(*shape))
