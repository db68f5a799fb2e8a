"""A JSON Schema for scenario files, so that an editor completes and checks keys as they are
typed (the YAML language server reads it from a `# yaml-language-server: $schema=...` line).

It is generated, not written by hand: the layer types and each type's keys come from the
layer registry (`bptrace.layers.LAYERS`, each class's `keys`), the top-level keys from
`scenario.TOP_KEYS`, and what each key holds from the two tables below.  A key the tables do
not know raises `KeyError` here, and a test asks for every key of every registered layer,
so a new layer type cannot ship without its schema.

The schema is looser than the loader, never stricter: whatever it refuses, the loader
refuses too (tests check this on the bad-input corpus and on mutated scenarios), but the
loader also checks what a schema cannot (shapes, names that must exist, index ranges).
"""
from __future__ import annotations

import json

SCHEMA_DRAFT = "http://json-schema.org/draft-07/schema#"
SCHEMA_FILE = "bptrace.schema.json"   # where `bptrace new` expects it, beside the scenario

_TENSOR = {"$ref": "#/definitions/tensor"}
_NAME = {"type": "string", "pattern": "^[A-Za-z_][A-Za-z0-9_]*$", "not": {"enum": ["input", "loss"]}}


def _whole(minimum: int) -> dict:
    return {"type": "integer", "minimum": minimum}


def _pair(minimum: int, what: str) -> dict:
    return {"description": f"{what}: one whole number, or [rows, columns]",
            "oneOf": [_whole(minimum), {"type": "array", "items": _whole(minimum), "minItems": 2, "maxItems": 2}]}


def _described(fragment: dict, text: str) -> dict:
    return {"description": text, **fragment}


# What each layer key holds (`type`, `name` and `from` are every layer's).
LAYER_KEY_TYPES = {
    "type": {"description": "the layer type"},          # its enum comes from the registry
    "name": {"description": "the layer's name in the trace (default: type + running number)",
             "anyOf": [_NAME, {"type": "null"}]},
    "from": {"description": "what the layer reads: a layer name, `input`, an input under `inputs:`, or a list",
             "oneOf": [{"type": "string"}, {"type": "array", "items": {"type": "string"}, "minItems": 1}]},
    "kernel": _described(_TENSOR, "[kh][kw], [out][kh][kw], [out][in][kh][kw] or [k] (drawn by init if absent)"),
    "bias": {"description": "one number per output (or one for all); 0 if absent; false: no bias at all",
             "anyOf": [_TENSOR, {"const": False}]},
    "weights": _described(_TENSOR, "dense weights, [out][in] (drawn by init if absent)"),
    "stride": _pair(1, "step between windows"),
    "padding": _pair(0, "zeros added on each side"),
    "size": _pair(1, "window (kernel or pooling) size"),
    "groups": _described(_whole(1), "groups of input maps each filter reads (1: all of them)"),
    "out_channels": _described(_whole(1), "number of filters, when the kernel is drawn by init"),
    "out": _described(_whole(1), "number of outputs, when the weights are drawn by init"),
    "slope": _described({"type": "number"}, "leaky_relu's slope for negative inputs (default 0.01)"),
    "axis": _described({"enum": ["channels", "features"]}, "concat along the channels of maps or the features"),
    # conv, conv_transpose and pooling options (PyTorch's names)
    "dilation": _pair(1, "spacing of the kernel's (or window's) taps (default 1)"),
    "output_padding": _pair(0, "conv_transpose: extra rows/columns on one side of the output (default 0)"),
    "ceil_mode": _described({"type": "boolean"}, "pooling: count a last window that hangs over the edge (default false)"),
    "count_include_pad": _described({"type": "boolean"},
                                    "avgpool: divide by the padding's cells too (default true)"),
    "scale": _pair(1, "upsample: how many times larger (nearest neighbour)"),
    # normalisation, dropout, elu
    "gamma": _described(_TENSOR, "scale per channel (batchnorm) or per element of a sample (layernorm); 1 if absent"),
    "beta": _described(_TENSOR, "shift, shaped as gamma; 0 if absent"),
    "eps": _described({"type": "number", "minimum": 0}, "added to the variance under the square root (default 1e-5)"),
    "mode": _described({"enum": ["train", "eval"]}, "batch statistics (train) or running_mean/running_var (eval)"),
    "running_mean": _described(_TENSOR, "eval mode: the mean per channel (default 0)"),
    "running_var": _described(_TENSOR, "eval mode: the variance per channel (default 1)"),
    "p": _described({"type": "number", "minimum": 0, "maximum": 1}, "dropout's probability of dropping (default 0.5)"),
    "mask": _described(_TENSOR, "dropout's mask, 0 (dropped) or 1 (kept), the input's shape"),
    "seed": _described(_whole(0), "draws dropout's mask with numpy default_rng(seed)"),
    "alpha": _described({"type": "number"}, "elu's α (default 1)"),
    # recurrent layers (rnn, lstm, gru), PyTorch's names and layouts
    "hidden": _described(_whole(1), "size of the hidden state"),
    "weight_ih": _described(_TENSOR, "[gates·hidden][features], gate blocks in PyTorch's order (drawn by init if absent)"),
    "weight_hh": _described(_TENSOR, "[gates·hidden][hidden] (drawn by init if absent)"),
    "bias_ih": _described(_TENSOR, "[gates·hidden], or one number for all; 0 if absent"),
    "bias_hh": _described(_TENSOR, "[gates·hidden], or one number for all; 0 if absent"),
    "h0": _described(_TENSOR, "initial hidden state, [hidden] or [N][hidden]; zeros if absent"),
    "c0": _described(_TENSOR, "LSTM initial cell state, [hidden] or [N][hidden]; zeros if absent"),
    "return": _described({"enum": ["sequence", "last"]}, "every time step's h ([N][T][hidden]) or the last one"),
    "nonlinearity": _described({"enum": ["tanh", "relu"]}, "rnn's activation (default tanh)"),
}

