"""The PyTorch bridge (`pip install bptrace[torch]`): an `nn.Sequential` with its weights as a
scenario, and a scenario as an `nn.Sequential`.

Both directions are tables, one entry per module or layer type, so that a new layer type
is one entry each way.  A module or an option bptrace does not compute is refused with
the module's place in the network and the reason, never approximated.  torch is imported
inside the functions only: bptrace itself never needs it.
"""
from __future__ import annotations

import re
from typing import Any, Callable

LOSS_NAMES = ("half_sse", "sse", "mse", "cross_entropy", "bce", "l1")


class Unsupported(ValueError):
    """A module (or one of its options) that bptrace cannot trace."""


# --- torch → scenario ----------------------------------------------------------------------

def _pair(value) -> list:
    return list(value) if isinstance(value, (tuple, list)) else [int(value), int(value)]


def _values(tensor) -> list:
    return tensor.detach().to("cpu").double().tolist()


def _require(condition: bool, reason: str):
    if not condition:
        raise Unsupported(reason)


def _conv(m) -> dict:
    _require(m.padding_mode == "zeros", f"padding_mode={m.padding_mode!r}: bptrace pads with zeros only")
    padding = m.padding
    if isinstance(padding, str):       # 'valid' is 0; 'same' is symmetric for odd kernels at stride 1
        if padding == "valid":
            padding = (0, 0)
        else:
            kh, kw = m.kernel_size
            _require(kh % 2 == 1 and kw % 2 == 1, "padding='same' with an even kernel pads one side more "
                                                  "than the other; bptrace pads both sides alike")
            padding = ((kh - 1) // 2, (kw - 1) // 2)
    if isinstance(padding, str) and _pair(m.dilation) != [1, 1]:
        _require(False, "padding='same' with dilation: write the padding as numbers")
    layer = {"type": "conv", "kernel": _values(m.weight), "stride": _pair(m.stride), "padding": _pair(padding)}
    if _pair(m.dilation) != [1, 1]:
        layer["dilation"] = _pair(m.dilation)
    if m.groups != 1:
        layer["groups"] = m.groups
    layer["bias"] = _values(m.bias) if m.bias is not None else False
    return layer


def _conv_transpose(m) -> dict:
    _require(m.padding_mode == "zeros", f"padding_mode={m.padding_mode!r}: bptrace pads with zeros only")
    layer = {"type": "conv_transpose", "kernel": _values(m.weight), "stride": _pair(m.stride),
             "padding": _pair(m.padding)}
    for key, default in (("output_padding", [0, 0]), ("dilation", [1, 1])):
        if _pair(getattr(m, key)) != default:
            layer[key] = _pair(getattr(m, key))
    if m.groups != 1:
        layer["groups"] = m.groups
    layer["bias"] = _values(m.bias) if m.bias is not None else False
    return layer


def _pool(kind: str) -> Callable:
    def convert(m) -> dict:
        size = _pair(m.kernel_size)
        stride = _pair(m.stride) if m.stride is not None else size
        layer = {"type": kind, "size": size, "stride": stride, "padding": _pair(m.padding)}
        if kind == "maxpool":
            _require(not m.return_indices, "return_indices=True: the next module would get a pair")
            if _pair(m.dilation) != [1, 1]:
                layer["dilation"] = _pair(m.dilation)
        else:
            _require(m.divisor_override is None, "divisor_override: bptrace divides by the window's cells")
            if not m.count_include_pad:
                layer["count_include_pad"] = False
        if m.ceil_mode:
            layer["ceil_mode"] = True
        return layer
    return convert


def _global(kind: str) -> Callable:
    def convert(m) -> dict:
        _require(_pair(m.output_size) == [1, 1], f"output_size={m.output_size}: bptrace pools a whole map to "
                                                 "one number (output_size 1), followed by Flatten")
        if kind == "global_maxpool":
            _require(not m.return_indices, "return_indices=True: the next module would get a pair")
        return {"type": kind, FLATTENED: True}
    return convert


def _upsample(m) -> dict:
    _require(m.mode == "nearest", f"mode={m.mode!r}: bptrace's upsample is nearest neighbour")
    _require(m.size is None and m.scale_factor is not None, "size=: write the scale factor instead")
    scale = m.scale_factor if isinstance(m.scale_factor, (tuple, list)) else (m.scale_factor, m.scale_factor)
    _require(all(float(f).is_integer() and f >= 1 for f in scale),
             f"scale_factor={m.scale_factor}: bptrace copies each cell a whole number of times")
    return {"type": "upsample", "scale": [int(f) for f in scale]}


# A global pool is AdaptiveAvgPool2d(1) + Flatten in PyTorch, one bptrace layer: the
# converter marks it, and the Flatten after it is taken as part of it.
FLATTENED = "_then_flatten"


def _softmax(m) -> dict:
    _require(m.dim == 1, f"dim={m.dim}: bptrace's softmax is over dim 1 (the features, or the channels of a map)")
    return {"type": "softmax"}


def _flatten(m) -> dict:
    _require(m.start_dim == 1 and m.end_dim == -1,
             f"start_dim={m.start_dim}, end_dim={m.end_dim}: bptrace flattens everything but the batch")
    return {"type": "flatten"}


def _linear(m) -> dict:
    layer = {"type": "dense", "weights": _values(m.weight)}
    layer["bias"] = _values(m.bias) if m.bias is not None else False
    return layer


def _relu(m) -> dict:
    return {"type": "relu"}


def _batchnorm(m) -> dict:
    layer: dict = {"type": "batchnorm", "eps": float(m.eps)}
    if m.affine:
        layer.update(gamma=_values(m.weight), beta=_values(m.bias))
    # a module in training mode, or one keeping no running statistics, normalises with the batch's
    if not m.training and m.track_running_stats:
        layer.update(mode="eval", running_mean=_values(m.running_mean), running_var=_values(m.running_var))
    return layer


def _layernorm(m) -> dict:
    layer: dict = {"type": "layernorm", "eps": float(m.eps)}
    if m.weight is not None:
        layer["gamma"] = _values(m.weight)
    if getattr(m, "bias", None) is not None:
        layer["beta"] = _values(m.bias)
    return layer


def _dropout(m) -> dict:
    # in training mode torch draws the mask from its own random stream, which bptrace cannot
    # know; in eval mode the module is the identity
    _require(not m.training, "in training mode its mask is drawn by torch's random generator: call .eval() "
                             "(dropout is then the identity), or write the layer as {type: dropout, p: ..., "
                             "mask: [...]} with the mask torch drew")
    return {"type": "identity"}


def _softplus(m) -> dict:
    _require(m.beta == 1 and m.threshold == 20, f"beta={m.beta}, threshold={m.threshold}: bptrace's softplus "
                                                "is PyTorch's default, beta 1 and threshold 20")
    return {"type": "softplus"}


def _gelu(m) -> dict:
    _require(m.approximate == "none", f"approximate={m.approximate!r}: bptrace's gelu is the erf form")
    return {"type": "gelu"}


# torch.nn class name → how its instance is written as a layer of a scenario.
FROM_TORCH: dict = {
    "Conv2d": _conv,
    "MaxPool2d": _pool("maxpool"),
    "AvgPool2d": _pool("avgpool"),
    "ReLU": _relu,
    "Sigmoid": lambda m: {"type": "sigmoid"},
    "Tanh": lambda m: {"type": "tanh"},
    "LeakyReLU": lambda m: {"type": "leaky_relu", "slope": float(m.negative_slope)},
    "Identity": lambda m: {"type": "identity"},
    "Softmax": _softmax,
    "Flatten": _flatten,
    "Linear": _linear,
    "ConvTranspose2d": _conv_transpose,
    "AdaptiveAvgPool2d": _global("global_avgpool"),
    "AdaptiveMaxPool2d": _global("global_maxpool"),
    "Upsample": _upsample,
    "BatchNorm1d": _batchnorm,
    "BatchNorm2d": _batchnorm,
    "LayerNorm": _layernorm,
    "Dropout": _dropout,
    "ELU": lambda m: {"type": "elu", "alpha": float(m.alpha)},
    "Softplus": _softplus,
    "SiLU": lambda m: {"type": "silu"},
    "GELU": _gelu,
}

# The reason for modules someone may expect to work: said instead of "not supported".
NOT_YET = {
    "Conv1d": "bptrace writes a 1-D signal as a map one row high: use Conv2d with a (1, k) kernel",
    "Dropout2d": "bptrace's dropout drops single values, not whole maps (in eval mode it is the identity: leave it out)",
    "LogSoftmax": "bptrace's cross_entropy takes the raw scores (logits): leave LogSoftmax out",
    # recurrent modules return (output, state), which nn.Sequential cannot pass on
    "RNN": "nn.RNN returns (output, h_n), which nn.Sequential cannot chain: write an `rnn` layer with its "
           "weight_ih_l0, weight_hh_l0, bias_ih_l0, bias_hh_l0 as weight_ih, weight_hh, bias_ih, bias_hh",
    "LSTM": "nn.LSTM returns (output, (h_n, c_n)), which nn.Sequential cannot chain: write an `lstm` layer with "
            "its weight_ih_l0, weight_hh_l0, bias_ih_l0, bias_hh_l0 as weight_ih, weight_hh, bias_ih, bias_hh",
    "GRU": "nn.GRU returns (output, h_n), which nn.Sequential cannot chain: write a `gru` layer with its "
           "weight_ih_l0, weight_hh_l0, bias_ih_l0, bias_hh_l0 as weight_ih, weight_hh, bias_ih, bias_hh",
}


def _modules(module, prefix: str = ""):
    """(place, name, module) of each module of a (nested) Sequential, in order."""
    from torch import nn

    if not isinstance(module, nn.Sequential):
        raise Unsupported(f"bptrace reads an nn.Sequential, not {type(module).__name__} "
                          "(a network with its own forward() has wiring bptrace cannot see)")
    for name, child in module.named_children():
        place = f"{prefix}{name}"
        if isinstance(child, nn.Sequential):
            yield from _modules(child, place + ".")
        else:
            yield place, name, child


def _loss(loss, target) -> dict:
    """The scenario's `loss:` from a loss name or a torch loss module."""
    kind = loss
    if not isinstance(loss, str):
        name = type(loss).__name__
        reduction = getattr(loss, "reduction", "mean")
        if name == "MSELoss":
            kind = {"mean": "mse", "sum": "sse"}.get(reduction)
        elif name == "CrossEntropyLoss":
            _require(loss.weight is None and loss.label_smoothing == 0 and loss.ignore_index == -100,
                     "CrossEntropyLoss with weight, label_smoothing or ignore_index: bptrace's has none")
            kind = "cross_entropy" if reduction == "mean" else None
        elif name == "L1Loss":
            kind = "l1" if reduction == "mean" else None
        elif name == "BCELoss":
            _require(loss.weight is None, "BCELoss with weight: bptrace's has none")
            kind = "bce" if reduction == "mean" else None
        else:
            kind = None
        _require(kind is not None, f"loss {name}(reduction={reduction!r}): bptrace has MSELoss (mean, sum), "
                                   "CrossEntropyLoss (mean), BCELoss (mean) and L1Loss (mean)")
    _require(kind in LOSS_NAMES, f"loss {kind!r}: one of {', '.join(LOSS_NAMES)}")
    from .api import plain_data

    return {"type": kind, "target": _values(target) if hasattr(target, "detach") else plain_data(target)}


def scenario_dict(module, x, target=None, loss: Any = "mse", *, name: str | None = None) -> dict:
    """The scenario (as a mapping, ready for YAML) of `module` applied to `x`.

    With `target`, the backward pass starts from `loss` (a name: half_sse, sse, mse,
    cross_entropy, bce, l1; or a torch loss module: MSELoss, CrossEntropyLoss, BCELoss, L1Loss).  Without
    it, from a given error of ones at the output: the gradients of `module(x).sum()`.
    """
    import torch

    layers = []
    modules = list(_modules(module))
    skip = False
    for k, (place, child_name, child) in enumerate(modules):
        if skip:
            skip = False
            continue
        kind = type(child).__name__
        convert = FROM_TORCH.get(kind)
        if convert is None:
            reason = NOT_YET.get(kind, "bptrace has no layer for it")
            raise Unsupported(f"module {place} ({kind}) is not supported: {reason}; bptrace reads "
                              + ", ".join(FROM_TORCH))
        try:
            layer = convert(child)
        except Unsupported as exc:
            raise Unsupported(f"module {place} ({kind}): {exc}") from None
        if layer.pop(FLATTENED, False):
            after = modules[k + 1][2] if k + 1 < len(modules) else None
            if type(after).__name__ != "Flatten" or (after.start_dim, after.end_dim) != (1, -1):
                raise Unsupported(f"module {place} ({kind}): bptrace's {layer['type']} is {kind}(1) followed by "
                                  "Flatten(): the next module must be nn.Flatten()")
            skip = True
        if re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", child_name) and child_name not in ("input", "loss"):
            layer = {"type": layer["type"], "name": child_name, **{k: v for k, v in layer.items() if k != "type"}}
        layers.append(layer)
    if not layers:
        raise Unsupported("the Sequential is empty")
    x = torch.as_tensor(x)
    data: dict = {"bptrace": 1, "name": name or f"from PyTorch: {_describe(module)}", "input": _values(x),
                  "layers": layers}
    if target is None:
        parameter = next(iter(module.parameters()), None)
        from .errors import ScenarioError

        try:
            with torch.no_grad():
                out = module(x.to(parameter.dtype) if parameter is not None else x)
        except RuntimeError as exc:
            # torch refuses the input's shape: the caller's mistake, said as bptrace says it
            reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise ScenarioError(f"the module cannot take an input of shape {tuple(x.shape)}: torch says "
                                f"{reason}", key="input") from None
        data["upstream"] = {"delta": torch.ones_like(out).double().tolist()}
    else:
        data["loss"] = _loss(loss, target)
    return data


def _describe(module) -> str:
    return ", ".join(type(child).__name__ for _, _, child in _modules(module))


def from_torch(module, x, target=None, loss: Any = "mse"):
    """A `Scenario` of an `nn.Sequential` with its weights, applied to the input `x`.

    Supported modules: Conv2d, ConvTranspose2d, MaxPool2d, AvgPool2d (dilation, ceil_mode,
    count_include_pad and bias=False read as they are), AdaptiveAvgPool2d(1) and
    AdaptiveMaxPool2d(1) before Flatten(), Upsample (nearest), ReLU, Sigmoid, Tanh, LeakyReLU,
    ELU, Softplus, SiLU, GELU, Identity, Softmax(dim=1), BatchNorm1d, BatchNorm2d (the
    batch's statistics in training mode, the running ones in eval mode), LayerNorm, Dropout
    (in eval mode), Flatten, Linear, and nested Sequentials.  Anything else, or an option
    bptrace does not compute (padding_mode, divisor_override, ...), raises `Unsupported`
    naming the module and the reason; an input the module cannot take raises ScenarioError.
    """
    from .api import load

    return load(scenario_dict(module, x, target, loss))


def scenario_yaml(data: dict, header: str = "") -> str:
    """A scenario mapping as YAML: each layer on its own lines, each tensor's rows inline."""
    import yaml

    from .schema import SCHEMA_FILE

    class Dumper(yaml.SafeDumper):
        pass

    def tensor_inline(dumper, value):
        # a tensor (nested lists of numbers) in brackets, as a person writes it
        numeric = all(isinstance(v, (int, float, list)) and not isinstance(v, bool) for v in value)
        return dumper.represent_sequence("tag:yaml.org,2002:seq", value, flow_style=numeric and bool(value))

    Dumper.add_representer(list, tensor_inline)
    body = yaml.dump(data, Dumper=Dumper, sort_keys=False, allow_unicode=True, width=100)
    lines = [f"# yaml-language-server: $schema={SCHEMA_FILE}"] + [f"# {line}" for line in header.splitlines()]
    return "\n".join(lines) + "\n" + body


# --- scenario → torch ----------------------------------------------------------------------

def _tensor(values):
    import torch

    return torch.nn.Parameter(torch.tensor(values, dtype=torch.float64))


def _torch_conv(layer, nn):
    out, per_group, kh, kw = layer.params["kernel"].shape
    bias = "bias" in layer.params
    m = nn.Conv2d(per_group * layer.groups, out, (kh, kw), stride=tuple(layer.stride),
                  padding=tuple(layer.padding), dilation=tuple(layer.dilation), groups=layer.groups, bias=bias,
                  dtype=_float64())
    kernel = layer.params["kernel"]
    m.weight = _tensor(kernel[:, :, ::-1, ::-1].copy() if layer.flip else kernel)
    if bias:
        m.bias = _tensor(layer.params["bias"])
    return m


def _torch_conv_transpose(layer, nn):
    C, per_group, kh, kw = layer.params["kernel"].shape
    bias = "bias" in layer.params
    m = nn.ConvTranspose2d(C, per_group * layer.groups, (kh, kw), stride=tuple(layer.stride),
                           padding=tuple(layer.padding), output_padding=tuple(layer.output_padding),
                           groups=layer.groups, bias=bias, dilation=tuple(layer.dilation), dtype=_float64())
    kernel = layer.params["kernel"]
    m.weight = _tensor(kernel[:, :, ::-1, ::-1].copy() if layer.flip else kernel)
    if bias:
        m.bias = _tensor(layer.params["bias"])
    return m


def _torch_dense(layer, nn):
    out, features = layer.params["weights"].shape
    bias = "bias" in layer.params
    m = nn.Linear(features, out, bias=bias, dtype=_float64())
    m.weight = _tensor(layer.params["weights"])
    if bias:
        m.bias = _tensor(layer.params["bias"])
    return m


def _torch_flatten(layer, nn):
    _require(not layer.column, "flatten: column order (conventions.flatten: column) has no torch module; "
                               "nn.Flatten scans rows")
    return nn.Flatten()


def _torch_batchnorm(layer, nn):
    C = layer.in_shape[1]
    kind = nn.BatchNorm2d if len(layer.in_shape) == 4 else nn.BatchNorm1d
    m = kind(C, eps=layer.eps, dtype=_float64())
    m.weight, m.bias = _tensor(layer.params["gamma"]), _tensor(layer.params["beta"])
    if not layer.train:
        import torch

        m.running_mean = torch.tensor(layer.running_mean, dtype=torch.float64)
        m.running_var = torch.tensor(layer.running_var, dtype=torch.float64)
        m.eval()
    return m


def _torch_layernorm(layer, nn):
    m = nn.LayerNorm(tuple(layer.in_shape[1:]), eps=layer.eps, dtype=_float64())
    m.weight, m.bias = _tensor(layer.params["gamma"]), _tensor(layer.params["beta"])
    return m


def _float64():
    import torch

    return torch.float64


# bptrace layer type → the torch module that computes the same.
TO_TORCH: dict = {
    "conv": _torch_conv,
    "maxpool": lambda layer, nn: nn.MaxPool2d(tuple(layer.size), tuple(layer.stride), tuple(layer.padding),
                                              dilation=tuple(layer.dilation), ceil_mode=layer.ceil_mode),
    "avgpool": lambda layer, nn: nn.AvgPool2d(tuple(layer.size), tuple(layer.stride), tuple(layer.padding),
                                              ceil_mode=layer.ceil_mode, count_include_pad=layer.count_include_pad),
    "sigmoid": lambda layer, nn: nn.Sigmoid(),
    "tanh": lambda layer, nn: nn.Tanh(),
    "relu": lambda layer, nn: nn.ReLU(),
    "leaky_relu": lambda layer, nn: nn.LeakyReLU(layer.negative_slope),
    "identity": lambda layer, nn: nn.Identity(),
    "softmax": lambda layer, nn: nn.Softmax(dim=1),
    "flatten": _torch_flatten,
    "dense": _torch_dense,
    "conv_transpose": _torch_conv_transpose,
    "global_avgpool": lambda layer, nn: nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten()),
    "global_maxpool": lambda layer, nn: nn.Sequential(nn.AdaptiveMaxPool2d(1), nn.Flatten()),
    "upsample": lambda layer, nn: nn.Upsample(scale_factor=tuple(float(s) for s in layer.scale), mode="nearest"),
    "batchnorm": _torch_batchnorm,
    "layernorm": _torch_layernorm,
    "elu": lambda layer, nn: nn.ELU(layer.alpha),
    "softplus": lambda layer, nn: nn.Softplus(),
    "silu": lambda layer, nn: nn.SiLU(),
    "gelu": lambda layer, nn: nn.GELU(),
}


