"""Independent oracles for every number the engine traces (a helper for the tests).

Two PyTorch (float64, CPU) oracles, both built from the scenario's data alone (input, layer
geometry, parameters, loss target), never from bptrace's engine, layers or losses:

* `global_values(scenario)`: the whole network in torch.nn.functional, one autograd pass
  (`retain_grad()` on every layer output gives every delta), SGD as p − lr·grad.  Valid
  for scenarios without `given` or `rounding`, which change what later steps read.
* `local_values(scenario, trace)`: every step recomputed on its own with torch, from the
  values the trace says that step read (after rounding and pinning).  Valid for every
  scenario.  Sigmoid, tanh and softmax backward go through the layer's *output*
  (torch's own `sigmoid_backward` / `tanh_backward` / `_softmax_backward_data` kernels),
  the documented convention that lets a pinned rounded output act on the delta.

`check(trace, expected)` compares a trace with either; both agree to ATOL + RTOL·|expected|.
torch is imported inside the functions, so this module imports without it (the tests
ask for the `torch` fixture first, which skips or fails as conftest decides).
"""
from __future__ import annotations

import numpy as np

# |engine − oracle| ≤ ATOL + RTOL·|oracle|, elementwise
ATOL = 1e-9
RTOL = 1e-9

# layer types that read several values
MERGES = ("add", "multiply", "concat")


def _torch():
    import torch
    import torch.nn.functional as F
    return torch, F


def tensor(values):
    torch, _ = _torch()
    return torch.tensor(np.asarray(values, dtype=np.float64), dtype=torch.float64)


# --- batch norm and layer norm, written as the textbook's graph ---------------------------
# mean, var and x̂ are tensors of their own, so that autograd's retain_grad gives each one's
# ∂loss/∂V (var computed from mean, x̂ from both); the output is checked against
# torch.nn.functional's own batch_norm / layer_norm kernel every time.

def _norm_axes(layer, x):
    """(the axes a statistic is taken over, the view that broadcasts a statistic, the view
    that broadcasts γ and β)."""
    if layer.type == "batchnorm":
        dims = (0, 2, 3) if x.dim() == 4 else (0,)
        view = (1, -1, 1, 1) if x.dim() == 4 else (1, -1)
        return dims, view, view
    return tuple(range(1, x.dim())), (-1,) + (1,) * (x.dim() - 1), (1,) + tuple(x.shape[1:])


def norm_mean(layer, x):
    dims, _, _ = _norm_axes(layer, x)
    return x.mean(dim=dims)


def norm_var(layer, x, mean):
    dims, view, _ = _norm_axes(layer, x)
    return ((x - mean.view(view)) ** 2).mean(dim=dims)


def norm_xhat(layer, x, mean, var):
    torch, _ = _torch()
    _, view, _ = _norm_axes(layer, x)
    return (x - mean.view(view)) / torch.sqrt(var.view(view) + layer.eps)


def norm_out(layer, xhat, gamma, beta):
    _, _, pview = _norm_axes(layer, xhat)
    return gamma.view(pview) * xhat + beta.view(pview)


def _norm_forward(layer, x, params, inner):
    torch, F = _torch()
    train = layer.type == "layernorm" or layer.train
    if train:
        mean = norm_mean(layer, x)
        var = norm_var(layer, x, mean)
    else:
        mean, var = tensor(layer.running_mean), tensor(layer.running_var)
    xhat = norm_xhat(layer, x, mean, var)
    out = norm_out(layer, xhat, params["gamma"], params["beta"])
    with torch.no_grad():
        if layer.type == "batchnorm":
            kernel = F.batch_norm(x, None if train else mean, None if train else var, params["gamma"], params["beta"],
                                  training=train, eps=layer.eps)
        else:
            kernel = F.layer_norm(x, tuple(x.shape[1:]), params["gamma"].reshape(x.shape[1:]),
                                  params["beta"].reshape(x.shape[1:]), eps=layer.eps)
        assert torch.allclose(out, kernel, rtol=1e-10, atol=1e-12), "the textbook graph is not torch's batch norm"
    if inner is not None:
        inner.update(mean=mean, var=var, xhat=xhat)
    return out


def dropout_scale(layer):
    # PyTorch's p = 1 gives zeros
    return 0.0 if layer.p == 1 else 1 / (1 - layer.p)


