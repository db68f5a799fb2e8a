"""The losses, each as its value and its gradient at the last layer's output, in
scalar loops like the layers, and a bound on the float noise of each (`value_noise`,
`gradient_noise`, as layers.noise_bound).  `LOSSES` maps `loss.type` to the class."""
from __future__ import annotations

import math

import numpy as np

from . import notation as nt
from .errors import ScenarioError
from .layers import EPS, noise_bound
from .numbers import FLOAT
from .tensors import display_index


def _cells(shape):
    return [tuple(int(i) for i in idx) for idx in np.ndindex(*shape)]


# --- the rules' pieces (bptrace.notation) ---------------------------------------------------
TARGET, TARGET_NK = nt.Ref("target"), nt.Ref("target", ("n", "k"))
ELEMENTS = nt.eq(nt.sym("M"), "number of elements")
SAMPLES = nt.eq(nt.sym("N"), "samples in the batch")


def _share(count: str):
    """(1/M)."""
    return nt.Paren(nt.Frac(nt.sym(1), nt.sym(count)))


def _squared(out):
    """(out − target)²."""
    return nt.Power(nt.Paren(nt.sub(out, TARGET)), "2")


def _softmax_k(out):
    """softmax(out[n])[k]."""
    return nt.seq(nt.func("softmax", nt.Ref(out.name, ("n",))), nt.sym("[k]"))


class Loss:
    # labels of recorded factors that are values of the output, named after it in the trace
    labels: tuple = ()
    needs_target = True       # sum and mean read the output alone
    num = FLOAT               # the number system of the scenario's `arithmetic:` (numbers.py)

    def value_noise(self, out, target, noise) -> float:
        raise NotImplementedError

    def gradient_noise(self, out, target, noise) -> np.ndarray:
        raise NotImplementedError

    def roles(self, out_name: str) -> dict:
        return {label: label.replace("out", out_name) for label in self.labels}


class HalfSSE(Loss):
    """L = ½ Σ (ŷ − y)² over every element and sample (Zhang 2016 eq. 13); δ = ŷ − y (eq. 17)."""
    type = "half_sse"
    labels = ("out − target",)
    @staticmethod
    def value_rule(loss, out):
        return nt.eq(loss, nt.juxt(nt.sym("½"), nt.Sum((), _squared(out)), space=" "))

    @staticmethod
    def delta_rule(delta, out):
        return nt.eq(delta, nt.sub(out, TARGET))
    scale = 0.5

    def count(self, shape):
        return 1

    def value(self, out, target, rec):
        total = 0
        weight = self.num.of(self.scale) / self.count(out.shape)
        for idx in _cells(out.shape):
            diff = out[idx] - target[idx]
            total += weight * diff * diff
            if rec:
                label = self.label(out.shape)
                scale = [(label, None, weight)] if label else []
                rec.term((), *scale, ("out − target", idx, diff), ("out − target", idx, diff))
        return total

    def label(self, shape):
        return "½"

    def _diff_noise(self, out, target, noise):
        # the target is written: only its conversion to binary, and the subtraction's rounding
        return np.abs(out - target), noise + EPS * (np.abs(out) + np.abs(target))

    def value_noise(self, out, target, noise):
        diff, e = self._diff_noise(out, target, noise)
        weight = self.scale / self.count(out.shape)
        return noise_bound(weight * float(((diff + e) ** 2).sum()), weight * float((diff ** 2).sum()), out.size)

    def gradient_noise(self, out, target, noise):
        diff, e = self._diff_noise(out, target, noise)
        factor = 2 * self.scale / self.count(out.shape)
        return noise_bound(factor * (diff + e), factor * diff, 1)

    def gradient(self, out, target, rec):
        delta = self.num.zeros(out.shape)
        factor = 2 * self.num.of(self.scale) / self.count(out.shape)
        for idx in _cells(out.shape):
            delta[idx] = factor * (out[idx] - target[idx])
            if rec:
                factors = [] if factor == 1 else [(f"{float(factor):g}", None, factor)]
                rec.term(idx, *factors, ("out − target", idx, out[idx] - target[idx]))
        return delta


