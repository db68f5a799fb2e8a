"""`bptrace explain` on a terminal: an `Explanation`, a `StepOverview` or an `Unrolled`
matrix as rich renderables.  Formatting only; every number comes from the objects."""
from __future__ import annotations

from rich import box
from rich.console import Group
from rich.table import Table
from rich.text import Text

from .common import product_text, signed, sum_pieces

# a matrix wider or taller than this is described rather than printed
UNROLLED_ROWS = 64
UNROLLED_COLUMNS = 128
VECTOR_ROWS = 64          # unrolled checks: print every element up to this many
LEGEND_ROWS = 64          # shared weights listed one by one
OVERVIEW_ELEMENTS = 4096  # a step overview lists at most this many elements


def num(value) -> str:
    return signed(value)


def _index(index) -> str:
    return "[" + ",".join(map(str, index)) + "]" if index else ""


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

def render(explanation, width: int = 100):
    """An `Explanation` or a `StepOverview`."""
    from ..explain import StepOverview

    if isinstance(explanation, StepOverview):
        return render_overview(explanation, width)
    e = explanation
    parts = [_title(e), _rule_line(e.rule), Text(_where(e), style="dim"), Text()]
    if e.kind == "value":
        parts.append(Text(f"{e.element} = {num(e.total)}: {e.origin}"))
    elif e.kind == "apply":
        parts.append(Text(f"{e.element} = {e.fn}({e.argument.label}) = {e.fn}({num(e.argument.value)}) "
                          f"= {num(e.total)}"))
    elif e.kind == "max":
        parts += _max(e, width)
    else:
        if e.windows:
            parts += _windows(e) + [Text()]
        if e.share:
            parts += [Text(f"through average pooling ({e.layer}): each window this cell is in passes "
                           f"{e.share} of its error (1 / the window's area) back to it"), Text()]
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
    title.append(f" = {num(e.value)}", style="bold")
    return title


def _where(e) -> str:
    layer = f" of {e.layer} ({e.layer_type})" if e.layer and e.layer_type else ""
    return f"{e.phase} step{layer}; indices from {e.index_base}"


def _terms(e, width: int) -> list:
    if not e.terms:
        return [Text("no term reaches this element: nothing flows into it, so it is 0")]
    factors = max(len(t.operands) for t in e.terms)
    headers = []
    for column in range(factors):
        names = {t.operands[column].name for t in e.terms if column < len(t.operands)}
        headers.append(names.pop() if len(names) == 1 and None not in names else None)
    constants = [all(t.operands[column].name is None for t in e.terms if column < len(t.operands))
                 for column in range(factors)]
    table = Table(box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False, padding=(0, 1))
    table.add_column("#", justify="right", style="dim")
    for column, header in enumerate(headers):
        if column:
            table.add_column("", justify="center", style="dim")
        # the factor's index (or its whole label when the column mixes names), then its value
        table.add_column(header or ("constant" if constants[column] else f"factor {column + 1}"),
                         justify="left", no_wrap=True, style="dim")
        table.add_column("", justify="right", no_wrap=True)
    table.add_column("term", justify="right", no_wrap=True)
    table.add_column("running sum", justify="right", no_wrap=True)
    for k, term in enumerate(e.terms, 1):
        cells = [str(k)]
        for column in range(factors):
            if column:
                cells.append("×" if column < len(term.operands) else "")
            if column < len(term.operands):
                operand = term.operands[column]
                cells += [_index(operand.index) if headers[column] else operand.label, num(operand.value)]
            else:
                cells += ["", ""]
        cells += [num(term.product), num(term.running)]
        table.add_row(*cells)
    parts = [Text(f"{len(e.terms)} term{'s' * (len(e.terms) != 1)}, each a product of the factors in its row:"),
             fitted(table, width)]
    if len(e.terms) <= 16:
        parts.append(Text(f"{e.element} = {written_sum(e.terms)} = {num(e.total)}"))
    return parts


def written_sum(terms) -> str:
    """0.068628·0.84 + 0.0364182·0.22 − 0.06818625·0.09: each term's factors, signs pulled out."""
    return "".join(sum_pieces(product_text([(o.value, o.label if o.name is None else None) for o in term.operands])
                              for term in terms))


