"""Structurally mutated scenarios never crash bptrace, anywhere in the tool (issue 9).

tests/test_fuzz.py mutates characters; this module mutates meaning.  Each shipped scenario
is read into its data tree, which is changed the ways a person reworking a problem changes
it (layers dropped, duplicated, reordered or retyped; sizes, strides, paddings and groups
changed; kernels swapped between layers; tensors given a row or an axis more or less;
numbers made 0, negative, 1e150, 1e-150 or equal to a neighbour; the loss or the upstream
error switched; conventions toggled; rounding, given and expected entries added), then
written back as YAML or JSON.  Every mutant goes through the whole tool in-process:

* `run --format json` (CliRunner): exit 0 or 2.  Exit 2 names the file and line; exit 0 is
  strict JSON (no NaN or Infinity) whose numbers are all finite.
* on exit 0, every other renderer (text, Markdown, LaTeX, HTML), `explain` of a few elements
  and a whole step (one of them through the CLI), `explain --unrolled` of a small conv layer,
  and `check`: the scenario's own `expected:` and an answer file made from the trace's
  values, some perturbed.  Check exits 0, 1 or 2 and its JSON report is strict JSON.

Nothing may raise but the typed `ScenarioError`, warn (a Python warning reaches the
terminal), or run past TIMEOUT seconds of CPU time.  The default size finishes in well under a minute; BPTRACE_LONG=1 (or `--fuzz-long`) runs
LONG_MUTANTS files.  The RNG is seeded: every run tries the same files.
"""
from __future__ import annotations

import copy
import io
import json
import math
import os
import random
import re
import signal
import time
import traceback
import warnings
from collections import Counter

import numpy as np
import pytest
import yaml
from click.testing import CliRunner

from bptrace import check as check_module
from bptrace import scenario as scenario_module
from bptrace.check import check_files
from bptrace.cli import main
from bptrace.engine import run
from bptrace.explain import explain, explain_many
from bptrace.layers import LAYERS
from bptrace.losses import LOSSES
from bptrace.render import check_json, check_text, html, latex, markdown, text
from bptrace.render.explain_text import render as render_explanation
from bptrace.render.explain_text import render_unrolled
from bptrace.scenario import load
from bptrace.source import parse_text
from bptrace.tensors import display_index, format_index
from bptrace.unrolled import unroll
from conftest import SCENARIOS
from test_fuzz import MIN_WORK_LIMIT, WORK_HEADROOM, _finite, _refuse_constant

MUTANTS = 600            # the default (CI) run
LONG_MUTANTS = 30_000    # BPTRACE_LONG=1 or --fuzz-long
SEED = 20261129
# CPU seconds for one mutant's whole pipeline: past this it is a hang (CPU time, so that a
# busy machine does not make a slow file look like a hang)
TIMEOUT = 20
# Zhang 2016's network costs about a second a run; its mutants start from a 16x16 input (the
# smallest its two 5x5 convolutions and two poolings fit) and 2 and 3 filters instead of 6
# and 12: the same layers and conventions (true convolution, column flatten, indices from 1)
# at a hundredth of the cost.
SHRUNK = {"zhang2016": {("input", "shape"): [16, 16], ("layers", 0, "out_channels"): 2,
                        ("layers", 3, "out_channels"): 3}}
UNROLL_WORK = 5_000      # explain --unrolled only on networks this small (its M is dense)
CLI_EVERY = 4            # every 4th file also goes through `explain` and `check` on the CLI

HUGE, TINY = 1e150, 1e-150
NUMBERS = [0, 0.0, -0.0, 1, -1, 2, 0.5, -0.5, 0.25, 0.1, 0.3, 1e-12, 100, HUGE, -HUGE, TINY, -TINY,
           1e300, 1e-300, 5e-324, 1.7e308, 12345.678, 0.005, -0.185, 0.2993]
PARAMETERS = ("size", "stride", "padding", "groups", "out_channels", "out", "slope")
PARAMETER_VALUES = [0, 1, 1, 2, 2, 3, 4, 5, -1, 7, 100, 1.5, 10 ** 6, True, "2", None, [2, 2], [1, 2],
                    [0, 1], [3, 1]]
