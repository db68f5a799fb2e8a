"""Shared test fixtures.

* `--update-golden` rewrites the golden files under tests/golden/ instead of comparing.
* `--fuzz-long` (or BPTRACE_LONG=1) runs the long setting of tests/test_fuzz_structural.py.
* Tests that need the PyTorch oracle call `require_torch()`: it skips when torch is not
  installed, unless BPTRACE_REQUIRE_TORCH=1 (as in CI), where a missing torch fails.
"""
from __future__ import annotations

import os
from pathlib import Path

import pytest
from hypothesis import settings

# CI draws the same hypothesis examples on every run, so that a run fails only for a change
# (a new example found offline is added with @example); runs elsewhere keep exploring.
settings.register_profile("ci", derandomize=True, database=None)
if os.environ.get("CI"):
    settings.load_profile("ci")

ROOT = Path(__file__).resolve().parent.parent
# the shipped scenarios in numbers; those in letters (`arithmetic: symbolic`, sympy) have
# formulas, not numbers, and their own tests in test_symbolic.py
SYMBOLIC = sorted(path for path in (ROOT / "scenarios").glob("*.yaml") if "arithmetic: symbolic" in path.read_text())
SCENARIOS = sorted(path for path in (ROOT / "scenarios").glob("*.yaml") if path not in SYMBOLIC)
GOLDEN = Path(__file__).resolve().parent / "golden"


def pytest_addoption(parser):
    parser.addoption("--update-golden", action="store_true", default=False,
                     help="rewrite tests/golden/* from the current output")
    parser.addoption("--fuzz-long", action="store_true", default=False,
                     help="run the long structural fuzz (as BPTRACE_LONG=1): 30,000 mutated scenarios")


def require_torch():
    try:
        import torch
    except ImportError:
        if os.environ.get("BPTRACE_REQUIRE_TORCH") == "1":
            pytest.fail("BPTRACE_REQUIRE_TORCH=1 but torch is not installed")
        pytest.skip("torch is not installed (the PyTorch oracle is optional outside CI)")
    torch.set_default_dtype(torch.float64)
    return torch


@pytest.fixture
def torch():
    return require_torch()


@pytest.fixture
def golden(request):
    """golden(name, text): compare text with tests/golden/name, or rewrite it."""
    update = request.config.getoption("--update-golden")

    def check(name: str, text: str):
        path = GOLDEN / name
        if update:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text, encoding="utf-8")
            return
        assert path.exists(), f"missing golden file {path}; run pytest --update-golden"
        expected = path.read_text(encoding="utf-8")
        assert text == expected, f"output differs from {path}; if the change is intended, run pytest --update-golden"

    return check