def layer_forward(layer, x, params: dict, conventions, inner: dict | None = None):
    """One layer's forward pass in torch.nn.functional, from its geometry and the given
    parameter tensors (`x` is the list of values read, for a merge layer).  `inner`, if
    given, receives the layer's inner traced tensors (batch norm's mean, var, xhat;
    dropout's mask) by name."""
    torch, F = _torch()
    kind = layer.type
    if kind in ("batchnorm", "layernorm"):
        return _norm_forward(layer, x, params, inner)
    if kind == "dropout":
        mask = tensor(layer.mask)
        if inner is not None:
            inner["mask"] = mask
        # as ATen: the kept values are multiplied by mask / (1 − p)
        return x * (mask * dropout_scale(layer))
    if kind == "add":
        return sum(x[1:], x[0])
    if kind == "multiply":
        product = x[0]
        for value in x[1:]:
            product = product * value
        return product
    if kind == "concat":
        return torch.cat(list(x), dim=1)
    if kind == "conv":
        kernel = params["kernel"]
        if conventions.kernel == "convolution":
            kernel = torch.flip(kernel, dims=(-2, -1))
        return F.conv2d(x, kernel, params.get("bias"), stride=tuple(layer.stride),
                        padding=tuple(layer.padding), dilation=tuple(layer.dilation), groups=layer.groups)
    if kind == "conv_transpose":
        kernel = params["kernel"]
        if conventions.kernel == "convolution":
            kernel = torch.flip(kernel, dims=(-2, -1))
        return F.conv_transpose2d(x, kernel, params.get("bias"), stride=tuple(layer.stride),
                                  padding=tuple(layer.padding), output_padding=tuple(layer.output_padding),
                                  groups=layer.groups, dilation=tuple(layer.dilation))
    if kind == "maxpool":
        return F.max_pool2d(x, tuple(layer.size), tuple(layer.stride), tuple(layer.padding),
                            dilation=tuple(layer.dilation), ceil_mode=layer.ceil_mode)
    if kind == "avgpool":
        return F.avg_pool2d(x, tuple(layer.size), tuple(layer.stride), tuple(layer.padding),
                            ceil_mode=layer.ceil_mode, count_include_pad=layer.count_include_pad)
    if kind == "global_avgpool":
        return torch.flatten(F.adaptive_avg_pool2d(x, 1), 1)
    if kind == "global_maxpool":
        return torch.flatten(F.adaptive_max_pool2d(x, 1), 1)
    if kind == "upsample":
        return F.interpolate(x, scale_factor=tuple(float(s) for s in layer.scale), mode="nearest")
    if kind == "exp":
        return torch.exp(x)
    if kind == "log":
        return torch.log(x)
    if kind == "square":
        return torch.square(x)
    if kind == "elu":
        return F.elu(x, layer.alpha)
    if kind == "softplus":
        return F.softplus(x)            # beta 1, threshold 20
    if kind == "silu":
        return F.silu(x)
    if kind == "gelu":
        return F.gelu(x)                # the erf form
    if kind == "sigmoid":
        return torch.sigmoid(x)
    if kind == "tanh":
        return torch.tanh(x)
    if kind == "relu":
        return F.relu(x)
    if kind == "leaky_relu":
        return F.leaky_relu(x, layer.negative_slope)
    if kind == "identity":
        return x.clone()          # a node of its own, so that its delta can be retained
    if kind == "softmax":
        return F.softmax(x, dim=1)
    if kind == "flatten":
        n = x.shape[0]
        if conventions.flatten == "column":
            return x.transpose(-1, -2).reshape(n, -1)
        return x.reshape(n, -1)
    if kind == "dense":
        return F.linear(x, params["weights"], params.get("bias"))
    raise AssertionError(f"the oracle does not know layer type {kind!r}")


def loss_value(loss, out):
    """The scenario's loss of `out`, as PyTorch defines it."""
    torch, F = _torch()
    if loss.type == "sum":
        return out.sum()
    if loss.type == "mean":
        return out.mean()
    target = tensor(loss.target)
    if loss.type == "l1":
        return F.l1_loss(out, target)
    if loss.type == "half_sse":
        return 0.5 * ((out - target) ** 2).sum()
    if loss.type == "sse":
        return ((out - target) ** 2).sum()
    if loss.type == "mse":
        return F.mse_loss(out, target)
    if loss.type == "cross_entropy":
        if loss.classes is not None:
            return F.cross_entropy(out, torch.tensor(loss.classes, dtype=torch.long))
        return F.cross_entropy(out, target)     # probability (or one-hot) targets
    if loss.type == "bce":
        return F.binary_cross_entropy(out, target)
    raise AssertionError(f"the oracle does not know loss {loss.type!r}")