TENSOR_KEYS = ("kernel", "weights", "bias")
ROUNDING_MODES = ("half_up", "half_even", "truncate")
ROUNDING_APPLY = ("forward", "backward", "all")


# --- the data tree --------------------------------------------------------------------------

def _numbers_at(node, path=()):
    """Paths of every number leaf (not bools)."""
    if isinstance(node, dict):
        for key, value in node.items():
            yield from _numbers_at(value, path + (key,))
    elif isinstance(node, list):
        for i, value in enumerate(node):
            yield from _numbers_at(value, path + (i,))
    elif isinstance(node, (int, float)) and not isinstance(node, bool):
        yield path


def _lists_at(node, path=()):
    """Paths of every list of numbers or of lists (tensors and their rows)."""
    if isinstance(node, dict):
        for key, value in node.items():
            yield from _lists_at(value, path + (key,))
    elif isinstance(node, list):
        if node and all(isinstance(v, (int, float, list)) and not isinstance(v, bool) for v in node):
            yield path
        for i, value in enumerate(node):
            yield from _lists_at(value, path + (i,))


def _get(tree, path):
    for key in path:
        tree = tree[key]
    return tree


def _set(tree, path, value):
    _get(tree, path[:-1])[path[-1]] = value


def _map_numbers(node, fn):
    if isinstance(node, list):
        return [_map_numbers(v, fn) for v in node]
    if isinstance(node, (int, float)) and not isinstance(node, bool):
        return fn(node)
    return node


def _layers(tree):
    layers = tree.get("layers")
    return layers if isinstance(layers, list) else []


def _layer_maps(tree):
    return [layer for layer in _layers(tree) if isinstance(layer, dict)]


def _a_number(rng, near=None):
    if near is not None and rng.random() < 0.4:
        return rng.choice([-near, near * 10, near / 10, round(near, 1), near + 1e-17, -0.0 if near == 0 else near])
    return rng.choice(NUMBERS)


# --- structural mutations: each changes `tree` in place; `info` is the original trace ---------

def drop_layer(tree, rng, info):
    layers = _layers(tree)
    if len(layers) > 1:
        del layers[rng.randrange(len(layers))]


def duplicate_layer(tree, rng, info):
    layers = _layers(tree)
    if layers:
        at = rng.randrange(len(layers))
        twin = copy.deepcopy(layers[at])
        if isinstance(twin, dict) and "name" in twin and rng.random() < 0.7:
            twin["name"] = f"{twin['name']}_b"           # else: a duplicate name
        layers.insert(at + rng.choice([0, 1]), twin)


def reorder_layers(tree, rng, info):
    layers = _layers(tree)
    if len(layers) > 1:
        i, j = rng.sample(range(len(layers)), 2)
        layers[i], layers[j] = layers[j], layers[i]


def change_layer_type(tree, rng, info):
    layers = _layer_maps(tree)
    if layers:
        layer = rng.choice(layers)
        layer["type"] = rng.choice(list(LAYERS) + ["dense", "conv", "Conv", "pool"])
        if rng.random() < 0.5:
            for key in TENSOR_KEYS:
                layer.pop(key, None)


def insert_layer(tree, rng, info):
    layers = _layers(tree)
    kind = rng.choice(list(LAYERS))
    layer = {"type": kind}
    if kind == "conv":
        layer.update(rng.choice([{"kernel": [[0.5, -0.25], [0.1, 0.2]]}, {"out_channels": 2, "size": 2},
                                 {"kernel": [1, -1]}, {"out_channels": 1, "size": 1, "padding": 1}]))
    elif kind in ("maxpool", "avgpool"):
        layer.update({"size": rng.choice([1, 2, 3]), "stride": rng.choice([1, 2])})
    elif kind == "dense":
        layer.update(rng.choice([{"out": rng.choice([1, 2, 3])}, {"weights": [[0.5, -0.5]], "bias": [0]}]))
    elif kind == "leaky_relu" and rng.random() < 0.5:
        layer["slope"] = rng.choice([0.01, 0, -1, 2])
    if rng.random() < 0.3:
        tree.setdefault("init", {"scheme": "glorot_uniform", "seed": rng.randrange(5)})
    layers.insert(rng.randrange(len(layers) + 1), layer)


