"""In Jupyter: a notebook run by a real kernel shows traces, steps, explanations and check
reports as static HTML (inline CSS under a class of its own, no script), with the terminal
text as the plain-text form."""
from __future__ import annotations

import os
import re

import pytest

from conftest import ROOT

CELLS = [
    f"import sys; sys.path.insert(0, {str(ROOT)!r})\nimport bptrace",
    "trace = bptrace.run(bptrace.load('scenarios/seed001.yaml'))\ntrace",
    "trace['c1.grad.kernel']",
    "trace.explain('c1.grad.kernel[0,1]')",
    "trace.check({'c1.grad.kernel': [[0.0683, 0.0113], [0.0941, 0.0446]]})",
    "print(repr(trace))",
]


def _tools():
    try:
        import nbclient
        import nbformat
        import ipykernel  # noqa: F401
    except ImportError:
        if os.environ.get("BPTRACE_REQUIRE_TOOLS") == "1":
            pytest.fail("BPTRACE_REQUIRE_TOOLS=1 but nbclient, nbformat or ipykernel is not installed")
        pytest.skip("nbclient, nbformat and ipykernel are not installed (pip install -e '.[test]')")
    return nbclient, nbformat


@pytest.fixture(scope="module")
def outputs():
    nbclient, nbformat = _tools()
    notebook = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(source) for source in CELLS])
    nbclient.NotebookClient(notebook, timeout=120, kernel_name="python3",
                            resources={"metadata": {"path": str(ROOT)}}).execute()
    return [cell.outputs for cell in notebook.cells]


def _result(outputs, cell):
    [result] = [out for out in outputs[cell] if out.output_type == "execute_result"]
    return result.data


def _assert_static_and_scoped(html: str):
    assert "<script" not in html.lower() and "javascript:" not in html.lower()
    assert not re.search(r"<[^>]+\son\w+=", html), "an event handler attribute"
    scope = re.match(r'<div class="(bptrace-[0-9a-f]+)">', html).group(1)
    for style in re.findall(r"<style>(.*?)</style>", html, re.S):
        for selectors in re.findall(r"([^{}]+)\{[^{}]*\}", re.sub(r"@media[^{]*\{", "", style)):
            for selector in selectors.split(","):
                assert selector.strip().startswith(f".{scope}"), f"unscoped CSS selector {selector.strip()!r}"


def test_a_trace_shows_as_html_with_the_terminal_text_as_plain_text(outputs):
    data = _result(outputs, 1)
    html = data["text/html"]
    _assert_static_and_scoped(html)
    assert '<h2 id="network">Network</h2>' in html and 'id="s-c1.grad.kernel"' in html and "0.09411869" in html
    assert "━━ backward, from h.delta, the given upstream error" in data["text/plain"]


def test_a_step_an_explanation_and_a_check_report_show_as_html(outputs):
    step, explanation, report = (_result(outputs, cell) for cell in (2, 3, 4))
    for data in (step, explanation, report):
        _assert_static_and_scoped(data["text/html"])
    assert "c1.grad.kernel[u,v]" in step["text/html"] and "0.09411869" in step["text/plain"]
    assert "c1.grad.kernel[0,1] = 0.0941186865" in explanation["text/plain"]
    assert "0.0941186865" in explanation["text/html"] and "style=" in explanation["text/html"]
    assert "kernel-not-flipped" in report["text/plain"] and "0 passed, 4 failed" in report["text/plain"]
    assert "kernel-not-flipped" in report["text/html"]


def test_a_plain_repr_stays_one_short_line(outputs):
    [printed] = [out for out in outputs[5] if out.output_type == "stream"]
    assert printed.text.startswith("<Trace 'seed 001") and printed.text.count("\n") == 1