def wiring(scenario):
    """(reads, start): for each layer the names of the values it reads ("input", an input's
    name, or "L.out"), and the layer the backward pass starts from.  Read from the scenario
    file's own `from:` / `output:` / `upstream:` keys with the format's default (each layer
    reads the one before it), not from bptrace's plan."""
    data = scenario.document.data
    raw_layers = data["layers"]
    inputs = list(data["inputs"]) if "inputs" in data else ["input"]
    reads, previous, counts = {}, None, {}
    for raw, layer in zip(raw_layers, scenario.layers):
        counts[raw["type"]] = counts.get(raw["type"], 0) + 1
        name = raw.get("name", f"{raw['type']}{counts[raw['type']]}")
        assert name == layer.name
        written = raw.get("from")
        if written is None:
            sources = [previous] if previous else [inputs[0]]
        else:
            sources = written if isinstance(written, list) else [written]
        reads[name] = [s if s in inputs else f"{s}.out" for s in sources]
        previous = name
    start = data.get("output", previous)
    if "upstream" in data:
        start = data["upstream"].get("layer", start)
    return reads, start


def _active(scenario):
    """The layers the backward pass goes through: the start layer and all it depends on."""
    reads, start = wiring(scenario)
    needed = {f"{start}.out"}
    for layer in reversed(scenario.layers):
        if f"{layer.name}.out" in needed:
            needed.update(reads[layer.name])
    return [layer for layer in scenario.layers if f"{layer.name}.out" in needed], needed


def _numpy(t, shape=None):
    values = t.detach().cpu().numpy().astype(np.float64)
    return values.reshape(shape) if shape is not None else values


# --- the whole network, one autograd pass ----------------------------------------------------

def global_values(scenario) -> dict:
    """name -> canonical numpy array for every value of BRIEF section 2, for every training
    step (`steps:` in the file; names prefixed `step{k}.` when there are several), with
    torch.optim doing the updates."""
    if scenario.given or scenario.rounding:
        raise ValueError("given/rounding change what later steps read; use local_values")
    torch, _ = _torch()
    data = scenario.document.data
    steps = data.get("steps", 1)
    reads, start = wiring(scenario)
    active, needed = _active(scenario)
    leaves = {f"{layer.name}.{role}": tensor(v).requires_grad_() for layer in scenario.layers
              for role, v in layer.params.items()}
    trained = [f"{layer.name}.{role}" for layer in active for role in layer.params]
    optimizer = torch_optimizer(scenario, [leaves[name] for name in trained]) if trained else None
    if optimizer is not None:
        for name in trained:
            given_state(scenario, optimizer, name, leaves[name])
    result = {}
    for k in range(1, steps + 1):
        p = f"step{k}." if steps > 1 else ""
        values = {name: tensor(x).requires_grad_() for name, x in scenario.inputs.items()}
        result.update({p + name: _numpy(t) for name, t in values.items()})
        result.update({p + name: _numpy(t) for name, t in leaves.items()})
        for layer in scenario.layers:
            params = {role: leaves[f"{layer.name}.{role}"] for role in layer.params}
            xs = [values[name] for name in reads[layer.name]]
            inner = {}
            h = layer_forward(layer, xs if layer.type in MERGES else xs[0], params, scenario.conventions, inner)
            h.retain_grad()
            values[f"{layer.name}.out"] = h
            result[f"{p}{layer.name}.out"] = _numpy(h)
            for key, t in inner.items():
                if t.requires_grad:
                    t.retain_grad()
                values[f"{layer.name}.{key}"] = t
                result[f"{p}{layer.name}.{key}"] = _numpy(t)
        if scenario.upstream is not None:
            values[f"{start}.out"].backward(tensor(scenario.upstream.delta))
        else:
            loss = loss_value(scenario.loss, values[f"{start}.out"])
            if "regularization" in data:
                lam = data["regularization"]["l2"]
                penalty = sum((leaves[f"{layer.name}.{role}"] ** 2).sum() for layer in active
                              for role in layer.params if role in ("kernel", "weights")) * (lam / 2)
                result[p + "loss.data"], result[p + "loss.l2"] = _numpy(loss), _numpy(penalty)
                loss = loss + penalty
            result[p + "loss"] = _numpy(loss)
            loss.backward()
        for layer in active:
            out = values[f"{layer.name}.out"]
            result[f"{p}{layer.name}.delta"] = _numpy(out.grad) if out.grad is not None else np.zeros(out.shape)
            for name in layer.backward_extras:
                inner = values[f"{layer.name}.{name.removesuffix('.delta')}"]
                result[f"{p}{layer.name}.{name}"] = _numpy(inner.grad) if inner.grad is not None \
                    else np.zeros(inner.shape)
            for role in layer.params:
                result[f"{p}{layer.name}.grad.{role}"] = _numpy(leaves[f"{layer.name}.{role}"].grad)
        for name in scenario.inputs:
            if name in needed:
                x = values[name]
                result[f"{p}{name}.delta"] = _numpy(x.grad) if x.grad is not None else np.zeros(x.shape)
        if optimizer is not None:
            optimizer.step()
            for name in trained:
                layer, role = name.split(".")
                result[f"{p}{layer}.new.{role}"] = _numpy(leaves[name])
                for key, value in optimizer.state[leaves[name]].items():
                    if key != "step" and value is not None:
                        result[f"{p}{layer}.state.{role}.{key}"] = _numpy(value)
            optimizer.zero_grad(set_to_none=True)
    return result