def to_torch(scenario):
    """The scenario's network as an `nn.Sequential` of float64 modules holding its
    parameters, named as its layers.  A network that is not a chain (`from:`, merge layers)
    or a layer type without an entry in `TO_TORCH` raises `Unsupported`."""
    from collections import OrderedDict

    from torch import nn

    plan = scenario.plan
    modules = OrderedDict()
    previous = [value.name for value in plan.inputs][:1]
    for layer in scenario.layers:
        reads = [value.name for value in plan.node(layer.name).reads]
        _require(reads == previous, f"layer {layer.name} reads {', '.join(reads)}: only a chain of layers, "
                                    "each reading the one before, is an nn.Sequential")
        build = TO_TORCH.get(layer.type)
        _require(layer.type != "dropout", f"layer {layer.name} (dropout): nn.Dropout draws its own mask; "
                                          "bptrace's written or seeded mask has no torch module")
        _require(build is not None, f"layer {layer.name} ({layer.type}) has no PyTorch module in the bridge")
        modules[layer.name] = build(layer, nn)
        previous = [layer.name]
    return nn.Sequential(modules)


def torch_input(scenario):
    """The scenario's input as the float64 tensor `to_torch`'s network takes ([N][C][H][W],
    or [N][F] for features)."""
    import torch

    return torch.tensor(scenario.input, dtype=torch.float64)


