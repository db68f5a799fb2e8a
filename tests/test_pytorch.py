"""The PyTorch bridge, both ways, against PyTorch autograd (float64):

* `from_torch(module, x, target, loss)`: bptrace's trace of the scenario has the gradients
  `loss.backward()` gives the module's parameters and its input;
* `Scenario.to_torch()`: the shipped scenarios' networks built in torch give, through
  autograd, the gradients bptrace traces.
"""
from __future__ import annotations

import re
import subprocess
import sys

import numpy as np
import pytest
from click.testing import CliRunner

import bptrace
from bptrace.cli import main
from conftest import ROOT, SCENARIOS

ATOL, RTOL = 1e-10, 1e-9


def _close(mine, theirs, what):
    theirs = np.asarray(theirs, dtype=float)
    mine = np.asarray(mine, dtype=float).reshape(theirs.shape)
    assert np.allclose(mine, theirs, atol=ATOL, rtol=RTOL), f"{what}: bptrace {mine} vs torch {theirs}"


def _compare(trace, net, x):
    """Every parameter's gradient and the input's, bptrace against torch's .grad."""
    layers = [row.layer for row in trace.summary if row.params]
    p = "step1." if trace.training_steps > 1 else ""     # the first training step's gradients
    modules = [m for m in net.modules() if list(m.parameters(recurse=False))]
    assert len(layers) == len(modules)
    for layer, module in zip(layers, modules):
        kind = type(module).__name__
        role = {"Conv2d": "kernel", "ConvTranspose2d": "kernel", "BatchNorm1d": "gamma", "BatchNorm2d": "gamma",
                "LayerNorm": "gamma"}.get(kind, "weights")
        shift = "beta" if role == "gamma" else "bias"
        _close(trace[f"{p}{layer}.grad.{role}"].values, module.weight.grad, f"{layer}.grad.{role}")
        if module.bias is None:
            assert f"{p}{layer}.bias" not in trace.names() and f"{p}{layer}.grad.bias" not in trace.names()
        else:
            _close(trace[f"{p}{layer}.grad.{shift}"].values, module.bias.grad, f"{layer}.grad.{shift}")
    _close(trace[f"{p}input.delta"].values, x.grad, "input.delta")


def _conv_net(nn):
    return nn.Sequential(
        nn.Conv2d(2, 4, 3, stride=2, padding=1, groups=2), nn.ReLU(), nn.MaxPool2d(2, stride=1, padding=1),
        nn.Conv2d(4, 3, (2, 3), padding=(1, 0)), nn.Tanh(), nn.AvgPool2d(2), nn.LeakyReLU(0.2), nn.Identity(),
        nn.Flatten(), nn.Linear(18, 5), nn.Sigmoid(), nn.Sequential(nn.Linear(5, 3)))


@pytest.mark.parametrize("case", ["mse", "sse", "cross_entropy", "bce", "sum", "l1"])
def test_from_torch_gives_the_gradients_of_loss_backward(torch, case):
    nn = torch.nn
    torch.manual_seed(7)
    net = _conv_net(nn)
    if case == "bce":
        net.append(nn.Sigmoid())
    x = torch.randn(2, 2, 9, 9, requires_grad=True)
    target, loss = {
        "mse": (torch.rand(2, 3), nn.MSELoss()),
        "sse": (torch.rand(2, 3), nn.MSELoss(reduction="sum")),
        "cross_entropy": (torch.tensor([2, 0]), nn.CrossEntropyLoss()),
        "bce": (torch.rand(2, 3), nn.BCELoss()),
        "sum": (None, None),
        "l1": (torch.rand(2, 3), nn.L1Loss()),
    }[case]
    trace = bptrace.run(bptrace.from_torch(net, x, target, loss=loss))
    out = net(x)
    value = out.sum() if loss is None else loss(out, target)
    value.backward()
    if loss is not None:
        assert trace.loss == pytest.approx(float(value.detach()), rel=1e-12)
    _close(trace[f"{trace.summary[-1].layer}.out"].values, out.detach(), "output")
    _compare(trace, net, x)


