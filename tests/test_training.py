"""Training features: losses without targets, L2 in the loss, optimizers, several steps, and
filled tensors — names, prefixes, `given`/`expected`/`rounding` on prefixed names, the text
renderer's per-step phases, and the fills against numpy and torch.  Every number here
comes from numpy or torch, never from bptrace itself."""
from __future__ import annotations

import numpy as np
import pytest

import bptrace
from bptrace.errors import ScenarioError

NET = """
input: [[0.2, -0.5, 0.9], [0.7, 0.3, -0.8], [-0.6, 0.05, 0.35]]
layers:
  - {type: conv, name: c1, kernel: [[0.5, -0.25], [0.125, 1]], bias: 0.1}
  - {type: sigmoid, name: s}
loss: {type: mse, target: [[0.5, 0.1], [0.75, 0.2]]}
"""


def test_one_step_names_carry_no_prefix_and_several_steps_are_prefixed_in_order():
    one = bptrace.loads(NET + "optimizer: {type: adam, lr: 0.1}\n")
    trace = bptrace.run(one)
    assert trace.names() == list(one.shapes)
    assert not any(name.startswith("step") for name in trace.names())
    assert trace.names()[-3:] == ["c1.state.bias.exp_avg", "c1.state.bias.exp_avg_sq", "c1.new.bias"]
    three = bptrace.loads(NET + "optimizer: {type: adam, lr: 0.1}\nsteps: 3\n")
    trace3 = bptrace.run(three)
    assert trace3.names() == list(three.shapes)
    assert trace3.names() == [f"step{k}.{name}" for k in (1, 2, 3) for name in trace.names()]
    assert {step.training_step for step in trace3.steps} == {1, 2, 3}
    # step k + 1 starts from step k's update
    assert np.array_equal(trace3.value("step2.c1.kernel"), trace3.value("step1.c1.new.kernel"))
    assert np.array_equal(trace3.value("step3.c1.bias"), trace3.value("step2.c1.new.bias"))
    assert trace3.loss == trace3.value("step1.loss")


def test_given_expected_and_rounding_address_prefixed_names():
    text = NET + """learning_rate: 0.5
steps: 2
given: {"step1.s.out[0,0]": 0.6}
rounding: {decimals: 3, apply: [step2.c1.grad.kernel]}
expected: {step2.c1.new.bias: 0.1}
"""
    scenario = bptrace.loads(text)
    trace = bptrace.run(scenario)
    assert trace.value("step1.s.out")[0, 0, 0, 0] == 0.6
    rounded = trace["step2.c1.grad.kernel"]
    assert rounded.rounded and np.allclose(rounded.values, np.round(rounded.computed, 3), atol=1e-12)
    assert trace["step1.c1.grad.kernel"].rounded is None
    assert "step2.c1.new.bias" in scenario.expected
    # one training step keeps the unprefixed names: a prefixed one is no value there
    with pytest.raises(ScenarioError, match="'step1.s.out' is not a value in this trace"):
        bptrace.loads(NET + 'given: {"step1.s.out[0,0]": 0.6}\n')


def test_given_refuses_the_copies_a_training_step_starts_from():
    with pytest.raises(ScenarioError, match=r"'step2.c1.kernel' is what training step 2 starts from, a copy of "
                                            r"step1.c1.new.kernel \(pin step1.c1.new.kernel instead\)"):
        bptrace.loads(NET + "learning_rate: 0.5\nsteps: 2\ngiven: {step2.c1.kernel: [[1, 1], [1, 1]]}\n")
    with pytest.raises(ScenarioError, match="'step1.c1.kernel' is written in the scenario itself"):
        bptrace.loads(NET + "learning_rate: 0.5\nsteps: 2\ngiven: {step1.c1.kernel: [[1, 1], [1, 1]]}\n")