# --- for `bptrace from-torch` ---------------------------------------------------------------

def load_module(spec: str):
    """`file.py:name` (a module, or a function that returns one) or a `torch.save`d module."""
    import os

    from .errors import ScenarioError

    if re.search(r"\.py:[A-Za-z_][A-Za-z0-9_]*$", spec):
        import importlib.util

        path, name = spec.rsplit(":", 1)
        if not os.path.isfile(path):
            raise ScenarioError("no such Python file", file=path)
        loader = importlib.util.spec_from_file_location("bptrace_user_model", path)
        code = importlib.util.module_from_spec(loader)
        loader.loader.exec_module(code)
        if not hasattr(code, name):
            raise ScenarioError(f"{path} defines no '{name}'", file=path)
        found = getattr(code, name)
        from torch import nn

        return found if isinstance(found, nn.Module) else found()
    import torch

    if not os.path.isfile(spec):
        raise ScenarioError("no such file (MODEL is a torch.save file or file.py:name)", file=spec)
    try:
        return torch.load(spec, weights_only=False, map_location="cpu")
    except Exception as exc:      # a pickle can fail in any way
        raise ScenarioError(f"cannot load this model: {exc}", file=spec) from None


def read_values(spec: str):
    """Numbers from a .npy file, a YAML/JSON file, or written on the command line."""
    import os

    import numpy as np

    from .source import parse_text, read_document

    if spec.lower().endswith(".npy") and os.path.isfile(spec):
        return np.load(spec, allow_pickle=False)
    doc = read_document(spec, "a file of numbers") if os.path.isfile(spec) else parse_text(spec, "--target")
    from .spec import read_tensor

    return read_tensor(doc, (), doc.data, what="these numbers")