class SSE(HalfSSE):
    """L = Σ (ŷ − y)²; δ = 2(ŷ − y)."""
    type = "sse"
    @staticmethod
    def value_rule(loss, out):
        return nt.eq(loss, nt.Sum((), _squared(out)))

    @staticmethod
    def delta_rule(delta, out):
        return nt.eq(delta, nt.prod(2, nt.Paren(nt.sub(out, TARGET))))
    scale = 1.0

    def label(self, shape):
        return None


class MSE(HalfSSE):
    """L = (1/M) Σ (ŷ − y)² over all M elements (PyTorch MSELoss); δ = 2(ŷ − y)/M."""
    type = "mse"
    @staticmethod
    def value_rule(loss, out):
        return nt.eq(loss, nt.seq(nt.juxt(_share("M"), nt.Sum((), _squared(out)), space=" "), ",  ", ELEMENTS))

    @staticmethod
    def delta_rule(delta, out):
        return nt.eq(delta, nt.seq(nt.Frac(nt.prod(2, nt.Paren(nt.sub(out, TARGET))), nt.sym("M"), spaced=True),
                                   ",  ", ELEMENTS))
    scale = 1.0

    def count(self, shape):
        return int(np.prod(shape))

    def label(self, shape):
        return f"1/{self.count(shape)}"


class CrossEntropy(Loss):
    """Softmax and negative log-likelihood on logits, mean over the batch (PyTorch
    CrossEntropyLoss): L = (1/N) Σ_n Σ_k −y[n,k] · log softmax(ŷ[n])[k];
    δ[n,k] = (softmax(ŷ[n])[k] · Σ_j y[n,j] − y[n,k]) / N."""
    type = "cross_entropy"
    labels = ("log softmax(out)", "softmax(out)")
    @staticmethod
    def value_rule(loss, out):
        log_p = nt.seq(nt.Word("log"), nt.sym(" "), _softmax_k(out))
        return nt.eq(loss, nt.seq(nt.juxt(_share("N"), nt.Sum(("n", "k"), nt.prod(nt.seq(nt.sym("−"), TARGET_NK), log_p)),
                                          space=" "), ",  ", SAMPLES))

    @staticmethod
    def delta_rule(delta, out):
        return nt.eq(nt.Ref(delta.name, ("n", "k")),
                     nt.seq(nt.Frac(nt.Paren(nt.sub(_softmax_k(out), TARGET_NK)), nt.sym("N"), spaced=True),
                            ",  ", SAMPLES))

    def _log_softmax(self, row):
        # (z − max) − log Σ exp(z − max): max + log Σ … would lose the log to the max's
        # rounding (at logits 1e17 the loss of [1e17, 1e17] would come out 0, not log 2)
        top = self.num.softmax_shift(row)
        shifted = [z - top for z in row]
        log_total = self.num.log(sum(self.num.exp(s) for s in shifted))
        return [s - log_total for s in shifted]

    def value(self, out, target, rec):
        N = out.shape[0]
        total = 0
        for n in range(N):
            logp = self._log_softmax(out[n].tolist())
            for k, lp in enumerate(logp):
                if target[n, k] == 0:
                    continue          # 0 · log p is 0, even where p underflowed to 0
                total += -target[n, k] * lp / N
                if rec:
                    rec.term((), ("−target", (n, k), -target[n, k]), ("log softmax(out)", (n, k), lp),
                             (f"1/{N}", None, self.num.ratio(1, N)))
        return total

    def gradient(self, out, target, rec):
        N = out.shape[0]
        delta = self.num.zeros(out.shape)
        for n in range(N):
            probs = [self.num.exp(lp) for lp in self._log_softmax(out[n].tolist())]
            mass = sum(target[n].tolist())   # 1 for a one-hot or probability target
            for k, p in enumerate(probs):
                delta[n, k] = (p * mass - target[n, k]) / N
                if rec:
                    rec.term((n, k), ("softmax(out)", (n, k), p * mass), (f"1/{N}", None, self.num.ratio(1, N)))
                    rec.term((n, k), ("−target", (n, k), -target[n, k]), (f"1/{N}", None, self.num.ratio(1, N)))
        return delta

    def _log_softmax_noise(self, row, noise):
        """Bounds of each log softmax: z − max carries both bounds and the conversion of
        both to binary; log Σ exp(z − max) moves by at most the largest of those (its
        derivatives are the softmax, summing to 1), plus its own rounding."""
        top, carried = max(row), 2 * max(noise)
        shifted = [carried + EPS * (abs(z) + abs(top)) for z in row]
        log_total = math.log(sum(math.exp(z - top) for z in row))
        total_noise = max(shifted) + (len(row) + 3) * EPS * (1 + log_total)
        return [e + total_noise + EPS * abs(lp) for e, lp in zip(shifted, self._log_softmax(row))]

    def value_noise(self, out, target, noise):
        N = out.shape[0]
        grown = plain = 0.0
        for n in range(N):
            logp = self._log_softmax(out[n].tolist())
            bounds = self._log_softmax_noise(out[n].tolist(), noise[n].tolist())
            for k, (lp, e) in enumerate(zip(logp, bounds)):
                if target[n, k] != 0:
                    grown += abs(target[n, k]) * (abs(lp) + e) / N
                    plain += abs(target[n, k]) * abs(lp) / N
        return noise_bound(grown, plain, out.size)

    def gradient_noise(self, out, target, noise):
        N, K = out.shape
        bound = np.zeros(out.shape)
        for n in range(N):
            logp = self._log_softmax(out[n].tolist())
            bounds = self._log_softmax_noise(out[n].tolist(), noise[n].tolist())
            mass = abs(sum(target[n].tolist()))
            for k, (lp, e) in enumerate(zip(logp, bounds)):
                p = math.exp(lp)
                # p·e^(±e) within [0, 1]
                e_p = min(1.0, p * math.expm1(e)) if e < 1 else 1.0
                grown = (p + e_p) * mass * (1 + K * EPS) + abs(target[n, k])
                bound[n, k] = noise_bound(grown, p * mass + abs(target[n, k]), K + 2) / N
        return bound


