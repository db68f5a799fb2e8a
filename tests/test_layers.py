"""The one-line rules must say what the loops do: the index arithmetic printed in a rule
is evaluated here and compared with the positions the layer's loops actually read."""
from __future__ import annotations

import itertools
import re

import pytest

import bptrace
from bptrace.layers.base import position


def evaluate(expression: str, **letters) -> int:
    """Evaluate an index expression as printed (`2i+u−1`, `(c−1)·16 + j`, `i+4−u`)."""
    python = expression.replace("−", "-").replace("·", "*")
    python = re.sub(r"(\d)([a-z(])", r"\1*\2", python)
    return eval(python, {}, letters)  # the expression comes from our own rule text


@pytest.mark.parametrize("stride, pad, flip, base, out_size, taps, dilation",
                         list(itertools.product((1, 2, 3), (0, 1, 2), (False, True), (0, 1), (1, 4), (1, 2, 5),
                                                (1, 2, 3))))
def test_position_text_matches_the_loop_arithmetic(stride, pad, flip, base, out_size, taps, dilation):
    text = position("i", out_size, "u", taps, stride=stride, pad=pad, flip=flip, base=base, dilation=dilation)
    for i in range(out_size):
        for u in range(taps):
            read = i * stride + dilation * ((taps - 1 - u) if flip else u) - pad      # as Conv.window
            assert evaluate(text, i=i + base, u=u + base) == read + base, text


@pytest.mark.parametrize("column", [False, True])
@pytest.mark.parametrize("base", [0, 1])
@pytest.mark.parametrize("shape", [(3, 2, 4), (1, 3, 3), (2, 1, 5), (1, 1, 4)])
def test_flatten_rule_matches_the_positions(column, base, shape):
    C, H, W = shape
    text = f"""
conventions: {{flatten: {'column' if column else 'row'}, index_base: {base}}}
input: {{random: uniform, shape: [{C}, {H}, {W}], seed: 0}}
layers: [{{type: flatten, name: f}}]
upstream: {{delta: {[0.0] * (C * H * W)}}}
"""
    scenario = bptrace.loads(text)
    trace = bptrace.run(scenario)
    rule = trace["f.out"].rule
    at = re.match(r"f\.out\[(.*?)\] = ", rule).group(1)
    layer = scenario.layers[0]
    for c, i, j in itertools.product(range(C), range(H), range(W)):
        assert evaluate(at, c=c + base, i=i + base, j=j + base) == layer.position(c, i, j) + base, rule


def test_conv_rule_on_a_one_by_one_output_names_no_output_index():
    trace = bptrace.run(bptrace.loads("""
input: [[1, 2], [3, 4]]
layers: [{type: conv, name: c, kernel: [[1, 0], [0, 1]]}]
upstream: {delta: 1}
"""))
    assert trace["c.out"].rule == "c.out = Σ_u Σ_v c.kernel[u,v] · input[u,v] + c.bias"
    assert trace["c.grad.kernel"].rule == "c.grad.kernel[u,v] = c.delta · input[u,v]"


def test_rules_count_from_one_under_index_base_one():
    trace = bptrace.run(bptrace.loads("""
conventions: {index_base: 1, kernel: convolution}
input: {random: uniform, shape: [6, 6], seed: 0}
layers: [{type: conv, name: c, kernel: [[1, 0, 0], [0, 1, 0], [0, 0, 1]]}]
upstream: {delta: [[0.5, 0.5, 0.5, 0.5], [0.5, 0.5, 0.5, 0.5], [0.5, 0.5, 0.5, 0.5], [0.5, 0.5, 0.5, 0.5]]}
"""))
    assert trace["c.out"].rule == "c.out[i,j] = Σ_u Σ_v c.kernel[u,v] · input[i+3−u,j+3−v] + c.bias"


# --- float noise is not a difference on paper -------------------------------------------------