def _max(e, width: int) -> list:
    table = Table(box=None, show_header=False, padding=(0, 2))
    table.add_column()
    table.add_column(justify="right")
    table.add_column()
    best = e.candidates[e.winner]
    for k, candidate in enumerate(e.candidates):
        mark = "★ the largest" if k == e.winner else ("= the largest too" if e.tie and candidate.value == best.value else "")
        table.add_row(candidate.label, num(candidate.value), mark)
    parts = [Text(f"the window has {len(e.candidates)} cell{'s' * (len(e.candidates) != 1)}:"), fitted(table, width),
             Text(f"{e.element} = max(...) = {num(best.value)}, from {best.label}")]
    if e.tie:
        parts.append(Text("tie: several cells hold the maximum; the first in row-major order wins it "
                          "and, going back, takes the whole error"))
    return parts


def _windows(e) -> list:
    count = len(e.windows)
    parts = [Text(f"through max-pooling ({e.layer}): this cell is in {count} window{'s' * (count != 1)}")]
    for window in e.windows:
        winner = window.cells[window.winner]
        cells = ", ".join(f"{c.label} {num(c.value)}" + (" ★" if k == window.winner else "")
                          for k, c in enumerate(window.cells))
        parts.append(Text(f"  window of {window.output.label}: {cells}"))
        why = f"{num(winner.value)} is the largest"
        if window.tie:
            why += "; a tie, and the first maximum in row-major order wins"
        if window.won:
            parts.append(Text(f"    → this cell won ({why}): it receives {window.delta.label} = "
                              f"{num(window.delta.value)}"))
        else:
            parts.append(Text(f"    → {winner.label} won ({why}), not this cell: nothing from {window.delta.label}"))
    return parts


def _dense_row(e, width: int) -> list:
    row = e.dense_row
    k = _index(e.index[-1:]) if e.index else ""
    weights = row.weights[0].name
    table = Table(box=None, show_header=True, padding=(0, 2))
    table.add_column("")
    for w in row.weights:
        table.add_column(_index(w.index[:1]), justify="right")
    table.add_row(f"row {k[1:-1]} of {weights}ᵀ", *[num(w.value) for w in row.weights])
    table.add_row(row.deltas[0].name, *[num(d.value) for d in row.deltas])
    return [Text(f"through dense layer {e.layer}: the error at the input is {weights}ᵀ · delta; this element "
                 f"is row {k[1:-1]} of {weights}ᵀ (column {k[1:-1]} of {weights}) times the delta:"),
            fitted(table, width)]


def _both_views(e, direct: list, width: int) -> list:
    from rich.console import Console

    fc = e.full_conv
    left = Group(Text("direct chain rule: every output that read this cell, times the weight that joined them",
                      style="bold"), *direct)
    right = Group(*_full_convolution(fc, width))
    agree = Text(f"both views: {num(fc.direct)} (chain rule) and {num(fc.total)} (full convolution) ")
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
    for count, what in ((bh, "row"), (bw, "column")):
        if count >= 0:
            how.append(f"{count} zero {what}(s) before it (kernel size − 1 − padding)")
        else:
            how.append(f"its first {-count} {what}(s) dropped (the padding is wider than kernel size − 1)")
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
            parts.append(fitted(_padded(padded, channel, fc.index_base), width))
        else:
            parts.append(Text(f"{channel.delta_name} padded ({padded.shape[0]}×{padded.shape[1]}), window at {where}:"))
        parts.append(_window_grids(channel, width))
        parts.append(Text(f"sum of the products: {num(channel.total)}"))
    if len(fc.channels) > 1:
        parts += [Text(), Text(f"sum over the {len(fc.channels)} maps: {num(fc.total)}")]
    return parts