class BCE(Loss):
    """Binary cross-entropy on probabilities, mean over all M elements (PyTorch BCELoss):
    L = −(1/M) Σ [y log ŷ + (1 − y) log(1 − ŷ)];  δ = (ŷ − y) / (ŷ (1 − ŷ)) / M."""
    type = "bce"
    labels = ("out − target", "1/(out·(1 − out))")
    output_type = None    # the output layer's type, when the engine knows it: the hint of _check
    @staticmethod
    def value_rule(loss, out):
        inside = nt.add(nt.prod(TARGET, nt.seq(nt.Word("log"), nt.sym(" "), out)),
                        nt.prod(nt.Paren(nt.sub(1, TARGET)), nt.func("log", nt.sub(1, out))))
        return nt.eq(loss, nt.seq(nt.sym("−"), _share("M"), nt.sym(" "),
                                  nt.Sum((), nt.seq(nt.sym("["), inside, nt.sym("]"))), ",  ", ELEMENTS))

    @staticmethod
    def delta_rule(delta, out):
        slope = nt.Frac(nt.Paren(nt.sub(out, TARGET)), nt.Paren(nt.prod(out, nt.Paren(nt.sub(1, out)))), spaced=True)
        return nt.eq(delta, nt.seq(nt.Frac(slope, nt.sym("M"), spaced=True), ",  ", ELEMENTS))

    def _check(self, out):
        bad = [idx for idx in _cells(out.shape) if not 0 < out[idx] < 1]
        if bad:
            at = display_index(out.shape, bad[0])   # as the trace shows it, length-1 axes dropped
            element = f" element [{','.join(map(str, at))}] (counting from 0)" if at else ""
            value = out[bad[0]]
            # a sigmoid never leaves [0, 1]; it gives exactly 1 when it saturates (an input above
            # about 37 in float64) or is rounded, and there log(1 − out) is infinite
            hint = "put a sigmoid layer last" if not 0 <= value <= 1 or self.output_type not in (None, "sigmoid") else \
                f"log 0 is infinite; a sigmoid gives exactly {value:g} only when it saturates (a large input) " \
                "or is rounded: use smaller numbers or keep more decimals"
            raise ScenarioError(f"bce needs outputs strictly between 0 and 1, but the last layer's output"
                                f"{element} is {value:g}", key="loss.type", hint=hint)

    def value(self, out, target, rec):
        self._check(out)
        M = out.size
        total = 0
        for idx in _cells(out.shape):
            y, t = out[idx], target[idx]
            term = -(t * self.num.log(y) + (1 - t) * self.num.log(1 - y)) / M
            total += term
            if rec:
                rec.term((), ("−(t·log ŷ + (1−t)·log(1−ŷ))", idx, term * M), (f"1/{M}", None, self.num.ratio(1, M)))
        return total

    def gradient(self, out, target, rec):
        self._check(out)
        M = out.size
        delta = self.num.zeros(out.shape)
        for idx in _cells(out.shape):
            y, t = out[idx], target[idx]
            delta[idx] = (y - t) / (y * (1 - y)) / M
            if rec:
                rec.term(idx, ("out − target", idx, y - t), ("1/(out·(1 − out))", idx, 1 / (y * (1 - y))),
                         (f"1/{M}", None, self.num.ratio(1, M)))
        return delta

    @staticmethod
    def _logs_noise(y, e):
        """Bounds of log ŷ and log(1 − ŷ) (1 − ŷ rounds by EPS); inf when ŷ's noise reaches 0 or 1."""
        e_log = e / (y - e) if e < y else math.inf
        e_log1 = (e + EPS) / (1 - y - e - EPS) if e + EPS < 1 - y else math.inf
        return e_log + EPS * abs(math.log(y)), e_log1 + EPS * abs(math.log(1 - y))

    def value_noise(self, out, target, noise):
        self._check(out)
        M = out.size
        grown = plain = 0.0
        for idx in _cells(out.shape):
            y, t = out[idx], target[idx]
            e_log, e_log1 = self._logs_noise(y, noise[idx])
            grown += (abs(t) * (abs(math.log(y)) + e_log) + abs(1 - t) * (abs(math.log(1 - y)) + e_log1)) / M
            plain += (abs(t) * abs(math.log(y)) + abs(1 - t) * abs(math.log(1 - y))) / M
        return noise_bound(grown, plain, M + 2)

    def gradient_noise(self, out, target, noise):
        self._check(out)
        M = out.size
        bound = np.zeros(out.shape)
        for idx in _cells(out.shape):
            y, t, e = out[idx], target[idx], noise[idx]
            # (ŷ − y) over ŷ(1 − ŷ): the numerator grows, the denominator shrinks by at most e + EPS
            numerator, denominator = abs(y - t), y * (1 - y)
            low = denominator - (e + EPS)
            grown = (numerator + e + EPS * (abs(y) + abs(t))) / low if low > 0 else math.inf
            bound[idx] = noise_bound(grown, numerator / denominator, 4) / M
        return bound