def torch_optimizer(scenario, params):
    """The torch.optim optimizer the scenario file's own `optimizer:` (or `learning_rate:`)
    asks for, over `params`, with torch's own defaults for what the file leaves out; None
    without an update step."""
    torch, _ = _torch()
    data = scenario.document.data
    if "learning_rate" in data:
        return torch.optim.SGD(params, lr=data["learning_rate"])
    if "optimizer" not in data:
        return None
    written = {key: value for key, value in data["optimizer"].items() if key not in ("type", "state")}
    if "betas" in written:
        written["betas"] = tuple(written["betas"])
    kind = {"sgd": torch.optim.SGD, "adam": torch.optim.Adam, "rmsprop": torch.optim.RMSprop,
            "adagrad": torch.optim.Adagrad}[data["optimizer"]["type"]]
    return kind(params, foreach=False, **written)


def given_state(scenario, optimizer, name, param, values=None):
    """Put the state the file gives for parameter `name` (or `values`: key -> array, and
    "step") into torch's optimizer, with torch's fresh state for what is not given."""
    torch, _ = _torch()
    given = dict(values if values is not None else scenario.optimizer.state.get(name, {})) \
        if scenario.optimizer or values is not None else {}
    if not given:
        return
    group = optimizer.param_groups[0]
    kind = type(optimizer).__name__
    fresh = []
    if kind == "Adam":
        fresh = ["exp_avg", "exp_avg_sq"]
    elif kind == "RMSprop":
        fresh = ["square_avg"] + (["momentum_buffer"] if group["momentum"] > 0 else []) + \
            (["grad_avg"] if group["centered"] else [])
    state = optimizer.state[param]
    for key in fresh:
        state[key] = torch.zeros_like(param, memory_format=torch.preserve_format)
    if kind != "SGD":
        state["step"] = torch.tensor(float(given.pop("step", 0)), dtype=torch.float64)
    for key, value in given.items():
        state[key] = tensor(value)


# --- every step on its own, from the values the trace says it read ---------------------------

def layer_backward(layer, x, out, delta, params: dict, conventions) -> dict:
    """{"in": error at the input, role: parameter gradient} for one layer, given the values
    of its input, output and delta."""
    torch, _ = _torch()
    aten = torch.ops.aten
    if layer.type == "sigmoid":
        return {"in": aten.sigmoid_backward(delta, out)}
    if layer.type == "tanh":
        return {"in": aten.tanh_backward(delta, out)}
    if layer.type == "softmax":
        return {"in": aten._softmax_backward_data(delta, out, 1, torch.float64)}
    xs = [v.detach().clone().requires_grad_() for v in (x if layer.type in MERGES else [x])]
    params = {role: p.detach().clone().requires_grad_() for role, p in params.items()}
    roles = list(params)
    y = layer_forward(layer, xs if layer.type in MERGES else xs[0], params, conventions)
    leaves = xs + [params[r] for r in roles]
    grads = torch.autograd.grad(y, leaves, grad_outputs=delta, allow_unused=True)
    grads = [g if g is not None else torch.zeros_like(t) for g, t in zip(grads, leaves)]
    ins = grads[:len(xs)]
    return {"in": ins if layer.type in MERGES else ins[0], **dict(zip(roles, grads[len(xs):]))}


