"""Independent models of the catalog's mistakes, to plant them in answer sheets.

Each sheet comes from the network built in PyTorch (float64) from the numbers below, never
from bptrace: torch.nn.functional for the forward pass and autograd for the chain, with
the one mistaken piece written as a custom `torch.autograd.Function` whose backward does
what the student did (a kernel gradient turned by 180°, a max-pool error put in the
window's corner, a sigmoid slope left out...), or as a mistaken loss gradient or update.
What a sheet holds is what such a student hands in: the answers to the usual questions,
rounded half-up to 6 decimals.

`conv_scenario` / `mlp_scenario` write the same networks as bptrace scenarios, from the
same numbers.
"""
from __future__ import annotations

from decimal import ROUND_HALF_UP, Decimal
from functools import lru_cache
from types import SimpleNamespace

import numpy as np

# seed 001's numbers (BRIEF section 4)
INPUT = [[0.51, 0.90, 0.88, 0.84, 0.05],
         [0.40, 0.62, 0.22, 0.59, 0.10],
         [0.11, 0.20, 0.74, 0.33, 0.14],
         [0.47, 0.01, 0.85, 0.70, 0.09],
         [0.76, 0.19, 0.72, 0.17, 0.57]]
SECOND_INPUT = [[0.12, 0.35, 0.66, 0.08, 0.91],
                [0.27, 0.73, 0.44, 0.15, 0.38],
                [0.81, 0.02, 0.59, 0.97, 0.21],
                [0.33, 0.64, 0.18, 0.46, 0.70],
                [0.05, 0.88, 0.29, 0.53, 0.14]]
KERNEL = [[-0.13, 0.15], [-0.55, 0.60]]
BIAS = 0.03
WEIGHTS = [[0.61, 0.82, 0.96, -1.00], [0.02, -0.50, 0.23, 0.17]]
DENSE_BIAS = [0.0, 0.0]
UPSTREAM = [0.25, -0.15]
TARGETS = [[1.0, 0.0], [0.0, 1.0]]
LEARNING_RATE = 0.1

MLP_INPUT = [[0.5, -0.2, 0.1], [-0.3, 0.8, 0.4]]
MLP_W1 = [[0.2, -0.4, 0.1], [0.7, 0.3, -0.5], [-0.6, 0.2, 0.4], [0.1, 0.5, 0.3]]
MLP_B1 = [0.05, -0.1, 0.0, 0.2]
MLP_W2 = [[0.3, -0.2, 0.6, 0.1], [-0.5, 0.4, 0.2, 0.7], [0.2, 0.1, -0.3, -0.4]]
MLP_B2 = [0.0, 0.1, -0.1]
MLP_CLASSES = [0, 2]

DECIMALS = 6


def _torch():
    import torch
    import torch.nn.functional as F
    return torch, F


def written(value: float, decimals: int = DECIMALS) -> str:
    """A number as a student writes it: rounded half-up to `decimals`."""
    text = Decimal(repr(float(value))).quantize(Decimal(1).scaleb(-decimals), rounding=ROUND_HALF_UP)
    return str(text.normalize()) if text != 0 else "0"


def yaml_values(values) -> str:
    values = np.asarray(values, dtype=float)
    if values.ndim == 0:
        return written(values)
    return "[" + ", ".join(yaml_values(v) for v in values) + "]"


def expected_block(sheet: dict) -> str:
    lines = ["expected:"]
    for name, values in sheet.items():
        lines.append(f"  {name}: {yaml_values(values)}")
    return "\n".join(lines) + "\n"


# --- the conv network ---------------------------------------------------------------------