def _window_grids(channel, width: int):
    """The window of the padded delta, the turned kernel and their products: side by side
    when they fit, else one under the other."""
    from rich.console import Console

    kh, kw = channel.patch.shape
    kernel_name = channel.kernel_labels[0][0][:channel.kernel_labels[0][0].find("[")]

    def grid(cells, title):
        table = Table(box=None, show_header=True, header_style="dim", padding=(0, 1), pad_edge=False,
                      title=title, title_justify="left", title_style="dim")
        for _ in range(kw):
            table.add_column("", justify="right", no_wrap=True)
        table.show_header = False
        for a in range(kh):
            table.add_row(*cells[a])
        return table

    window = [[num(channel.patch[a, b]) for b in range(kw)] for a in range(kh)]
    kernel = [[f"{num(channel.kernel[a, b])} {channel.kernel_labels[a][b][channel.kernel_labels[a][b].find('['):]}"
               for b in range(kw)] for a in range(kh)]
    products = [[num(channel.products[a, b]) for b in range(kw)] for a in range(kh)]
    grids = (grid(window, "window"), grid(kernel, f"{kernel_name} turned 180° [its index]"),
             grid(products, "products"))
    scratch = Console(width=10_000, color_system=None)
    outer = Table.grid(padding=(0, 1))
    for _ in range(5):
        outer.add_column(no_wrap=True, vertical="middle")
    outer.add_row(grids[0], "⊙", grids[1], "=", grids[2])
    if scratch.measure(outer).maximum <= width:
        return outer
    # too wide: one under the other, and the kernel's indices said once instead of per cell
    labels = channel.kernel_labels
    plain = grid([[num(channel.kernel[a, b]) for b in range(kw)] for a in range(kh)],
                 f"{kernel_name} turned 180° (top left is {labels[0][0]}, bottom right {labels[-1][-1]})")
    return Group(fitted(grids[0], width), fitted(plain, width), fitted(grids[2], width))


def _padded(padded, channel, base: int) -> Table:
    table = Table(box=None, show_header=False, padding=(0, 1), pad_edge=False)
    for _ in range(padded.shape[1]):
        table.add_column(justify="right", no_wrap=True)
    for r in range(padded.shape[0]):
        cells = []
        for q in range(padded.shape[1]):
            text = num(padded[r, q])
            inside = channel.rows[0] <= r + base <= channel.rows[1] and channel.cols[0] <= q + base <= channel.cols[1]
            cells.append(Text(f"[{text}]", style="bold") if inside else Text(f" {text} ", style="dim"))
        table.add_row(*cells)
    return table


def _total(e) -> list:
    parts = [Text()]
    line = Text("total ", style="bold")
    line.append(num(e.total), style="bold")
    if e.kind == "value":
        return parts[:1] if not e.replaced else parts[:1] + [Text(f"{e.replaced}: later steps use {num(e.value)}")]
    line.append(f"  (the engine's {e.element})", style="dim")
    parts.append(line)
    if e.replaced:
        parts.append(Text(f"{e.replaced}: later steps use {num(e.value)} instead of {num(e.total)}"))
    return parts