def test_explain_and_only_work_on_prefixed_names():
    trace = bptrace.run(bptrace.loads(NET + "optimizer: {type: sgd, lr: 0.5, momentum: 0.9}\nsteps: 2\n"))
    explained = trace.explain("step2.c1.state.kernel.momentum_buffer[0,1]")
    assert "step1.c1.state.kernel.momentum_buffer" in str(explained)
    text = trace.to_text(width=200, only=["step2.c1.new.kernel"])
    assert "training step 2 · update, SGD (lr 0.5, momentum 0.9)" in text
    assert "step1.c1.new.kernel" not in text.split("step2.c1.new.kernel", 1)[1].split("=", 1)[0]


def test_text_renderer_titles_each_training_steps_phases():
    trace = bptrace.run(bptrace.loads(NET + "optimizer: {type: adam, lr: 0.1}\nsteps: 2\n"))
    text = trace.to_text(width=200)
    for k in (1, 2):
        for title in ("forward", "loss", "backward, from the loss, mse", "update, Adam (lr 0.1)"):
            assert f"training step {k} · {title}" in text
    single = bptrace.run(bptrace.loads(NET + "learning_rate: 0.1\n")).to_text(width=200)
    assert "update (one SGD step)" in single and "training step" not in single


def test_adam_weight_decay_and_l2_in_the_loss_differ_as_the_readme_says(torch):
    """torch.optim.Adam's weight_decay adds wd·p to every parameter's gradient (biases too)
    before the moments; `regularization: {l2: λ}` adds λ·w to kernels and weights only, and
    (λ/2)·Σ w² to the loss.  So the kernels' updates agree, the biases' do not, and only
    the regularized loss holds the penalty.  Both are checked against torch."""
    decay = bptrace.run(bptrace.loads(NET + "optimizer: {type: adam, lr: 0.1, weight_decay: 0.2}\n"))
    l2 = bptrace.run(bptrace.loads(NET + "optimizer: {type: adam, lr: 0.1}\nregularization: {l2: 0.2}\n"))
    k = torch.tensor([[[[0.5, -0.25], [0.125, 1.0]]]], dtype=torch.float64)
    x = torch.tensor([[[[0.2, -0.5, 0.9], [0.7, 0.3, -0.8], [-0.6, 0.05, 0.35]]]], dtype=torch.float64)
    target = torch.tensor([[[[0.5, 0.1], [0.75, 0.2]]]], dtype=torch.float64)
    for penalty, wd, trace in ((0.0, 0.2, decay), (0.2, 0.0, l2)):
        kernel, bias = k.clone().requires_grad_(), torch.tensor([0.1], dtype=torch.float64, requires_grad=True)
        loss = torch.nn.functional.mse_loss(torch.sigmoid(torch.nn.functional.conv2d(x, kernel, bias)), target)
        loss = loss + penalty / 2 * (kernel ** 2).sum()
        loss.backward()
        torch.optim.Adam([kernel, bias], lr=0.1, weight_decay=wd).step()
        assert np.isclose(trace.loss, loss.item(), rtol=1e-12)
        assert np.allclose(trace.value("c1.new.kernel"), kernel.detach().numpy(), rtol=1e-12, atol=0)
        assert np.allclose(trace.value("c1.new.bias"), bias.detach().numpy(), rtol=1e-12, atol=0)
    assert np.allclose(decay.value("c1.new.kernel"), l2.value("c1.new.kernel"), rtol=1e-12)
    assert not np.allclose(decay.value("c1.new.bias"), l2.value("c1.new.bias"), rtol=1e-6, atol=0)
    assert "loss.l2" in l2 and "loss.l2" not in decay


def test_sum_and_mean_need_no_target_and_refuse_one():
    trace = bptrace.run(bptrace.loads(NET.replace("loss: {type: mse, target: [[0.5, 0.1], [0.75, 0.2]]}",
                                                  "loss: {type: mean}")))
    out = trace.value("s.out")
    assert np.isclose(trace.loss, out.mean(), rtol=1e-15)
    assert np.array_equal(trace.value("s.delta"), np.full(out.shape, 0.25))
    with pytest.raises(ScenarioError, match="the sum loss has no target"):
        bptrace.loads(NET.replace("type: mse", "type: sum"))


