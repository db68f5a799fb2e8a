"""Property: on any small valid network, every traced value agrees with PyTorch autograd.

Hypothesis draws an architecture (input size, channels, batch; conv with kernel, stride,
padding, dilation, groups, with or without a bias; conv_transpose with stride, padding,
output_padding, dilation, groups; max/avg pools with stride, padding, dilation (max),
ceil_mode and count_include_pad (avg); upsample; activations; a global pool or flatten;
dense layers with or without a bias; smooth activations, batch norm (train and eval), layer
norm, dropout masks; loss or upstream; learning rate) and the numbers in it; the scenario is written as
YAML text, as a user would, and the whole trace is compared with the whole-network torch
oracle (tests/oracle.py) to 1e-9 absolute + 1e-9 relative.
"""
from __future__ import annotations

import json
import os

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import bptrace
import oracle

ACTIVATIONS = ("sigmoid", "tanh", "relu", "leaky_relu", "identity", "softmax")
# smooth element-wise functions, batch norm, layer norm and dropout are drawn in the same
# places as the activations, so that the chains stay as long (and as fast) as before
SMOOTH = ("exp", "square", "elu", "softplus", "silu", "gelu")
NORMS = ("batchnorm", "batchnorm", "layernorm", "dropout")


def norm_layer(draw, rng, shape, kind=None) -> str:
    """batch norm (train, or eval with running statistics), layer norm or dropout with a
    mask, for a map [N][C][H][W] or dense values [N][F]."""
    kind = kind or draw(st.sampled_from(NORMS))
    C = shape[1]
    if kind == "dropout":
        mask = json.dumps(rng.integers(0, 2, size=shape).tolist())
        return f"type: dropout, p: {draw(st.sampled_from([0.2, 0.5]))}, mask: {mask}"
    affine = shape[1:] if kind == "layernorm" else (C,)
    keys = f"type: {kind}, gamma: {numbers(rng, *affine)}, beta: {numbers(rng, *affine)}"
    # train mode needs two values or more per channel (PyTorch refuses one)
    if kind == "batchnorm" and (int(np.prod(shape)) // C == 1 or draw(st.sampled_from(["train", "train", "eval"]))
                                == "eval"):
        keys += f", mode: eval, running_mean: {numbers(rng, C)}, running_var: {numbers(rng, C, low=0.1, high=2.0)}"
    return keys


def element_wise(draw, rng, shape, lines=()) -> str:
    """An activation, a smooth function, or a norm, keeping the shape.  One exp per network:
    exp of a sum of exps overflows (a located error, not a disagreement)."""
    kind = draw(st.sampled_from(ACTIVATIONS + SMOOTH + NORMS))
    if kind == "exp" and any("type: exp" in line for line in lines):
        kind = "softplus"
    if kind == "softmax" and len(shape) == 4 and shape[1] == 1:
        # over one channel softmax is 1 everywhere: every sample alike, and a batch norm after
        # it divides torch's float noise of x − mean (bptrace's is 0, as on paper) by √eps
        kind = "identity"
    if kind in NORMS:
        return norm_layer(draw, rng, shape, kind)
    if kind == "elu":
        return f"type: elu, alpha: {draw(st.sampled_from([0.5, 1.0]))}"
    if kind == "leaky_relu":
        return f"type: leaky_relu, slope: {draw(st.sampled_from([0.01, 0.1, 0.3]))}"
    return f"type: {kind}"


def pool_size(n, k, s, p, d, ceil):
    """PyTorch's pooling_output_shape (written out here, not taken from bptrace)."""
    out = (n + 2 * p - d * (k - 1) - 1 + (s - 1 if ceil else 0)) // s + 1
    if ceil and (out - 1) * s >= n + p:
        out -= 1
    return out


def numbers(rng, *shape, low=-1.0, high=1.0):
    return json.dumps(np.round(rng.uniform(low, high, size=shape), 4).tolist())


