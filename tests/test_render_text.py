"""The text renderer (`bptrace run`): golden files for every shipped scenario, layout at 80
and 120 columns (nothing cut, nothing past the width), `--only`, and the `run` command's
terminal behaviour (no ANSI when piped, NO_COLOR, --width, -o)."""
from __future__ import annotations

import contextlib
import io
import os
import re
import subprocess
import sys
from pathlib import Path
from collections import Counter

import pytest
from click.testing import CliRunner
from rich.console import Console

import bptrace
from bptrace.cli import main
from bptrace.render import text
from bptrace.render.view import values_of

from conftest import ROOT, SCENARIOS

SEED001 = ROOT / "scenarios" / "seed001.yaml"
ANSI = re.compile(r"\x1b\[")


def plain(trace, width=100, only=None) -> str:
    buffer = io.StringIO()
    console = Console(width=width, color_system=None, file=buffer)
    # crop=False: a line past the width would show up in the tests instead of being cut
    console.print(text.render(trace, only), crop=False)
    return buffer.getvalue()


def trace_of(path):
    # a shipped scenario is read as `scenarios/NAME.yaml` from the project's root, as a reader
    # runs it: the explain commands in the output (and so the golden files) name that path
    path = Path(path)
    if path.is_relative_to(ROOT):
        with contextlib.chdir(ROOT):
            return bptrace.run(bptrace.load(path.relative_to(ROOT)))
    return bptrace.run(bptrace.load(path))


def trace_from(tmp_path, yaml_text, name="case.yaml"):
    path = tmp_path / name
    path.write_text(yaml_text, encoding="utf-8")
    return trace_of(path)


def widest(output: str) -> int:
    return max(len(line) for line in output.splitlines())


# --- golden files -----------------------------------------------------------------------

SMALL = [p for p in SCENARIOS if p.stem != "zhang2016"]
ZHANG = ROOT / "scenarios" / "zhang2016.yaml"


@pytest.mark.parametrize("path", SMALL, ids=[p.stem for p in SMALL])
def test_golden(path, golden):
    output = plain(trace_of(path))
    assert widest(output) <= 100
    golden(f"run_{path.stem}.txt", output)


# Zhang's whole trace (6,700 lines) is not a golden file: its numbers are held against PyTorch
# by the oracle tests; these goldens hold its layout (the summary and results, an 8×8 map of
# small deltas, the 5×5 kernels) in a few hundred lines.
@pytest.mark.parametrize("name, options, width", [
    ("summary", {"summary": True}, 100),
    ("C2_delta", {"only": {"C2.delta", "C1.kernel"}}, 100),
    ("C1_grad_80", {"only": {"C1.grad.kernel", "C1.grad.bias"}}, 80),
])
def test_golden_zhang(golden, name, options, width):
    buffer = io.StringIO()
    Console(width=width, color_system=None, file=buffer).print(text.render(trace_of(ZHANG), **options), crop=False)
    output = buffer.getvalue()
    assert widest(output) <= width
    golden(f"run_zhang2016_{name}.txt", output)


def test_zhang_sized_tables_fit_100_columns_without_continuation():
    # an 8×8 map of deltas around 10⁻³ and the 5×5 kernels: whole tables at 100 columns
    output = plain(trace_of(ZHANG), width=100, only={"C2.delta", "sig2.delta", "C1.grad.kernel", "C2.kernel"})
    assert "continued" not in output and widest(output) <= 100
    assert "C2.delta  12×8×8  (values ×10⁻³)" in output


# --- what seed 001 shows (numbers from BRIEF section 4 and LOOK) --------------------------

@pytest.fixture(scope="module")
def seed001():
    return plain(trace_of(SEED001))


def test_kernel_gradient_sum_is_written_term_by_term(seed001):
    # BRIEF section 3/4: the four non-zero terms of c1.grad.kernel[0,1], with a true minus
    assert ("c1.grad.kernel[0,1] = 0.068628·0.84 + 0.0364182·0.22 + 0.04675125·0.74 − 0.06818625·0.09"
            in seed001)
    assert "left out of each sum: 12 of its 16 terms, which have a zero factor" in seed001


def test_max_pool_marks_the_winner(seed001):
    assert "p1.out[0,0] = max(0.2507, −0.164, 0.1305, 0.3164★) = 0.3164 from c1.out[1,1]" in seed001
    # the pool's output beside its input, the winner of each window starred
    assert re.search(r"\n  p1\.out +c1\.out  ★ = winner\n", seed001)
    assert re.search(r"\n  1  0\.6195  0\.201 +1   0\.1305    0\.3164★  −0\.1191   −0\.1292\n", seed001)