def change_parameter(tree, rng, info):
    layers = _layer_maps(tree)
    if layers:
        layer = rng.choice(layers)
        present = [key for key in PARAMETERS if key in layer]
        key = rng.choice(present) if present and rng.random() < 0.6 else rng.choice(PARAMETERS)
        layer[key] = rng.choice(PARAMETER_VALUES)


def swap_parameters(tree, rng, info):
    """A kernel, weights or bias moved to another layer (maybe of another kind)."""
    owners = [(layer, key) for layer in _layer_maps(tree) for key in TENSOR_KEYS if key in layer]
    if len(owners) >= 2:
        (a, ka), (b, kb) = rng.sample(owners, 2)
        a[ka], b[kb] = b[kb], a[ka]
    elif owners:
        layer, key = owners[0]
        other = rng.choice(_layer_maps(tree))
        other[rng.choice(TENSOR_KEYS)] = copy.deepcopy(layer[key])


def reshape_tensor(tree, rng, info):
    """A row, an element or an axis more or less, or a transpose."""
    paths = list(_lists_at(tree))
    if not paths:
        return
    path = rng.choice(paths)
    node = _get(tree, path)
    how = rng.randrange(6)
    if how == 0:
        node.append(copy.deepcopy(rng.choice(node)))
    elif how == 1 and len(node) > 1:
        del node[rng.randrange(len(node))]
    elif how == 2:
        value = [copy.deepcopy(node)] if rng.random() < 0.5 else [copy.deepcopy(node), copy.deepcopy(node)]
        _set(tree, path, value) if path else None
    elif how == 3 and path:
        _set(tree, path, copy.deepcopy(node[0]))
    elif how == 4 and path:
        try:
            _set(tree, path, np.array(node, dtype=float).T.tolist())
        except ValueError:                         # ragged
            pass
    elif how == 5:
        node.clear()


def change_number(tree, rng, info):
    paths = list(_numbers_at(tree))
    if not paths:
        return
    for path in rng.sample(paths, min(len(paths), rng.choice([1, 1, 2, 5]))):
        _set(tree, path, _a_number(rng, _get(tree, path)))


def make_ties(tree, rng, info):
    """Every number of a tensor equal to one of its own (ties in max-pool, relu at the kink)."""
    paths = list(_lists_at(tree))
    if paths:
        path = rng.choice(paths)
        numbers = [_get(tree, path + p) for p in _numbers_at(_get(tree, path))]
        if numbers:
            value = rng.choice(numbers + [0])
            _set(tree, path, _map_numbers(_get(tree, path), lambda v: value if rng.random() < 0.7 else v))


def rescale_tensor(tree, rng, info):
    paths = [p for p in _lists_at(tree) if p and p[0] != "expected"]
    if paths:
        path = rng.choice(paths)
        factor = rng.choice([HUGE, TINY, -1, 0, 1e10, 1e-10, 1e17, 1e300])
        _set(tree, path, _map_numbers(_get(tree, path), lambda v: v * factor))


def switch_loss(tree, rng, info):
    choice = rng.randrange(5)
    targets = [0, 1, 2, [1, 0], [0, 1], [0.5, 0.5], [[1, 0], [0, 1]], [0.3, 0.7, 0.0], -1, 1.5,
               [0, 0, 1, 0, 0, 0, 0, 0, 0, 0]]
    if choice == 0:
        tree.pop("upstream", None)
        tree["loss"] = {"type": rng.choice(list(LOSSES) + ["nll"]), "target": rng.choice(targets)}
    elif choice == 1 and isinstance(tree.get("loss"), dict):
        tree["loss"]["type"] = rng.choice(list(LOSSES))
    elif choice == 2 and isinstance(tree.get("loss"), dict):
        tree["loss"]["target"] = rng.choice(targets)
    elif choice == 3:
        tree.pop("loss", None)
        names = [layer.get("name") for layer in _layer_maps(tree) if layer.get("name")]
        upstream = {"delta": rng.choice([[0.25, -0.15], 0.5, [[0.1, 0.2], [0.3, 0.4]], [0.1, -0.2, 0.3, 0.05]])}
        if names and rng.random() < 0.8:
            upstream["layer"] = rng.choice(names)
        tree["upstream"] = upstream
    else:
        if rng.random() < 0.5:
            tree.pop("loss", None)
        if rng.random() < 0.5:
            tree.pop("upstream", None)
        if "upstream" in tree and "loss" not in tree and rng.random() < 0.5:
            tree["loss"] = {"type": "half_sse", "target": 0}          # both