# --- losses that start the backward pass the way framework tests do ----------------------
# `y.sum().backward()` and `y.mean().backward()` need no target: they are how most
# framework unit tests and worked examples start backward, with every output's delta 1
# (or 1/M).  `l1` is PyTorch's L1Loss (mean reduction).


class Sum(Loss):
    """L = Σ ŷ over every element and sample (`y.sum().backward()`); δ = 1."""
    type = "sum"
    needs_target = False
    labels = ("out",)
    @staticmethod
    def value_rule(loss, out):
        return nt.eq(loss, nt.Sum((), out))

    @staticmethod
    def delta_rule(delta, out):
        return nt.eq(delta, nt.seq(nt.sym(1), " (every element adds itself to the loss)"))

    def count(self, shape):
        return 1

    def value(self, out, target, rec):
        total = 0
        weight = self.num.ratio(1, self.count(out.shape))
        for idx in _cells(out.shape):
            total += weight * out[idx]
            if rec:
                rec.term((), *self._scale(out.shape), ("out", idx, out[idx]))
        return total

    def _scale(self, shape):
        M = self.count(shape)
        return [] if M == 1 else [(f"1/{M}", None, self.num.ratio(1, M))]

    def gradient(self, out, target, rec):
        delta = self.num.zeros(out.shape)
        for idx in _cells(out.shape):
            delta[idx] = self.num.ratio(1, self.count(out.shape))
            if rec:
                rec.term(idx, *(self._scale(out.shape) or [("1", None, 1.0)]))
        return delta

    def value_noise(self, out, target, noise):
        weight = 1 / self.count(out.shape)
        return noise_bound(weight * float((np.abs(out) + noise).sum()), weight * float(np.abs(out).sum()),
                           out.size + 1)

    def gradient_noise(self, out, target, noise):
        # 1, or 1/M rounded once
        return np.full(out.shape, 0.0 if self.count(out.shape) == 1 else EPS / self.count(out.shape))


