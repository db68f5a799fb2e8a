"""Mutated scenarios never crash bptrace (issue 6).

Each shipped scenario is mutated the ways a hand-edited file goes wrong (characters deleted
or inserted, tokens swapped, numbers changed, keys dropped, lines duplicated, words
misspelt, the file cut short), with a seeded RNG so every run tries the same files.  Every
mutant goes through `bptrace run --format json` in-process and must exit 0 or 2 with no
traceback; an exit 0 must be a file that really is valid (libyaml reads it to the same data,
it has no duplicate keys, the library loads it again, and every number of the trace is
finite).  Some mutations are wrong for sure (a key written twice, a number made `.nan`, a key
misspelt) and must exit 2 with a message that names the file and line.
"""
from __future__ import annotations

import json
import math
import random
import re
import time

import pytest
import yaml
from click.testing import CliRunner

from bptrace import scenario as scenario_module
from bptrace.cli import main
from bptrace.scenario import load
from bptrace.source import parse_text
from conftest import SCENARIOS

MUTANTS = 2000           # at least this many mutated files over the small scenarios
LARGE_WORK = 100_000     # a scenario above this many operations takes ~1 s a run: fewer mutants
LARGE_MUTANTS = 12
# A mutant may grow its network (a size 2 becomes 100); the work limit, lowered to a few
# times each scenario's own, keeps such mutants from taking seconds each, and exercises
# the refusal of networks that are too large.
WORK_HEADROOM = 2
MIN_WORK_LIMIT = 20_000
SEED = 20240606

NUMBER = re.compile(r"(?<![\w.])-?\d+(?:\.\d+)?(?:[eE][-+]?\d+)?(?![\w.])")
TOKEN = re.compile(r"[^\s\[\]{},:#]+")
WORD = re.compile(r"[A-Za-z_][A-Za-z_0-9]{2,}")
NUMBER_SWAPS = ["0", "-1", "1", "2", "3", "1.5", "-0.5", "100", "1e400", "1e-3", "1e300",
                "99999999999999999999", ".nan", "-.inf", "abc", "''", "null", "true", "[1, 2]", "{}",
                "[[1, 2], [3]]", "[]"]
INSERTS = list("[]{}:,-#&*!|>'\"\t?%@`") + ["\n", "\n  ", ": ", "- ", "\x00", "\x07", "é"]
VOCABULARY = ["conv", "maxpool", "avgpool", "sigmoid", "tanh", "relu", "leaky_relu", "identity",
              "softmax", "flatten", "dense", "half_sse", "sse", "mse", "cross_entropy", "bce",
              "kernel", "weights", "bias", "stride", "padding", "size", "groups", "out_channels",
              "out", "layer", "delta", "target", "type", "name", "input", "layers", "loss",
              "upstream", "given", "expected", "rounding", "decimals", "mode", "apply", "truncate",
              "half_up", "forward", "backward", "all", "correlation", "convolution", "row", "column",
              "index_base", "init", "seed", "learning_rate", "random", "shape"]


# --- mutations: each takes (text, rng) and returns the mutated text ---------------------

def delete_chars(text, rng):
    at = rng.randrange(len(text))
    return text[:at] + text[at + rng.randint(1, 3):]


def insert_char(text, rng):
    at = rng.randrange(len(text) + 1)
    return text[:at] + rng.choice(INSERTS) + text[at:]


def swap_tokens(text, rng):
    tokens = list(TOKEN.finditer(text))
    if len(tokens) < 2:
        return text
    a, b = sorted(rng.sample(tokens, 2), key=lambda m: m.start())
    return text[:a.start()] + b.group() + text[a.end():b.start()] + a.group() + text[b.end():]


def change_number(text, rng):
    numbers = list(NUMBER.finditer(text))
    if not numbers:
        return text
    m = rng.choice(numbers)
    if rng.random() < 0.5:
        new = rng.choice(NUMBER_SWAPS)
    else:
        new = repr(float(m.group()) * rng.choice([-1, 0.5, 2, 10, 1e6]))
    return text[:m.start()] + new + text[m.end():]


def drop_line(text, rng):
    lines = text.split("\n")
    del lines[rng.randrange(len(lines))]
    return "\n".join(lines)


def duplicate_line(text, rng):
    lines = text.split("\n")
    at = rng.randrange(len(lines))
    lines.insert(at, lines[at])
    return "\n".join(lines)


