"""`bptrace explain` on a terminal: an `Explanation`, a `StepOverview` or an `Unrolled`
matrix as rich renderables.  Formatting only; every number comes from the objects."""
from __future__ import annotations

import functools
from contextvars import ContextVar
from fractions import Fraction

from rich import box
from rich.align import Align
from rich.console import Group
from rich.table import Table
from rich.text import Text

from . import common
from .common import SIGNIFICANT, format_index, product_text, sum_pieces

# a matrix wider or taller than this is described rather than printed
UNROLLED_ROWS = 64
UNROLLED_COLUMNS = 128
VECTOR_ROWS = 64          # unrolled checks: print every element up to this many
LEGEND_ROWS = 64          # shared weights listed one by one
OVERVIEW_ELEMENTS = 4096  # a step overview lists at most this many elements


# significant digits shown (`explain --digits`), set by each public render function
_DIGITS: ContextVar = ContextVar("explain_digits", default=SIGNIFICANT)


def signed(value) -> str:
    """A number as shown: `--digits` significant digits (10 unless asked), true minus."""
    return common.signed(value, _DIGITS.get())


def _with_digits(render_function):
    """`digits=N` shows N significant digits in everything the render function writes; only
    what is shown is rounded (the objects keep every digit)."""
    @functools.wraps(render_function)
    def rendered(*args, digits: int | None = None, **options):
        if digits is None:
            return render_function(*args, **options)
        token = _DIGITS.set(digits)
        try:
            return render_function(*args, **options)
        finally:
            _DIGITS.reset(token)
    return rendered


def _heading(text: str) -> Text:
    return Text(text, style="bold")


def fitted(table: Table, width: int):
    """The table when it fits `width`; else its rows as lines that wrap, so that nothing is
    ever cut off (a rich table squeezed below its width would crop its cells)."""
    from rich.console import Console

    if Console(width=10_000, color_system=None).measure(table).maximum <= width:
        return table
    headers = [str(column.header) for column in table.columns]
    columns = [[str(cell) for cell in column.cells] for column in table.columns]
    lines = []
    for row in zip(*columns):
        pieces = [f"{h}: {c}" if h and h not in ("#",) and c else c for h, c in zip(headers, row) if c]
        lines.append(Text("  ".join(pieces)))
    return Group(*lines)


def _rule_line(rule: str) -> Text:
    line = Text("rule  ", style="dim")
    line.append(rule)
    return line


# --- one element -----------------------------------------------------------------------

@_with_digits
def render(explanation, width: int = 100):
    """An `Explanation` or a `StepOverview`."""
    from ..explain import StepOverview

    if isinstance(explanation, StepOverview):
        return render_overview(explanation, width)
    e = explanation
    parts = [_title(e), _rule_line(e.rule), Text(_where(e), style="dim"), Text()]
    if e.kind == "value":
        parts.append(Text(f"{e.element} = {signed(e.total)}: {e.origin}"))
    elif e.kind == "apply":
        parts.append(Text(f"{e.element} = {e.fn}({e.argument.label}) = {e.fn}({signed(e.argument.value)}) "
                          f"= {signed(e.total)}"))
    elif e.kind == "max":
        parts += _max(e, width)
    else:
        if e.contributions:
            parts += _contributions(e) + [Text()]
        if e.windows:
            parts += _windows(e) + [Text()]
        if e.share:
            parts += [Text(f"through average pooling ({e.layer}): each window this cell is in passes "
                           f"{e.share} of its error ({e.share_reason}) back to it"), Text()]
        if e.dense_row:
            parts += _dense_row(e, width) + [Text()]
        direct = _terms(e, width)
        if e.full_conv:
            parts += _both_views(e, direct, width)
        else:
            parts += direct
    parts += _total(e)
    return Group(*parts)


def _title(e) -> Text:
    title = Text(e.element, style="bold")
    title.append(f" = {signed(e.value)}", style="bold")
    return title


def _where(e) -> str:
    layer = f" of {e.layer} ({e.layer_type})" if e.layer and e.layer_type else ""
    return f"{e.phase} step{layer}; indices from {e.index_base}"


