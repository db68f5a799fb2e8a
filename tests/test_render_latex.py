"""`run --format latex`: every shipped scenario compiles with a real pdflatex, as a document
and as a fragment; names and descriptions with LaTeX's special characters and Unicode are
escaped; no matrix runs badly off the page.

pdflatex is Debian's texlive-latex-base (installed by .ci/run).  Without it these tests
skip, unless BPTRACE_REQUIRE_TOOLS=1 (as in CI), where a missing pdflatex fails.
"""
from __future__ import annotations

import os
import re
import shutil
import subprocess

import pytest
from click.testing import CliRunner

from bptrace.cli import main
from bptrace.engine import run
from bptrace.render import latex
from bptrace.scenario import load, loads
from conftest import ROOT, SCENARIOS

# an overfull line this much wider than the text is "badly" off the page
OVERFULL_POINTS = 30.0


def pdflatex():
    path = shutil.which("pdflatex")
    if path is None:
        if os.environ.get("BPTRACE_REQUIRE_TOOLS") == "1":
            pytest.fail("BPTRACE_REQUIRE_TOOLS=1 but pdflatex is not installed (apt-get install texlive-latex-base)")
        pytest.skip("pdflatex is not installed")
    return path


def compile_tex(tmp_path, source: str, stem: str = "trace"):
    """Compile; return the log.  Fails the test with the first LaTeX error."""
    (tmp_path / f"{stem}.tex").write_text(source, encoding="utf-8")
    result = subprocess.run([pdflatex(), "-interaction=nonstopmode", "-halt-on-error", "-no-shell-escape",
                             f"{stem}.tex"], cwd=tmp_path, capture_output=True, text=True, timeout=300)
    log = (tmp_path / f"{stem}.log").read_text(encoding="latin-1") if (tmp_path / f"{stem}.log").exists() else ""
    if result.returncode != 0 or not (tmp_path / f"{stem}.pdf").exists():
        error = re.search(r"^!.*(?:\n.*){0,6}", log, re.M)
        pytest.fail(f"pdflatex failed on {stem}.tex: {error.group(0) if error else result.stdout[-2000:]}")
    return log


def worst_overfull(log: str) -> float:
    return max([float(m) for m in re.findall(r"Overfull \\hbox \(([\d.]+)pt too wide\)", log)], default=0.0)


@pytest.mark.parametrize("path", SCENARIOS, ids=[p.stem for p in SCENARIOS])
def test_every_shipped_scenario_compiles(path, tmp_path):
    source = latex.render(run(load(path)))
    assert source.startswith(r"\documentclass") and source.rstrip().endswith(r"\end{document}")
    log = compile_tex(tmp_path, source)
    assert worst_overfull(log) <= OVERFULL_POINTS, f"a line is {worst_overfull(log)}pt wider than the page"
    assert "Undefined control sequence" not in log
    # a size command inside math is ignored, with a warning: sizes go around displays
    assert "invalid in math mode" not in log


def test_fragment_goes_into_a_document(tmp_path):
    result = CliRunner().invoke(main, ["run", str(ROOT / "scenarios" / "seed001.yaml"), "--format", "latex",
                                       "--fragment", "-o", str(tmp_path / "body.tex")])
    assert result.exit_code == 0, result.output
    body = (tmp_path / "body.tex").read_text(encoding="utf-8")
    assert r"\documentclass" not in body and r"\begin{document}" not in body and r"\begin{tabular}" in body
    # without hyperref: the names are plain text
    wrapper = ("\\documentclass{article}\n\\usepackage{amsmath,amssymb,array,colortbl}\n"
               "\\begin{document}\nMy own text.\n\\input{body}\n\\end{document}\n")
    compile_tex(tmp_path, wrapper, "wrapper")


def test_fragment_only_with_latex():
    result = CliRunner().invoke(main, ["run", str(ROOT / "scenarios" / "seed001.yaml"), "--fragment"])
    assert result.exit_code == 2 and "--fragment" in result.output