def test_from_torch_with_a_loss_name_and_a_dense_network(torch):
    nn = torch.nn
    torch.manual_seed(3)
    net = nn.Sequential(nn.Linear(4, 3), nn.Softmax(dim=1), nn.Linear(3, 2))
    x = torch.randn(3, 4, requires_grad=True)
    target = torch.rand(3, 2)
    trace = bptrace.run(bptrace.from_torch(net, x, target, loss="half_sse"))
    (0.5 * ((net(x) - target) ** 2).sum()).backward()
    _compare(trace, net, x)


def test_from_torch_reads_dilation_no_bias_transposed_conv_pool_options_global_pools_upsample(torch):
    nn = torch.nn
    torch.manual_seed(11)
    net = nn.Sequential(
        nn.Conv2d(2, 4, (2, 3), padding=(1, 2), stride=(1, 2), dilation=(2, 3), bias=False), nn.Tanh(),
        nn.ConvTranspose2d(4, 2, 3, stride=2, padding=1, output_padding=1, groups=2),
        nn.MaxPool2d(3, stride=2, padding=1, dilation=(1, 2), ceil_mode=True),
        nn.Upsample(scale_factor=2),
        nn.AvgPool2d((3, 2), stride=(1, 2), padding=1, ceil_mode=True, count_include_pad=False),
        nn.ConvTranspose2d(2, 3, (2, 1), dilation=(2, 1)),
        nn.AdaptiveMaxPool2d(1), nn.Flatten(), nn.Linear(3, 2, bias=False)).double()
    x = torch.randn(2, 2, 7, 9, dtype=torch.float64, requires_grad=True)
    scenario = bptrace.from_torch(net, x)
    types = [layer.type for layer in scenario.layers]
    assert types == ["conv", "tanh", "conv_transpose", "maxpool", "upsample", "avgpool", "conv_transpose",
                     "global_maxpool", "dense"]
    trace = bptrace.run(scenario)
    out = net(x)
    _close(trace[f"{scenario.layers[-1].name}.out"].values, out.detach(), "output")
    out.sum().backward()
    _compare(trace, net, x)
    # and back: the scenario's network in torch is the same network
    again = scenario.to_torch()
    _close(again(x.detach()).detach(), out.detach(), "to_torch output")


@pytest.mark.parametrize("module, reason", [
    ("nn.Conv2d(1, 1, 2, padding=1, padding_mode='reflect')", "padding_mode='reflect'"),
    ("nn.AvgPool2d(2, divisor_override=3)", "divisor_override"),
    ("nn.AdaptiveAvgPool2d(2)", "output_size=2"),
    ("nn.AdaptiveMaxPool2d(1)", "nn.Flatten()"),
    ("nn.Upsample(scale_factor=2, mode='bilinear')", "mode='bilinear'"),
    ("nn.Upsample(scale_factor=1.5)", "scale_factor=1.5"),
    ("nn.Softmax(dim=0)", "dim=0"),
    ("nn.Flatten(0)", "start_dim=0"),
    ("nn.GELU(approximate='tanh')", "approximate='tanh'"),
    ("nn.Softplus(beta=2)", "beta=2"),
    ("nn.Dropout()", "training mode"),
    ("nn.Dropout2d()", "Dropout2d"),
])
def test_an_unsupported_module_or_option_is_named_with_the_reason(torch, module, reason):
    from bptrace.pytorch import Unsupported

    nn = torch.nn
    net = nn.Sequential(nn.Identity(), eval(module))
    with pytest.raises(Unsupported) as error:
        bptrace.from_torch(net, torch.rand(1, 1, 4, 4))
    assert "module 1 (" in str(error.value) and reason in str(error.value)