class Mean(Sum):
    """L = (1/M) Σ ŷ over all M elements (`y.mean().backward()`); δ = 1/M."""
    type = "mean"
    @staticmethod
    def value_rule(loss, out):
        return nt.eq(loss, nt.seq(nt.juxt(_share("M"), nt.Sum((), out), space=" "), ",  ", ELEMENTS))

    @staticmethod
    def delta_rule(delta, out):
        return nt.eq(delta, nt.seq(nt.Frac(nt.sym(1), nt.sym("M")), ",  ", ELEMENTS))

    def count(self, shape):
        return int(np.prod(shape))


class L1(Loss):
    """L = (1/M) Σ |ŷ − y| over all M elements (PyTorch L1Loss); δ = sign(ŷ − y)/M, with
    sign(0) = 0 as torch.sign (the subgradient PyTorch's autograd takes at the kink)."""
    type = "l1"
    labels = ("|out − target|", "sign(out − target)")
    @staticmethod
    def value_rule(loss, out):
        return nt.eq(loss, nt.seq(nt.juxt(_share("M"), nt.Sum((), nt.seq(nt.sym("|"), nt.sub(out, TARGET), nt.sym("|"))),
                                          space=" "), ",  ", ELEMENTS))

    @staticmethod
    def delta_rule(delta, out):
        return nt.eq(delta, nt.seq(nt.Frac(nt.func("sign", nt.sub(out, TARGET)), nt.sym("M"), spaced=True), ",  ",
                                   nt.eq(nt.sym("M"), "number of elements (sign(0) = 0)")))

    def value(self, out, target, rec):
        M = out.size
        total = 0
        for idx in _cells(out.shape):
            diff = abs(out[idx] - target[idx])
            total += diff / M
            if rec:
                rec.term((), ("|out − target|", idx, diff), (f"1/{M}", None, self.num.ratio(1, M)))
        return total

    def gradient(self, out, target, rec):
        M = out.size
        delta = self.num.zeros(out.shape)
        for idx in _cells(out.shape):
            diff = out[idx] - target[idx]
            sign = 1 if diff > 0 else -1 if diff < 0 else 0
            delta[idx] = self.num.ratio(sign, M)
            if rec:
                rec.term(idx, ("sign(out − target)", idx, sign), (f"1/{M}", None, self.num.ratio(1, M)))
        return delta

    def value_noise(self, out, target, noise):
        diff, e = np.abs(out - target), noise + EPS * (np.abs(out) + np.abs(target))
        return noise_bound(float((diff + e).sum()) / out.size, float(diff.sum()) / out.size, out.size + 1)

    def gradient_noise(self, out, target, noise):
        # the sign is exact unless the difference is within its noise of 0, where it may be
        # anything in −1..1 on paper: bound 1/M there (and 1/M's own rounding elsewhere)
        diff, e = np.abs(out - target), noise + EPS * (np.abs(out) + np.abs(target))
        return np.where(diff <= e, 1.0, EPS) / out.size


LOSSES = {cls.type: cls for cls in (HalfSSE, SSE, MSE, CrossEntropy, BCE, Sum, Mean, L1)}

# `regularization: {l2: λ}` adds (λ/2)·Σ w² over these parameter roles (kernels and weight
# matrices, not biases) to the loss.  The trace then shows the loss in parts: LOSS_DATA (the
# loss of the output, as without regularization), LOSS_L2 (the penalty) and `loss`, their sum.
REGULARIZED = ("kernel", "weights")
LOSS_DATA, LOSS_L2 = "loss.data", "loss.l2"