def _terms(e, width: int) -> list:
    if not e.terms:
        if e.total != 0:
            # a recurrent layer's state, gates and their deltas: the rule above, not a sum of
            # products bptrace records term by term (saying "so it is 0" would contradict it)
            return [Text("this value is not written out term by term: the rule above computes it "
                         "from the values it names")]
        return [Text("no term reaches this element: nothing flows into it, so it is 0")]
    factors = max(len(t.operands) for t in e.terms)
    headers = []
    for column in range(factors):
        names = {t.operands[column].name for t in e.terms if column < len(t.operands)}
        headers.append(names.pop() if len(names) == 1 and None not in names else None)
    constants = [all(t.operands[column].name is None for t in e.terms if column < len(t.operands))
                 for column in range(factors)]
    # one column per factor: its index under a shared name (or its whole label), then its
    # value, padded so that labels line up on the left and numbers on the right
    cells = []
    for term in e.terms:
        row = []
        for column in range(factors):
            if column < len(term.operands):
                operand = term.operands[column]
                row.append((format_index(operand.index) if headers[column] else operand.label, signed(operand.value)))
            else:
                row.append(("", ""))
        cells.append(row)
    label_widths = [max(len(row[c][0]) for row in cells) for c in range(factors)]
    value_widths = [max(len(row[c][1]) for row in cells) for c in range(factors)]
    table = Table(box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False, padding=(0, 1))
    table.add_column("#", justify="right", style="dim")
    for column, header in enumerate(headers):
        table.add_column(("× " if column else "") + (header or ("constant" if constants[column] else f"factor {column + 1}")),
                         justify="left", no_wrap=True)
    table.add_column("term", justify="right", no_wrap=True)
    table.add_column("sum", justify="right", no_wrap=True)
    for k, (term, row) in enumerate(zip(e.terms, cells), 1):
        texts = []
        for column, (label, value) in enumerate(row):
            text = Text("× " if column and label + value else ("  " if column else ""))
            if label:
                text.append(label.ljust(label_widths[column]) + " ", style="dim")
            text.append(value.rjust(value_widths[column]))
            texts.append(text)
        table.add_row(str(k), *texts, signed(term.product), signed(term.running))
    parts = [Text(f"{len(e.terms)} term{'s' * (len(e.terms) != 1)}, each a product of its row's factors "
                  "(sum: the running sum):"), table if _fits(table, width) else _stacked_terms(e)]
    if len(e.terms) <= 16:
        parts.append(Text(f"{e.element} = {written_sum(e.terms)} = {signed(e.total)}"))
    return parts


def _fits(table: Table, width: int) -> bool:
    from rich.console import Console

    return Console(width=10_000, color_system=None).measure(table).maximum <= width


def _stacked_terms(e) -> Group:
    """The terms one factor per line, for a terminal too narrow for the table."""
    lines = []
    for k, term in enumerate(e.terms, 1):
        for column, operand in enumerate(term.operands):
            lead = f"{k:>3}  " if column == 0 else "     × "
            lines.append(Text.assemble(lead, (operand.label, "dim"), " ", signed(operand.value)))
        lines.append(Text(f"     = {signed(term.product)}   sum {signed(term.running)}"))
    return Group(*lines)


def written_sum(terms) -> str:
    """0.068628·0.84 + 0.0364182·0.22 − 0.06818625·0.09: each term's factors, signs pulled out."""
    return "".join(sum_pieces(product_text([(o.value, o.label if o.name is None else None) for o in term.operands],
                                           _DIGITS.get())
                              for term in terms))


def _contributions(e) -> list:
    """A value several layers read: its delta is what each of them sends back, added."""
    readers = [c.layer for c in e.contributions]
    lines = [Text(f"{e.name.rsplit('.delta', 1)[0]} is read by {', '.join(readers[:-1])} and {readers[-1]}, "
                  f"so its error is the sum of what each sends back:")]
    for c in e.contributions:
        lines.append(Text.assemble("  through ", (c.layer, "bold"), f": {signed(c.value)}   ", (c.rule, "dim")))
    total = sum_pieces(product_text([(c.value, None)]) for c in e.contributions)
    lines.append(Text(f"{e.element} = {''.join(total)} = {signed(e.total)}"))
    lines.append(Text("the terms below are those of every contribution, one after another"))
    return lines


