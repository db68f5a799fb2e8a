"""The catalog of mistakes: each one, planted in a sheet by an independent PyTorch model of
the mistake (tests/planted.py), is named by its id and by no other; correct sheets get no
diagnosis; wrong numbers no mistake makes are not explained."""
from __future__ import annotations

import numpy as np
import pytest

from bptrace.check import Checker, read_answers, references, scenario_answers
from bptrace.engine import run
from bptrace.errors import ScenarioError
from bptrace.check.mistakes import IDS, variants
from bptrace.scenario import Patch, load, loads
from conftest import ROOT, SCENARIOS
from planted import (conv_scenario, conv_sheet, expected_block, mlp_scenario, mlp_sheet, norm_scenario, norm_sheet,
                     tconv_scenario, tconv_sheet)

# (catalog id, the planted model's mistake, scenario options, the first wrong step)
PLANTED = [
    ("kernel-not-flipped", "kernel-not-flipped", {}, "c1.grad.kernel"),
    ("kernel-not-flipped", "kernel-not-flipped/delta", {}, "c1.grad.kernel"),
    ("kernel-not-flipped", "kernel-not-flipped/forward", {"kernel": "convolution"}, "h.grad.weights"),
    ("input-delta-kernel-not-rotated", "input-delta-kernel-not-rotated", {}, "input.delta"),
    ("input-delta-valid-not-full", "input-delta-valid-not-full", {}, "input.delta"),
    ("activation-derivative-missing", "activation-derivative-missing", {}, "p1.delta"),
    ("activation-derivative-wrong-argument", "activation-derivative-wrong-argument", {}, "p1.delta"),
    ("avgpool-scale-missing", "avgpool-scale-missing", {"pool": "avg"}, "c1.delta"),
    ("maxpool-routed-everywhere", "maxpool-routed-everywhere", {}, "c1.delta"),
    ("maxpool-wrong-position", "maxpool-wrong-position", {}, "c1.delta"),
    ("flatten-order-swapped", "flatten-order-swapped", {}, "s1.delta"),
    ("loss-gradient-sign", "loss-gradient-sign", {"start": "half_sse"}, "h.delta"),
    ("loss-factor-two", "loss-factor-two", {"start": "half_sse"}, "h.delta"),
    ("batch-averaged-not-summed", "batch-averaged-not-summed", {"start": "half_sse", "batch": 2}, "h.delta"),
    ("batch-averaged-not-summed", "batch-averaged-not-summed/parameters", {"batch": 2}, "h.grad.weights"),
    ("bias-gradient-not-summed", "bias-gradient-not-summed", {}, "c1.grad.bias"),
    ("update-sign", "update-sign", {"learning_rate": 0.1}, "c1.new.kernel"),
    ("sign-flipped", "sign-flipped", {}, "c1.grad.kernel"),
    ("transposed", "transposed", {}, "c1.grad.kernel"),
    ("learning-rate-in-gradient", "learning-rate-in-gradient", {"learning_rate": 0.1}, "h.grad.weights"),
    ("update-is-gradient", "update-is-gradient", {"learning_rate": 0.1}, "h.new.weights"),
]


def check_text(text: str):
    scenario = loads(text, "sheet.yaml")
    return Checker().check(scenario, scenario_answers(scenario), file="sheet.yaml", scenario_path="sheet.yaml")


def planted_report(mistake, options):
    return check_text(conv_scenario(**options) + expected_block(conv_sheet(mistake, **options)))


def test_every_catalog_id_has_a_planted_sheet():
    # the optimizer's mistakes are planted in tests/test_training.py, the recurrent and
    # expression-graph ones in tests/test_circuits.py; index-base and rounding-only in their
    # own tests below
    assert {case[0] for case in PLANTED + NORM_PLANTED} | {"batch-summed-not-averaged", "adam-no-bias-correction",
                                            "momentum-sign", "momentum-order", "conv-transpose-as-conv",
                                            "recurrent-next-step-path-missing",
                                            "branch-missing-where-used-twice", "index-base",
                                            "rounding-only"} == set(IDS)


@pytest.mark.parametrize("mistake, first", [("conv-transpose-as-conv", "input.delta"),
                                            ("conv-transpose-as-conv/kernel", "t1.grad.kernel")])
