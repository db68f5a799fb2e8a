"""The PyTorch side of bench/bench.py: the same network, the same numbers, in float64.

    python bench/torch_baseline.py seed001      # scenarios/seed001.yaml
    python bench/torch_baseline.py zhang2016    # scenarios/zhang2016.yaml
    python bench/torch_baseline.py residual_bn  # bench/residual_bn.yaml

Computes what `bptrace run` computes (forward values, loss, every delta, every parameter
gradient, the error at the input, the SGD update) with autograd and prints each value on one
line, `name <tab> JSON list`, under bptrace's trace names, so that bench.py can also check
that both sides computed the same numbers.  The networks are written out here rather than
read from the scenario files, so that this script owes nothing to bptrace.
"""
from __future__ import annotations

import json
import sys

import numpy as np
import torch
import torch.nn.functional as F

torch.set_default_dtype(torch.float64)


def show(name, tensor):
    sys.stdout.write(f"{name}\t{json.dumps(tensor.detach().reshape(-1).tolist())}\n")


def tracked(tensor):
    """A non-leaf value whose gradient (its delta) we want to read after backward()."""
    tensor.retain_grad()
    return tensor


class PinnedSigmoid(torch.autograd.Function):
    """σ whose output is replaced by given values, and whose backward uses those given values,
    as bptrace does with `given: s1.out` (the asker's rounded 0.58, 0.57, 0.65, 0.55)."""

    @staticmethod
    def forward(ctx, z, given):
        ctx.save_for_backward(given)
        return given.clone()

    @staticmethod
    def backward(ctx, grad):
        (y,) = ctx.saved_tensors
        return grad * y * (1 - y), None


def seed001():
    x = torch.tensor([[0.51, 0.90, 0.88, 0.84, 0.05],
                      [0.40, 0.62, 0.22, 0.59, 0.10],
                      [0.11, 0.20, 0.74, 0.33, 0.14],
                      [0.47, 0.01, 0.85, 0.70, 0.09],
                      [0.76, 0.19, 0.72, 0.17, 0.57]]).reshape(1, 1, 5, 5).requires_grad_()
    kernel = torch.tensor([[-0.13, 0.15], [-0.55, 0.60]]).reshape(1, 1, 2, 2).requires_grad_()
    bias = torch.tensor([0.03], requires_grad=True)
    weights = torch.tensor([[0.61, 0.82, 0.96, -1.00], [0.02, -0.50, 0.23, 0.17]], requires_grad=True)
    h_bias = torch.zeros(2, requires_grad=True)
    given = torch.tensor([[0.58, 0.57], [0.65, 0.55]]).reshape(1, 1, 2, 2)
    upstream = torch.tensor([[0.25, -0.15]])

    c1 = tracked(F.conv2d(x, kernel, bias))
    p1 = tracked(F.max_pool2d(c1, 2))
    s1 = tracked(PinnedSigmoid.apply(p1, given))
    f = tracked(s1.reshape(1, -1))
    h = tracked(f @ weights.T + h_bias)
    h.backward(upstream)

    for name, value in [("input", x), ("c1.kernel", kernel), ("c1.bias", bias), ("c1.out", c1),
                        ("p1.out", p1), ("s1.out", s1), ("f.out", f), ("h.weights", weights),
                        ("h.bias", h_bias), ("h.out", h), ("h.delta", h.grad),
                        ("h.grad.weights", weights.grad), ("h.grad.bias", h_bias.grad),
                        ("f.delta", f.grad), ("s1.delta", s1.grad), ("p1.delta", p1.grad),
                        ("c1.delta", c1.grad), ("c1.grad.kernel", kernel.grad),
                        ("c1.grad.bias", bias.grad), ("input.delta", x.grad)]:
        show(name, value)


def _glorot(rng):
    """bptrace's `init: {scheme: glorot_uniform}`: tensors drawn in layer order from one
    generator, each within ±sqrt(6 / (fan_in + fan_out))."""
    def glorot(shape, fan_in, fan_out):
        bound = (6.0 / (fan_in + fan_out)) ** 0.5
        return torch.tensor(rng.uniform(-bound, bound, size=shape), requires_grad=True)
    return glorot