def _max(e, width: int) -> list:
    table = Table(box=None, show_header=False, padding=(0, 2))
    table.add_column()
    table.add_column(justify="right")
    table.add_column()
    best = e.candidates[e.winner]
    for k, candidate in enumerate(e.candidates):
        mark = "★ the largest" if k == e.winner else ("= the largest too" if e.tie and candidate.value == best.value else "")
        table.add_row(candidate.label, signed(candidate.value), mark)
    parts = [Text(f"the window has {len(e.candidates)} cell{'s' * (len(e.candidates) != 1)}:"), fitted(table, width),
             Text(f"{e.element} = max(...) = {signed(best.value)}, from {best.label}")]
    if e.tie:
        parts.append(Text("tie: several cells hold the maximum; the first in row-major order wins it "
                          "and, going back, takes the whole error"))
    return parts


def _windows(e) -> list:
    count = len(e.windows)
    parts = [Text(f"through max-pooling ({e.layer}): this cell is in {count} window{'s' * (count != 1)}")]
    for window in e.windows:
        winner = window.cells[window.winner]
        cells = ", ".join(f"{c.label} {signed(c.value)}" + (" ★" if k == window.winner else "")
                          for k, c in enumerate(window.cells))
        parts.append(Text(f"  window of {window.output.label}: {cells}"))
        why = f"{signed(winner.value)} is the largest"
        if window.tie:
            why += "; a tie, and the first maximum in row-major order wins"
        if window.won:
            parts.append(Text(f"    → this cell won ({why}): it receives {window.delta.label} = "
                              f"{signed(window.delta.value)}"))
        else:
            parts.append(Text(f"    → {winner.label} won ({why}), not this cell: nothing from {window.delta.label}"))
    return parts


def _dense_row(e, width: int) -> list:
    row = e.dense_row
    weights = row.weights[0].name
    table = Table(box=None, show_header=True, padding=(0, 2))
    table.add_column("")
    for output in row.outputs:
        table.add_column(f"[{output}]", justify="right")
    table.add_row(f"row {row.input} of {weights}ᵀ", *[signed(w.value) for w in row.weights])
    table.add_row(row.deltas[0].name, *[signed(d.value) for d in row.deltas])
    return [Text(f"through dense layer {e.layer}: the error at the input is {weights}ᵀ · delta; this element "
                 f"is row {row.input} of {weights}ᵀ (column {row.input} of {weights}) times the delta "
                 "(columns: the output units):"),
            fitted(table, width)]


def _both_views(e, direct: list, width: int) -> list:
    from rich.console import Console

    fc = e.full_conv
    left = Group(Text("direct chain rule: every output that read this cell, times the weight that joined them",
                      style="bold"), *direct)
    right = Group(*_full_convolution(fc, width))
    agree = Text(f"both views: {signed(fc.direct)} (chain rule) and {signed(fc.total)} (full convolution) ")
    agree.append("✓ agree" if fc.agree else "✗ DISAGREE", style="green" if fc.agree else "bold red")
    # side by side only when both fit without wrapping (measured on a scratch console)
    scratch = Console(width=10_000, color_system=None)
    needed = sum(scratch.measure(part).maximum for part in (left, right)) + 4
    if needed <= width:
        grid = Table.grid(padding=(0, 4))
        grid.add_column(no_wrap=True)
        grid.add_column(no_wrap=True)
        grid.add_row(left, right)
        return [grid, Text(), agree]
    return [left, Text(), right, Text(), agree]