def test_a_transposed_conv_gradient_taken_as_a_convs_is_named(torch, mistake, first):
    report = check_text(tconv_scenario() + expected_block(tconv_sheet(mistake)))
    assert report.failed, "the planted mistake changed nothing the sheet answers"
    assert report.first_wrong.name == first
    assert [d.id for d in report.diagnosis] == ["conv-transpose-as-conv"]
    assert report.unexplained == []


def test_a_correct_transposed_conv_sheet_passes(torch):
    report = check_text(tconv_scenario() + expected_block(tconv_sheet()))
    assert not report.failed and report.diagnosis == []


@pytest.mark.parametrize("id_, mistake, options, first", PLANTED, ids=[case[1] for case in PLANTED])
def test_a_planted_mistake_is_named_by_its_id_alone(torch, id_, mistake, options, first):
    report = planted_report(mistake, options)
    assert report.failed, "the planted mistake changed nothing the sheet answers"
    assert report.first_wrong.name == first
    assert [d.id for d in report.diagnosis] == [id_]
    assert report.unexplained == []
    wrong = [row.label for row in report.rows if not row.passed]
    assert report.diagnosis[0].explains == wrong


@pytest.mark.parametrize("id_, mistake, first", [
    ("learning-rate-in-gradient", "learning-rate-in-gradient", "h.grad.weights"),
    ("update-is-gradient", "update-is-gradient", "h.new.weights"),
    ("update-sign", "update-sign", "c1.new.kernel")])
def test_mistakes_of_the_rate_are_named_with_torchs_optimizer_form_too(torch, id_, mistake, first):
    # `optimizer: {type: sgd, lr: 0.1}` is the same update as `learning_rate: 0.1`: the
    # mistakes and slips that read the learning rate read it from either form
    text = conv_scenario(learning_rate=0.1).replace("learning_rate: 0.1", "optimizer: {type: sgd, lr: 0.1}")
    assert "optimizer:" in text
    report = check_text(text + expected_block(conv_sheet(mistake, learning_rate=0.1)))
    assert report.first_wrong.name == first
    assert [d.id for d in report.diagnosis] == [id_]
    assert report.unexplained == []


def test_a_valid_convolution_of_the_wrong_shape_is_named(torch, tmp_path):
    # the 'valid' convolution makes a 3×3 input.delta where 5×5 belongs; in an answer file
    # that is a wrong answer (in a scenario's own `expected:` the loader refuses it)
    sheet = conv_sheet("input-delta-valid-not-full/shape")
    assert np.shape(sheet["input.delta"]) == (3, 3)
    answers = tmp_path / "answers.yaml"
    answers.write_text(expected_block(sheet))
    scenario = loads(conv_scenario())
    report = Checker().check(scenario, read_answers(answers, scenario), file=str(answers), scenario_path="x")
    wrong = [row for row in report.rows if not row.passed]
    assert [row.label for row in wrong] == ["input.delta"]
    assert wrong[0].how == "wrong shape: yours is 3×3, bptrace's 5×5"
    assert [d.id for d in report.diagnosis] == ["input-delta-valid-not-full"]


def test_a_bias_gradient_written_as_the_delta_map_is_named(torch, tmp_path):
    sheet = conv_sheet(None)
    sheet["c1.grad.bias"] = sheet["c1.delta"]
    answers = tmp_path / "answers.yaml"
    answers.write_text(expected_block(sheet))
    scenario = loads(conv_scenario())
    report = Checker().check(scenario, read_answers(answers, scenario), file=str(answers), scenario_path="x")
    assert [row.label for row in report.rows if not row.passed] == ["c1.grad.bias"]
    assert [d.id for d in report.diagnosis] == ["bias-gradient-not-summed"]


def test_a_wrong_shape_nothing_explains(torch, tmp_path):
    sheet = conv_sheet(None)
    sheet["c1.grad.kernel"] = [0.1, 0.2, 0.3]
    answers = tmp_path / "answers.yaml"
    answers.write_text(expected_block(sheet))
    scenario = loads(conv_scenario())
    report = Checker().check(scenario, read_answers(answers, scenario), file=str(answers), scenario_path="x")
    assert report.failed == 1 and report.diagnosis == [] and report.unexplained == ["c1.grad.kernel"]