def drop_key(text, rng):
    """A `key:` line and the more indented lines under it."""
    lines = text.split("\n")
    keyed = [i for i, line in enumerate(lines) if re.match(r"\s*[A-Za-z_][\w.\[\],]*\s*:", line)]
    if not keyed:
        return text
    start = rng.choice(keyed)
    indent = len(lines[start]) - len(lines[start].lstrip())
    end = start + 1
    while end < len(lines) and (not lines[end].strip() or len(lines[end]) - len(lines[end].lstrip()) > indent):
        end += 1
    return "\n".join(lines[:start] + lines[end:])


def misspell(text, rng):
    words = list(WORD.finditer(text))
    if not words:
        return text
    m = rng.choice(words)
    word = m.group()
    i = rng.randrange(len(word) - 1)
    word = word[:i] + word[i + 1] + word[i] + word[i + 2:] if rng.random() < 0.5 else word[:i] + word[i + 1:]
    return text[:m.start()] + word + text[m.end():]


def replace_word(text, rng):
    words = list(WORD.finditer(text))
    if not words:
        return text
    m = rng.choice(words)
    return text[:m.start()] + rng.choice(VOCABULARY) + text[m.end():]


def truncate(text, rng):
    return text[:rng.randrange(len(text))]


MUTATIONS = [delete_chars, insert_char, swap_tokens, change_number, change_number, drop_line,
             duplicate_line, drop_key, misspell, replace_word, replace_word, truncate]


# --- mutations that make a file wrong for sure ---------------------------------------------

def _block_keys(doc):
    """(path, line) of keys that start their own line (block mappings), outside `tolerance`
    (read by `check`, not validated by the loader)."""
    out = []
    for path, (line, column) in doc.keys.items():
        text = doc.lines[line - 1]
        if path[0] != "tolerance" and text[:column - 1].strip() == "" and text[column - 1:].startswith(f"{path[-1]}:"):
            out.append((path, line))
    return sorted(out, key=lambda item: item[1])


def duplicate_key(text, doc, rng):
    path, line = rng.choice(_block_keys(doc))
    lines = text.split("\n")
    lines.insert(line, lines[line - 1])
    return "\n".join(lines)


def misspell_key(text, doc, rng):
    # a node's name is the writer's choice: renamed, the graph may still be whole
    path, line = rng.choice([(p, n) for p, n in _block_keys(doc) if not (p[0] == "nodes" and len(p) == 2)])
    lines = text.split("\n")
    column = doc.keys[path][1]
    key = str(path[-1])
    lines[line - 1] = lines[line - 1][:column - 1] + key + "_x" + lines[line - 1][column - 1 + len(key):]
    return "\n".join(lines)


def nan_number(text, doc, rng):
    path = rng.choice(sorted(doc.raw, key=str))
    line, column = doc.marks[path]
    lines = text.split("\n")
    raw = doc.raw[path]
    assert lines[line - 1][column - 1:].startswith(raw)
    lines[line - 1] = lines[line - 1][:column - 1] + ".nan" + lines[line - 1][column - 1 + len(raw):]
    return "\n".join(lines)


SURELY_WRONG = [duplicate_key, misspell_key, nan_number]


# --- what a valid file is ----------------------------------------------------------------

def _no_duplicate_keys(node) -> bool:
    if isinstance(node, yaml.MappingNode):
        keys = [key.value for key, _ in node.value]
        return len(keys) == len(set(keys)) and all(_no_duplicate_keys(v) for _, v in node.value)
    if isinstance(node, yaml.SequenceNode):
        return all(_no_duplicate_keys(v) for v in node.value)
    return True


def _same(ours, theirs) -> bool:
    """The reference parser's data equals ours, allowing for the YAML 1.2 exponent numbers
    (1e-3) that PyYAML reads as text and bptrace reads as numbers."""
    if isinstance(ours, dict):
        return isinstance(theirs, dict) and ours.keys() == {str(k) for k in theirs} and \
            all(_same(ours[str(k)], v) for k, v in theirs.items())
    if isinstance(ours, list):
        return isinstance(theirs, list) and len(ours) == len(theirs) and all(map(_same, ours, theirs))
    if isinstance(ours, float) and isinstance(theirs, str):
        return float(theirs) == ours
    return ours == theirs


