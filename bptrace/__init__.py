"""bptrace: backpropagation through small convolutional networks, step by step.

    >>> import bptrace
    >>> scenario = bptrace.load("scenarios/seed001.yaml")
    >>> trace = bptrace.run(scenario)
    >>> trace["c1.grad.kernel"].shown
    array([[0.0445918 , 0.09411869],
           [0.01125765, 0.06831239]])

The names below are imported on first use, so that `bptrace --help` does not pay for numpy.
"""
from __future__ import annotations

__version__ = "0.1.0"
__all__ = ["load", "loads", "run", "from_torch", "variant", "Scenario", "ScenarioError", "Step", "Trace"]

_HOMES = {"load": "api", "loads": "scenario", "Scenario": "scenario", "run": "api",
          "ScenarioError": "errors", "Step": "trace", "Trace": "trace", "from_torch": "pytorch",
          "variant": "api"}


def __getattr__(name):
    if name in _HOMES:
        from importlib import import_module

        return getattr(import_module(f".{_HOMES[name]}", __name__), name)
    raise AttributeError(f"module 'bptrace' has no attribute {name!r}")