def test_batch_summed_not_averaged_with_cross_entropy(torch):
    report = check_text(mlp_scenario() + expected_block(mlp_sheet("batch-summed-not-averaged")))
    assert report.first_wrong.name == "h2.delta"      # the loss's value is right: a mean
    assert [d.id for d in report.diagnosis] == ["batch-summed-not-averaged"]
    assert report.unexplained == []


def test_later_answers_that_follow_from_a_planted_mistake_are_not_new_errors(torch):
    report = planted_report("activation-derivative-missing", {})
    verdicts = {row.name: row.verdict for row in report.rows}
    assert verdicts["p1.delta"] == "wrong"
    for name in ("c1.delta", "c1.grad.kernel", "c1.grad.bias", "input.delta"):
        assert verdicts[name] == "follows", name


@pytest.mark.parametrize("options", [{}, {"pool": "avg"}, {"start": "half_sse"}, {"start": "half_sse", "batch": 2},
                                     {"batch": 2, "learning_rate": 0.1}, {"kernel": "convolution"}])
def test_a_correct_sheet_passes_without_diagnosis(torch, options):
    report = check_text(conv_scenario(**options) + expected_block(conv_sheet(None, **options)))
    assert report.failed == 0 and report.passed > 40
    assert report.diagnosis == [] and report.first_wrong is None


def test_a_correct_cross_entropy_sheet_passes(torch):
    report = check_text(mlp_scenario() + expected_block(mlp_sheet(None)))
    assert report.failed == 0 and report.diagnosis == []


@pytest.mark.parametrize("step", ["p1.delta", "c1.delta", "c1.grad.kernel", "input.delta", "h.grad.weights"])
def test_arbitrary_wrong_numbers_are_not_explained(torch, step):
    sheet = conv_sheet(None)
    rng = np.random.default_rng(len(step))
    sheet[step] = rng.uniform(-0.1, 0.1, size=np.shape(sheet[step]))
    report = check_text(conv_scenario() + expected_block(sheet))
    assert report.failed
    assert report.diagnosis == []
    assert report.unexplained == [row.label for row in report.rows if not row.passed]


def test_one_slipped_digit_is_not_explained(torch):
    sheet = conv_sheet(None)
    sheet["c1.grad.kernel"][1, 0] += 0.001
    report = check_text(conv_scenario() + expected_block(sheet))
    assert report.failed == 1 and report.diagnosis == []


def test_indistinguishable_mistakes_are_all_reported(torch):
    # with sse and a batch of 2, leaving out sse's factor 2 and averaging over the batch
    # both halve the output's delta: the sheet cannot tell them apart, so both are named
    text = conv_scenario(start="sse", batch=2)
    sheet = conv_sheet(None, start="half_sse", batch=2)   # half_sse's delta is sse's halved
    report = check_text(text + expected_block({"h.delta": sheet["h.delta"]}))
    assert {d.id for d in report.diagnosis} == {"loss-factor-two", "batch-averaged-not-summed"}


def test_two_mistakes_in_one_sheet_are_both_named(torch):
    sheet = conv_sheet("maxpool-routed-everywhere")
    flipped = conv_sheet("kernel-not-flipped")
    # the kernel gradient turned by 180°, from the student's own (wrongly routed) c1.delta
    x = np.array(planted_input())
    d = sheet["c1.delta"]
    gradient = np.array([[np.sum(d * x[u:u + 4, v:v + 4]) for v in range(2)] for u in range(2)])
    sheet["c1.grad.kernel"] = gradient[::-1, ::-1]
    assert not np.allclose(sheet["c1.grad.kernel"], flipped["c1.grad.kernel"])
    del sheet["input.delta"], sheet["c1.grad.bias"]
    report = check_text(conv_scenario() + expected_block(sheet))
    assert [d.id for d in report.diagnosis] == ["maxpool-routed-everywhere", "kernel-not-flipped"]
    assert report.unexplained == []


def planted_input():
    from planted import INPUT
    return INPUT