def _full_convolution(fc, width: int) -> list:
    (sh, sw), (bh, bw) = fc.stride, fc.pad_before
    how = []
    if (sh, sw) != (1, 1):
        how.append(f"stride {sh},{sw}: {sh - 1} zero row(s) and {sw - 1} zero column(s) between its elements")
    dilated = fc.dilation != (1, 1)
    size = "dilation·(kernel size − 1)" if dilated else "kernel size − 1"
    for count, what in ((bh, "row"), (bw, "column")):
        if count >= 0:
            how.append(f"{count} zero {what}(s) before it ({size} − padding)")
        else:
            how.append(f"its first {-count} {what}(s) dropped (the padding is wider than {size})")
    if dilated:
        dh, dw = fc.dilation
        how.append(f"dilation {dh},{dw}: the kernel's taps, and so the window's cells that meet them, "
                   f"are {dh} row(s) and {dw} column(s) apart")
    parts = [Text("full convolution: the delta, padded with zeros,", style="bold"),
             Text(f"slid under {fc.flipped_from}", style="bold")]
    parts += [Text("  " + line, style="dim") for line in how]
    show_maps = sum(p.size for p in fc.padded) <= 400
    for channel, padded in zip(fc.channels, fc.padded):
        parts.append(Text())
        where = (f"rows {channel.rows[0]}–{channel.rows[1]}, columns {channel.cols[0]}–{channel.cols[1]}")
        if show_maps:
            parts.append(Text(f"{channel.delta_name} padded ({padded.shape[0]}×{padded.shape[1]}), "
                              f"[the window] at {where}:"))
            parts += _padded(padded, channel, fc.index_base, width)
        else:
            parts.append(Text(f"{channel.delta_name} padded ({padded.shape[0]}×{padded.shape[1]}), window at {where}:"))
        parts.append(_window_grids(channel, fc.kernel, width))
        parts.append(Text(f"sum of the products: {signed(channel.total)}"))
    if len(fc.channels) > 1:
        parts += [Text(), Text(f"sum over the {len(fc.channels)} maps: {signed(fc.total)}")]
    return parts


def _grid(cells) -> Table:
    table = Table(box=None, show_header=False, padding=(0, 1), pad_edge=False)
    for _ in range(len(cells[0])):
        table.add_column(justify="right", no_wrap=True)
    for row in cells:
        table.add_row(*row)
    return table


def _window_grids(channel, kernel_name: str, width: int):
    """The window of the padded delta, the turned kernel and their products: side by side
    (each under its caption) when they fit, else one under the other with the captions
    written above them."""
    from rich.console import Console

    kh, kw = channel.patch.shape
    indices = channel.kernel_indices
    window = _grid([[signed(channel.patch[a, b]) for b in range(kw)] for a in range(kh)])
    products = _grid([[signed(channel.products[a, b]) for b in range(kw)] for a in range(kh)])
    indexed = any(indices[a][b] for a in range(kh) for b in range(kw))
    kernel = _grid([[(signed(channel.kernel[a, b]) + " " + format_index(indices[a][b])).rstrip() for b in range(kw)]
                    for a in range(kh)])
    outer = Table.grid(padding=(0, 1))
    for _ in range(5):
        outer.add_column(no_wrap=True, vertical="middle")
    outer.add_row(Text("window", style="dim"), "", Text(f"{kernel_name} turned 180°" + (" [its index]" if indexed else ""),
                                                        style="dim"), "", Text("products", style="dim"))
    outer.add_row(window, "⊙", Align.center(kernel), "=", products)
    if Console(width=10_000, color_system=None).measure(outer).maximum <= width:
        return outer
    # too wide: one under the other, and the kernel's indices said once instead of per cell
    first, last = _written(kernel_name, indices[0][0]), _written(kernel_name, indices[-1][-1])
    plain = _grid([[signed(channel.kernel[a, b]) for b in range(kw)] for a in range(kh)])
    turned = f"{kernel_name} turned 180°" + (f" (top left is {first}, bottom right {last})" if indexed else "")
    return Group(Text("window", style="dim"), fitted(window, width), Text(turned, style="dim"), fitted(plain, width),
                 Text("products", style="dim"), fitted(products, width))


def _written(name: str, index) -> str:
    """`c1.kernel[2,2]` from a name and an index already as written."""
    return name + format_index(index)


def _padded(padded, channel, base: int, width: int) -> list:
    """The padded delta with the window's cells in brackets; every cell as wide as the
    widest, so that the columns line up, and cut into blocks of columns that fit."""
    rows, cols = padded.shape
    cells = []
    for r in range(rows):
        line = []
        for q in range(cols):
            inside = channel.rows[0] <= r + base <= channel.rows[1] and channel.cols[0] <= q + base <= channel.cols[1]
            line.append(f"[{signed(padded[r, q])}]" if inside else f" {signed(padded[r, q])} ")
        cells.append(line)
    return matrix_blocks([str(r + base) for r in range(rows)], [str(q + base) for q in range(cols)], cells, width,
                         trailing=1)