def conv_scenario(*, pool="max", start="upstream", batch=1, learning_rate=None, kernel="correlation") -> str:
    inputs = [INPUT, SECOND_INPUT][:batch]
    text = f"""name: planted conv net
conventions: {{kernel: {kernel}}}
input: {[[x] for x in inputs] if batch > 1 else INPUT}
layers:
  - {{type: conv, name: c1, kernel: {KERNEL}, bias: {BIAS}}}
  - {{type: {pool}pool, name: p1, size: 2}}
  - {{type: sigmoid, name: s1}}
  - {{type: flatten, name: f}}
  - {{type: dense, name: h, weights: {WEIGHTS}, bias: {DENSE_BIAS}}}
"""
    if start == "upstream":
        delta = [UPSTREAM] * batch if batch > 1 else UPSTREAM
        text += f"upstream: {{layer: h, delta: {delta}}}\n"
    else:
        text += f"loss: {{type: {start}, target: {TARGETS[:batch] if batch > 1 else TARGETS[0]}}}\n"
    if learning_rate is not None:
        text += f"learning_rate: {learning_rate}\n"
    return text


def conv_sheet(mistake: str | None = None, *, pool="max", start="upstream", batch=1, learning_rate=None,
               kernel="correlation") -> dict:
    """The answers of a student who made `mistake` (None: a correct sheet).  `kernel` is the
    scenario's convention; the student computes a correlation unless the mistake says
    otherwise (for kernel-not-flipped/forward, the student ignores `kernel: convolution`)."""
    torch, F = _torch()
    t = lambda v: torch.tensor(v, dtype=torch.float64)   # noqa: E731
    x = t([INPUT, SECOND_INPUT][:batch]).reshape(batch, 1, 5, 5).requires_grad_()
    k = t(KERNEL).reshape(1, 1, 2, 2).requires_grad_()
    b = t([BIAS]).requires_grad_()
    w = t(WEIGHTS).requires_grad_()
    hb = t(DENSE_BIAS).requires_grad_()

    fn = _functions()
    # under `kernel: convolution` the forward pass slides the kernel turned; the turn is part
    # of the graph, so k.grad comes back in the kernel's own orientation
    turned = kernel == "convolution" and mistake != "kernel-not-flipped/forward"
    z = fn.Conv.apply(x, k.flip(-1, -2) if turned else k, b, mistake)
    z.retain_grad()
    p = (fn.MaxPool if pool == "max" else fn.AvgPool).apply(z, mistake)
    p.retain_grad()
    s = fn.Sigmoid.apply(p, mistake)
    s.retain_grad()
    f = fn.Flatten.apply(s, mistake)
    f.retain_grad()
    h = F.linear(f, w, hb)
    h.retain_grad()
    sheet = {}
    if start == "upstream":
        h.backward(t([UPSTREAM] * batch))
    else:
        loss = fn.HalfSSE.apply(h, t(TARGETS[:batch]), mistake)
        loss.backward()
        sheet["loss"] = loss.detach()
        sheet["h.delta"] = h.grad
    sheet.update({
        "f.delta": f.grad, "s1.delta": s.grad, "p1.delta": p.grad, "c1.delta": z.grad,
        "c1.grad.kernel": k.grad, "c1.grad.bias": b.grad, "input.delta": x.grad,
        "h.grad.weights": w.grad, "h.grad.bias": hb.grad,
    })
    if mistake == "batch-averaged-not-summed/parameters":
        for name in ("c1.grad.kernel", "c1.grad.bias", "h.grad.weights", "h.grad.bias"):
            sheet[name] = sheet[name] / batch
    if learning_rate is not None:
        sign = 1.0 if mistake == "update-sign" else -1.0
        for name, old in (("c1.new.kernel", k), ("c1.new.bias", b), ("h.new.weights", w), ("h.new.bias", hb)):
            sheet[name] = old.detach() + sign * learning_rate * sheet[name.replace(".new.", ".grad.")]
    # slips: the right numbers, written wrongly
    if mistake == "sign-flipped":
        sheet["c1.grad.kernel"] = -k.grad
    if mistake == "transposed":
        sheet["c1.grad.kernel"] = k.grad.reshape(2, 2).T
    if mistake == "transposed/shape":
        sheet["h.grad.weights"] = w.grad.T
    if mistake == "learning-rate-in-gradient":
        sheet["h.grad.weights"] = learning_rate * w.grad
    if mistake == "update-is-gradient":
        sheet["h.new.weights"] = w.grad
    if mistake == "input-delta-valid-not-full/shape":
        sheet["input.delta"] = F.conv2d(z.grad, k.detach().flip(-1, -2))   # the 'valid' 4×4 ⋆ 2×2 = 3×3
    return {name: np.squeeze(value.detach().numpy()) for name, value in sheet.items()}