def local_values(scenario, trace) -> dict:
    """name -> what torch computes for that step from the trace's values of what it read,
    in every training step (names prefixed `step{k}.` when the file trains several).

    Compare with a step's `computed` values (before rounding and pinning)."""
    steps = scenario.document.data.get("steps", 1)
    result = {}
    for k in range(1, steps + 1):
        p = f"step{k}." if steps > 1 else ""
        _local_step(scenario, trace, result, p, f"step{k - 1}." if k > 1 else None)
    return result


def _local_step(scenario, trace, result, p, earlier):
    torch, _ = _torch()

    def read(name):
        return tensor(trace.value(p + name))       # the values later steps used: rounded, pinned

    reads, start = wiring(scenario)
    result.update({p + name: np.asarray(x, dtype=float) for name, x in scenario.inputs.items()})
    active, _ = _active(scenario)
    trained = {layer.name for layer in active} if torch_optimizer(scenario, [torch.zeros(1)]) else set()
    for layer in scenario.layers:
        for role, values in layer.params.items():
            # step k ≥ 2 starts from step k − 1's update
            result[f"{p}{layer.name}.{role}"] = np.asarray(values, dtype=float) \
                if earlier is None or layer.name not in trained else trace.value(f"{earlier}{layer.name}.new.{role}")
        params = {role: read(f"{layer.name}.{role}") for role in layer.params}
        xs = [read(name) for name in reads[layer.name]]
        if layer.extras:
            result.update({p + k: v for k, v in _inner_forward(layer, xs[0], params, read).items()})
            continue
        result[f"{p}{layer.name}.out"] = _numpy(layer_forward(layer, xs if layer.type in MERGES else xs[0], params,
                                                              scenario.conventions))

    data = scenario.document.data
    if scenario.upstream is not None:
        result[f"{p}{start}.delta"] = np.asarray(scenario.upstream.delta, dtype=float)
    else:
        out = read(f"{start}.out").requires_grad_()
        loss = loss_value(scenario.loss, out)
        if "regularization" in data:
            lam = data["regularization"]["l2"]
            penalty = sum((read(f"{layer.name}.{role}") ** 2).sum() for layer in active
                          for role in layer.params if role in ("kernel", "weights")) * (lam / 2)
            result[p + "loss.data"], result[p + "loss.l2"] = _numpy(loss), _numpy(penalty)
            result[p + "loss"] = _numpy(read("loss.data") + read("loss.l2"))
        else:
            result[p + "loss"] = _numpy(loss)
        result[f"{p}{start}.delta"] = _numpy(torch.autograd.grad(loss, out)[0])

    # each reader's share of a delta, from the trace's values of that reader's own delta;
    # a value read by several layers (or twice by one) gets the sum of the shares
    for layer in reversed(active):
        params = {role: read(f"{layer.name}.{role}") for role in layer.params}
        xs = [read(name) for name in reads[layer.name]]
        if layer.extras:
            inner = _inner_backward(layer, xs[0], read(f"{layer.name}.delta"), params, read)
            result.update({f"{p}{layer.name}.{k}": v for k, v in inner.items()
                           if k not in ("in",) + layer.param_roles})
            for role in layer.params:
                result[f"{p}{layer.name}.grad.{role}"] = inner[role]
            delta_name = f"{p}{reads[layer.name][0].removesuffix('.out')}.delta"
            result[delta_name] = result.get(delta_name, 0) + inner["in"]
            continue
        grads = layer_backward(layer, xs if layer.type in MERGES else xs[0], read(f"{layer.name}.out"),
                               read(f"{layer.name}.delta"), params, scenario.conventions)
        for role in layer.params:
            grad = grads[role]
            if "regularization" in data and role in ("kernel", "weights"):
                grad = grad + data["regularization"]["l2"] * params[role]
            result[f"{p}{layer.name}.grad.{role}"] = _numpy(grad)
        shares = grads["in"] if layer.type in MERGES else [grads["in"]]
        for name, share in zip(reads[layer.name], shares):
            delta_name = f"{p}{name.removesuffix('.out')}.delta"
            result[delta_name] = result.get(delta_name, 0) + _numpy(share)

    # the update: torch.optim on each parameter alone, from the trace's old values and
    # gradient and the state the step before left (or the file gives)
    for layer in active if trained else ():
        for role in layer.params:
            param = read(f"{layer.name}.{role}").clone()
            param.grad = read(f"{layer.name}.grad.{role}")
            optimizer = torch_optimizer(scenario, [param])
            if earlier is None:
                given_state(scenario, optimizer, f"{layer.name}.{role}", param)
            else:
                before = {key.rsplit(".", 1)[1]: trace.value(key) for key in trace.names()
                          if key.startswith(f"{earlier}{layer.name}.state.{role}.")}
                if before:
                    given = (scenario.optimizer.state.get(f"{layer.name}.{role}", {}) if scenario.optimizer else {})
                    before["step"] = given.get("step", 0) + int(earlier[4:-1])
                    given_state(scenario, optimizer, f"{layer.name}.{role}", param, before)
            optimizer.step()
            result[f"{p}{layer.name}.new.{role}"] = _numpy(param)
            for key, value in optimizer.state[param].items():
                if key != "step" and value is not None:
                    result[f"{p}{layer.name}.state.{role}.{key}"] = _numpy(value)