def test_a_network_with_its_own_forward_is_refused(torch):
    from bptrace.pytorch import Unsupported

    class Net(torch.nn.Module):
        def forward(self, x):
            return x

    with pytest.raises(Unsupported, match="nn.Sequential"):
        bptrace.from_torch(Net(), torch.rand(1, 4))


def _torch_loss(torch, scenario, out):
    kind, target = scenario.loss.type, torch.tensor(scenario.loss.target)
    if kind == "half_sse":
        return 0.5 * ((out - target) ** 2).sum()
    if kind == "sse":
        return ((out - target) ** 2).sum()
    if kind == "mse":
        return ((out - target) ** 2).mean()
    if kind == "cross_entropy":
        return torch.nn.functional.cross_entropy(out, target)
    return torch.nn.functional.binary_cross_entropy(out, target)


# expression graphs, graphs of layers and recurrent layers are not nn.Sequential chains
# (nn.LSTM returns a tuple): tests/oracle.py is their PyTorch oracle
CHAINS = [p for p in SCENARIOS if p.name not in ("zhang2016.yaml", "cs231n_circuit.yaml", "cs231n_sigmoid_neuron.yaml",
                                                 "cs231n_staged.yaml", "lstm_gomez.yaml", "rnn_small.yaml",
                                                 "rnn_deeplearning_ai.yaml", "lstm_deeplearning_ai.yaml",
                                                 "residual_block.yaml")]


@pytest.mark.parametrize("path", CHAINS, ids=lambda p: p.name)
def test_to_torch_gives_the_gradients_bptrace_traces(torch, path):
    scenario = bptrace.load(path)
    scenario.given, scenario.rounding = {}, None      # autograd knows nothing of pinned or rounded values
    trace = bptrace.run(scenario)
    net = scenario.to_torch()
    from bptrace.pytorch import torch_input

    x = torch_input(scenario).requires_grad_()
    out = net(x)
    if scenario.upstream:
        assert scenario.upstream.layer == scenario.layers[-1].name
        out.backward(torch.tensor(scenario.upstream.delta))
    else:
        _torch_loss(torch, scenario, out).backward()
    _compare(trace, net, x)


def test_to_torch_names_what_it_cannot_build(torch):
    from bptrace.pytorch import Unsupported

    with pytest.raises(Unsupported, match="column order"):
        bptrace.load(ROOT / "scenarios/zhang2016.yaml").to_torch()
    graph = bptrace.load("input: [[1, 2], [3, 4]]\nlayers:\n  - {type: relu, name: r}\n"
                         "  - {type: add, from: [r, input]}\nupstream: {delta: [[1, 1], [1, 1]]}\n")
    with pytest.raises(Unsupported, match="only a chain"):
        graph.to_torch()


def test_a_scenario_goes_to_torch_and_back_unchanged(torch):
    scenario = bptrace.load(ROOT / "scenarios/stride_padding.yaml")
    from bptrace.pytorch import torch_input

    back = bptrace.from_torch(scenario.to_torch(), torch_input(scenario), torch.tensor(scenario.loss.target),
                              loss=scenario.loss.type)
    first, second = bptrace.run(scenario), bptrace.run(back)
    assert [s.name for s in first.steps] == [s.name for s in second.steps]
    for a, b in zip(first.steps, second.steps):
        _close(b.values, a.values, a.name)


NET_PY = """
import torch
from torch import nn
torch.manual_seed(0)
model = nn.Sequential(nn.Conv2d(1, 2, 2), nn.Sigmoid(), nn.MaxPool2d(2), nn.Flatten(), nn.Linear(8, 2)).double()
def broken():
    return nn.Sequential(nn.Conv2d(1, 1, 3), nn.Dropout())
"""