AWKWARD = r"""
name: 'Costs & profits: 100% of $5 #1 ~x^2 \alpha {a_b} <é> 漢 — “quoted”'
description: 'back\slash, under_score, caret^, braces {}, tilde ~, pipe |, σ and Δ'
input: [[0.5, -1e-7], [2, 3]]
layers:
  - {type: conv, name: conv_1, kernel: [[1, -2], [0.5, 1e-5]]}
  - {type: leaky_relu, name: leaky_1, slope: 0.1}
  - {type: flatten, name: flat_1}
  - {type: dense, name: out_layer, weights: [[1], [2]]}
  - {type: softmax, name: soft_1}
loss: {type: bce, target: [1, 0]}
learning_rate: 0.5
"""


def test_specials_and_unicode_are_escaped(tmp_path):
    trace = run(loads(AWKWARD))
    source = latex.render(trace)
    compile_tex(tmp_path, source)
    assert r"100\% of \$5 \#1" in source and r"conv\_1" in source


def test_every_layer_type_and_loss_rule_compiles(tmp_path):
    # one scenario per loss, every layer type between them: each rule becomes math that compiles
    layers = """
  - {type: conv, name: c, kernel: [[0.5, -1], [1, 0.5]], padding: 1, stride: 2}
  - {type: avgpool, name: a, size: 2, stride: 1}
  - {type: maxpool, name: m, size: 1}
  - {type: tanh, name: t}
  - {type: relu, name: r}
  - {type: identity, name: i}
  - {type: sigmoid, name: s}
  - {type: flatten, name: f}
  - {type: dense, name: d, weights: [[1], [-1]]}
"""
    sources = []
    for loss in ("half_sse: {type: half_sse, target: [1, 0]}", "sse: {type: sse, target: [1, 0]}",
                 "mse: {type: mse, target: [1, 0]}", "ce: {type: cross_entropy, target: 1}"):
        text = f"input: [[1, 2], [3, 4]]\nconventions: {{kernel: convolution, flatten: column, index_base: 1}}\n" \
               f"layers:{layers}loss: {loss.split(': ', 1)[1]}\nlearning_rate: 0.1\n"
        sources.append(latex.render(run(loads(text)), fragment=True))
    document = latex.PREAMBLE + "\n".join(sources) + "\\end{document}\n"
    compile_tex(tmp_path, document)


def test_rules_become_math():
    # rules are notation (bptrace.notation), typeset node by node: names upright, Σ with its
    # subscripts, prose as text
    trace = run(load(ROOT / "scenarios" / "seed001.yaml"))
    assert latex.math(trace["c1.out"].notation) == \
        r"\mathrm{c1.out}[i,j] = \sum_{u}\sum_{v} \mathrm{c1.kernel}[u,v] \cdot \mathrm{input}[i+u,j+v] + \mathrm{c1.bias}"
    assert latex.math(trace["p1.delta"].notation) == \
        r"\mathrm{p1.delta} = \mathrm{s1.delta} \odot \mathrm{s1.out} \odot \left(1 - \mathrm{s1.out}\right)"
    assert latex.math(trace["c1.delta"].notation) == (
        r"\mathrm{c1.delta}\text{: each }\mathrm{p1.delta}\text{ element goes to the cell of }\mathrm{c1.out}"
        r"\text{ that won its window; zeros elsewhere}")
    assert latex.number_math("1.5e-7") == r"1.5\times 10^{-7}"


def test_text_escapes_everything():
    assert latex.text("a_b & 50% #1 $x ~ ^ \\ {}") == \
        r"a\_b \& 50\% \#1 \$x \textasciitilde{} \textasciicircum{} \textbackslash{} \{\}"
    assert latex.text("σ — é 漢") == r"\ensuremath{\sigma } --- e [U+6F22]"


def test_output_file(tmp_path):
    out = tmp_path / "trace.tex"
    result = CliRunner().invoke(main, ["run", str(ROOT / "scenarios" / "seed001.yaml"), "--format", "latex",
                                       "-o", str(out)])
    assert result.exit_code == 0 and result.output == ""
    assert out.read_text(encoding="utf-8").startswith(r"\documentclass")