_INPUT = {
    "description": "numbers [W], [H][W], [C][H][W] or [N][C][H][W], {random: uniform, shape: [...]} or a fill",
    "oneOf": [
        _TENSOR,
        {"type": "object", "required": ["random", "shape"], "additionalProperties": False,
         "properties": {"random": {"enum": ["uniform", "normal"]},
                        "shape": {"type": "array", "items": _whole(1), "minItems": 1, "maxItems": 4},
                        "seed": _whole(0), "low": {"type": "number"}, "high": {"type": "number"}}},
    ],
}

_VALUES_BY_NAME = {"type": "object", "additionalProperties": _TENSOR,
                   "propertyNames": {"pattern": r"^[^\[\]]+(\[[^\]]*\])?$"}}
# answers (`expected:`) may also write a number as a fraction, "3/8"
_ANSWERS_BY_NAME = {**_VALUES_BY_NAME, "additionalProperties": {"$ref": "#/definitions/answers"}}
_FRACTION = {"type": "string", "pattern": r"^\s*[+-]?\d+\s*/\s*\d+\s*$"}


def _top_key_types() -> dict:
    from .losses import LOSSES
    from .rounding import MODES

    return {
        "bptrace": _described({"enum": [1]}, "format version"),
        "name": _described({"type": ["string", "number", "null"]}, "the scenario's title"),
        "description": _described({"type": ["string", "number", "null"]}, "shown under the name"),
        "conventions": {"type": "object", "additionalProperties": False,
                        "properties": {"kernel": {"enum": ["correlation", "convolution"]},
                                       "flatten": {"enum": ["row", "column"]},
                                       "index_base": {"enum": [0, 1]}}},
        "input": _INPUT,
        "inputs": {"description": "several named inputs, each read by `from:`", "type": "object",
                   "minProperties": 1, "additionalProperties": _INPUT, "propertyNames": _NAME},
        "layers": {"type": "array", "minItems": 1, "items": {"$ref": "#/definitions/layer"}},
        "output": _described({"type": "string"}, "the layer the loss applies to (default: the last one)"),
        "upstream": {"description": "a given error dL/d(out) at a layer's output", "type": "object",
                     "required": ["delta"], "additionalProperties": False,
                     "properties": {"layer": {"type": ["string", "null"]}, "delta": _TENSOR}},
        "loss": {"type": "object", "required": ["type"], "additionalProperties": False,
                 "properties": {"type": {"enum": list(LOSSES)}, "target": _TENSOR}},
        "given": _described(_VALUES_BY_NAME, "computed values pinned: whole steps or name[i,j]"),
        "learning_rate": _described({"type": "number", "exclusiveMinimum": 0},
                                    "adds one SGD step (L.new.*); short for optimizer: {type: sgd, lr: ...}"),
        "rounding": {"type": "object", "required": ["decimals"], "additionalProperties": False,
                     "properties": {"decimals": {"type": "integer", "minimum": 0, "maximum": 20},
                                    "mode": {"enum": list(MODES)},
                                    "apply": {"oneOf": [{"type": "string"},
                                                        {"type": "array", "items": {"type": "string"}}]}}},
        "expected": _described(_ANSWERS_BY_NAME, "answers for `bptrace check`: whole steps or name[i,j]; "
                                                  "a number may be written as a fraction, \"3/8\""),
        "init": {"type": "object", "additionalProperties": False,
                 "properties": {"scheme": {"enum": ["glorot_uniform"]}, "seed": _whole(0)}},
        "nodes": {"description": "an expression graph: node name -> formula over the inputs and earlier nodes "
                                 "(+ - * / ** unary minus; exp log sqrt abs sigmoid tanh relu max min)",
                  "type": "object", "minProperties": 1, "propertyNames": _NAME,
                  "additionalProperties": {"type": ["string", "number"]}},
        "tolerance": {"description": "for check: as_written, an absolute number, or {abs, rel}",
                      "oneOf": [{"enum": ["as_written", "as written", None]}, {"type": "number", "minimum": 0},
                                {"type": "object", "minProperties": 1, "additionalProperties": False,
                                 "properties": {"abs": {"type": "number", "minimum": 0},
                                                "rel": {"type": "number", "minimum": 0}}}]},
        "points": {"description": "for check --format gradescope: points of each answer, or answer key "
                              "(name or name[i,j]) -> points; a step earns its share of right numbers",
                   "oneOf": [{"type": "number", "minimum": 0},
                             {"type": "object", "minProperties": 1, "propertyNames": _VALUES_BY_NAME["propertyNames"],
                              "additionalProperties": {"type": "number", "minimum": 0}}]},
        # training (README "Training: losses, optimizers, several steps")
        "regularization": {"description": "adds (λ/2)·Σ w² over kernels and weight matrices to the loss",
                           "type": "object", "required": ["l2"], "additionalProperties": False,
                           "properties": {"l2": {"type": "number", "minimum": 0}}},
        "optimizer": _optimizer_schema(),
        "steps": _described(_whole(1), "training steps on the same data; names of step k start `step{k}.`"),
        "arithmetic": {"description": "the numbers every loop runs on: float, exact (fractions, every written "
                                      "number as the decimal it is written as) or symbolic (letters, with sympy)",
                       "enum": ["float", "exact", "symbolic"]},
        "values": {"description": "arithmetic: symbolic: numbers bound to some of the letters ({w11: 0.5}); "
                                  "relu's side and max-pool's winner need them",
                   "type": "object", "propertyNames": {"pattern": "^[A-Za-z][A-Za-z0-9_]*$"},
                   "additionalProperties": {"type": "number"}},
    }