def toggle_conventions(tree, rng, info):
    conventions = tree.get("conventions")
    if not isinstance(conventions, dict):
        conventions = tree["conventions"] = {}
    key = rng.choice(["kernel", "flatten", "index_base"])
    conventions[key] = rng.choice({"kernel": ["correlation", "convolution", "flipped"],
                                   "flatten": ["row", "column", "channel"],
                                   "index_base": [0, 1, 2, -1]}[key])


def _element_key(info, rng):
    """A trace name, or one element of it, as a person writes it in this scenario."""
    name = rng.choice(info["names"])
    shape = info["shapes"][name]
    if rng.random() < 0.5 or not shape:
        return name, None
    index = tuple(rng.randrange(n) for n in shape)
    return name + format_index(display_index(shape, index, info["base"])), index


def _perturbed(values, rng):
    """A student's version of the trace's values: rounded, truncated, slightly or badly off."""
    how = rng.randrange(6)
    array = original = np.asarray(values, dtype=float)
    with np.errstate(all="ignore"):          # 1.7e308 rounded or moved: kept as it was
        array = _perturb(array, how, rng)
    if not np.isfinite(array).all():
        array = original
    return array.tolist() if array.ndim else float(array)


def _perturb(array, how, rng):
    if how == 0:
        array = np.round(array, rng.choice([2, 4, 6]))
    elif how == 1:
        scale = 10.0 ** rng.choice([2, 4])
        array = np.trunc(array * scale) / scale
    elif how == 2 and array.size:
        flat = array.reshape(-1).copy()
        flat[rng.randrange(flat.size)] += rng.choice([0.1, -1e-5, 1.0, HUGE, -1e308])
        array = flat.reshape(array.shape)
    elif how == 3:
        array = -array
    elif how == 4 and array.ndim >= 2:
        array = array[..., ::-1]
    return array


def _answers(info, rng, count, exact=0.0):
    """Answers to `count` trace values, each exactly the trace's with probability `exact`."""
    answers = {}
    for _ in range(count):
        key, index = _element_key(info, rng)
        values = info["values"][key.split("[")[0]]
        values = values[index] if index is not None else np.squeeze(values)
        answers[key] = np.asarray(values).tolist() if rng.random() < exact else _perturbed(values, rng)
    return answers


def add_given(tree, rng, info):
    given = tree.get("given")
    if not isinstance(given, dict):
        given = tree["given"] = {}
    given.update(_answers(info, rng, rng.choice([1, 1, 2])))


def add_expected(tree, rng, info):
    expected = tree.get("expected")
    if not isinstance(expected, dict):
        expected = tree["expected"] = {}
    expected.update(_answers(info, rng, rng.choice([1, 2, 4])))


def add_rounding(tree, rng, info):
    rounding = {"decimals": rng.choice([0, 1, 2, 4, 4, 6, 15, 20, 21, -1])}
    if rng.random() < 0.8:
        rounding["mode"] = rng.choice(ROUNDING_MODES)
    if rng.random() < 0.7:
        rounding["apply"] = rng.sample(list(ROUNDING_APPLY) + info["names"][:8], rng.choice([1, 2]))
    tree["rounding"] = rounding


def change_learning_rate(tree, rng, info):
    if "learning_rate" in tree and rng.random() < 0.3:
        del tree["learning_rate"]
    else:
        tree["learning_rate"] = rng.choice([0.1, 0.5, 1, 0, -0.1, HUGE, TINY, 1e308])