@st.composite
def scenarios(draw):
    rng = np.random.default_rng(draw(st.integers(0, 2 ** 32 - 1)))
    N = draw(st.integers(1, 2))
    C = draw(st.integers(1, 3))
    H = draw(st.integers(1, 7))
    W = draw(st.integers(2, 7))
    lines = [f"conventions: {{kernel: {draw(st.sampled_from(['correlation', 'convolution']))}, "
             f"flatten: {draw(st.sampled_from(['row', 'column']))}}}",
             f"input: {numbers(rng, N, C, H, W)}", "layers:"]
    outputs = [(None, (N, C, H, W))]      # (layer name, its output shape), after the input

    def add(keys, shape=None):
        """Append a layer; shape: its output shape (default: the same as its input's)."""
        name = f"l{len(outputs)}"
        lines.append(f"  - {{name: {name}, {keys}}}")
        outputs.append((name, shape or outputs[-1][1]))

    for _ in range(draw(st.integers(0, 3))):
        N, C, H, W = outputs[-1][1]
        kind = draw(st.sampled_from(["conv", "conv", "conv_transpose", "maxpool", "avgpool", "upsample"]
                                    + list(ACTIVATIONS)))
        if kind == "conv":
            groups = draw(st.sampled_from([g for g in range(1, C + 1) if C % g == 0]))
            out = groups * draw(st.integers(1, 3 if groups == 1 else 2))
            ph, pw = draw(st.integers(0, 1)), draw(st.integers(0, 1))
            dh, dw = draw(st.integers(1, 2)), draw(st.integers(1, 2))
            kh = draw(st.integers(1, max(1, min(3, (H + 2 * ph - 1) // dh + 1))))
            kw = draw(st.integers(1, max(1, min(3, (W + 2 * pw - 1) // dw + 1))))
            sh, sw = draw(st.integers(1, 2)), draw(st.integers(1, 2))
            bias = "false" if draw(st.booleans()) and draw(st.booleans()) else numbers(rng, out)
            add(f"type: conv, kernel: {numbers(rng, out, C // groups, kh, kw)}, bias: {bias}, "
                f"stride: [{sh}, {sw}], padding: [{ph}, {pw}], dilation: [{dh}, {dw}], groups: {groups}",
                (N, out, (H + 2 * ph - dh * (kh - 1) - 1) // sh + 1, (W + 2 * pw - dw * (kw - 1) - 1) // sw + 1))
        elif kind == "conv_transpose":
            groups = draw(st.sampled_from([g for g in range(1, C + 1) if C % g == 0]))
            per_group = draw(st.integers(1, 2))
            kh, kw = draw(st.integers(1, 3)), draw(st.integers(1, 3))
            sh, sw = draw(st.integers(1, 2)), draw(st.integers(1, 2))
            dh, dw = draw(st.integers(1, 2)), draw(st.integers(1, 2))
            oph, opw = draw(st.integers(0, max(sh, dh) - 1)), draw(st.integers(0, max(sw, dw) - 1))
            sizes = []
            for n, k, st_, d, op in ((H, kh, sh, dh, oph), (W, kw, sw, dw, opw)):
                sizes.append((n - 1) * st_ + d * (k - 1) + op + 1)
            ph = draw(st.integers(0, min(1, (sizes[0] - 1) // 2)))
            pw = draw(st.integers(0, min(1, (sizes[1] - 1) // 2)))
            bias = "false" if draw(st.booleans()) else numbers(rng, per_group * groups)
            add(f"type: conv_transpose, kernel: {numbers(rng, C, per_group, kh, kw)}, bias: {bias}, "
                f"stride: [{sh}, {sw}], padding: [{ph}, {pw}], output_padding: [{oph}, {opw}], "
                f"dilation: [{dh}, {dw}], groups: {groups}",
                (N, per_group * groups, sizes[0] - 2 * ph, sizes[1] - 2 * pw))
        elif kind in ("maxpool", "avgpool"):
            kh, kw = draw(st.integers(1, min(3, H))), draw(st.integers(1, min(3, W)))
            sh, sw = draw(st.integers(1, kh)), draw(st.integers(1, kw))
            ph, pw = draw(st.integers(0, kh // 2)), draw(st.integers(0, kw // 2))
            ceil = draw(st.booleans())
            keys = f"type: {kind}, size: [{kh}, {kw}], stride: [{sh}, {sw}], padding: [{ph}, {pw}], " \
                   f"ceil_mode: {str(ceil).lower()}"
            dh = dw = 1
            if kind == "maxpool":
                dh, dw = draw(st.integers(1, 2)), draw(st.integers(1, 2))
                keys += f", dilation: [{dh}, {dw}]"
            else:
                keys += f", count_include_pad: {draw(st.sampled_from(['true', 'false']))}"
            size = (pool_size(H, kh, sh, ph, dh, ceil), pool_size(W, kw, sw, pw, dw, ceil))
            if min(size) < 1:
                continue
            add(keys, (N, C) + size)
        elif kind == "upsample":
            uh, uw = draw(st.integers(1, 2)), draw(st.integers(1, 2))
            if H * uh * W * uw > 64:
                continue
            add(f"type: upsample, scale: [{uh}, {uw}]", (N, C, H * uh, W * uw))
        else:
            add(element_wise(draw, rng, outputs[-1][1], lines))

    dense = draw(st.booleans())
    if dense:
        N, C, H, W = outputs[-1][1]
        collapse = draw(st.sampled_from(["flatten", "flatten", "global_avgpool", "global_maxpool"]))
        features = C * H * W if collapse == "flatten" else C
        add(f"type: {collapse}", (N, features))
        for _ in range(draw(st.integers(1, 2))):
            out = draw(st.integers(1, 4))
            bias = "false" if draw(st.booleans()) and draw(st.booleans()) else numbers(rng, out)
            add(f"type: dense, weights: {numbers(rng, out, features)}, bias: {bias}", (N, out))
            features = out
            if draw(st.booleans()):
                add(element_wise(draw, rng, outputs[-1][1], lines))
    sigmoid_last = len(outputs) == 1 or draw(st.booleans())
    if sigmoid_last:
        add("type: sigmoid")             # also makes bce possible below
    shape = outputs[-1][1]

    losses = ["half_sse", "sse", "mse", "upstream"]
    if dense and shape[1] >= 2:          # cross_entropy needs two class scores or more
        losses.append("cross_entropy")
    # exp and square can push the last sigmoid to exactly 1, where bce is refused (log 0)
    if sigmoid_last and not any("type: exp" in line or "type: square" in line for line in lines):
        losses.append("bce")
    loss = draw(st.sampled_from(losses))
    if loss == "upstream":
        name, at = draw(st.sampled_from(outputs[1:]))
        lines.append(f"upstream: {{layer: {name}, delta: {numbers(rng, *at)}}}")
    elif loss == "cross_entropy":
        if draw(st.booleans()):
            classes = rng.integers(0, shape[1], shape[0]).tolist()
            lines.append(f"loss: {{type: cross_entropy, target: {json.dumps(classes)}}}")
        else:
            probs = rng.dirichlet(np.ones(shape[1]), size=shape[0])
            lines.append(f"loss: {{type: cross_entropy, target: {json.dumps(probs.tolist())}}}")
    elif loss == "bce":
        lines.append(f"loss: {{type: bce, target: {numbers(rng, *shape, low=0.0, high=1.0)}}}")
    else:
        lines.append(f"loss: {{type: {loss}, target: {numbers(rng, *shape)}}}")
    if draw(st.booleans()):
        lines.append(f"learning_rate: {draw(st.sampled_from([0.01, 0.1, 0.5]))}")
    return "\n".join(lines) + "\n"


# the torch fixture only imports torch (or skips): nothing in it needs resetting per example
@settings(max_examples=int(os.environ.get("BPTRACE_CHAIN_EXAMPLES", 60)), deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(text=scenarios())
def test_random_networks_agree_with_torch(torch, text):
    scenario = bptrace.loads(text)
    oracle.check(bptrace.run(scenario), oracle.global_values(scenario))