def test_a_single_number_upstream_delta_reaches_every_element():
    trace = bptrace.run(bptrace.loads(NET.replace("loss: {type: mse, target: [[0.5, 0.1], [0.75, 0.2]]}",
                                                  "upstream: {delta: 0.5}")))
    assert np.array_equal(trace.value("s.delta"), np.full((1, 1, 2, 2), 0.5))


# --- filled tensors ------------------------------------------------------------------------

def test_fills_equal_numpy_and_torch(torch):
    text = """
input: {fill: arange, shape: [1, 2, 4, 5], start: -3, step: 0.5}
layers:
  - {type: conv, name: c, kernel: {fill: linspace, start: -1, stop: 2}, out_channels: 3, size: [2, 3],
     bias: {fill: full, value: 0.25}}
  - {type: flatten}
  - {type: dense, name: d, weights: {fill: ones}, out: 2, bias: {fill: zeros, shape: [2]}}
loss: {type: sum}
"""
    scenario = bptrace.loads(text)
    x = torch.arange(-3, -3 + 0.5 * 40, 0.5, dtype=torch.float64).reshape(1, 2, 4, 5).numpy()
    assert np.array_equal(scenario.input, x)
    assert np.array_equal(scenario.input, np.arange(40).reshape(1, 2, 4, 5) * 0.5 - 3)
    kernel = scenario.layer("c").params["kernel"]
    assert kernel.shape == (3, 2, 2, 3)       # the parameter's canonical shape, as out_channels and size say
    assert np.allclose(kernel.ravel(), torch.linspace(-1, 2, 36, dtype=torch.float64).numpy(), rtol=0, atol=1e-15)
    assert kernel.ravel()[0] == -1 and kernel.ravel()[-1] == 2          # both ends exact, as torch's
    assert np.array_equal(scenario.layer("c").params["bias"], np.full(3, 0.25))
    dense = scenario.layer("d")
    assert np.array_equal(dense.params["weights"], np.ones((2, 27))) and not dense.params["bias"].any()
    assert scenario.layer("c").origins["kernel"] == "filled by linspace (start -1, stop 2)"
    assert scenario.input_origin == "filled by arange (start -3, step 0.5)"


@pytest.mark.parametrize("count", [1, 2, 3, 7, 10, 64, 101])
def test_linspace_counts_like_torch(torch, count):
    from bptrace.spec import _linspace
    ours = np.array(_linspace(0.1, -2.3, count))
    theirs = torch.linspace(0.1, -2.3, count, dtype=torch.float64).numpy()
    # torch's vectorised loop may round differently in the last bit; the ends are exact
    assert (np.abs(ours - theirs) <= 2 * np.spacing(2.3)).all()     # a bit of the ends' size
    assert ours[0] == theirs[0] and ours[-1] == theirs[-1]


def test_fills_in_given_targets_and_optimizer_state():
    scenario = bptrace.loads(NET.replace("[[0.5, 0.1], [0.75, 0.2]]", "{fill: full, value: 0.5}") + """
optimizer: {type: sgd, lr: 0.1, momentum: 0.9, state: {c1.kernel: {momentum_buffer: {fill: arange}}}}
given: {c1.out: {fill: linspace, start: 0, stop: 0.3}}
""")
    assert np.array_equal(scenario.loss.target, np.full((1, 1, 2, 2), 0.5))
    assert np.array_equal(scenario.optimizer.state["c1.kernel"]["momentum_buffer"], np.arange(4.0).reshape(1, 1, 2, 2))
    assert np.allclose(scenario.given["c1.out"].values.ravel(), [0, 0.1, 0.2, 0.3], rtol=0, atol=1e-16)


# --- the optimizer's mistakes, planted by an independent torch model ------------------------

PLANT = """name: planted training
input: [[0.5, -1.0, 2.0]]
layers:
  - {type: dense, name: d, weights: [[0.3, -0.2, 0.1], [0.5, 0.4, -0.6]], bias: [0.1, -0.1]}
  - {type: sigmoid, name: s}
loss: {type: mse, target: [[1, 0]]}
"""


