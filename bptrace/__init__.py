"""bptrace: backpropagation through small convolutional networks, step by step.

    >>> import bptrace
    >>> scenario = bptrace.load("scenarios/seed001.yaml")
    >>> trace = bptrace.run(scenario)
    >>> trace["c1.grad.kernel"].shown
"""
from .engine import run
from .errors import ScenarioError
from .scenario import Scenario, load, loads
from .trace import Step, Trace

__all__ = ["load", "loads", "run", "Scenario", "ScenarioError", "Step", "Trace"]
__version__ = "0.1.0"