def test_given_values_show_computed_and_given(seed001):
    assert "s1.out[0,0] = σ(0.3164) = 0.5784467 → 0.58 given" in seed001
    assert "given: all 4 values pinned by the scenario (*); later steps use these" in seed001


def test_sparse_delta_shows_zeros_as_dots(seed001):
    section = seed001.split("\nc1.delta  4×4")[1].split("\nc1.grad.kernel")[0]
    assert "(· = 0)" in seed001
    assert section.count("·") >= 12
    assert "c1.delta[1,1] = p1.delta[0,0] = 0.0364182" in section


def test_backward_header_says_where_it_starts(seed001):
    assert "━━ backward, from h.delta, the given upstream error ━━" in seed001


def test_summary_shows_shapes_without_length_one_axes(seed001):
    assert re.search(r"c1\s+conv\s+4×4\s+5\n", seed001)
    assert re.search(r"f\s+flatten\s+4\s+0\n", seed001)
    assert re.search(r"total\s+15\n", seed001)


def test_rounded_step_shows_the_unrounded_value():
    output = plain(trace_of(ROOT / "scenarios" / "seed001_rounded.yaml"))
    assert "rounded: 4 decimals, truncate" in output
    assert "p1.delta[0,0] = 0.1495·0.58·0.42 = 0.0364182 → 0.0364 rounded" in output


# --- --only ------------------------------------------------------------------------------

def test_only_filters_steps_but_keeps_the_summary():
    trace = trace_of(SEED001)
    output = plain(trace, only={"c1.grad.kernel", "c1.grad.bias"})
    assert "\nc1.grad.kernel  2×2\n" in output
    assert "\nc1.grad.bias = 0.0836112\n" in output
    assert "\nc1.out  4×4" not in output and "\np1.delta" not in output
    assert "━━ forward" not in output and "━━ backward" in output
    assert re.search(r"h\s+dense\s+2\s+10\n", output)


# --- big and 4-D values at 80 and 120 columns ---------------------------------------------

MAP_24 = """
name: a 24x24 map
init: {scheme: glorot_uniform, seed: 3}
input: {random: uniform, shape: [26, 26], seed: 1}
layers:
  - {type: conv, name: c1, out_channels: 2, size: 3}
  - {type: avgpool, name: p1, size: 2}
  - {type: flatten, name: f}
  - {type: dense, name: d, out: 2}
loss: {type: half_sse, target: [1, 0]}
"""

KERNEL_12x6 = """
name: a 12x6x5x5 kernel on a batch of two
init: {scheme: glorot_uniform, seed: 4}
input: {random: uniform, shape: [2, 6, 6, 6], seed: 2}
layers:
  - {type: conv, name: c2, out_channels: 12, size: 5}
  - {type: maxpool, name: p2, size: 2}
  - {type: flatten, name: f}
  - {type: dense, name: d, out: 3}
loss: {type: mse, target: [[1, 0, 0], [0, 1, 0]]}
learning_rate: 0.5
"""

CELL = re.compile(r"^(?:−|-)?(?:\d+(?:\.\d*)?(?:e-?\d+)?|·|≈0)$")


def sections(output: str, names) -> dict:
    """Each step's part of the output: from its header line to the next step's."""
    starts = []
    lines = output.split("\n━━ results")[0].splitlines()
    for k, line in enumerate(lines):
        head = line.split("  ")[0].split(" = ")[0]
        if head in names and not line.startswith(" "):
            starts.append((k, head))
    found = {}
    for (k, name), (end, _) in zip(starts, starts[1:] + [(len(lines), None)]):
        found[name] = lines[k:end]
    return found


def assert_every_value_shown(trace, output):
    """Every element of every step is a cell of its step's table: nothing was cut."""
    parts = sections(output, set(trace.names()))
    assert set(parts) == set(trace.names())
    for step in trace.steps:
        cells = Counter()
        for line in parts[step.name]:
            for token in line.split():
                token = token.rstrip("★☆*")
                if CELL.match(token):
                    cells[token] += 1
        # each number as its table writes it (7 significant digits of the step's largest)
        wanted = Counter(values_of(step, trace, 7).texts)
        missing = wanted - cells
        assert not missing, f"{step.name}: values not shown: {dict(list(missing.items())[:5])}"


@pytest.mark.parametrize("width", [80, 120])
@pytest.mark.parametrize("case", [MAP_24, KERNEL_12x6], ids=["map24x24", "kernel12x6x5x5"])
def test_big_values_fit_the_width_and_are_all_shown(tmp_path, case, width):
    trace = trace_from(tmp_path, case)
    output = plain(trace, width=width)
    assert widest(output) <= width
    assert "…" not in output
    assert_every_value_shown(trace, output)