def _total(e) -> list:
    parts = [Text()]
    line = Text("total ", style="bold")
    line.append(signed(e.total), style="bold")
    if e.kind == "value":
        return parts[:1] if not e.replaced else parts[:1] + [Text(f"{e.replaced}: later steps use {signed(e.value)}")]
    line.append(f"  (the engine's {e.element})", style="dim")
    parts.append(line)
    if e.replaced:
        parts.append(Text(f"{e.replaced}: later steps use {signed(e.value)} instead of {signed(e.total)}"))
    return parts


# --- a whole step ------------------------------------------------------------------------

@_with_digits
def render_overview(o, width: int = 100):
    parts = [_heading(f"{o.name} — {o.shape}, {o.phase} step" + (f" of {o.layer} ({o.layer_type})" if o.layer_type else "")),
             _rule_line(o.rule)]
    if o.reads:
        parts.append(Text("reads " + ", ".join(o.reads), style="dim"))
    if o.rounded:
        parts.append(Text(f"rounded: {o.rounded}"))
    if o.given:
        parts.append(Text(f"{o.given} element{'s' * (o.given != 1)} pinned by `given`"))
    if o.computed:
        parts.append(Text("the engine computed " + ", ".join(f"{format_index(i)} {signed(v)}" for i, v in o.computed[:12])
                          + (" …" if len(o.computed) > 12 else "") + " before that"))
    parts += [Text(note) for note in o.notes]
    parts.append(Text())
    parts += [Text(f"{len(o.elements)} element{'s' * (len(o.elements) != 1)}, laid out as the tensor:"),
              _tensor(o, width)]
    parts += [Text(), Text(f"one element, term by term: bptrace explain SCENARIO '{o.example}'", style="dim")]
    return Group(*parts)


def _tensor(o, width):
    """The step's elements as its tables (the run's layout, `--digits` significant digits
    of the step's largest), indices in the scenario's base."""
    from .common import axis_names
    from .layout import EXACT_FORMAT, arrange, grids, table_format, text_tables

    written = [index for index, _ in o.elements]
    values = [value for _, value in o.elements]
    if not written or not written[0]:
        return Text(signed(values[0]) if values else "")
    base = min(min(index) for index in written)       # every element is listed: the smallest is the base
    kept = tuple(max(i[axis] for i in written) + 1 - base for axis in range(len(written[0])))
    role = o.name.rsplit(".", 1)[-1]
    rank = 2 if role == "weights" or (len(kept) <= 2 and role not in ("kernel",) and len(kept) == 1) else 4
    shape = (1,) * max(0, rank - len(kept)) + kept
    exact = any(isinstance(v, Fraction) or hasattr(v, "expr") for v in values)
    fmt = EXACT_FORMAT if exact else table_format(values, _DIGITS.get())
    texts = [fmt.text(v) for v in values]
    tables = text_tables(grids(shape, axis_names(o.name, shape), base)[0], texts, width=width - 2)
    lines = arrange(tables, width - 2)
    scale = f"(values {fmt.scale_text})\n" if fmt.scale_text else ""
    return Text(scale + "\n".join("  " + "".join(t for t, _ in line).rstrip() for line in lines))


# --- a conv layer as a dense layer --------------------------------------------------------