def _inner_forward(layer, x, params, read) -> dict:
    """Each inner step of a layer that stages values, from the trace's values of what that
    step read (a pinned or rounded mean is what var and x̂ are computed from)."""
    name = layer.name
    if layer.type == "dropout":
        mask = read(f"{name}.mask")
        return {f"{name}.mask": np.asarray(layer.mask, dtype=float),
                f"{name}.out": _numpy(x * (mask * dropout_scale(layer)))}
    train = layer.type == "layernorm" or layer.train
    result = {}
    if train:
        result[f"{name}.mean"] = _numpy(norm_mean(layer, x))
        result[f"{name}.var"] = _numpy(norm_var(layer, x, read(f"{name}.mean")))
    else:
        result[f"{name}.mean"] = np.asarray(layer.running_mean, dtype=float)
        result[f"{name}.var"] = np.asarray(layer.running_var, dtype=float)
    mean, var = read(f"{name}.mean"), read(f"{name}.var")
    result[f"{name}.xhat"] = _numpy(norm_xhat(layer, x, mean, var))
    result[f"{name}.out"] = _numpy(norm_out(layer, read(f"{name}.xhat"), params["gamma"], params["beta"]))
    return result


def _inner_backward(layer, x, delta, params, read) -> dict:
    """The staged backward pass, each step by autograd through the forward step that made
    the value it differentiates by, from the trace's values (role or inner name -> array)."""
    torch, _ = _torch()
    name = layer.name

    def grad(fn, leaf, upstream, *args):
        leaf = leaf.detach().clone().requires_grad_()
        out = fn(leaf, *args)
        return torch.autograd.grad(out, leaf, grad_outputs=upstream)[0]

    if layer.type == "dropout":
        mask = read(f"{name}.mask")
        return {"in": _numpy(grad(lambda v: v * (mask * dropout_scale(layer)), x, delta))}
    gamma, beta = params["gamma"], params["beta"]
    mean, var, xhat = read(f"{name}.mean"), read(f"{name}.var"), read(f"{name}.xhat")
    result = {"gamma": _numpy(grad(lambda g: norm_out(layer, xhat, g, beta), gamma, delta)),
              "beta": _numpy(grad(lambda b: norm_out(layer, xhat, gamma, b), beta, delta)),
              "xhat.delta": _numpy(grad(lambda h: norm_out(layer, h, gamma, beta), xhat, delta))}
    dxhat = read(f"{name}.xhat.delta")
    from_xhat = grad(lambda v: norm_xhat(layer, v, mean, var), x, dxhat)
    if layer.type == "batchnorm" and not layer.train:
        result["in"] = _numpy(from_xhat)
        return result
    result["var.delta"] = _numpy(grad(lambda v: norm_xhat(layer, x, mean, v), var, dxhat))
    dvar = read(f"{name}.var.delta")
    result["mean.delta"] = _numpy(grad(lambda mu: norm_xhat(layer, x, mu, var), mean, dxhat)
                                  + grad(lambda mu: norm_var(layer, x, mu), mean, dvar))
    dmean = read(f"{name}.mean.delta")
    result["in"] = _numpy(from_xhat + grad(lambda v: norm_var(layer, v, mean), x, dvar)
                          + grad(lambda v: norm_mean(layer, v), x, dmean))
    return result


