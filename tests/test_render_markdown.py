"""`run --format markdown`: GitHub-flavoured Markdown whose tables parse and hold the trace's
numbers, whose rules are display math, and whose scenario text cannot break the layout."""
from __future__ import annotations

import re

import numpy as np
import pytest
from click.testing import CliRunner
from markdown_it import MarkdownIt

from bptrace.cli import main
from bptrace.engine import run
from bptrace.render import markdown
from bptrace.scenario import load, loads
from conftest import ROOT, SCENARIOS

SEED001 = ROOT / "scenarios" / "seed001.yaml"
# CommonMark with GitHub's table and strikethrough extensions
PARSER = MarkdownIt("commonmark").enable(["table", "strikethrough"])


def tables(text: str):
    """Every table markdown-it finds: (header cells, body rows), parsed as GitHub would."""
    tokens = PARSER.parse(text)
    found, current, row, cell = [], None, None, None
    for token in tokens:
        if token.type == "table_open":
            current = {"head": [], "body": []}
        elif token.type == "tr_open":
            row = []
        elif token.type in ("th_open", "td_open"):
            cell = ""
        elif token.type == "inline" and cell is not None:
            cell = token.content
        elif token.type in ("th_close", "td_close"):
            row.append(cell)
            cell = None
        elif token.type == "tr_close":
            (current["head"] if not current["body"] and not current.get("in_body") else current["body"]).append(row)
        elif token.type == "tbody_open":
            current["in_body"] = True
        elif token.type == "table_close":
            found.append((current["head"][0], current["body"]))
    return found


def number(cell: str) -> float:
    cell = cell.replace("−", "-").rstrip("†").replace("\\|", "|")
    return 0.0 if cell in ("·", "≈0") else float(cell)


@pytest.mark.parametrize("path", SCENARIOS, ids=[p.stem for p in SCENARIOS])
def test_structure_of_every_shipped_scenario(path):
    trace = run(load(path))
    text = markdown.render(trace)
    lines = text.splitlines()
    # every table line has as many cells as its header, and a delimiter row follows each header
    k = 0
    while k < len(lines):
        if lines[k].startswith("|"):
            head = lines[k].count(" | ") + 1
            assert re.fullmatch(r"\|(:?---:?\|)+", lines[k + 1]), lines[k + 1]
            assert lines[k + 1].count("|") - 1 == head
            k += 2
            while k < len(lines) and lines[k].startswith("|"):
                assert lines[k].count(" | ") + 1 == head, lines[k]
                k += 1
        else:
            k += 1
    # each rule is a display-math block: `$$`, one line of LaTeX, `$$`
    opened = [k for k, line in enumerate(lines) if line == "$$"]
    assert len(opened) == 2 * sum(1 for step in trace.steps if step.phase not in ("input", "parameter"))
    for first, second in zip(opened[::2], opened[1::2]):
        assert second == first + 2 and lines[first + 1].strip()
    # the tables markdown-it finds are the summary plus at least one per step of several numbers
    assert len(tables(text)) >= 1 + sum(1 for step in trace.steps if step.values.size > 1)
    # one heading per step, in trace order
    assert re.findall(r"^### `([^`]+)`", text, re.M) == trace.names()


def test_tables_hold_the_trace_numbers():
    trace = run(load(SEED001))
    text = markdown.render(trace)
    sections = re.split(r"^### `([^`]+)`.*$", text, flags=re.M)
    for name, body in zip(sections[1::2], sections[2::2]):
        step = trace[name]
        if step.values.size == 1:
            continue
        head, rows = tables(body)[0]
        shown = step.shown
        if shown.ndim == 1:
            assert [int(h) for h in head[1:]] == list(range(shown.size))
            assert [number(c) for c in rows[0][1:]] == pytest.approx(shown.tolist(), abs=shown_precision(shown))
        else:
            assert [int(r[0]) for r in rows] == list(range(shown.shape[0]))
            assert np.array([[number(c) for c in r[1:]] for r in rows]) == pytest.approx(shown, abs=shown_precision(shown))


