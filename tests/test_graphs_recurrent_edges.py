"""Edge cases of expression graphs and recurrent layers found by a QA pass over issue 14:
each test failed before its fix."""
from __future__ import annotations

from click.testing import CliRunner

import bptrace
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


def test_a_fractional_power_of_a_negative_number_is_outside_its_domain(tmp_path):
    # Python's (-4.0) ** 0.5 is a complex number; torch gives nan: refused, located
    for formula in ("x ** 0.5", "y * x ** -1.5"):
        result = _run(tmp_path, f"inputs: {{x: -4, y: 2}}\nnodes:\n  f: {formula}\n")
        assert result.exit_code == 2, result.output
        assert "takes a function outside its domain, with" in result.output and "x = -4" in result.output, result.output


def test_a_power_of_zero_has_slope_zero_everywhere_as_in_torch(torch, tmp_path):
    path = tmp_path / "s.yaml"
    path.write_text("inputs: {x: [0, 2], y: [3, 3]}\nnodes:\n  f: x ** 0 * y + x\n")
    for arithmetic in ("float", "exact"):
        trace = bptrace.run(bptrace.load(path), arithmetic=arithmetic)
        x = torch.tensor([0.0, 2.0], dtype=torch.float64, requires_grad=True)
        f = x ** 0 * 3 + x
        f.sum().backward()
        assert trace.value("f.out").ravel().tolist() == f.tolist()
        assert trace.value("x.delta").ravel().tolist() == x.grad.tolist() == [1.0, 1.0]