# --- comparing ---------------------------------------------------------------------------

def check(trace, expected: dict, *, use_computed: bool = False) -> int:
    """Assert every step of the trace agrees with `expected` (same names, same shapes,
    values within ATOL + RTOL·|expected|).  use_computed compares each step's own result
    before rounding and pinning.  Returns how many numbers were compared."""
    names = trace.names()
    assert len(names) == len(set(names)), f"a name is traced twice: {names}"
    assert set(names) == set(expected), (
        f"trace names differ from the oracle's: only in the trace {sorted(set(names) - set(expected))}, "
        f"only in the oracle {sorted(set(expected) - set(names))}")
    failures, compared = [], 0
    for step in trace.steps:
        got = step.computed if (use_computed and step.computed is not None) else step.values
        want = np.asarray(expected[step.name], dtype=float)
        if got.shape != want.shape:
            failures.append(f"{step.name}: shape {got.shape}, oracle {want.shape}")
            continue
        compared += got.size
        bad = ~np.isclose(got, want, rtol=RTOL, atol=ATOL)
        if bad.any():
            where = tuple(int(i) for i in np.argwhere(bad)[0])
            failures.append(f"{step.name}{list(where)}: engine {got[where]!r}, oracle {want[where]!r} "
                            f"({int(bad.sum())} of {got.size} elements differ)")
    assert not failures, "engine and oracle disagree:\n  " + "\n  ".join(failures)
    return compared


def check_pinned(scenario, trace) -> int:
    """Where `given` pinned a step the values are the given ones; where rounding acted they
    are the computed values rounded as the mode says (checked from the definition: a
    multiple of 10^-decimals, within one quantum (truncate, toward zero) or half a quantum
    (half_up / half_even) of the computed value).  Everywhere else values = computed."""
    compared = 0
    for step in trace.steps:
        values = step.values
        computed = step.computed if step.computed is not None else values
        mask = step.given if step.given is not None else np.zeros(values.shape, dtype=bool)
        patch = scenario.given.get(step.name)
        if patch is not None:
            assert np.array_equal(mask, patch.mask), step.name
            assert np.array_equal(values[mask], patch.values[mask]), step.name
        free = ~mask
        if step.rounded:
            quantum = 10.0 ** -scenario.rounding.decimals
            v, c = values[free], computed[free]
            steps_ = v / quantum
            assert np.allclose(steps_, np.round(steps_), rtol=0, atol=1e-6), f"{step.name} is not rounded"
            if scenario.rounding.mode == "truncate":
                assert np.all(np.abs(v) <= np.abs(c) + 1e-12) and np.all(np.abs(v - c) < quantum + 1e-12), step.name
            else:
                assert np.all(np.abs(v - c) <= quantum / 2 + 1e-12), step.name
        else:
            assert np.array_equal(values[free], computed[free]), f"{step.name} changed without a reason"
        compared += values.size
    return compared


def check_json(text: str, expected: dict, *, use_computed: bool = False) -> int:
    """`check` for a `run --format json` export: each step's `values` (length-1 axes
    dropped) are put back in its canonical `shape` and compared the same way."""
    import json

    steps = json.loads(text)["steps"]
    assert [s["name"] for s in steps] and {s["name"] for s in steps} == set(expected)
    failures, compared = [], 0
    for step in steps:
        shown = step["computed"] if use_computed and "computed" in step else step["values"]
        got = np.asarray(shown, dtype=float).reshape(step["shape"])
        want = np.asarray(expected[step["name"]], dtype=float)
        compared += got.size
        if got.shape != want.shape or not np.allclose(got, want, rtol=RTOL, atol=ATOL):
            failures.append(step["name"])
    assert not failures, f"the JSON export disagrees with the oracle at {failures}"
    return compared