def test_from_torch_command_writes_a_scenario_with_the_same_gradients(torch, tmp_path):
    (tmp_path / "net.py").write_text(NET_PY)
    out = tmp_path / "problem.yaml"
    result = CliRunner().invoke(main, ["from-torch", f"{tmp_path}/net.py:model", "--shape", "1,1,5,5",
                                       "--seed", "3", "--target", "[1, 0]", "-o", str(out)])
    assert result.exit_code == 0, result.output
    text = out.read_text()
    assert text.startswith("# yaml-language-server: $schema=bptrace.schema.json")
    trace = bptrace.run(bptrace.load(out))
    # the same network in torch, on the same input bptrace drew
    namespace: dict = {}
    exec(NET_PY, namespace)
    net = namespace["model"]
    x = torch.tensor(np.random.default_rng(3).uniform(0, 1, size=(1, 1, 5, 5)), requires_grad=True)
    torch.nn.MSELoss()(net(x), torch.tensor([[1.0, 0.0]])).backward()
    _compare(trace, net, x)
    # a saved module and an input file give the same scenario's numbers
    torch.save(net, tmp_path / "net.pt")
    np.save(tmp_path / "x.npy", x.detach().numpy())
    result = CliRunner().invoke(main, ["from-torch", str(tmp_path / "net.pt"), "--input", str(tmp_path / "x.npy"),
                                       "--target", "[1, 0]"])
    assert result.exit_code == 0, result.output
    again = bptrace.run(bptrace.load(result.output))
    _close(again["conv1.grad.kernel"].values, trace["conv1.grad.kernel"].values, "from the .pt file")


def test_from_torch_command_refuses_unsupported_modules_and_says_why(torch, tmp_path):
    (tmp_path / "net.py").write_text(NET_PY)
    out = tmp_path / "problem.yaml"
    result = CliRunner().invoke(main, ["from-torch", f"{tmp_path}/net.py:broken", "--shape", "1,1,5,5",
                                       "-o", str(out)])
    assert result.exit_code == 2
    assert "module 1 (Dropout)" in result.output and "training mode" in result.output and ".eval()" in result.output
    assert not out.exists()
    help_text = CliRunner().invoke(main, ["from-torch", "--help"]).output
    assert "weights_only=False" in help_text and "trust" in help_text


def test_an_input_the_module_cannot_take_is_bad_input_not_a_traceback(torch, tmp_path):
    # without a target the bridge runs the module for its output's shape: torch's refusal of
    # the input is the user's mistake, reported as one, as it is with a target
    (tmp_path / "net.py").write_text(NET_PY)
    out = tmp_path / "problem.yaml"
    result = CliRunner().invoke(main, ["from-torch", f"{tmp_path}/net.py:model", "--shape", "1,1,2,2",
                                       "-o", str(out)])
    assert result.exit_code == 2, result.output
    assert "input" in result.output and "(1, 1, 2, 2)" in result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)
    assert not out.exists()
    namespace: dict = {}
    exec(NET_PY, namespace)
    with pytest.raises(bptrace.ScenarioError, match=r"\(1, 1, 2, 2\)") as caught:
        bptrace.from_torch(namespace["model"], torch.zeros(1, 1, 2, 2, dtype=torch.float64))
    assert caught.value.key == "input"


def test_the_readme_and_the_docstring_name_every_module_the_bridge_reads():
    # the documented list is the user's contract: a module added to FROM_TORCH is named there
    from bptrace.pytorch import FROM_TORCH, from_torch

    text = (ROOT / "README.md").read_text(encoding="utf-8")
    paragraph = text[text.index("- `bptrace.from_torch(module, x"):]
    paragraph = paragraph[:paragraph.index("\n- ")]
    doc = " ".join(from_torch.__doc__.split())
    for kind in FROM_TORCH:
        assert f"`{kind}" in paragraph, f"README's from_torch paragraph does not name {kind}"
        assert re.search(rf"\b{kind}\b", doc), f"from_torch's docstring does not name {kind}"
    assert "not compute (dilation" not in doc     # dilation and ceil_mode are read, not refused


def test_the_bridge_imports_torch_only_when_used():
    code = ("import sys, bptrace; s = bptrace.run(bptrace.load('scenarios/seed001.yaml')); "
            "import bptrace.pytorch; assert 'torch' not in sys.modules, 'torch imported'")
    subprocess.run([sys.executable, "-c", code], check=True, cwd=ROOT)


