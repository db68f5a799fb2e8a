"""Exact arithmetic against float arithmetic on every shipped scenario exact accepts.

    python bench/arithmetic_bench.py            # 21 repetitions, medians

Each repetition traces the scenario once in float and once in exact arithmetic, one after
the other (interleaved, so that a busy machine slows both alike), in-process (start-up is
the same for both).  Target: exact within 10× float.
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bptrace.engine import run  # noqa: E402
from bptrace.errors import ScenarioError  # noqa: E402
from bptrace.scenario import load  # noqa: E402


def timed(scenario) -> float:
    start = time.perf_counter()
    run(scenario)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=21)
    repeat = parser.parse_args().repeat
    print(f"{'scenario':36} {'float':>10} {'exact':>10} {'ratio':>7}   (medians of {repeat}, in-process)")
    worst = 0.0
    for path in sorted((ROOT / "scenarios").glob("*.yaml")):
        try:
            exact = load(path, arithmetic="exact")
            run(exact)
        except ScenarioError:
            continue            # needs exp, log, tanh or an inexact square root
        floats = load(path)
        pairs = [(timed(floats), timed(exact)) for _ in range(repeat)]
        f, e = statistics.median(p[0] for p in pairs), statistics.median(p[1] for p in pairs)
        worst = max(worst, e / f)
        print(f"{path.stem:36} {f * 1000:8.2f}ms {e * 1000:8.2f}ms {e / f:6.1f}x")
    print(f"worst ratio {worst:.1f}x (target ≤ 10x)")


if __name__ == "__main__":
    main()