def test_four_axis_values_are_labelled_blocks(tmp_path):
    output = plain(trace_from(tmp_path, KERNEL_12x6), width=80)
    kernel = "\n".join(sections(output, {"c2.grad.kernel", "c2.bias"})["c2.grad.kernel"])
    for label in ("filter 0 · input map 0", "filter 11 · input map 5"):
        assert label in kernel
    assert "sample 1 · map 11" in output or "rows: sample · columns: map" in output


def test_wide_maps_split_into_column_blocks_that_keep_their_indices(tmp_path):
    output = plain(trace_from(tmp_path, MAP_24), width=80)
    section = sections(output, {"c1.out", "p1.out"})["c1.out"]
    headers = [line.split() for line in section if re.fullmatch(r"\s+(\d+\s+)*\d+", line)]
    columns = [int(i) for header in headers for i in header]
    # two maps, each split into column blocks that together give every column once
    assert sorted(columns) == sorted(list(range(24)) * 2)
    assert len(headers) > 2


def test_index_base_one_and_ties(tmp_path):
    trace = trace_from(tmp_path, """
conventions: {index_base: 1}
input: [[1, 1, 0, 2], [1, 0, 3, 0]]
layers:
  - {type: maxpool, name: p, size: 2}
upstream: {delta: [0.5, -1]}
""")
    output = plain(trace)
    assert "p.out[1] = max(1★, 1☆, 1☆, 0) = 1 from input[1,1]" in output
    assert "note: tie in the window of p.out" in output
    assert re.search(r"\n\s+1\s+2\s+3\s+4\n", output)      # column indices from 1


# --- the run command ----------------------------------------------------------------------

def test_run_piped_has_no_ansi_and_keeps_the_width():
    result = CliRunner().invoke(main, ["run", str(SEED001), "--width", "72"])
    assert result.exit_code == 0, result.output
    assert not ANSI.search(result.output)
    assert widest(result.output) <= 72
    assert "c1.grad.kernel[0,1] = 0.068628·0.84" in result.output


def test_run_only_and_output_file(tmp_path):
    target = tmp_path / "trace.txt"
    result = CliRunner().invoke(main, ["run", str(SEED001), "--only", "c1.grad.*", "-o", str(target)])
    assert result.exit_code == 0, result.output
    written = target.read_text(encoding="utf-8")
    assert not ANSI.search(written)
    assert "\nc1.grad.kernel  2×2\n" in written and "\nc1.out  4×4" not in written
    assert written == plain(bptrace.run(bptrace.load(SEED001)), only={"c1.grad.kernel", "c1.grad.bias"})


def test_run_with_no_color_is_plain():
    result = CliRunner(env={"NO_COLOR": "1"}).invoke(main, ["run", str(SEED001)])
    assert result.exit_code == 0
    assert not ANSI.search(result.output)


def _run_in_terminal(env_extra):
    """`bptrace run` with a pseudo-terminal as stdout, as a user's shell runs it."""
    pty = pytest.importorskip("pty")
    master, slave = pty.openpty()
    env = {k: v for k, v in os.environ.items() if k not in ("NO_COLOR", "FORCE_COLOR")}
    env.update(TERM="xterm-256color", **env_extra)
    process = subprocess.Popen([sys.executable, "-m", "bptrace", "run", str(SEED001), "--width", "90"],
                               stdout=slave, stderr=subprocess.PIPE, env=env)
    os.close(slave)
    chunks = []
    while True:
        try:
            chunk = os.read(master, 65536)
        except OSError:
            break
        if not chunk:
            break
        chunks.append(chunk)
    os.close(master)
    assert process.wait(timeout=30) == 0, process.stderr.read().decode()
    return b"".join(chunks).decode("utf-8")


@pytest.mark.skipif(sys.platform == "win32", reason="needs a pseudo-terminal")
def test_terminal_gets_colour_unless_no_color():
    coloured = _run_in_terminal({})
    assert ANSI.search(coloured)
    plain_text = _run_in_terminal({"NO_COLOR": "1"})
    assert not re.search(r"\x1b\[[0-9;]*(3[0-9]|9[0-7]|38;)", plain_text)   # no colour codes
    assert "c1.grad.kernel[0,1] = 0.068628·0.84" in plain_text


def test_renderer_does_not_print(capsys):
    text.render(trace_of(SEED001))
    captured = capsys.readouterr()
    assert captured.out == "" and captured.err == ""