def test_values_equal_but_for_float_noise_are_a_max_pool_tie():
    # c1.out = [0.3, 0.1, 0.1 + 0.2]: on paper the first and last are equal, so the first wins
    trace = bptrace.run(bptrace.loads("""
input: [0.3, 0.0, 0.1, 0.2]
layers:
  - {type: conv, name: c1, kernel: [1, 1]}
  - {type: maxpool, name: p1, size: 3}
  - {type: flatten, name: f}
upstream: {layer: f, delta: [1]}
"""))
    assert 0.1 + 0.2 != 0.3
    assert trace["c1.delta"].shown.tolist() == [1, 0, 0]
    assert trace["c1.grad.kernel"].shown.tolist() == [0.3, 0.0]
    assert any("tie" in note for note in trace["p1.out"].notes)


def test_an_exact_zero_blurred_by_rounding_is_on_relus_flat_side():
    # 0.1·0.7 + 0.2·(−0.2) − 0.3·0.1 = 0 exactly, but not in floats; relu′(0) = 0
    trace = bptrace.run(bptrace.loads("""
input: [[0.7, -0.2, 0.1]]
layers:
  - {type: dense, name: d, weights: [[0.1, 0.2, -0.3], [1, 1, 1]]}
  - {type: relu, name: r}
upstream: {delta: [1, 1]}
"""))
    z = trace["d.out"].shown[0]
    assert z != 0 and abs(z) < 1e-16
    assert trace["r.out"].shown[0] == 0
    assert trace["d.delta"].shown.tolist() == [0, 1]


def test_a_single_max_pool_output_renders(tmp_path):
    from click.testing import CliRunner

    from bptrace.cli import main

    path = tmp_path / "global.yaml"
    path.write_text("""
input: [[0.1, 0.2], [0.3, 0.4]]
layers:
  - {type: maxpool, name: p1, size: 2}
  - {type: flatten, name: f}
upstream: {layer: f, delta: [1]}
""")
    result = CliRunner().invoke(main, ["run", str(path)])
    assert result.exit_code == 0, result.output
    assert "p1.out = max(0.1, 0.2, 0.3, 0.4★) = 0.4 from input[1,1]" in result.output


# --- the registry ------------------------------------------------------------------------------

def test_every_registered_layer_type_is_complete():
    """Each type in LAYERS has its own loops and rules, a README row, a scenario that uses it
    (shipped, or a PyTorch oracle case), and the oracle knows how to compute it; its keys have
    a schema entry (tests/test_schema.py) and bad values are refused (tests/bad)."""
    import inspect
    from pathlib import Path

    import oracle
    from bptrace.layers import LAYERS, Layer
    from test_oracle_torch import CASES

    root = Path(__file__).resolve().parent.parent
    readme = (root / "README.md").read_text(encoding="utf-8")
    used = {layer.type for path in sorted((root / "scenarios").glob("*.yaml")) for layer in bptrace.load(path).layers}
    used |= {layer.type for text in CASES.values() for layer in bptrace.loads(text).layers}
    oracle_source = inspect.getsource(oracle.layer_forward)
    missing = []
    for kind, cls in LAYERS.items():
        for method in ("forward", "backward", "rules"):
            if getattr(cls, method) is getattr(Layer, method):
                missing.append(f"{kind}: no {method}")
        if not re.search(rf"^\| `{kind}` \|", readme, re.M):
            missing.append(f"{kind}: no row in the README's layer table")
        if kind not in used:
            missing.append(f"{kind}: no shipped scenario or oracle case uses it")
        if f'"{kind}"' not in oracle_source:
            missing.append(f"{kind}: tests/oracle.py cannot compute it")
    assert not missing, "\n".join(missing)