# --- normalisation, dropout and the smooth activations, against torch's own modules ----------

def _norm_net(nn, mode):
    torch = __import__("torch")
    torch.manual_seed(11)
    net = nn.Sequential(nn.Conv2d(2, 3, 2), nn.BatchNorm2d(3), nn.GELU(), nn.Conv2d(3, 2, 2), nn.ELU(0.6),
                        nn.LayerNorm((2, 2, 2)), nn.Softplus(), nn.Flatten(), nn.Dropout(0.3), nn.Linear(8, 4),
                        nn.BatchNorm1d(4), nn.SiLU(), nn.Linear(4, 2)).double()
    with torch.no_grad():
        for m in net.modules():
            if isinstance(m, (nn.BatchNorm2d, nn.BatchNorm1d, nn.LayerNorm)):
                m.weight.uniform_(0.5, 1.5)
                m.bias.uniform_(-0.5, 0.5)
            if isinstance(m, (nn.BatchNorm2d, nn.BatchNorm1d)):
                m.running_mean.uniform_(-0.2, 0.2)
                m.running_var.uniform_(0.5, 1.5)
    net.train(mode == "train")
    net[8].eval()            # dropout: the identity (its training-mode mask is torch's own draw)
    return net


@pytest.mark.parametrize("mode", ["train", "eval"])
def test_from_torch_batchnorm_layernorm_and_activations_give_torchs_gradients(torch, mode):
    """Through torch's own BatchNorm/LayerNorm kernels (not the textbook graph the oracle
    builds): every parameter's gradient and the input's, in train and in eval mode."""
    nn = torch.nn
    net = _norm_net(nn, mode)
    x = torch.randn(3, 2, 4, 4, dtype=torch.float64, requires_grad=True)
    target = torch.rand(3, 2, dtype=torch.float64)
    scenario = bptrace.from_torch(net, x, target, loss=nn.MSELoss())
    kinds = [layer.type for layer in scenario.layers]
    assert kinds[1] == "batchnorm" and kinds[8] == "identity"
    assert [layer.train for layer in scenario.layers if layer.type == "batchnorm"] == [mode == "train"] * 2
    trace = bptrace.run(scenario)
    value = nn.MSELoss()(net(x), target)
    value.backward()
    assert trace.loss == pytest.approx(float(value.detach()), rel=1e-10)
    names = [layer.name for layer in scenario.layers]
    for layer, module in zip(names, net):
        if isinstance(module, (nn.BatchNorm2d, nn.BatchNorm1d, nn.LayerNorm)):
            _close(trace[f"{layer}.grad.gamma"].values, module.weight.grad, f"{layer}.grad.gamma")
            _close(trace[f"{layer}.grad.beta"].values, module.bias.grad, f"{layer}.grad.beta")
        elif isinstance(module, (nn.Conv2d, nn.Linear)):
            role = "kernel" if isinstance(module, nn.Conv2d) else "weights"
            _close(trace[f"{layer}.grad.{role}"].values, module.weight.grad, f"{layer}.grad.{role}")
    _close(trace["input.delta"].values, x.grad, "input.delta")
    # and back: the scenario's network in torch is the same network
    again = scenario.to_torch() if mode == "eval" else None
    if again is not None:
        with torch.no_grad():
            _close(again(x).numpy(), net(x).numpy(), "to_torch output")


def test_to_torch_refuses_dropout_with_a_reason(torch):
    from bptrace.pytorch import Unsupported

    scenario = bptrace.loads("""
input: [[0.5, 1.0, 2.0]]
layers: [{type: dropout, name: d, p: 0.5, mask: [[1, 0, 1]]}]
upstream: {delta: [[1, 1, 1]]}
""")
    with pytest.raises(Unsupported, match="dropout"):
        scenario.to_torch()