# --- a whole step ------------------------------------------------------------------------

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
        parts.append(Text("the engine computed " + ", ".join(f"{_index(i)} {num(v)}" for i, v in o.computed[:12])
                          + (" …" if len(o.computed) > 12 else "") + " before that"))
    parts += [Text(note) for note in o.notes]
    parts.append(Text())
    shown = o.elements[:OVERVIEW_ELEMENTS]
    cells = [f"{_index(i)} {num(v)}" for i, v in shown]
    cell_width = max(len(c) for c in cells) + 3
    per_line = max(1, width // cell_width)
    table = Table(box=None, show_header=False, padding=(0, 3, 0, 0), pad_edge=False)
    for _ in range(min(per_line, len(cells))):
        table.add_column(no_wrap=True)
    for start in range(0, len(cells), per_line):
        row = cells[start:start + per_line]
        table.add_row(*(row + [""] * (min(per_line, len(cells)) - len(row))))
    parts += [Text(f"{len(o.elements)} element{'s' * (len(o.elements) != 1)} (index  value):"), table]
    if len(o.elements) > OVERVIEW_ELEMENTS:
        parts.append(Text(f"… {len(o.elements) - OVERVIEW_ELEMENTS} more (see `bptrace run --format json`)"))
    parts += [Text(), Text(f"one element, term by term: bptrace explain SCENARIO '{o.example}'", style="dim")]
    return Group(*parts)


# --- a conv layer as a dense layer --------------------------------------------------------

def render_unrolled(u, width: int = 100):
    rows, cols = u.symbols.shape
    distinct = len(u.weights)
    parts = [_heading(f"{u.layer} as a dense layer: {u.out_name} = M · {u.in_name} + {u.layer}.bias"),
             Text(f"M is {rows}×{cols}: one row per output position, one column per input position. "
                  f"{u.nonzero} of its {rows * cols} entries are weights, and only {distinct} different ones "
                  f"(the kernel, shared); · is a structural zero (the kernel does not reach that input).",
                  style="dim"), Text()]
    legend = Table(box=None, show_header=False, padding=(0, 1))
    legend.add_column()
    legend.add_column()
    legend.add_column(justify="right")
    for symbol, label, value in u.weights[:LEGEND_ROWS]:
        legend.add_row(symbol, f"= {label}", num(value))
    parts += [Text("shared weights:"), fitted(legend, width)]
    if len(u.weights) > LEGEND_ROWS:
        parts.append(Text(f"… {len(u.weights) - LEGEND_ROWS} more: w_k is element k of {u.layer}.kernel, "
                          "counted row by row"))
    parts.append(Text())
    small = rows <= UNROLLED_ROWS and cols <= UNROLLED_COLUMNS
    if small:
        symbols = [[u.symbol(k) for k in row] for row in u.symbols]
        parts += [Text("M with the shared weights named:", style="bold")]
        parts += matrix_blocks(u.rows, u.columns, symbols, width)
        numbers = [[num(v) if k else "·" for v, k in zip(vrow, krow)] for vrow, krow in zip(u.matrix, u.symbols)]
        parts += [Text(), Text("M in numbers:", style="bold")]
        parts += matrix_blocks(u.rows, u.columns, numbers, width)
    else:
        parts.append(Text(f"(M is too large to print here: {rows}×{cols}; each row holds at most "
                          f"{int((u.symbols != 0).sum(axis=1).max())} weights)"))
    for check in u.checks:
        sample = f" (sample {check.sample})" if check.sample is not None else ""
        parts += [Text()]
        parts += _check(f"M · {u.in_name} + bias = {u.out_name}{sample}", u.rows, check.out, check.engine_out,
                        "M · x + b", f"{u.out_name} (engine)", width)
        if check.x_delta is not None:
            parts += [Text()]
            parts += _check(f"Mᵀ · {u.delta_name} = {u.x_delta_name}{sample}: the same input delta as the full "
                            "convolution", u.columns, check.x_delta, check.engine_x_delta,
                            f"Mᵀ · {u.delta_name}", f"{u.x_delta_name} (engine)", width)
    return Group(*parts)


def _check(title, labels, mine, engine, mine_header, engine_header, width: int) -> list:
    import numpy as np

    worst = float(np.max(np.abs(mine - engine))) if len(mine) else 0.0
    agree = bool(np.allclose(mine, engine, rtol=1e-9, atol=1e-12))
    parts = [Text(title, style="bold")]
    if len(labels) <= VECTOR_ROWS:
        table = Table(box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False, padding=(0, 2))
        table.add_column("position")
        table.add_column(mine_header, justify="right")
        table.add_column(engine_header, justify="right")
        for label, a, b in zip(labels, mine, engine):
            table.add_row(label, num(a), num(b))
        parts.append(fitted(table, width))
    line = Text(f"largest difference {num(worst)} ")
    line.append("✓ the same" if agree else "✗ DIFFERENT", style="green" if agree else "bold red")
    parts.append(line)
    return parts


def matrix_blocks(row_labels, column_labels, cells, width: int) -> list:
    """A labelled matrix split into blocks of columns that fit `width`."""
    def short(label):
        return label[label.index("["):] if "[" in label else label

    heads = [short(c) for c in column_labels]
    row_heads = [short(r) for r in row_labels]
    lead = max(len(r) for r in row_heads) + 2
    widths = [max(len(heads[c]), *(len(row[c]) for row in cells)) + 1 for c in range(len(heads))]
    blocks, start = [], 0
    while start < len(heads):
        used, end = lead, start
        while end < len(heads) and (end == start or used + widths[end] <= width):
            used += widths[end]
            end += 1
        blocks.append((start, end))
        start = end
    parts = []
    for first, last in blocks:
        table = Table(box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False, padding=(0, 0, 0, 1))
        table.add_column("", style="dim", no_wrap=True)
        for c in range(first, last):
            table.add_column(heads[c], justify="right", no_wrap=True)
        for r, row in enumerate(cells):
            table.add_row(row_heads[r], *row[first:last])
        if len(blocks) > 1:
            parts.append(Text(f"columns {heads[first]} … {heads[last - 1]}", style="dim"))
        parts.append(table)
    return parts