def _optimizer_schema() -> dict:
    """One branch per torch.optim type, with its options (the loader checks ranges too)."""
    from .optim import GIVEN_KEYS, OPTIONS

    def option(key, default):
        if isinstance(default, bool):
            return {"type": "boolean"}
        if key == "betas":
            return {"type": "array", "items": {"type": "number", "minimum": 0, "exclusiveMaximum": 1},
                    "minItems": 2, "maxItems": 2}
        return {"type": "number", "minimum": 0}

    branches = []
    for kind, defaults in OPTIONS.items():
        state = {"type": "object", "additionalProperties": False,
                 "properties": {key: (_whole(0) if key == "step" else _TENSOR) for key in GIVEN_KEYS[kind]}}
        properties = {"type": {"const": kind}, "state": {"type": "object", "additionalProperties": state},
                      **{key: option(key, default) for key, default in defaults.items()}}
        branches.append({"if": {"properties": {"type": {"const": kind}}, "required": ["type"]},
                         "then": {"properties": properties, "additionalProperties": False}})
    return {"description": "the update step, as torch.optim: sgd, adam, rmsprop, adagrad",
            "type": "object", "required": ["type"],
            "properties": {"type": {"enum": list(OPTIONS)}}, "allOf": branches}


def layer_keys(kind: str) -> list:
    """Every key a layer of this type takes, as the loader allows them."""
    from .layers import LAYERS

    return ["type", "name", "from", *sorted(LAYERS[kind].keys)]


