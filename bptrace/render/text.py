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

from rich.cells import cell_len
from rich.console import Group
from rich.segment import Segment
from rich.style import Style

from .layout import DEFAULT_DIGITS, arrange, line_width, text_tables
from .circuit import circuit_data, stages
from .view import step_view, trace_view, zero_note
from .common import sum_pieces

INDENT = 2

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
KIND_STYLES = {"given": GIVEN, "winner": WINNER, "zero": DIM}
NOTE_STYLES = {"rounded": NOTE, "given": GIVEN, "note": NOTE}

NEWLINE = Segment.line()


def render(trace, only=None, digits: int = DEFAULT_DIGITS, summary: bool = False) -> Group:
    """The whole trace as one rich renderable: heading, network summary, then each step
    (only the steps named in `only`, when given) under its phase's header, and the results.
    `summary=True`: the heading, the network summary and the results only."""
    view = trace_view(trace, only, digits, steps=not summary)
    parts = [Heading(view), Summary(view)]
    circuit = circuit_data(trace, digits)
    if circuit and only is None and not summary:
        parts.append(Stages(circuit))       # an expression graph: its stages at a glance
    for title, steps in view.sections:
        parts.append(PhaseHeader(title))
        parts += [StepText(step) for step in steps]
    parts.append(Results(view))
    return Group(*parts)


def step_renderable(step, trace, digits: int = DEFAULT_DIGITS):
    """One step as the terminal shows it (for `print(trace["c1.out"])`)."""
    return StepText(step_view(step, trace, digits))


# --- heading and summary ------------------------------------------------------------------


class Heading:
    """The trace's name, its description, the conventions it was traced with and the legend."""

    def __init__(self, view):
        self.view = view

    def __rich_console__(self, console, options):
        width, view = options.max_width, self.view
        yield from _text_lines(view.title, width, TITLE, indent=0, hang=0)
        if view.description:
            yield from _text_lines(view.description, width, None, indent=0, hang=0)
        yield from _text_lines(f"conventions: {view.conventions}", width, DIM, indent=0, hang=0)
        yield from _text_lines(view.legend, width, DIM, indent=0, hang=2)
        yield NEWLINE


class Summary:
    """The network, Keras/torchinfo style: layer, type, output shape (length-1 axes
    dropped), parameters, and the total."""

    def __init__(self, view):
        self.header = ("layer", "type", "output", "params")
        self.rows = view.summary
        self.total = ("", "", "total", str(view.total_params))

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


class Stages:
    """An expression graph's staged forward and backward lists (render/circuit.py)."""

    def __init__(self, circuit):
        self.forward, self.backward = stages(circuit)

    def __rich_console__(self, console, options):
        for title, lines in (("forward, node by node", self.forward), ("backward, from the output", self.backward)):
            yield Segment(title, TITLE)
            yield NEWLINE
            for line in lines:
                yield from _text_lines(str(line), options.max_width, None)
        yield NEWLINE


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


def _tables(values, width, label=None):
    """A `view.Values` as laid-out tables for `width` cells."""
    styles = {k: KIND_STYLES[kind] for k, kind in values.kinds.items()} if values.kinds else None
    tables = text_tables(values.grids, values.texts, values.marks, styles, width)
    if label is not None and len(tables) == 1:
        tables[0].label = label
    return tables


# --- written-out sums ----------------------------------------------------------------------


class Sum:
    """One written-out element: `label = piece piece … = total tail`, wrapped between pieces
    with continuation lines under the first piece and the total under the first `=`."""

    def __init__(self, label, pieces, total, tail="", named=None):
        self.label, self.pieces, self.total, self.tail, self.named = label, pieces, total, tail, named

    def lines(self, width):
        head = f"{self.label} = "
        hang = len(head) if len(head) <= width // 2 else 4
        lines, line = [], head
        if self.named:
            # which element each factor is, then the numbers under it from `= `
            named = self.named.split(" + ")
            for k, piece in enumerate(named):
                piece = piece if k == 0 else " + " + piece
                if k and cell_len(line) + cell_len(piece) > width:
                    lines.append(line.rstrip())
                    line = " " * hang + piece.lstrip()
                else:
                    line += piece
            lines.append(line)
            line = " " * max(0, hang - 2) + "= "
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
        if "".join(self.pieces).strip() == self.total:
            end = self.tail          # a formula (`arithmetic: symbolic`) is its own total
        if cell_len(line) + cell_len(end) <= width:
            lines.append(line + end)
        else:
            lines.append(line)
            lines.extend(_wrap(" " * max(0, hang - 2) + end.lstrip(), width, hang))
        return lines


def sum_text(item) -> Sum:
    """A `view.SumView` as the terminal writes it."""
    tail = ""
    if item.kind == "apply":
        pieces = [f"{item.fn}({item.products[0]})"] + ([f" = {item.named}"] if item.named else [])
    elif item.kind == "max":
        pieces, last = [], len(item.products) - 1
        best = item.products[item.winner]
        for k, text in enumerate(item.products):
            mark = "★" if k == item.winner else ("☆" if text == best else "")
            pieces.append(("max(" if k == 0 else " ") + text + mark + (")" if k == last else ","))
        tail = f" from {item.winner_label}"
    elif item.kind == "copy":
        pieces = list(item.products)
    else:
        pieces = sum_pieces(item.products)
    if item.used is not None:
        tail += f" → {item.used} {item.why}"
    note = zero_note(item)
    if note:
        tail += f"   ({note})"
    return Sum(item.label, pieces, item.total, tail, item.named if item.kind == "sum" else None)


