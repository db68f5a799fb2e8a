"""The circuit of an expression graph, as the course notes draw it: each input and node a
box, each edge (a value read by a node) with the value it carries forward written above
it and the gradient it carries back below it.

`circuit_data(trace)` gathers what to draw from the trace as plain data (no arithmetic: the
gradient on an edge is the part of the read value's delta that came through that node,
which the engine traces); `svg(data)` draws it as an inline SVG string, and `stages(data)`
gives the staged forward and backward lists the text and LaTeX outputs write.
"""
from __future__ import annotations

from html import escape

from ..notation import Ref, add, eq, partial, prod, sym
from .common import SIGNIFICANT, signed


def circuit_data(trace, digits: int = SIGNIFICANT) -> dict | None:
    """{"inputs": [...], "nodes": [...], "output": name} for an expression graph, else None.
    Each value: name, traced names, its value and delta as text (None where it has none);
    each node also its rule and the edges it reads: (value name, local gradient text,
    gradient through this edge text)."""
    rows = trace.summary
    if not rows or not all(row.type == "expression" for row in rows if row.type):
        return None
    if not any(row.type for row in rows):
        return None

    def shown(name):
        if name not in trace:
            return None
        step = trace[name]
        # as the steps show it: `--digits`, and an exact number whole (1/3)
        values = step.exact if step.exact is not None else step.values
        return signed(values.reshape(-1)[0], digits) if step.values.size == 1 else \
            "×".join(str(n) for n in step.shown.shape) + " values"

    def part(value_name, reader):
        """The gradient the edge value → reader carries back: the reader's part of the delta."""
        delta = f"{value_name}.delta"
        if delta not in trace:
            return None
        step = trace[delta]
        if step.parts:
            for item in step.parts:
                if item.layer == reader:
                    return signed(item.values.reshape(-1)[0], digits) if item.values.size == 1 else "…"
            return None
        return shown(delta)

    inputs = [{"name": row.layer, "value": shown(row.layer), "delta": shown(f"{row.layer}.delta")}
              for row in rows if not row.type]
    nodes = []
    previous = [inputs[0]["name"]] if inputs else []
    for row in rows:
        if not row.type:
            continue
        reads = list(row.reads) or previous
        rule = trace[f"{row.layer}.out"].notation.rhs
        nodes.append({"name": row.layer, "formula": str(rule), "rule": rule, "value": shown(f"{row.layer}.out"),
                      "delta": shown(f"{row.layer}.delta"),
                      "edges": [{"from": r, "value": shown(r if r in {i["name"] for i in inputs} else f"{r}.out"),
                                 "local": shown(f"{row.layer}.local.{r}"), "gradient": part(r, row.layer)}
                                for r in reads]})
        previous = [row.layer]
    reached = [n for n in nodes if n["delta"] is not None]
    return {"inputs": inputs, "nodes": nodes, "output": reached[-1]["name"] if reached else nodes[-1]["name"]}


def stages(data: dict) -> tuple[list, list]:
    """The staged forward and backward lists, as notation: `q = x + y = 3`, then from the
    output down `q.delta = f.delta · ∂f/∂q = −4` (summed over the nodes that read q)."""
    forward = [eq(sym(n["name"]), n["rule"], sym(n["value"])) for n in data["nodes"]]
    readers: dict = {}
    for node in data["nodes"]:
        for edge in node["edges"]:
            readers.setdefault(edge["from"], []).append(node["name"])
    backward = []
    delta = {v["name"]: v["delta"] for v in data["nodes"] + data["inputs"]}
    order = [n["name"] for n in reversed(data["nodes"])] + [i["name"] for i in data["inputs"]]
    for name in order:
        if delta.get(name) is None:
            continue
        if name == data["output"]:
            backward.append(eq(Ref(f"{name}.delta"), sym(delta[name])))
            continue
        terms = [prod(Ref(f"{r}.delta"), partial(sym(r), sym(name)))
                 for r in readers.get(name, []) if delta.get(r) is not None]
        backward.append(eq(Ref(f"{name}.delta"), add(*terms), sym(delta[name])))
    return forward, backward


# --- the picture --------------------------------------------------------------------------

BOX_W, BOX_H, GAP_X, GAP_Y, MARGIN = 120, 62, 130, 34, 24
SHORT = 4          # significant digits on the picture (the steps below give every digit)
GREEN, RED, INK, MUTED = "#2e7d32", "#c62828", "#1d232a", "#5f6b76"


def _layout(data):
    """Column of each value: inputs at 0, a node one past the furthest value it reads."""
    column = {i["name"]: 0 for i in data["inputs"]}
    for node in data["nodes"]:
        column[node["name"]] = 1 + max((column[e["from"]] for e in node["edges"]), default=0)
    rows: dict = {}
    place = {}
    for name in [i["name"] for i in data["inputs"]] + [n["name"] for n in data["nodes"]]:
        c = column[name]
        place[name] = (c, rows.get(c, 0))
        rows[c] = rows.get(c, 0) + 1
    return place, max(rows.values()), max(column.values())