def schema() -> dict:
    """The JSON Schema (draft 7) of a scenario file."""
    from .layers import LAYERS
    from .scenario import TOP_KEYS

    top_types = _top_key_types()
    missing = [key for key in TOP_KEYS if key not in top_types]
    missing += [key for kind in LAYERS for key in layer_keys(kind) if key not in LAYER_KEY_TYPES]
    if missing:
        raise KeyError(f"bptrace.schema has no type for the key(s) {', '.join(sorted(set(missing)))}")
    branches = []
    for kind in LAYERS:
        properties = {key: LAYER_KEY_TYPES[key] for key in layer_keys(kind)}
        doc = (LAYERS[kind].__doc__ or "").strip().splitlines()
        properties["type"] = {"const": kind, "description": doc[0] if doc else f"a {kind} layer"}
        branches.append({"if": {"properties": {"type": {"const": kind}}, "required": ["type"]},
                         "then": {"properties": properties, "additionalProperties": False}})
    layer = {"type": "object", "required": ["type"],
             "properties": {"type": {**LAYER_KEY_TYPES["type"], "enum": list(LAYERS)},
                            "name": LAYER_KEY_TYPES["name"], "from": LAYER_KEY_TYPES["from"]},
             "allOf": branches}
    from .spec import FILLS

    fill = {"type": "object", "required": ["fill"], "additionalProperties": False,
            "properties": {"fill": {"enum": list(FILLS)},
                           "shape": {"oneOf": [_whole(1), {"type": "array", "items": _whole(1), "minItems": 1}]},
                           **{key: {"type": "number"} for keys in FILLS.values() for key in keys}}}
    # `arithmetic: symbolic`: a letter wherever a number stands, or {symbols: w, shape: [2, 2]}
    letter = {"type": "string", "pattern": "^[A-Za-z][A-Za-z0-9_]*$"}
    letters = {"type": "object", "required": ["symbols"], "additionalProperties": False,
               "properties": {"symbols": letter,
                              "shape": {"oneOf": [_whole(1), {"type": "array", "items": _whole(1), "minItems": 1}]}}}
    tensor = {"description": "a number, a rectangular nested list of numbers, or {fill: arange|ones|zeros|full|"
                             "linspace, shape, ...}; with arithmetic: symbolic also letters (w11) or "
                             "{symbols: w, shape: [...]}",
              "anyOf": [{"type": "number"}, letter,
                        {"type": "array", "minItems": 1, "items": {"$ref": "#/definitions/tensor_list"}}, fill, letters]}
    tensor_list = {"anyOf": [{"type": "number"}, letter,
                             {"type": "array", "minItems": 1, "items": {"$ref": "#/definitions/tensor_list"}}]}
    return {
        "$schema": SCHEMA_DRAFT,
        "title": "bptrace scenario",
        "description": "A network, its numbers and where the backward pass starts (see `bptrace new`).",
        "type": "object",
        "properties": {key: top_types[key] for key in TOP_KEYS},
        "additionalProperties": False,
        # a network (`layers:`, one start) or an expression graph (`inputs:` and `nodes:`,
        # which starts from 1 at its output unless a loss or upstream error is given)
        "oneOf": [{"required": ["layers"],
                   "allOf": [{"oneOf": [{"required": ["input"]}, {"required": ["inputs"]}]},
                             {"oneOf": [{"required": ["loss"]}, {"required": ["upstream"]}]}]},
                  {"required": ["nodes", "inputs"],
                   "not": {"anyOf": [{"required": ["layers"]}, {"required": ["input"]}, {"required": ["init"]},
                                     {"required": ["learning_rate"]}, {"required": ["optimizer"]},
                                     {"required": ["regularization"]}, {"required": ["steps"]},
                                     {"required": ["loss", "upstream"]}]}}],
        "definitions": {"tensor": tensor, "tensor_list": tensor_list, "layer": layer,
                        "answers": {"anyOf": [{"type": "number"}, _FRACTION, {"type": "array", "minItems": 1,
                                                                               "items": {"$ref": "#/definitions/answers"}}]}},
    }


def schema_text() -> str:
    return json.dumps(schema(), indent=2, ensure_ascii=False) + "\n"