@lru_cache(maxsize=None)
def _functions():
    """The mistaken pieces as autograd Functions (made on first use: the module imports
    without torch)."""
    torch, F = _torch()

    class Conv(torch.autograd.Function):
        @staticmethod
        def forward(ctx, x, k, b, mistake):
            ctx.save_for_backward(x, k)
            ctx.mistake = mistake
            return F.conv2d(x, k, b)

        @staticmethod
        def backward(ctx, g):
            x, k = ctx.saved_tensors
            mistake = ctx.mistake
            gx = torch.nn.grad.conv2d_input(x.shape, k, g)
            gk = torch.nn.grad.conv2d_weight(x, k.shape, g)
            gb = g.sum(dim=(0, 2, 3))
            if mistake == "kernel-not-flipped":
                gk = gk.flip(-1, -2)
            if mistake == "kernel-not-flipped/delta":
                gk = torch.nn.grad.conv2d_weight(x, k.shape, g.flip(-1, -2))
            if mistake == "input-delta-kernel-not-rotated":
                gx = torch.nn.grad.conv2d_input(x.shape, k.flip(-1, -2), g)
            if mistake == "input-delta-valid-not-full":
                kh, kw = k.shape[-2:]
                valid = F.conv2d(g, k.flip(-1, -2).transpose(0, 1))
                gx = torch.zeros_like(x)
                gx[..., kh - 1:kh - 1 + valid.shape[-2], kw - 1:kw - 1 + valid.shape[-1]] = valid
            if mistake == "bias-gradient-not-summed":
                gb = g.mean(dim=(0, 2, 3))
            return gx, gk, gb, None

    class MaxPool(torch.autograd.Function):
        @staticmethod
        def forward(ctx, z, mistake):
            out, where = F.max_pool2d(z, 2, return_indices=True)
            ctx.save_for_backward(where)
            ctx.shape, ctx.mistake = z.shape, mistake
            return out

        @staticmethod
        def backward(ctx, g):
            (where,) = ctx.saved_tensors
            if ctx.mistake == "maxpool-routed-everywhere":
                return g.repeat_interleave(2, -1).repeat_interleave(2, -2), None
            if ctx.mistake == "maxpool-wrong-position":
                gz = torch.zeros(ctx.shape, dtype=g.dtype)
                gz[..., ::2, ::2] = g          # every window's top-left cell
                return gz, None
            return F.max_unpool2d(g, where, 2, output_size=ctx.shape[-2:]), None

    class AvgPool(torch.autograd.Function):
        @staticmethod
        def forward(ctx, z, mistake):
            ctx.mistake = mistake
            return F.avg_pool2d(z, 2)

        @staticmethod
        def backward(ctx, g):
            spread = g.repeat_interleave(2, -1).repeat_interleave(2, -2)
            return (spread if ctx.mistake == "avgpool-scale-missing" else spread / 4), None

    class Sigmoid(torch.autograd.Function):
        @staticmethod
        def forward(ctx, z, mistake):
            s = torch.sigmoid(z)
            ctx.save_for_backward(z, s)
            ctx.mistake = mistake
            return s

        @staticmethod
        def backward(ctx, g):
            z, s = ctx.saved_tensors
            if ctx.mistake == "activation-derivative-missing":
                return g, None
            if ctx.mistake == "activation-derivative-wrong-argument":
                return g * z * (1 - z), None
            return g * s * (1 - s), None

    class Flatten(torch.autograd.Function):
        @staticmethod
        def forward(ctx, s, mistake):
            ctx.shape, ctx.mistake = s.shape, mistake
            return s.reshape(s.shape[0], -1)

        @staticmethod
        def backward(ctx, g):
            n, c, height, width = ctx.shape
            if ctx.mistake == "flatten-order-swapped":
                # laid back column by column: flat position c·H·W + j·H + i
                return g.reshape(n, c, width, height).transpose(-1, -2), None
            return g.reshape(ctx.shape), None

    class HalfSSE(torch.autograd.Function):
        @staticmethod
        def forward(ctx, y, target, mistake):
            ctx.save_for_backward(y, target)
            ctx.mistake = mistake
            return 0.5 * ((y - target) ** 2).sum()

        @staticmethod
        def backward(ctx, g):
            y, target = ctx.saved_tensors
            gradient = {
                "loss-gradient-sign": target - y,
                "loss-factor-two": 2 * (y - target),
                "batch-averaged-not-summed": (y - target) / y.shape[0],
            }.get(ctx.mistake, y - target)
            return g * gradient, None, None

    class CrossEntropy(torch.autograd.Function):
        @staticmethod
        def forward(ctx, y, classes, mistake):
            ctx.save_for_backward(y, classes)
            ctx.mistake = mistake
            return F.cross_entropy(y, classes)

        @staticmethod
        def backward(ctx, g):
            y, classes = ctx.saved_tensors
            gradient = torch.softmax(y, dim=1) - F.one_hot(classes, y.shape[1]).to(y.dtype)
            if ctx.mistake != "batch-summed-not-averaged":
                gradient = gradient / y.shape[0]
            return g * gradient, None, None

    return SimpleNamespace(Conv=Conv, MaxPool=MaxPool, AvgPool=AvgPool, Sigmoid=Sigmoid, Flatten=Flatten,
                           HalfSSE=HalfSSE, CrossEntropy=CrossEntropy)