def shown_precision(shown) -> float:
    """Half a unit in the last place a table shows: 7 significant digits of its largest magnitude."""
    largest = np.abs(shown).max()
    return 0.5 * 10.0 ** (np.floor(np.log10(largest)) - 6) * 1.0001 if largest else 0.0


def test_given_rounded_and_expansions_are_written():
    text = markdown.render(run(load(SEED001)))
    assert "*given: all 4 values pinned by the scenario (\\*); later steps use these, not the computed ones*" in text
    assert "- `p1.out[0,0] = max(0.2507, −0.164, 0.1305, 0.3164★) = 0.3164, from c1.out[1,1]`" in text
    assert ("- `f.delta[0] = h.weights[0,0]·h.delta[0] + h.weights[1,0]·h.delta[1] = 0.61·0.25 + 0.02·(−0.15) "
            "= 0.1495`") in text
    assert "- `s1.out[0,0] = σ(0.3164) = 0.5784467 → 0.58 given`" in text


def test_scenario_text_cannot_break_the_layout():
    scenario = loads("""
name: 'a | pipe, *stars*, _under_ and `ticks` <b>'
input: [[1, 2], [3, 4]]
layers: [{type: conv, name: c_1, kernel: [[1, 0], [0, 1]]}]
upstream: {layer: c_1, delta: 1}
""")
    text = markdown.render(run(scenario))
    assert text.splitlines()[0] == r"# a \| pipe, \*stars\*, \_under\_ and \`ticks\` \<b\>"
    heading = PARSER.render(text).splitlines()[0]
    assert heading == "<h1>a | pipe, *stars*, _under_ and `ticks` &lt;b&gt;</h1>"


def test_only_and_output_file(tmp_path):
    out = tmp_path / "trace.md"
    result = CliRunner().invoke(main, ["run", str(SEED001), "--format", "markdown", "--only", "c1.*", "-o", str(out)])
    assert result.exit_code == 0 and result.output == ""
    text = out.read_text(encoding="utf-8")
    assert re.findall(r"^### `([^`]+)`", text, re.M) == ["c1.kernel", "c1.bias", "c1.out", "c1.delta",
                                                          "c1.grad.kernel", "c1.grad.bias"]


FOUR_D = """
input: [[[[1, 2, 3], [4, 5, 6], [7, 8, 9]], [[1, 0, 1], [0, 1, 0], [1, 0, 1]]],
        [[[2, 2, 2], [1, 1, 1], [0, 0, 0]], [[0, 1, 0], [1, 0, 1], [0, 1, 0]]]]
layers:
  - {type: conv, name: c1, kernel: [[[[1, 0], [0, 1]], [[0.5, 0], [0, -1]]], [[[0, 1], [1, 0]], [[1, 1], [0, 0]]]]}
  - {type: flatten, name: f}
  - {type: dense, name: d, weights: [[1, 0, 0, 0, 0, 0, 0, 1]]}
loss: {type: half_sse, target: [[1], [0]]}
"""


def test_blocks_of_3d_and_4d_values_are_named_like_the_terminal():
    text = markdown.render(run(loads(FOUR_D)))
    assert "**sample 1 · map 0**" in text and "**filter 1 · input map 0**" in text
    assert "[1, :, :]" not in text and ", :]" not in text
    # a 3-D value (one sample): its maps
    text = markdown.render(run(loads("""
input: [[[1, 2], [3, 4]], [[5, 6], [7, 8]]]
layers: [{type: relu, name: r}]
upstream: {layer: r, delta: [[[1, 0], [0, 1]], [[1, 1], [0, 0]]]}
""")))
    assert "**map 1**" in text and "sample" not in text


def test_sums_leave_out_zero_terms_and_count_them():
    text = markdown.render(run(load(SEED001)))
    # the four terms the terminal writes, and the twelve with a zero factor counted, not written
    line = next(line for line in text.splitlines() if line.startswith("- `c1.grad.kernel[0,1] = "))
    assert line == ("- `c1.grad.kernel[0,1] = 0.068628·0.84 + 0.0364182·0.22 + 0.04675125·0.74 − 0.06818625·0.09 "
                    "= 0.09411869`")
    assert "*left out of each sum: 12 of its 16 terms, which have a zero factor*" in text
