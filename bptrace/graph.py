"""Reading an expression graph: `inputs:` (numbers or tensors) and `nodes:` (name -> formula
over the inputs and earlier nodes, in order) instead of `layers:`.

Each node becomes an `Expression` layer and a node of the network plan, reading the values
its formula names, so the engine, explain, check and the renderers treat it as any layer.
"""
from __future__ import annotations

import math
import re

import numpy as np

from .errors import ScenarioError, suggest
from .formula import FormulaError, names, parse
from .layers import MAX_TENSOR_ELEMENTS
from .layers.expression import Expression
from .plan import Node, Plan, input_value, layer_value
from .spec import Spec, kind_of, read_tensor, shape_words

_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
RESERVED = ("input", "loss") + ("exp", "log", "sqrt", "abs", "sigmoid", "tanh", "relu", "max", "min")


def graph_top(top: Spec):
    """An expression graph has `inputs:` and `nodes:`, and neither `input:` nor `layers:`."""
    for key in ("layers", "input"):
        if key in top:
            raise top.error(key, "a scenario has `nodes:` (an expression graph) or `layers:` (a network), "
                                 "not both" if key == "layers" else
                                 "an expression graph names its inputs: `inputs: {x: -2, y: 5}`, not `input:`",
                            "remove one of them" if key == "layers" else None)
    for key in ("init", "learning_rate", "optimizer", "regularization", "steps"):
        if key in top:
            raise top.error(key, f"an expression graph has no parameters, so `{key}` has nothing to act on",
                            "its inputs get deltas (x.delta); remove the key")
    if "inputs" not in top:
        raise top.error(None, "an expression graph needs `inputs:`, the numbers its formulas read",
                        "e.g. `inputs: {x: -2, y: 5, z: -4}`")


def graph_inputs(top: Spec) -> tuple:
    """{name: values} and {name: origin}.  A single number is kept as a 1×1 value (shown as
    a number); tensors are read as for `inputs:` of a network (1-D and 2-D as features)."""
    from .scenario import _input

    spec = top.sub("inputs", None, "inputs")
    if not isinstance(spec.data, dict) or not spec.data:
        raise top.error("inputs", "`inputs:` is empty" if isinstance(spec.data, dict) else
                        f"`inputs:` maps names to numbers, found {kind_of(spec.data)}",
                        "name each input: `inputs: {x: -2, y: 5}`")
    inputs, origins = {}, {}
    for name, value in spec.data.items():
        _check_name(top, ("inputs", name), name, "an input")
        path = ("inputs", name)
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            inputs[name], origins[name] = read_tensor(top.doc, path, value, what=f"input {name}").reshape(1, 1), \
                "as written"
        else:
            inputs[name], origins[name] = _input(top, path, [], name, list(spec.data))
    return inputs, origins


def _check_name(top: Spec, path, name, what):
    if not isinstance(name, str) or not _NAME.fullmatch(name) or name in RESERVED:
        raise top.doc.error(path, f"'{name}' cannot name {what}",
                            "use letters, digits and _, starting with a letter; not 'input', 'loss' or a "
                            "function's name", at_key=True)


def _formula_error(top: Spec, path, raw_text: str, column: int, message: str, hint=None) -> ScenarioError:
    """A located error pointing into the formula: the column within the YAML line when the
    formula stands on one line as written (plain or quoted), else at the formula."""
    doc = top.doc
    line, start = doc.mark(path)
    if line and start and line <= len(doc.lines):
        text = doc.lines[line - 1]
        quoted = text[start - 1:start] in ("'", '"')
        if text[start - 1 + quoted:].startswith(raw_text):
            col = start + quoted + column
            return ScenarioError(message, file=doc.file, line=line, column=col, key=".".join(map(str, path)),
                                 hint=hint, snippet=doc.snippet(line, col))
    return doc.error(path, message, hint)