# --- the transposed conv network -----------------------------------------------------------

TCONV_INPUT = [[0.31, -0.42, 0.57], [0.12, 0.88, -0.25], [-0.63, 0.05, 0.74]]
TCONV_KERNEL = [[0.21, -0.47], [0.66, 0.18]]
TCONV_BIAS = 0.05
TCONV_WEIGHTS = [[0.12, -0.31, 0.45, 0.08, -0.27, 0.63, -0.14, 0.39, 0.22, -0.56, 0.17, 0.34, -0.41, 0.09, 0.58, -0.19],
                 [-0.23, 0.44, 0.11, -0.37, 0.52, -0.06, 0.29, -0.48, 0.35, 0.13, -0.62, 0.27, 0.04, -0.33, 0.16, 0.47]]


def tconv_scenario() -> str:
    return f"""name: planted transposed conv net
input: {TCONV_INPUT}
layers:
  - {{type: conv_transpose, name: t1, kernel: {TCONV_KERNEL}, bias: {TCONV_BIAS}}}
  - {{type: sigmoid, name: s1}}
  - {{type: flatten, name: f}}
  - {{type: dense, name: h, weights: {TCONV_WEIGHTS}}}
upstream: {{layer: h, delta: {UPSTREAM}}}
"""


def tconv_sheet(mistake: str | None = None) -> dict:
    """A student's answers for `tconv_scenario`, the transposed conv's backward written out
    from its definition (the input delta a strided conv of the delta with the kernel, the
    kernel gradient the input correlated with the delta), with the mistake made."""
    torch, F = _torch()
    t = lambda v: torch.tensor(v, dtype=torch.float64)   # noqa: E731
    x = t(TCONV_INPUT).reshape(1, 1, 3, 3).requires_grad_()
    k = t(TCONV_KERNEL).reshape(1, 1, 2, 2).requires_grad_()
    b = t([TCONV_BIAS]).requires_grad_()
    w = t(TCONV_WEIGHTS).requires_grad_()

    class ConvTranspose(torch.autograd.Function):
        @staticmethod
        def forward(ctx, x, k, b):
            ctx.save_for_backward(x, k)
            return F.conv_transpose2d(x, k, b)

        @staticmethod
        def backward(ctx, g):
            x, k = ctx.saved_tensors
            gx = F.conv2d(g, k.flip(-1, -2) if mistake == "conv-transpose-as-conv" else k)
            gk = torch.nn.grad.conv2d_weight(g, k.shape, x)
            if mistake == "conv-transpose-as-conv/kernel":
                gk = gk.flip(-1, -2)
            return gx, gk, g.sum(dim=(0, 2, 3))

    z = ConvTranspose.apply(x, k, b)
    z.retain_grad()
    s = torch.sigmoid(z)
    s.retain_grad()
    f = s.reshape(1, -1)
    f.retain_grad()
    h = F.linear(f, w)
    h.backward(t([UPSTREAM]))
    sheet = {"f.delta": f.grad, "s1.delta": s.grad, "t1.delta": z.grad, "t1.grad.kernel": k.grad,
             "t1.grad.bias": b.grad, "input.delta": x.grad, "h.grad.weights": w.grad}
    return {name: np.squeeze(value.detach().numpy()) for name, value in sheet.items()}