def change_input(tree, rng, info):
    """The input as a random draw, or a fixed tensor of another size."""
    how = rng.randrange(3)
    if how == 0:
        spec = {"random": rng.choice(["uniform", "normal", "gauss"]),
                "shape": rng.choice([[5, 5], [2, 1, 4, 4], [6], [3, 3], [1, 7, 7], [0, 3], [16, 16]])}
        if rng.random() < 0.3:
            spec.update({"low": rng.choice([-1, 0, 0.5]), "high": rng.choice([1, 2, 0.5])})
        if rng.random() < 0.7:
            spec["seed"] = rng.randrange(100)
        tree["input"] = spec
    elif how == 1:
        rows, cols = rng.choice([(1, 1), (2, 2), (3, 3), (4, 4), (5, 5), (6, 6), (1, 6), (3, 5)])
        tree["input"] = [[round(rng.uniform(-1, 1), 2) for _ in range(cols)] for _ in range(rows)]
    else:
        tree["input"] = [copy.deepcopy(tree.get("input")) for _ in range(rng.choice([1, 2]))]


def rename_layer(tree, rng, info):
    layers = _layer_maps(tree)
    if layers:
        layer = rng.choice(layers)
        others = [other.get("name") for other in layers if other.get("name")]
        layer["name"] = rng.choice(others + ["input", "loss", "x y", "c1", "L2", "é", ""])


def change_init(tree, rng, info):
    if rng.random() < 0.3:
        tree.pop("init", None)
    else:
        tree["init"] = {"scheme": rng.choice(["glorot_uniform", "he", "zeros"]),
                        "seed": rng.choice([0, 1, -1, 2 ** 40])}


def drop_key(tree, rng, info):
    """Drop a top-level key, or one of a layer's keys."""
    if rng.random() < 0.5 and tree:
        del tree[rng.choice(list(tree))]
    else:
        layers = _layer_maps(tree)
        if layers:
            layer = rng.choice(layers)
            if layer:
                del layer[rng.choice(list(layer))]


MUTATIONS = [drop_layer, duplicate_layer, reorder_layers, change_layer_type, insert_layer,
             change_parameter, change_parameter, swap_parameters, reshape_tensor, reshape_tensor,
             change_number, change_number, make_ties, rescale_tensor, switch_loss, switch_loss,
             toggle_conventions, add_given, add_expected, add_expected, add_rounding, change_learning_rate,
             change_input, rename_layer, change_init, drop_key]


# --- the original scenarios ------------------------------------------------------------------

def _base(path):
    """The scenario's data tree (Zhang's shrunk), and what its trace holds."""
    tree = parse_text(path.read_text(encoding="utf-8"), str(path)).data
    for at, value in SHRUNK.get(path.stem, {}).items():
        _set(tree, at, value)
    # keys in the order written: an expression graph's `nodes:` are read in order
    scenario = scenario_module.from_document(parse_text(yaml.safe_dump(tree, sort_keys=False)), work_limit=None)
    trace = run(scenario)
    info = {"names": trace.names(), "shapes": {s.name: s.shape for s in trace.steps},
            "values": {s.name: s.values for s in trace.steps}, "base": scenario.conventions.index_base,
            "work_limit": max(WORK_HEADROOM * scenario.work(), MIN_WORK_LIMIT)}
    return tree, info


def dump(tree, rng) -> tuple[str, str]:
    """The mutated tree as a scenario file: YAML (block or flow) or JSON."""
    how = rng.randrange(4)
    if how == 0:
        return json.dumps(tree, ensure_ascii=rng.random() < 0.5), ".json"
    return yaml.safe_dump(tree, sort_keys=False, allow_unicode=True,
                          default_flow_style=None if how < 3 else True, width=100), ".yaml"


def mutants(count, shard=(0, 1)):
    """(number, scenario stem, info, how, text, suffix, rng): every shipped scenario in turn.
    Each mutant has its own seeded RNG (also used by the pipeline), so that a shard of a long
    run tries exactly the files the whole run would."""
    bases = [(path.stem, *_base(path)) for path in SCENARIOS]
    part, parts = shard
    for i in range(part, count, parts):
        rng = random.Random(SEED * 1_000_003 + i)
        stem, tree, info = bases[i % len(bases)]
        tree = copy.deepcopy(tree)
        names = []
        for _ in range(rng.choice([1, 1, 2, 2, 3, 4])):
            mutate = rng.choice(MUTATIONS)
            names.append(mutate.__name__)
            mutate(tree, rng, info)
        yield i, stem, info, "+".join(names), *dump(tree, rng), rng