def test_the_catalog_leaves_the_scenario_alone():
    text = conv_scenario(start="half_sse", batch=2, learning_rate=0.1)
    scenario = loads(text)
    layers = [(type(layer), dict(vars(layer))) for layer in scenario.layers]
    found = variants(scenario)
    assert {v.id for v in found} >= {"kernel-not-flipped", "loss-gradient-sign", "update-sign"}
    assert [(type(layer), dict(vars(layer))) for layer in scenario.layers] == layers
    assert scenario.loss.function().__class__.__name__ == "HalfSSE"
    assert scenario.learning_rate == 0.1


def test_mistaken_runs_are_shared_by_the_sheets_of_one_problem(torch):
    checker = Checker()
    text = conv_scenario()
    for mistake in ("maxpool-routed-everywhere", "kernel-not-flipped"):
        scenario = loads(text + expected_block(conv_sheet(mistake)))
        checker.check(scenario, scenario_answers(scenario), file="a", scenario_path="a")
    assert len(checker._models) == 1
    catalog = next(iter(checker._models.values())).catalog
    assert catalog._runs, "the second sheet found no runs to share"


def _isolated_changes(scenario, variant, refs):
    """The steps that compute something else under the mistake when every step reads the
    clean numbers: the ones whose own rule the mistake changed."""
    pinned = {name: Patch(name, values, np.ones(values.shape, dtype=bool)) for name, values in refs.items()}
    isolated = references(run(variant.scenario, overrides=pinned, terms=False), variant.scenario)
    return {name for name in refs if not np.array_equal(isolated[name], refs[name])}


PLANTED_SCENARIOS = [conv_scenario(), conv_scenario(pool="avg", start="half_sse", batch=2, learning_rate=0.1),
                     conv_scenario(kernel="convolution", start="mse", batch=2), mlp_scenario(), tconv_scenario(),
                     # a conv after the layer the backward pass starts from: its forward only
                     conv_scenario().split("  - {type: sigmoid")[0]
                     + "  - {type: conv, name: c2, kernel: [[0.5, -0.2], [0.1, 0.3]]}\n"
                       "upstream: {layer: p1, delta: [[0.1, -0.2], [0.3, 0.4]]}\n"]


@pytest.mark.parametrize("text", PLANTED_SCENARIOS)
def test_each_variant_changes_exactly_the_steps_it_declares(text):
    scenario = loads(text)
    refs = references(run(scenario, terms=False), scenario)
    for variant in variants(scenario):
        assert _isolated_changes(scenario, variant, refs) == variant.changes, (variant.id, variant.form)


@pytest.mark.parametrize("path", [p for p in SCENARIOS if "zhang" not in p.name], ids=lambda p: p.stem)
def test_variants_of_the_shipped_scenarios_change_no_undeclared_step(path):
    scenario = load(path)
    refs = references(run(scenario, terms=False), scenario)
    for variant in variants(scenario):
        try:
            changed = _isolated_changes(scenario, variant, refs)
        except ScenarioError:
            continue
        assert changed <= variant.changes, (variant.id, variant.form)


@pytest.mark.parametrize("written, named", [("0.1", False), ("0.15", False), ("0.1495", True)])
def test_a_mistake_is_named_only_on_enough_digits(written, named):
    # p1.delta[0,0] with the sigmoid's slope left out is s1.delta[0,0] = 0.1495; written
    # with one or two digits, that is as likely a coincidence as a diagnosis
    text = (ROOT / "scenarios/seed001.yaml").read_text() + f"expected:\n  p1.delta[0,0]: {written}\n"
    report = check_text(text)
    assert report.failed == 1
    assert [d.id for d in report.diagnosis] == (["activation-derivative-missing"] if named else [])