def zhang2016():
    # init: {scheme: glorot_uniform, seed: 0}: one generator, tensors drawn in layer order in
    # their [out][in][kh][kw] / [out][in] shapes, within ±sqrt(6 / (fan_in + fan_out)); biases zero
    glorot = _glorot(np.random.default_rng(0))

    k1 = glorot((6, 1, 5, 5), 1 * 25, 6 * 25)
    k2 = glorot((12, 6, 5, 5), 6 * 25, 12 * 25)
    W = glorot((10, 192), 192, 10)
    b1, b2, b = (torch.zeros(n, requires_grad=True) for n in (6, 12, 10))
    x = torch.tensor(np.random.default_rng(1).uniform(0.0, 1.0, size=(28, 28))).reshape(1, 1, 28, 28)
    x.requires_grad_()
    target = torch.zeros(1, 10)
    target[0, 2] = 1.0
    rate = 0.5

    # conventions.kernel: convolution — PyTorch correlates, so turn the kernels by 180°
    C1 = tracked(F.conv2d(x, k1.flip(-1, -2), b1))
    sig1 = tracked(torch.sigmoid(C1))
    S1 = tracked(F.avg_pool2d(sig1, 2))
    C2 = tracked(F.conv2d(S1, k2.flip(-1, -2), b2))
    sig2 = tracked(torch.sigmoid(C2))
    S2 = tracked(F.avg_pool2d(sig2, 2))
    # conventions.flatten: column — each 4x4 map scanned column by column, maps in order
    f = tracked(S2.transpose(-1, -2).reshape(1, -1))
    FC = tracked(f @ W.T + b)
    sig3 = tracked(torch.sigmoid(FC))
    loss = 0.5 * ((sig3 - target) ** 2).sum()
    loss.backward()

    with torch.no_grad():
        updates = [(f"{layer}.new.{role}", p - rate * p.grad)
                   for layer, role, p in [("C1", "kernel", k1), ("C1", "bias", b1), ("C2", "kernel", k2),
                                          ("C2", "bias", b2), ("FC", "weights", W), ("FC", "bias", b)]]
    for name, value in [("input", x), ("C1.kernel", k1), ("C1.bias", b1), ("C1.out", C1),
                        ("sig1.out", sig1), ("S1.out", S1), ("C2.kernel", k2), ("C2.bias", b2),
                        ("C2.out", C2), ("sig2.out", sig2), ("S2.out", S2), ("f.out", f),
                        ("FC.weights", W), ("FC.bias", b), ("FC.out", FC), ("sig3.out", sig3),
                        ("loss", loss), ("sig3.delta", sig3.grad), ("FC.delta", FC.grad),
                        ("FC.grad.weights", W.grad), ("FC.grad.bias", b.grad), ("f.delta", f.grad),
                        ("S2.delta", S2.grad), ("sig2.delta", sig2.grad), ("C2.delta", C2.grad),
                        ("C2.grad.kernel", k2.grad), ("C2.grad.bias", b2.grad), ("S1.delta", S1.grad),
                        ("sig1.delta", sig1.grad), ("C1.delta", C1.grad), ("C1.grad.kernel", k1.grad),
                        ("C1.grad.bias", b1.grad), ("input.delta", x.grad)] + updates:
        show(name, value)