def _planted_sheet(torch, mistake, steps, optimizer):
    """A student's answers: gradients by torch autograd, the update by hand in torch ops,
    with the mistake made (None: right), for `steps` training steps."""
    x = torch.tensor([[0.5, -1.0, 2.0]], dtype=torch.float64)
    w = torch.tensor([[0.3, -0.2, 0.1], [0.5, 0.4, -0.6]], dtype=torch.float64)
    b = torch.tensor([0.1, -0.1], dtype=torch.float64)
    target = torch.tensor([[1.0, 0.0]], dtype=torch.float64)
    params, state, sheet = {"weights": w, "bias": b}, {}, {}
    for k in range(1, steps + 1):
        p = f"step{k}." if steps > 1 else ""
        leaves = {role: v.clone().requires_grad_() for role, v in params.items()}
        loss = torch.nn.functional.mse_loss(torch.sigmoid(x @ leaves["weights"].T + leaves["bias"]), target)
        loss.backward()
        sheet[p + "loss"] = loss.detach()
        for role, leaf in leaves.items():
            g, old = leaf.grad, params[role]
            sheet[f"{p}d.grad.{role}"] = g
            if optimizer == "adam":
                m, v = state.get((role, "m"), torch.zeros_like(g)), state.get((role, "v"), torch.zeros_like(g))
                m, v = 0.9 * m + (1 - 0.9) * g, 0.999 * v + (1 - 0.999) * g * g    # as torch: value=1 − β
                c1, c2 = (1.0, 1.0) if mistake == "adam-no-bias-correction" else (1 - 0.9 ** k, 1 - 0.999 ** k)
                new = old - 0.1 * (m / c1) / ((v / c2).sqrt() + 1e-8)
                state[(role, "m")], state[(role, "v")] = m, v
                sheet[f"{p}d.state.{role}.exp_avg"], sheet[f"{p}d.state.{role}.exp_avg_sq"] = m, v
            else:
                before = state.get((role, "b"))
                buf = g if before is None else 0.9 * before + (-g if mistake == "momentum-sign" else g)
                if mistake == "momentum-order":     # stepped first, with the buffer of the step before
                    new = old if before is None else old - 0.5 * before
                else:
                    new = old - 0.5 * buf
                state[(role, "b")] = buf
                sheet[f"{p}d.state.{role}.momentum_buffer"] = buf
            sheet[f"{p}d.new.{role}"] = new
            params[role] = new
    return {name: np.squeeze(value.detach().numpy()) for name, value in sheet.items()}


@pytest.mark.parametrize("mistake, optimizer, steps, first", [
    ("adam-no-bias-correction", "adam", 1, "d.new.weights"),
    ("momentum-sign", "sgd", 2, "step2.d.state.weights.momentum_buffer"),
    ("momentum-order", "sgd", 3, "step1.d.new.weights"),
])
def test_an_optimizer_mistake_is_named_by_its_id_alone(torch, mistake, optimizer, steps, first):
    from bptrace.check import Checker, scenario_answers
    import json

    def expected_block(sheet):     # full precision, compared within the tolerance below
        return "expected:\n" + "".join(f"  {name}: {json.dumps(np.asarray(v).tolist())}\n" for name, v in sheet.items())

    options = "optimizer: {type: adam, lr: 0.1}\n" if optimizer == "adam" else \
        "optimizer: {type: sgd, lr: 0.5, momentum: 0.9}\n"
    # the student's float order differs from bptrace's in the last bit
    text = PLANT + options + f"steps: {steps}\ntolerance: {{abs: 1e-12, rel: 1e-9}}\n"
    right = bptrace.loads(text + expected_block(_planted_sheet(torch, None, steps, optimizer)))
    report = Checker().check(right, scenario_answers(right), file="sheet.yaml", scenario_path="sheet.yaml")
    assert not report.failed and report.diagnosis == []
    scenario = bptrace.loads(text + expected_block(_planted_sheet(torch, mistake, steps, optimizer)), "sheet.yaml")
    report = Checker().check(scenario, scenario_answers(scenario), file="sheet.yaml", scenario_path="sheet.yaml")
    assert report.failed and report.first_wrong.name == first
    assert [d.id for d in report.diagnosis] == [mistake]
    assert report.unexplained == []