@pytest.mark.parametrize("loss, rule", [
    ("{type: half_sse, target: [[0.0, 1.0]]}", "s.delta = s.out − target;"),
    ("{type: cross_entropy, target: [1]}", "s.delta[n,k] = (softmax(s.out[n])[k] − target[n,k]) / N"),
    ("{type: bce, target: [[0.0, 1.0]]}", "s.delta = (s.out − target) / (s.out · (1 − s.out)) / M"),
])
def test_the_loss_gradient_sign_message_gives_the_losss_own_gradient(loss, rule):
    scenario = loads("input: [[0.2, -0.4]]\nlayers:\n"
                     "  - {type: dense, name: h, weights: [[0.5, -0.3], [0.1, 0.2]]}\n"
                     f"  - {{type: sigmoid, name: s}}\nloss: {loss}\n")
    (variant,) = [v for v in variants(scenario) if v.id == "loss-gradient-sign"]
    assert rule in variant.message and "flip the sign of s.delta" in variant.message


@pytest.mark.parametrize("base", [0, 1])
def test_answers_in_the_other_index_base_are_named(torch, base):
    """Elements written as `c1.delta[i,j]` counting from the other base: each holds the
    element its label names in that base."""
    from planted import written
    delta = conv_sheet()["c1.delta"]                        # torch's, [4][4]
    text = conv_scenario().replace("conventions: {kernel: correlation}",
                                   f"conventions: {{kernel: correlation, index_base: {base}}}")
    lines = ["expected:"]
    cells = [(0, 2), (1, 1), (2, 1), (0, 1)] if base == 0 else [(1, 1), (2, 1), (3, 3), (1, 2)]
    for i, j in cells:
        # the student counts from the other base: the label says i + other, this scenario reads i + base
        other = 1 - base
        lines.append(f"  c1.delta[{i + other},{j + other}]: {written(delta[i, j])}")
    report = check_text(text + "\n".join(lines) + "\n")
    assert report.failed == 3                       # the last one's neighbour is 0 like itself
    assert [d.id for d in report.diagnosis] == ["index-base"]
    assert report.unexplained == []


def test_the_kernel_not_flipped_diagnosis_survives_round_4_truncate(torch):
    """`check --round 4 --mode truncate` of a sheet worked without truncating: the numbers
    off by rounding only are named so, and the planted mistake is still found."""
    from bptrace.scenario import Rounding
    scenario = loads(conv_scenario() + expected_block(conv_sheet("kernel-not-flipped")), "sheet.yaml")
    report = Checker(rounding=Rounding(4, "truncate", ("all",))).check(
        scenario, scenario_answers(scenario), file="sheet.yaml", scenario_path="sheet.yaml")
    ids = {d.id: d.explains for d in report.diagnosis}
    assert set(ids) == {"rounding-only", "kernel-not-flipped"}
    assert ids["kernel-not-flipped"] == [f"c1.grad.kernel[{i},{j}]" for i in range(2) for j in range(2)]
    assert report.unexplained == []


def test_a_matrix_written_transposed_in_the_wrong_shape_is_named(torch, tmp_path):
    answers = tmp_path / "answers.yaml"
    answers.write_text(expected_block(conv_sheet("transposed/shape")))       # h.grad.weights as 4×2
    scenario = loads(conv_scenario())
    report = Checker().check(scenario, read_answers(answers, scenario), file=str(answers), scenario_path="x")
    assert [row.label for row in report.rows if not row.passed] == ["h.grad.weights"]
    assert [d.id for d in report.diagnosis] == ["transposed"]


def test_a_late_wrong_step_runs_only_its_layers_mistakes_from_that_layer(torch, monkeypatch):
    """Every delta right, the kernel gradient turned: only c1's mistakes are run, and they
    reuse the clean run's loops up to c1's backward pass (no layer runs forward again)."""
    from bptrace.layers import Conv, Dense

    scenario = loads(conv_scenario() + expected_block(conv_sheet("kernel-not-flipped")), "sheet.yaml")
    checker = Checker()
    checker.model(scenario)
    from bptrace.check import checker as checking

    calls, diagnosing = [], []
    for cls in (Conv, Dense):
        for method in ("forward", "backward"):
            original = getattr(cls, method)
            monkeypatch.setattr(cls, method, lambda self, *a, _o=original, _m=method, **k:
                                (diagnosing and calls.append((self.name, _m))) or _o(self, *a, **k))
    diagnose = checking.diagnose
    monkeypatch.setattr(checking, "diagnose", lambda *a, **k: diagnosing.append(1) or diagnose(*a, **k))
    report = checker.check(scenario, scenario_answers(scenario), file="sheet.yaml", scenario_path="sheet.yaml")
    assert [d.id for d in report.diagnosis] == ["kernel-not-flipped"]
    catalog = checker.model(scenario).catalog
    ran = [catalog.variants[position] for position, run in catalog._runs.items()]
    assert ran and all(variant.layers == ("c1",) for variant in ran)
    # the catalog's runs: c1's backward pass alone (a forward call left is the float-noise
    # bound's magnitude run before the max-pool, which the reuse does not cover yet)
    assert {call for call in calls if call[1] == "backward"} == {("c1", "backward")}
    assert ("h", "forward") not in calls
