"""`run --format json`: the trace as one JSON object (BRIEF section 5).

`shape` is the canonical shape; `values` has the length-1 axes dropped.  Beyond BRIEF's
keys, a step also carries `reads` (the names it was computed from) and, where rounding or
a given value replaced the engine's result, `computed` and `given`/`rounded`.
"""
from __future__ import annotations

import json

import numpy as np

from ..numbers import exact_text
from ..tensors import squeeze


def _plain(values):
    shown = squeeze(values)
    if shown.dtype == float and np.isnan(shown).any():
        # `arithmetic: symbolic`: a formula whose letters have no value has no number
        shown = np.where(np.isnan(shown), None, shown)
        return shown.tolist() if shown.ndim else shown.item()
    return shown.tolist() if shown.ndim else float(shown)


def _texts(values):
    """Exact values as written (numbers.exact_text: decimals, p/q, or a formula)."""
    shown = np.vectorize(exact_text, otypes=[object])(squeeze(values))
    return shown.tolist() if shown.ndim else shown.item()


def trace_dict(trace) -> dict:
    steps = []
    for step in trace.steps:
        item = {"name": step.name, "phase": step.phase, "layer": step.layer, "rule": step.rule,
                "shape": list(step.shape), "values": _plain(step.values), "reads": list(step.reads)}
        if step.exact is not None:
            item["exact"] = _texts(step.exact)
        if step.computed is not None:
            item["computed"] = _plain(step.computed)
        if step.rounded:
            item["rounded"] = step.rounded
        if step.given is not None:
            item["given"] = bool(step.given.all()) or _plain(step.given.astype(float))
        if step.notes:
            item["notes"] = list(step.notes)
        steps.append(item)
    return {
        "bptrace": 1,
        "name": trace.name,
        "description": trace.description,
        "conventions": dict(trace.conventions),
        **({"arithmetic": trace.arithmetic} if trace.arithmetic != "float" else {}),
        "summary": [{"layer": row.layer, "type": row.type, "out_shape": list(row.out_shape),
                     "params": row.params, **({"from": list(row.reads)} if row.reads else {})}
                    for row in trace.summary],
        "total_params": trace.total_params,
        "steps": steps,
        "loss": trace.loss,
    }


def render(trace, only=None) -> str:
    """One step per line, so that two exports diff line by line."""
    data = trace_dict(trace)
    if only is not None:
        data["steps"] = [step for step in data["steps"] if step["name"] in only]
    steps, loss = data.pop("steps"), data.pop("loss")
    head = json.dumps(data, ensure_ascii=False)[:-1]
    body = ",\n  ".join(json.dumps(step, ensure_ascii=False) for step in steps)
    loss = None if loss != loss else loss      # nan: a loss in unbound letters has no number
    return f'{head}, "steps": [\n  {body}\n], "loss": {json.dumps(loss)}}}\n'