def test_conv_transpose_padding_crops_as_d2l_prints():
    """d2l.ai, "Transposed Convolution": ConvTranspose2d(1, 1, kernel_size=2, padding=1,
    bias=False) on X = K = [[0, 1], [2, 3]] prints [[4.]] (padding crops the first and last
    row and column of the stride-1 output [[0, 0, 1], [0, 4, 6], [4, 12, 9]])."""
    trace = bptrace.run(bptrace.loads("""
input: [[0, 1], [2, 3]]
layers: [{type: conv_transpose, name: t, kernel: [[0, 1], [2, 3]], padding: 1, bias: false}]
upstream: {delta: 1}
"""))
    assert trace["t.out"].shown.tolist() == 4
    assert "t.bias" not in trace.names() and "t.grad.bias" not in trace.names()


@pytest.mark.parametrize("base", [0, 1])
@pytest.mark.parametrize("channels, groups, per_group", [(4, 2, 1), (4, 2, 3), (3, 3, 1), (3, 3, 2), (2, 1, 2)])
def test_conv_transpose_rule_names_the_output_map_each_input_map_feeds(base, channels, groups, per_group):
    """The rule's `m = ...` (the output map of input map c's group) evaluates, in the index
    base, to the maps the loops write into."""
    text = f"""
conventions: {{index_base: {base}}}
input: {{random: uniform, shape: [{channels}, 2, 2], seed: 0}}
init: {{scheme: glorot_uniform, seed: 0}}
layers: [{{type: conv_transpose, name: t, out_channels: {groups * per_group}, size: 2, groups: {groups}}}]
upstream: {{delta: {[[[0.0] * 3] * 3] * (groups * per_group)}}}
"""
    scenario = bptrace.loads(text)
    layer = scenario.layers[0]
    rule = bptrace.run(scenario)["t.out"].rule
    found = re.search(r"m = (.*?) \(the output map", rule)
    for c in range(channels):
        maps = sorted({m for _, m, *_ in layer.landing(c, 0, 0)})
        if groups == 1:
            assert found is None and "t.out[o," in rule
            continue
        shown = [evaluate(found.group(1).replace("⌊", "(").replace("⌋", ")").replace("/", "//"), c=c + base, o=o + base)
                 for o in range(per_group)]
        assert shown == [m + base for m in maps], rule


def test_a_merge_of_a_map_and_features_that_look_alike_says_how_they_differ():
    # y, read by no conv, is 2 samples of 2 features; c.out is one 2×2 map: both show as 2×2,
    # and the message once said "c makes 2×2 but input y makes 2×2"
    text = ("inputs: {x: [[0.1, 0.2], [0.3, 0.4]], y: [[1, 2], [3, 4]]}\nlayers:\n"
            "  - {type: conv, name: c, from: x, kernel: [[1]]}\n  - {type: add, name: s, from: [c, y]}\n"
            "upstream: {layer: s, delta: [[1, 1], [1, 1]]}\n")
    with pytest.raises(bptrace.ScenarioError) as caught:
        bptrace.loads(text)
    message = str(caught.value)
    assert "makes 2×2 but input y makes 2×2" not in message
    assert "1 map of 2×2" in message and "2 samples of 2 features" in message


@pytest.mark.parametrize("kind", ["exp", "square", "elu", "softplus", "silu", "gelu", "sigmoid", "tanh", "relu"])
def test_element_wise_layers_give_noise_bounds_for_rounding(kind):
    """With rounding on, every step's float-noise bound is computed, backward ones included
    (an elu with rounding once crashed: its backward bound was not keyed by role)."""
    scenario = bptrace.loads(f"""
input: [[0.5, -1.2], [0.3, 2.0]]
layers:
  - {{type: conv, name: c, kernel: [[0.5, -0.25], [0.75, 0.1]], padding: 1}}
  - {{type: {kind}, name: a}}
loss: {{type: sum}}
rounding: {{decimals: 4, mode: half_up}}
""")
    trace = bptrace.run(scenario)
    step = trace["c.delta"]
    assert step.rounded and step.noise is not None and (step.noise >= 0).all()