def _refuse_constant(name):
    raise ValueError(f"the JSON holds {name}")


# libyaml, the reference YAML parser, when PyYAML has it: PyYAML's own scanner refuses a few
# valid files (a tab inside a plain scalar) that bptrace, reading with libyaml, accepts.
REFERENCE_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def check_valid(path, text, output):
    """An exit 0 must come from a file that really is valid: valid for libyaml, or (as
    bptrace reads it) for PyYAML's own parser where libyaml refuses it (`{stride:}`, a
    surrogate-pair escape)."""
    loader = REFERENCE_LOADER
    try:
        yaml.load(text, Loader=loader)
    except yaml.YAMLError:
        loader = yaml.SafeLoader
    data = yaml.load(text, Loader=loader)
    assert _no_duplicate_keys(yaml.compose(text, Loader=loader)), "exit 0 with a duplicate key"
    assert _same(parse_text(text).data, data), "bptrace read different data than libyaml"
    load(path)
    trace = json.loads(output, parse_constant=_refuse_constant)
    steps = trace["steps"]
    assert steps and all(_finite(step["values"]) for step in steps)


def _finite(values) -> bool:
    if isinstance(values, list):
        return all(_finite(v) for v in values)
    return isinstance(values, (int, float)) and math.isfinite(values)


# --- the test ----------------------------------------------------------------------------

def _plan():
    """(scenario, count, work limit): every small scenario gets an equal share of MUTANTS."""
    work = {p: load(p).work() for p in SCENARIOS}
    small = [p for p in SCENARIOS if work[p] <= LARGE_WORK]
    share = -(-MUTANTS // max(len(small), 1))
    return [(p, share if p in small else LARGE_MUTANTS, max(WORK_HEADROOM * work[p], MIN_WORK_LIMIT))
            for p in SCENARIOS]


def _mutants(path, count, rng):
    text = path.read_text(encoding="utf-8")
    doc = parse_text(text)
    for i in range(count):
        if i % 5 == 4:
            mutate = rng.choice(SURELY_WRONG)
            yield mutate.__name__, mutate(text, doc, rng), True
            continue
        mutated = text
        names = []
        for _ in range(rng.choice([1, 1, 1, 2, 3])):
            mutate = rng.choice(MUTATIONS)
            names.append(mutate.__name__)
            mutated = mutate(mutated, rng) if mutated else mutated
        yield "+".join(names), mutated, False


def test_mutated_scenarios_exit_0_or_2_and_never_crash(tmp_path, monkeypatch):
    assert SCENARIOS, "no shipped scenarios to mutate"
    rng = random.Random(SEED)
    runner = CliRunner()
    tried, valid, refused, started = 0, 0, 0, time.perf_counter()
    for scenario, count, work_limit in _plan():
        monkeypatch.setattr(scenario_module, "DEFAULT_WORK_LIMIT", work_limit)
        for number, (how, text, surely_wrong) in enumerate(_mutants(scenario, count, rng)):
            path = tmp_path / f"{scenario.stem}-{number}.yaml"
            path.write_bytes(text.encode("utf-8", "surrogateescape"))
            result = runner.invoke(main, ["run", "--format", "json", str(path)])
            tried += 1
            context = f"{path.name} ({how}):\n{text}\n--- output:\n{result.output}"
            if result.exc_info and not isinstance(result.exc_info[1], SystemExit):
                import traceback

                pytest.fail(f"crash on {context}\n" + "".join(traceback.format_exception(*result.exc_info)))
            assert result.exit_code in (0, 2), context
            assert "Traceback" not in result.output, context
            if result.exit_code == 0:
                assert not surely_wrong, f"accepted a wrong file {context}"
                check_valid(path, text, result.output)
                valid += 1
            else:
                assert result.output.startswith("error: ") and path.name in result.output, context
                if surely_wrong:
                    assert re.search(re.escape(path.name) + r":\d+", result.output), f"no line in {context}"
                refused += 1
            path.unlink()
    elapsed = time.perf_counter() - started
    print(f"\nfuzz: {tried} mutated files, {valid} valid, {refused} refused, {elapsed:.1f} s")
    assert tried >= MUTANTS
    # both outcomes must be common, or the mutations are too timid or too brutal to test much
    assert valid > tried // 20 and refused > tried // 4