def graph_nodes(top: Spec, inputs: dict, work_limit=None) -> tuple:
    """The Expression layers, in the order written, and the plan that wires them."""
    spec = top.sub("nodes", None, "nodes")
    if not isinstance(spec.data, dict) or not spec.data:
        raise top.error("nodes", "`nodes:` is empty" if isinstance(spec.data, dict) else
                        f"`nodes:` maps each node's name to its formula, found {kind_of(spec.data)}",
                        "e.g. `nodes: {q: x + y, f: q * z}`")
    written = list(spec.data)
    defined = {name: (input_value(name), values.shape) for name, values in inputs.items()}
    layers, nodes, work = [], [], 0
    for position, (name, raw) in enumerate(spec.data.items()):
        path = ("nodes", name)
        _check_name(top, path, name, "a node")
        if name in defined:
            raise top.doc.error(path, f"two values are named '{name}' (the first is "
                                      f"{'an input' if name in inputs else 'a node above'})", at_key=True)
        if isinstance(raw, bool) or not isinstance(raw, (str, int, float)):
            raise top.doc.error(path, f"a node is a formula such as `x + y`, found {kind_of(raw)}")
        text = str(raw)
        try:
            tree = parse(text)
        except FormulaError as error:
            raise _formula_error(top, path, text, error.column, error.message, error.hint) from None
        reads = names(tree)
        for read in reads:
            if read in defined:
                continue
            at = _first_at(tree, read)
            if read == name:
                raise _formula_error(top, path, text, at, f"node '{name}' cannot read itself",
                                     "a formula reads inputs and nodes above it")
            if read in written:
                raise _formula_error(top, path, text, at, f"'{read}' is defined below this node; a node reads only "
                                                          "inputs and nodes above it", "move it above")
            raise _formula_error(top, path, text, at, f"there is no input or node named '{read}'",
                                 suggest(read, list(defined), "defined above are"))
        if not reads:
            raise top.doc.error(path, "this formula reads no input or node: a constant has no gradient to trace",
                                "write the number into the formulas that use it")
        shapes = [defined[r][1] for r in reads]
        for r, shape in zip(reads, shapes):
            if shape != shapes[0]:
                raise _formula_error(top, path, text, _first_at(tree, r),
                                     f"formulas apply element by element to values of one shape; '{reads[0]}' is "
                                     f"{shape_words(shapes[0])} but '{r}' is {shape_words(shape)}")
        layer = Expression(name, tree, reads, shapes[0], text)
        if math.prod(layer.out_shape) > MAX_TENSOR_ELEMENTS:
            raise top.doc.error(path, f"node {name} makes more than the {MAX_TENSOR_ELEMENTS:,} numbers bptrace "
                                      "holds in one tensor")
        work += layer.multiply_adds()
        if work_limit is not None and work > work_limit:
            raise top.doc.error(path, f"this graph needs at least {work:,} scalar operations, more than the "
                                      f"{work_limit:,} bptrace runs by default", "pass --no-size-limit to run it anyway")
        layers.append(layer)
        nodes.append(Node(name, "expression", tuple(defined[r][0] for r in reads), layer.out_shape, (), position))
        defined[name] = (layer_value(name), layer.out_shape)
    plan = Plan(inputs=[input_value(name) for name in inputs], nodes=nodes, output=nodes[-1].name)
    return layers, plan


def _first_at(tree, name) -> int:
    if tree.kind == "name" and tree.value == name:
        return tree.at
    found = [_first_at(arg, name) for arg in tree.args]
    found = [at for at in found if at is not None]
    return min(found) if found else None


def graph_start(scenario):
    """Without `loss:` or `upstream:`, the backward pass starts from 1 at the output node:
    ∂f/∂f = 1, as the course notes start a circuit."""
    from .notation import Ref, eq, partial, seq, sym
    from .scenario import Upstream

    out = scenario.output
    scenario.upstream = Upstream(out.name, np.ones(out.out_shape),
                                 rule=eq(Ref(f"{out.name}.delta"), partial(sym(out.name), sym(out.name)),
                                         seq(sym(1), " (the graph's output)")),
                                 start=f"from {out.name}.delta = 1, the graph's output")


def is_graph(scenario) -> bool:
    return bool(scenario.layers) and all(isinstance(layer, Expression) for layer in scenario.layers)