# --- the pipeline ---------------------------------------------------------------------------

class Hang(Exception):
    pass


def _alarm(signum, frame):
    raise Hang(f"no result after {TIMEOUT} s of CPU time")


def _strict_json(output: str):
    return json.loads(output, parse_constant=_refuse_constant)


def _invoke(runner, args):
    result = runner.invoke(main, args)
    if result.exc_info and not isinstance(result.exc_info[1], SystemExit):
        raise result.exc_info[1].with_traceback(result.exc_info[2])
    return result


def _located(output: str, path) -> bool:
    return re.search(re.escape(os.path.basename(path)) + r":\d+", output) is not None


def _console_text(renderable) -> str:
    from rich.console import Console

    buffer = io.StringIO()
    Console(width=100, file=buffer, color_system=None, no_color=True, highlight=False,
            soft_wrap=False).print(renderable, crop=False)
    return buffer.getvalue()


def _targets(trace, scenario, rng, count):
    base = scenario.conventions.index_base
    chosen = []
    for step in rng.sample(trace.steps, min(count, len(trace.steps))):
        index = tuple(rng.randrange(n) for n in step.shape)
        chosen.append((step.name, index, step.name + format_index(display_index(step.shape, index, base))))
    return chosen


def pipeline(path, info, rng, runner, tmp_path, number):
    """Every command on one mutated file.  Returns how `run` ended ("valid" or "refused");
    raises AssertionError for a broken invariant, anything else for a crash.  The CLI runs
    `run`, and every CLI_EVERY-th file `explain` and `check` too; the rest call the library
    (what the CLI calls), which is faster."""
    result = _invoke(runner, ["run", "--format", "json", path])
    assert result.exit_code in (0, 2), f"run exited {result.exit_code}"
    if result.exit_code == 2:
        assert result.output.startswith("error: ") and _located(result.output, path), "exit 2 without file:line"
        return "refused"
    trace_json = _strict_json(result.stdout)
    assert all(_finite(step["values"]) for step in trace_json["steps"]), "a trace number is not finite"
    assert trace_json["loss"] is None or math.isfinite(trace_json["loss"]), "the loss is not finite"
    through_cli = number % CLI_EVERY == 0

    scenario = load(path, work_limit=info["work_limit"])
    trace = run(scenario)
    _console_text(text.render(trace))
    markdown.render(trace)
    latex.render(trace, fragment=rng.random() < 0.5)
    html.render(trace)

    targets = _targets(trace, scenario, rng, 3)
    for explanation in explain_many(scenario, [(name, index) for name, index, _ in targets[1:]]):
        _console_text(render_explanation(explanation, 100))
    if targets:
        name, _, element = targets[0]
        if through_cli:
            written = element if rng.random() < 0.8 else name + "[99,99]"
            result = _invoke(runner, ["explain", path, written])
            assert result.exit_code in (0, 2), f"explain exited {result.exit_code}"
            assert result.exit_code == 0 or result.output.startswith("error: "), "explain exit 2 without a message"
        else:
            _console_text(render_explanation(explain(scenario, name), 100))
    convs = [layer.name for layer in scenario.layers if layer.type == "conv"]
    if convs and scenario.work() <= UNROLL_WORK:
        _console_text(render_unrolled(unroll(scenario, trace, rng.choice(convs)), 100))

    if scenario.expected:
        _check(runner, [path], info, through_cli)
    answers = _answers({"names": trace.names(), "shapes": {s.name: s.shape for s in trace.steps},
                        "values": {s.name: s.values for s in trace.steps},
                        "base": scenario.conventions.index_base}, rng, rng.choice([1, 2, 4]), exact=0.5)
    answer_path = tmp_path / ("answers.json" if rng.random() < 0.3 else "answers.yaml")
    answer_path.write_text(json.dumps(answers) if answer_path.suffix == ".json" else
                           yaml.safe_dump(answers, allow_unicode=True), encoding="utf-8")
    _check(runner, [path, "--expected", str(answer_path)], info, through_cli)
    return "valid"