NEW_LAYER_CASES = ["conv-dilation-groups-convolution-no-bias", "dense-no-bias", "conv-transpose-every-option",
                   "maxpool-ceil-dilation", "avgpool-ceil-mode-divisors", "global-pools-dense", "upsample-scales"]


@pytest.mark.parametrize("case", NEW_LAYER_CASES)
def test_variants_of_the_new_layers_and_options_change_no_undeclared_step(case):
    """The catalog on dilation, bias: false, conv_transpose, ceil_mode windows whose divisors
    differ, global pools and upsample: each variant changes only the steps it declares, and
    layers without a bias get no bias mistake."""
    from test_oracle_torch import CASES

    scenario = loads(CASES[case])
    refs = references(run(scenario, terms=False), scenario)
    found = variants(scenario)
    for variant in found:
        assert _isolated_changes(scenario, variant, refs) <= variant.changes, (variant.id, variant.form)
        assert all("bias" in scenario.layer(name).params for name in variant.layers) \
            or variant.id != "bias-gradient-not-summed"
# --- batch norm and dropout: dense → batchnorm → tanh → dropout → dense (tests/planted.py) ---

NORM_PLANTED = [
    ("batchnorm-statistics-constant", "h1.delta"),
    ("dropout-mask-missing", "t.delta"),
    ("dropout-scale-missing", "t.delta"),
]


@pytest.mark.parametrize("id_, first", NORM_PLANTED, ids=[case[0] for case in NORM_PLANTED])
def test_a_planted_norm_mistake_is_named_by_its_id_alone(torch, id_, first):
    report = check_text(norm_scenario() + expected_block(norm_sheet(id_)))
    assert report.first_wrong.name == first
    assert [d.id for d in report.diagnosis] == [id_]
    assert report.unexplained == []
    assert report.diagnosis[0].explains == [row.label for row in report.rows if not row.passed]


def test_a_correct_norm_sheet_passes_without_diagnosis(torch):
    # also runs the whole catalog on a batch-norm network: the batch-averaged variant swaps
    # batch norm's class too, and must take its stage callback
    report = check_text(norm_scenario() + expected_block(norm_sheet(None)))
    assert report.failed == 0 and report.passed >= 30 and report.diagnosis == []


def test_norm_variants_change_exactly_the_steps_they_declare():
    scenario = loads(norm_scenario())
    refs = references(run(scenario, terms=False), scenario)
    found = variants(scenario)
    assert {"batchnorm-statistics-constant", "dropout-mask-missing", "dropout-scale-missing",
            "batch-averaged-not-summed"} <= {v.id for v in found}
    for variant in found:
        assert _isolated_changes(scenario, variant, refs) == variant.changes, (variant.id, variant.form)


@pytest.mark.parametrize("layer, absent", [
    ("{type: batchnorm, name: bn, mode: eval}", "batchnorm-statistics-constant"),   # its rule already
    ("{type: dropout, name: bn, p: 0.5, mask: [[1, 1], [1, 1]]}", "dropout-mask-missing"),   # nothing dropped
    ("{type: dropout, name: bn, p: 0, mask: [[1, 0], [1, 1]]}", "dropout-scale-missing"),    # 1/(1 − 0) = 1
])
def test_norm_mistakes_that_would_change_nothing_are_not_in_the_catalog(layer, absent):
    scenario = loads(f"input: [[0.2, -0.4], [0.7, 0.1]]\nlayers:\n  - {layer}\nupstream: {{delta: [[1, 2], [3, 4]]}}\n")
    assert absent not in {v.id for v in variants(scenario)}