# --- the MLP with cross-entropy -----------------------------------------------------------

def mlp_scenario() -> str:
    return f"""name: planted mlp
input: {MLP_INPUT}
layers:
  - {{type: dense, name: h1, weights: {MLP_W1}, bias: {MLP_B1}}}
  - {{type: tanh, name: t1}}
  - {{type: dense, name: h2, weights: {MLP_W2}, bias: {MLP_B2}}}
loss: {{type: cross_entropy, target: {MLP_CLASSES}}}
"""


def mlp_sheet(mistake: str | None = None) -> dict:
    torch, F = _torch()
    t = lambda v: torch.tensor(v, dtype=torch.float64)   # noqa: E731
    x = t(MLP_INPUT).requires_grad_()
    w1, b1, w2, b2 = (t(v).requires_grad_() for v in (MLP_W1, MLP_B1, MLP_W2, MLP_B2))
    a = F.linear(x, w1, b1)
    a.retain_grad()
    u = torch.tanh(a)
    u.retain_grad()
    y = F.linear(u, w2, b2)
    y.retain_grad()
    loss = _functions().CrossEntropy.apply(y, torch.tensor(MLP_CLASSES), mistake)
    loss.backward()
    sheet = {"loss": loss, "h2.delta": y.grad, "h2.grad.weights": w2.grad, "h2.grad.bias": b2.grad,
             "t1.delta": u.grad, "h1.delta": a.grad, "h1.grad.weights": w1.grad, "h1.grad.bias": b1.grad}
    return {name: np.squeeze(value.detach().numpy()) for name, value in sheet.items()}


# --- batch norm and dropout ---------------------------------------------------------------
# dense → batch norm (train) → tanh → dropout (a written mask) → dense, ½ squared error over
# a batch of three: torch's own batch_norm and autograd for the clean pieces, the student's
# batch-norm and dropout backward as autograd Functions.

NORM_INPUT = [[0.5, -0.2, 0.1], [-0.3, 0.8, 0.4], [0.9, 0.3, -0.6]]
NORM_W1 = [[0.2, -0.4, 0.1], [0.7, 0.3, -0.5]]
NORM_B1 = [0.05, -0.1]
NORM_GAMMA = [1.5, -0.8]
NORM_BETA = [0.1, 0.2]
NORM_EPS = 1e-5
NORM_P = 0.4
NORM_MASK = [[1, 0], [1, 1], [0, 1]]
NORM_W2 = [[0.3, -0.2], [-0.5, 0.4]]
NORM_B2 = [0.0, 0.1]
NORM_TARGETS = [[1.0, 0.0], [0.0, 1.0], [0.5, 0.5]]