def _xy(place, name):
    c, r = place[name]
    return MARGIN + c * (BOX_W + GAP_X), MARGIN + 18 + r * (BOX_H + GAP_Y)


def _short(text):
    """A number as the picture shows it: SHORT significant digits (its text otherwise)."""
    if text is None:
        return None
    try:
        return signed(float(text.replace("−", "-")), SHORT)
    except ValueError:
        return text


def _curve_y(sx, sy, ex, ey, x) -> float:
    """The height of the edge drawn from (sx, sy) to (ex, ey) (a cubic Bézier with both
    control points at the middle's x) where it passes x: a steep edge is still far from its
    end's height there, and a label left at that height would sit on another edge."""
    mid = (sx + ex) / 2
    lo, hi = 0.0, 1.0
    for _ in range(40):         # x(t) rises with t: halve the interval
        t = (lo + hi) / 2
        at = (1 - t) ** 3 * sx + 3 * (1 - t) * t * mid + t ** 3 * ex
        lo, hi = (t, hi) if at < x else (lo, t)
    t = (lo + hi) / 2
    return (1 - t) ** 3 * sy + 3 * (1 - t) ** 2 * t * sy + 3 * (1 - t) * t ** 2 * ey + t ** 3 * ey


def svg(data: dict) -> str:
    """The circuit as an SVG string: forward values in green above each edge, gradients in
    red below it, as in the course notes' figures."""
    place, height_rows, columns = _layout(data)
    width = 2 * MARGIN + (columns + 1) * BOX_W + columns * GAP_X + GAP_X
    height = 2 * MARGIN + 18 + height_rows * (BOX_H + GAP_Y)
    out = [f'<svg class="circuit" width="{width}" height="{height}" '
           f'viewBox="0 0 {width} {height}" font-family="DejaVu Sans Mono, Menlo, monospace" font-size="12" '
           f'role="img" aria-label="the circuit: forward values above each edge, gradients below">',
           f'<text x="{MARGIN}" y="{MARGIN}" fill="{MUTED}">forward value above each edge '
           f'<tspan fill="{GREEN}">(green)</tspan>, gradient below it <tspan fill="{RED}">(red)</tspan></text>']

    def label(x, y, text, colour, anchor="middle"):
        if text is not None:
            out.append(f'<text x="{x:.0f}" y="{y:.0f}" fill="{colour}" text-anchor="{anchor}">{escape(text)}</text>')

    for node in data["nodes"]:
        x2, y2 = _xy(place, node["name"])
        n_edges = len(node["edges"])
        for k, edge in enumerate(node["edges"]):
            x1, y1 = _xy(place, edge["from"])
            sx, sy = x1 + BOX_W, y1 + BOX_H / 2
            ex, ey = x2, y2 + BOX_H * (k + 1) / (n_edges + 1)
            out.append(f'<path d="M{sx:.0f},{sy:.0f} C{(sx + ex) / 2:.0f},{sy:.0f} {(sx + ex) / 2:.0f},{ey:.0f} '
                       f'{ex:.0f},{ey:.0f}" fill="none" stroke="{INK}" stroke-width="1.2"/>')
            # the labels near the end of the edge, where edges into one node are apart
            # (and, for several, at different distances from it)
            mx = ex - GAP_X * (0.72 - 0.46 * k / (n_edges - 1) if n_edges > 1 else 0.42)
            my = _curve_y(sx, sy, ex, ey, mx)          # on the edge itself, not level with its end
            label(mx, my - 5, _short(edge["value"]), GREEN)
            label(mx, my + 13, _short(edge["gradient"]), RED)
    for kind, items in (("input", data["inputs"]), ("node", data["nodes"])):
        for item in items:
            x, y = _xy(place, item["name"])
            fill = "#f4f6f8" if kind == "input" else "#ffffff"
            out.append(f'<rect x="{x}" y="{y}" width="{BOX_W}" height="{BOX_H}" rx="8" fill="{fill}" '
                       f'stroke="{INK}" stroke-width="1.2"><title>{escape(item["name"])}</title></rect>')
            label(x + BOX_W / 2, y + 20, item["name"], INK)
            if kind == "node":
                formula = item["formula"] if len(item["formula"]) <= 16 else item["formula"][:15] + "…"
                label(x + BOX_W / 2, y + 38, formula, MUTED)
    # the output's own edge: its value, and the gradient the backward pass starts from
    last = next(n for n in data["nodes"] if n["name"] == data["output"])
    x, y = _xy(place, last["name"])
    sx, sy = x + BOX_W, y + BOX_H / 2
    out.append(f'<path d="M{sx},{sy:.0f} H{sx + GAP_X - 10}" stroke="{INK}" stroke-width="1.2"/>')
    label(sx + GAP_X / 2, sy - 5, _short(last["value"]), GREEN)
    label(sx + GAP_X / 2, sy + 13, _short(last["delta"]), RED)
    out.append("</svg>")
    return "\n".join(out)