def test_sums_leave_out_zero_terms_and_blocks_are_named():
    source = latex.render(run(load(ROOT / "scenarios" / "seed001.yaml")))
    # the sums of a step are one align*, each aligned on its first `=`, the total on its own line
    start = source.index(r"\hyperlink{step:c1.grad.kernel}{\mathrm{c1.grad.kernel}}[0,1] &= ")
    line = source[start:source.index(r"\\", start)]
    assert r"0 \cdot 0.01" not in line and r"0.068628 \cdot 0.84" in line
    assert r"left out of each sum: 12 of its 16 terms, which have a zero factor" in source
    source = latex.render(run(loads("""
input: [[[1, 2], [3, 4]], [[5, 6], [7, 8]]]
layers: [{type: relu, name: r}]
upstream: {layer: r, delta: [[[1, 0], [0, 1]], [[1, 1], [0, 0]]]}
""")))
    assert r"{\small map 1:}" in source and ":, :" not in source


STEERING_NAME = ('name: "Problem 3\\n\\nthe \\e[31mred\\e[0m one\\a"\n'
                 'description: "First line.\\n\\n\\tSecond \\u202eparagraph.\\x0c"\n'
                 "input: [1, 2]\nlayers: [{type: relu}]\nupstream: {delta: [1, 1]}\n")


def test_a_name_with_blank_lines_and_control_characters_compiles(tmp_path):
    source = latex.render(run(loads(STEERING_NAME)))
    assert r"{\Large\bfseries\raggedright Problem 3 the [31mred [0m one\par}" in source
    assert not re.search("[\x00-\x08\x0b-\x1f\x7f\u202e]", source)
    compile_tex(tmp_path, source)


# --- navigation: bookmarks, contents, running heads ------------------------------------------

def pdf_objects(data: bytes) -> dict:
    """Every object of a PDF by number, including those packed in (Flate) object streams."""
    import zlib

    objects = {int(m.group(1)): m.group(2) for m in re.finditer(rb"(\d+) 0 obj\s*(.*?)\s*endobj", data, re.S)}
    for number, body in list(objects.items()):
        if b"/ObjStm" not in body or b"stream" not in body:
            continue
        head, _, rest = body.partition(b"stream")
        stream = zlib.decompress(rest.lstrip(b"\r\n").rsplit(b"endstream", 1)[0])
        first = int(re.search(rb"/First (\d+)", head).group(1))
        numbers = [int(x) for x in stream[:first].split()]
        pairs = list(zip(numbers[::2], numbers[1::2]))
        for k, (inner, offset) in enumerate(pairs):
            end = first + pairs[k + 1][1] if k + 1 < len(pairs) else len(stream)
            objects[inner] = stream[first + offset:end].strip()
    return objects


def pdf_string(value: bytes) -> str:
    value = value.strip()
    if value.startswith(b"<"):
        raw = bytes.fromhex(value[1:-1].decode())
        return raw[2:].decode("utf-16-be") if raw.startswith(b"\xfe\xff") else raw.decode("latin-1")
    escapes = {b"n": b"\n", b"r": b"\r", b"t": b"\t", b"b": b"\b", b"f": b"\f"}
    raw = re.sub(rb"\\([0-7]{1,3}|.)", lambda m: bytes([int(m.group(1), 8)]) if m.group(1)[:1].isdigit()
                 else escapes.get(m.group(1), m.group(1)), value[1:-1])
    return raw[2:].decode("utf-16-be") if raw.startswith(b"\xfe\xff") else raw.decode("latin-1")


def outline(pdf_path) -> list:
    """The PDF's bookmarks as (depth, title), read from the file itself."""
    objects = pdf_objects(pdf_path.read_bytes())
    ref = lambda body, key: int(re.search(rb"/" + key + rb" (\d+) 0 R", body).group(1))  # noqa: E731
    root = next(body for body in objects.values() if re.search(rb"/Type\s*/Outlines", body))
    found = []

    def walk(number, depth):
        while number is not None:
            body = objects[number]
            title = re.search(rb"/Title\s*(\(.*?(?<!\\)\)|<[0-9A-Fa-f]*>|\d+ 0 R)", body, re.S).group(1)
            if title.endswith(b" R"):
                title = objects[int(title.split()[0])]
            found.append((depth, pdf_string(title)))
            if b"/First" in body:
                walk(ref(body, b"First"), depth + 1)
            number = ref(body, b"Next") if b"/Next" in body else None

    walk(ref(root, b"First"), 0)
    return found