def norm_scenario() -> str:
    return f"""name: planted batch norm and dropout
input: {NORM_INPUT}
layers:
  - {{type: dense, name: h1, weights: {NORM_W1}, bias: {NORM_B1}}}
  - {{type: batchnorm, name: bn, gamma: {NORM_GAMMA}, beta: {NORM_BETA}, eps: {NORM_EPS}}}
  - {{type: tanh, name: t}}
  - {{type: dropout, name: d, p: {NORM_P}, mask: {NORM_MASK}}}
  - {{type: dense, name: h2, weights: {NORM_W2}, bias: {NORM_B2}}}
loss: {{type: half_sse, target: {NORM_TARGETS}}}
"""


def norm_sheet(mistake: str | None = None) -> dict:
    torch, F = _torch()
    t = lambda v: torch.tensor(v, dtype=torch.float64)   # noqa: E731
    x = t(NORM_INPUT).requires_grad_()
    w1, b1, gamma, beta, w2, b2 = (t(v).requires_grad_() for v in (NORM_W1, NORM_B1, NORM_GAMMA, NORM_BETA,
                                                                     NORM_W2, NORM_B2))
    fn = _norm_functions()
    a = F.linear(x, w1, b1)
    a.retain_grad()
    z = fn.BatchNorm.apply(a, gamma, beta, mistake)
    z.retain_grad()
    u = torch.tanh(z)
    u.retain_grad()
    v = fn.Dropout.apply(u, t(NORM_MASK), mistake)
    v.retain_grad()
    y = F.linear(v, w2, b2)
    y.retain_grad()
    loss = 0.5 * ((y - t(NORM_TARGETS)) ** 2).sum()
    loss.backward()
    sheet = {"loss": loss, "h2.delta": y.grad, "h2.grad.weights": w2.grad, "h2.grad.bias": b2.grad,
             "d.delta": v.grad, "t.delta": u.grad, "bn.delta": z.grad, "bn.grad.gamma": gamma.grad,
             "bn.grad.beta": beta.grad, "h1.delta": a.grad, "h1.grad.weights": w1.grad, "h1.grad.bias": b1.grad,
             "input.delta": x.grad}
    return {name: np.squeeze(value.detach().numpy()) for name, value in sheet.items()}


@lru_cache(maxsize=None)
def _norm_functions():
    torch, F = _torch()

    class BatchNorm(torch.autograd.Function):
        @staticmethod
        def forward(ctx, a, gamma, beta, mistake):
            ctx.save_for_backward(a, gamma, beta)
            ctx.mistake = mistake
            return F.batch_norm(a, None, None, gamma, beta, training=True, eps=NORM_EPS)

        @staticmethod
        def backward(ctx, g):
            a, gamma, beta = ctx.saved_tensors
            with torch.enable_grad():
                inputs = [v.detach().requires_grad_() for v in (a, gamma, beta)]
                out = F.batch_norm(inputs[0], None, None, inputs[1], inputs[2], training=True, eps=NORM_EPS)
                ga, ggamma, gbeta = torch.autograd.grad(out, inputs, g)
            if ctx.mistake == "batchnorm-statistics-constant":
                # the batch's variance (biased, as in training), used as if given
                var = a.var(dim=0, unbiased=False)
                ga = gamma * g / torch.sqrt(var + NORM_EPS)
            return ga, ggamma, gbeta, None

    class Dropout(torch.autograd.Function):
        @staticmethod
        def forward(ctx, u, mask, mistake):
            ctx.save_for_backward(mask)
            ctx.mistake = mistake
            return u * mask / (1 - NORM_P)

        @staticmethod
        def backward(ctx, g):
            (mask,) = ctx.saved_tensors
            if ctx.mistake == "dropout-mask-missing":
                return g / (1 - NORM_P), None, None
            if ctx.mistake == "dropout-scale-missing":
                return g * mask, None, None
            return g * mask / (1 - NORM_P), None, None

    return SimpleNamespace(BatchNorm=BatchNorm, Dropout=Dropout)