def residual_bn():
    # bench/residual_bn.yaml: Zhang's network with a residual block of two convs, each followed
    # by batch norm in training mode (the batch's mean and biased variance per channel, eps
    # 1e-5, γ = 1, β = 0), the block's input added back before the relu; batch of two images
    glorot = _glorot(np.random.default_rng(0))

    k1 = glorot((6, 1, 5, 5), 1 * 25, 6 * 25)
    k2 = glorot((6, 6, 3, 3), 6 * 9, 6 * 9)
    k3 = glorot((12, 6, 5, 5), 6 * 25, 12 * 25)
    W = glorot((10, 192), 192, 10)
    b1, b2, b3, b = (torch.zeros(n, requires_grad=True) for n in (6, 6, 12, 10))
    g1, g2 = (torch.ones(6, requires_grad=True) for _ in range(2))
    be1, be2 = (torch.zeros(6, requires_grad=True) for _ in range(2))
    x = torch.tensor(np.random.default_rng(1).uniform(0.0, 1.0, size=(2, 1, 28, 28))).requires_grad_()
    target = torch.zeros(2, 10)
    target[0, 2] = target[1, 7] = 1.0
    rate = 0.5

    def batch_norm(z, gamma, beta):
        # written out, so that the batch statistics and x̂ are values with their own deltas
        mean = tracked(z.mean(dim=(0, 2, 3)))
        var = tracked(((z - mean.reshape(1, -1, 1, 1)) ** 2).mean(dim=(0, 2, 3)))
        xhat = tracked((z - mean.reshape(1, -1, 1, 1)) / torch.sqrt(var.reshape(1, -1, 1, 1) + 1e-5))
        return mean, var, xhat, tracked(gamma.reshape(1, -1, 1, 1) * xhat + beta.reshape(1, -1, 1, 1))

    C1 = tracked(F.conv2d(x, k1, b1))
    m1, v1, xh1, bn1 = batch_norm(C1, g1, be1)
    r1 = tracked(torch.relu(bn1))
    C2 = tracked(F.conv2d(r1, k2, b2, padding=1))
    m2, v2, xh2, bn2 = batch_norm(C2, g2, be2)
    skip = tracked(bn2 + r1)
    r2 = tracked(torch.relu(skip))
    S1 = tracked(F.avg_pool2d(r2, 2))
    C3 = tracked(F.conv2d(S1, k3, b3))
    sig2 = tracked(torch.sigmoid(C3))
    S2 = tracked(F.avg_pool2d(sig2, 2))
    f = tracked(S2.reshape(2, -1))
    FC = tracked(f @ W.T + b)
    sig3 = tracked(torch.sigmoid(FC))
    loss = 0.5 * ((sig3 - target) ** 2).sum()
    loss.backward()

    params = [("C1", "kernel", k1), ("C1", "bias", b1), ("bn1", "gamma", g1), ("bn1", "beta", be1),
              ("C2", "kernel", k2), ("C2", "bias", b2), ("bn2", "gamma", g2), ("bn2", "beta", be2),
              ("C3", "kernel", k3), ("C3", "bias", b3), ("FC", "weights", W), ("FC", "bias", b)]
    with torch.no_grad():
        updates = [(f"{layer}.new.{role}", p - rate * p.grad) for layer, role, p in params]
    values = [("input", x)] + [(f"{layer}.{role}", p) for layer, role, p in params]
    values += [("C1.out", C1), ("bn1.mean", m1), ("bn1.var", v1), ("bn1.xhat", xh1), ("bn1.out", bn1),
               ("r1.out", r1), ("C2.out", C2), ("bn2.mean", m2), ("bn2.var", v2), ("bn2.xhat", xh2),
               ("bn2.out", bn2), ("skip.out", skip), ("r2.out", r2), ("S1.out", S1), ("C3.out", C3),
               ("sig2.out", sig2), ("S2.out", S2), ("f.out", f), ("FC.out", FC), ("sig3.out", sig3),
               ("loss", loss)]
    values += [(f"{name}.delta", t.grad) for name, t in
               [("sig3", sig3), ("FC", FC), ("f", f), ("S2", S2), ("sig2", sig2), ("C3", C3), ("S1", S1),
                ("r2", r2), ("skip", skip), ("bn2", bn2), ("bn2.xhat", xh2), ("bn2.var", v2), ("bn2.mean", m2),
                ("C2", C2), ("r1", r1), ("bn1", bn1), ("bn1.xhat", xh1), ("bn1.var", v1), ("bn1.mean", m1),
                ("C1", C1), ("input", x)]]
    values += [(f"{layer}.grad.{role}", p.grad) for layer, role, p in params]
    for name, value in values + updates:
        show(name, value)


NETWORKS = {"seed001": seed001, "zhang2016": zhang2016, "residual_bn": residual_bn}

if __name__ == "__main__":
    if len(sys.argv) != 2 or sys.argv[1] not in NETWORKS:
        sys.exit(f"usage: python {sys.argv[0]} {'|'.join(NETWORKS)}")
    NETWORKS[sys.argv[1]]()
