"""Edge cases of expression graphs and recurrent layers found by a QA pass over issue 14:
each test failed before its fix."""
from __future__ import annotations

from click.testing import CliRunner

from bptrace.cli import main


def _run(tmp_path, text, *options):
    path = tmp_path / "s.yaml"
    path.write_text(text)
    return CliRunner().invoke(main, ["run", str(path), *options])


def test_a_domain_error_in_exact_arithmetic_is_a_located_message(tmp_path):
    # the message shows the inputs' values; exact ones are fractions, which have no 'g' format
    result = _run(tmp_path, "inputs: {x: 0, y: 1}\nnodes:\n  q: y / 3\n  f: q / x\n", "--arithmetic", "exact")
    assert result.exit_code == 2, result.output
    assert "divides by zero, with q = 1/3, x = 0" in result.output, result.output