def test_the_pdf_has_bookmarks_contents_and_running_heads(tmp_path):
    trace = run(load(ROOT / "scenarios" / "seed001.yaml"))
    source = latex.render(trace)
    compile_tex(tmp_path, source)
    compile_tex(tmp_path, source)          # the second run writes the contents and the outline
    marks = outline(tmp_path / "trace.pdf")
    # the document, its sections (forward, backward, results), every step under its section
    assert marks[0] == (0, trace.name)
    assert [title for depth, title in marks if depth == 1] == [
        "forward", "backward, from h.delta, the given upstream error", "Results"]
    assert [title for depth, title in marks if depth == 2] == trace.names()
    assert r"\tableofcontents" in source and r"\fancyhead[R]{\small\ttfamily\nouppercase{\rightmark}}" in source
    # the running head names the step at the top of each page (read back when pdftotext is here)
    if shutil.which("pdftotext"):
        pages = subprocess.run(["pdftotext", "-layout", str(tmp_path / "trace.pdf"), "-"], capture_output=True,
                               text=True).stdout.split("\f")
        heads = [page.strip().splitlines()[0] for page in pages[1:] if page.strip()]
        assert any(re.search(r"\bc1\.\w+", head) for head in heads), heads


def test_handout_tables_have_labelled_rows_and_columns_and_results_are_boxed():
    source = latex.render(run(load(ROOT / "scenarios" / "seed001.yaml")))
    # one size for every table, indices over the columns and beside the rows
    assert source.count(r"{\footnotesize\setlength{\tabcolsep}{3pt}") == source.count(r"\begin{tabular}{r|")
    assert r"\multicolumn{1}{c}{\bpidx{0}} & \multicolumn{1}{c}{\bpidx{1}}" in source
    assert r"\bpidx{1} & \phantom{$-$}0.1305 & \phantom{$-$}0.3164 & $-$0.1191" in source
    # sums aligned on `=`, the total on its own line when the sum is long; results boxed
    assert r"\hyperlink{step:c1.grad.kernel}{\mathrm{c1.grad.kernel}}[0,1] &= 0.068628 \cdot 0.84" in source
    assert "\n  &= 0.09411869" in source
    assert r"\bpresult{\begin{minipage}" in source


def test_pictures_in_the_pdf_pooling_windows_and_heat(tmp_path):
    source = latex.render(run(load(ROOT / "scenarios" / "seed001.yaml")))
    pool = source[source.index(r"\hypertarget{step:p1.out}"):source.index(r"\hypertarget{step:s1.out}")]
    assert "each window in its own colour, its winner framed" in pool
    assert pool.count(r"\fbox{\textbf{") == 4 and pool.count(r"\cellcolor[rgb]{") == 16 + 4
    zhang = latex.render(run(load(ZHANG_PATH)), only={"C1.grad.kernel"})
    # the step and its result: 150 shaded cells each
    assert zhang.count(r"\cellcolor[rgb]") == 300 and "shaded: red positive, blue negative" in zhang


ZHANG_PATH = ROOT / "scenarios" / "zhang2016.yaml"


def test_a_max_pool_winner_written_in_powers_of_ten_compiles(tmp_path):
    # the winner's star on 2×10^{20} was a second superscript (`10^{20}^{\star}`): a LaTeX error
    trace = run(loads("input: [[2.0e+20, 1.0e+20], [3, 4]]\nlayers:\n  - {type: maxpool, name: m, size: 2}\n"
                      "upstream: {delta: 1}\n"))
    source = latex.render(trace)
    assert "}^{\\star}" in source and not re.search(r"10\^\{\d+\}\^", source)
    compile_tex(tmp_path, source)


def test_letters_with_two_digit_subscripts_are_one_subscript(tmp_path):
    # k₂₂ in a sum's terms was written k_{2}_{2}: "Double subscript", and pdflatex stopped
    pytest.importorskip("sympy")
    trace = run(loads("arithmetic: symbolic\ninput: [[x11, x12], [x21, x22]]\nlayers:\n"
                      "  - {type: conv, name: c, kernel: [[k11]], bias: b}\nloss: {type: sum}\n"))
    source = latex.render(trace)
    assert "k_{11}" in source and not re.search(r"_\{\d\}_\{", source)
    compile_tex(tmp_path, source)