def _check(runner, args, info, through_cli):
    """check: exit 0, 1 or 2, a complete strict-JSON report, and the text report."""
    if through_cli:
        result = _invoke(runner, ["check", *args, "--format", "json"])
        code, output = result.exit_code, result.stdout
    else:
        report = check_files(args[:1], args[2:3], work_limit=info["work_limit"])
        _console_text(check_text.render(report))
        code, output = report.exit_code, check_json.render(report)
    assert code in (0, 1, 2), f"check exited {code}"
    report = _strict_json(output)
    assert report["files"] and report["totals"]["files"] == len(report["files"]), "check report incomplete"
    for sheet in report["files"]:
        assert sheet["error"] is None or _located(sheet["error"], sheet["file"]), "check error without file:line"


def _signature(error: BaseException) -> str:
    """Where in bptrace a crash happened: its type and innermost bptrace frame."""
    frames = [frame for frame in traceback.extract_tb(error.__traceback__) if "bptrace" in frame.filename
              and "tests" not in frame.filename]
    where = f"{os.path.basename(frames[-1].filename)}:{frames[-1].lineno}" if frames else "?"
    if isinstance(error, AssertionError):
        return f"AssertionError: {str(error).splitlines()[0]}"
    return f"{type(error).__name__} at {where}"


def _settings(request):
    """(count, shard): the default size, or the long one; BPTRACE_FUZZ_SHARD=k/n runs every
    n-th file from the k-th (to spread a long run over several processes)."""
    long = os.environ.get("BPTRACE_LONG") == "1" or request.config.getoption("--fuzz-long")
    part, parts = (int(n) for n in os.environ.get("BPTRACE_FUZZ_SHARD", "0/1").split("/"))
    return (LONG_MUTANTS if long else MUTANTS), (part, parts)


def test_structural_mutants_never_crash(request, tmp_path, monkeypatch):
    count, shard = _settings(request)
    runner = CliRunner()
    outcomes, failures = Counter(), {}
    previous = signal.signal(signal.SIGPROF, _alarm)
    started = time.perf_counter()
    try:
        for number, stem, info, how, text_, suffix, rng in mutants(count, shard):
            monkeypatch.setattr(scenario_module, "DEFAULT_WORK_LIMIT", info["work_limit"])
            monkeypatch.setattr(check_module, "DEFAULT_WORK_LIMIT", info["work_limit"])
            path = tmp_path / f"{stem}-{number}{suffix}"
            path.write_text(text_, encoding="utf-8")
            signal.setitimer(signal.ITIMER_PROF, TIMEOUT)
            try:
                with warnings.catch_warnings():
                    # a Python warning would reach the user's terminal beside bptrace's message
                    warnings.simplefilter("error")
                    outcomes[pipeline(str(path), info, rng, runner, tmp_path, number)] += 1
            except Exception as error:           # noqa: BLE001 - every crash is collected, then reported
                signal.setitimer(signal.ITIMER_PROF, 0)
                outcomes["failed"] += 1
                key = _signature(error)
                if key not in failures:
                    failures[key] = (path.name, how, text_, "".join(traceback.format_exception(error)))
            finally:
                signal.setitimer(signal.ITIMER_PROF, 0)
            path.unlink()
    finally:
        signal.signal(signal.SIGPROF, previous)
    elapsed = time.perf_counter() - started
    tried = sum(outcomes.values())
    print(f"\nstructural fuzz: {tried} files, {outcomes['valid']} ran, {outcomes['refused']} refused, "
          f"{outcomes['failed']} failed ({len(failures)} distinct), {elapsed:.1f} s")
    if failures:
        report = "\n\n".join(f"=== {key}\n{name} ({how}):\n{text_}\n--- {tb}"
                             for key, (name, how, text_, tb) in failures.items())
        pytest.fail(f"{len(failures)} distinct failures:\n{report}")
    # both outcomes must be common, or the mutations are too timid or too brutal to test much
    assert outcomes["valid"] > tried // 10 and outcomes["refused"] > tried // 10