@_with_digits
def render_unrolled(u, width: int = 100):
    rows, cols = u.shape
    distinct = len(u.weights)
    parts = [_heading(f"{u.layer} as a dense layer: {u.out_name} = M · {u.in_name} + {u.bias_name}"),
             Text(f"M is {rows}×{cols}: one row per output position, one column per input position. "
                  f"{u.nonzero} of its {rows * cols} entries are weights, and only {distinct} different ones "
                  f"(the kernel, shared); · is a structural zero (the kernel does not reach that input).",
                  style="dim"), Text()]
    legend = Table(box=None, show_header=False, padding=(0, 1))
    legend.add_column()
    legend.add_column()
    legend.add_column(justify="right")
    for symbol, label, value in u.weights[:LEGEND_ROWS]:
        legend.add_row(symbol, f"= {label}", signed(value))
    parts += [Text("shared weights:"), fitted(legend, width)]
    if len(u.weights) > LEGEND_ROWS:
        parts.append(Text(f"… {len(u.weights) - LEGEND_ROWS} more: w_k is element k of {u.layer}.kernel, "
                          "counted row by row"))
    parts.append(Text())
    small = rows <= UNROLLED_ROWS and cols <= UNROLLED_COLUMNS
    if small:
        symbols = [[u.symbol(k) for k in row] for row in u.symbols]
        parts += [Text("M with the shared weights named:", style="bold")]
        parts += matrix_blocks(u.rows, u.columns, symbols, width, short=True)
        numbers = [[signed(v) if k else "·" for v, k in zip(vrow, krow)] for vrow, krow in zip(u.matrix, u.symbols)]
        parts += [Text(), Text("M in numbers:", style="bold")]
        parts += matrix_blocks(u.rows, u.columns, numbers, width, short=True)
    else:
        parts.append(Text(f"(M is too large to print here: {rows}×{cols}; each row holds at most "
                          f"{u.max_row_weights} weights)"))
    for check in u.checks:
        sample = f" (sample {check.sample})" if check.sample is not None else ""
        parts += [Text()]
        parts += _check(f"M · {u.in_name} + bias = {u.out_name}{sample}", u.rows, check.out, check.engine_out,
                        check.out_worst, check.out_agree, "M · x + b", f"{u.out_name} (engine)", width)
        if check.x_delta is not None:
            parts += [Text()]
            parts += _check(f"Mᵀ · {u.delta_name} = {u.x_delta_name}{sample}: the same input delta as the full "
                            "convolution", u.columns, check.x_delta, check.engine_x_delta, check.x_delta_worst,
                            check.x_delta_agree, f"Mᵀ · {u.delta_name}", f"{u.x_delta_name} (engine)", width)
    return Group(*parts)


def _check(title, labels, mine, engine, worst, agree, mine_header, engine_header, width: int) -> list:
    parts = [Text(title, style="bold")]
    if len(labels) <= VECTOR_ROWS:
        table = Table(box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False, padding=(0, 2))
        table.add_column("position")
        table.add_column(mine_header, justify="right")
        table.add_column(engine_header, justify="right")
        for label, a, b in zip(labels, mine, engine):
            table.add_row(label, signed(a), signed(b))
        parts.append(fitted(table, width))
    line = Text(f"largest difference {signed(worst)} ")
    line.append("✓ the same" if agree else "✗ DIFFERENT", style="green" if agree else "bold red")
    parts.append(line)
    return parts


def matrix_blocks(row_labels, column_labels, cells, width: int, short: bool = False, trailing: int = 0) -> list:
    """A labelled matrix as lines of text, cut into blocks of whole columns that fit `width`,
    each block under its own header row: no cell or header is ever cut.  `short` labels
    rows and columns by their index alone (`c1.out[0,1]` → `[0,1]`); `trailing` characters
    after each cell's number (a bracket) are left out when aligning the headers."""
    def shortened(label):
        return label[label.index("["):] if short and "[" in label else label

    heads = [shortened(c) for c in column_labels]
    row_heads = [shortened(r) for r in row_labels]
    lead = max(len(r) for r in row_heads) if row_heads else 0
    widths = [max(len(heads[c]), *(len(row[c]) for row in cells)) for c in range(len(heads))]
    blocks, start = [], 0
    while start < len(heads):
        used, end = lead, start
        while end < len(heads) and (end == start or used + 1 + widths[end] <= width):
            used += 1 + widths[end]
            end += 1
        blocks.append((start, end))
        start = end
    parts = []
    for first, last in blocks:
        if len(blocks) > 1:
            parts.append(Text(f"columns {heads[first]} to {heads[last - 1]}", style="dim"))
        header = Text(" " * lead)
        for c in range(first, last):
            header.append(" " + heads[c].rjust(widths[c] - trailing) + " " * trailing, style="bold")
        lines = [header, Text("─" * (lead + sum(1 + widths[c] for c in range(first, last))), style="dim")]
        for r, row in enumerate(cells):
            line = Text(row_heads[r].ljust(lead), style="dim")
            for c in range(first, last):
                line.append(" " + row[c].rjust(widths[c]))
            lines.append(line)
        parts += lines
    return parts