class StepText:
    """One step: header, rule, its numbers as a table, what replaced the computed values,
    the written-out sums, and notes."""

    def __init__(self, view):
        self.view = view

    def _header(self):
        view = self.view
        pieces = [(view.name, NAME)]
        if view.scalar is not None:
            pieces.append((" = " + view.scalar, TITLE))
        else:
            pieces.append(("  " + view.shape_text, DIM))
            if view.values.format.scale_text:
                pieces.append((f"  (values {view.values.format.scale_text})", TITLE))
            if view.values.zero_dot:
                pieces.append(("  (· = 0)", DIM))
        if view.origin and view.rule is None:
            pieces.append(("  " + view.origin, DIM))
        return pieces

    def __rich_console__(self, console, options):
        width = options.max_width
        view = self.view
        inner = width - INDENT
        yield NEWLINE
        header = self._header()
        if line_width(header) <= width:
            yield from _emit([header], indent=0)
        else:
            yield from _text_lines("".join(t for t, _ in header), width, NAME, indent=0, hang=2)
        if view.rule is not None:
            yield from _text_lines(view.rule, width, RULE)
        if view.values is not None and view.values.caption:
            yield from _text_lines(view.values.caption, width, DIM)
        for kind, note in view.notes:
            if kind != "note":
                yield from _text_lines(note, width, NOTE_STYLES[kind])
        source = view.window_source
        if view.values is not None:
            tables = _tables(view.values, inner)
            if source is not None and len(tables) == 1 and len(source.grids) == 1:
                # one small map: the pool's output and its input with the winners, side by side
                tables[0].label = view.name
                scale = f" ({source.format.scale_text})" if source.format.scale_text else ""
                tables += _tables(source, inner, f"{source.name}{scale}  ★ = winner")
                source = None
            yield from _emit(arrange(tables, inner, DIM, INDEX))
        yield from self._replaced(width)
        if source is not None:
            yield NEWLINE
            yield from _text_lines(f"the windows' winners in {source.name} (★):", width, DIM)
            yield from _emit(arrange(_tables(source, inner), inner, DIM, INDEX))
        if view.sums:
            yield NEWLINE
            for item in view.sums:
                for line in sum_text(item).lines(inner):
                    yield Segment(" " * INDENT)
                    yield Segment(line)
                    yield NEWLINE
        if view.sum_notes and not view.sums:
            yield NEWLINE
        for note in view.sum_notes:
            yield from _text_lines(note, width, DIM)
        for kind, note in view.notes:
            if kind == "note":
                yield from _text_lines(note, width, NOTE)

    def _replaced(self, width):
        view = self.view
        if view.same_as_computed:
            yield from _text_lines("(the computed values already equal the ones used)", width, DIM)
        if view.replaced:
            yield NEWLINE
            w0 = max(len(r[0]) for r in view.replaced)
            w1 = max(len(r[1]) for r in view.replaced)
            for name, before, after, why in view.replaced:
                yield from _text_lines(f"{name.ljust(w0)}   computed {before.ljust(w1)}   → {after} {why}",
                                       width, None, hang=4)
        if view.computed is not None:
            yield NEWLINE
            yield from _text_lines("computed, before rounding or given values replaced them:", width, DIM)
            yield from _emit(arrange(_tables(view.computed, width - INDENT), width - INDENT, DIM, INDEX))


class Results:
    """The end of the trace: the loss, each parameter's gradient and update (or the asked-for
    steps), and how to see any number's terms."""

    def __init__(self, view):
        self.view = view

    def __rich_console__(self, console, options):
        width, view = options.max_width, self.view
        inner = width - INDENT
        yield from PhaseHeader("results").__rich_console__(console, options)
        if view.loss is not None:
            yield NEWLINE
            yield from _emit([[("loss", NAME), (" = " + view.loss, TITLE)]], indent=0)
        for result in view.results:
            yield NEWLINE
            head = [(result.name, NAME)]
            if result.scalar is not None:
                head.append((" = " + result.scalar, TITLE))
            elif result.values is not None and result.values.format.scale_text:
                head.append((f"  (values {result.values.format.scale_text})", TITLE))
            head.append((f"  {result.what}", DIM))
            yield from _emit([head], indent=0)
            if result.largest:
                yield from _text_lines(result.largest, width, None)
            elif result.values is not None:
                if result.values.caption:
                    yield from _text_lines(result.values.caption, width, DIM)
                yield from _emit(arrange(_tables(result.values, inner), inner, DIM, INDEX))
        if view.explain:
            yield NEWLINE
            yield from _text_lines(f"every term of any number: {view.explain}", width, DIM, indent=0)
