"""Speed of `bptrace check` at size, against `bptrace run --format json` of the same scenario.

    python bench/check_bench.py            # 3 repetitions of each case
    python bench/check_bench.py --repeat 5
    python bench/check_bench.py --only-class --class-repeat 3

Cases (whole processes, wall clock, start-up included; medians; each check interleaved with
`run --format json` of its scenario in the same repetition):

* late: one sheet answering every step of the backward pass right except the last layer's
  kernel gradient (one number off): the catalog runs for the first wrong step, the latest
  one.  At Zhang's size (scenarios/zhang2016.yaml) and near the size guard.
* class: 200 Zhang-sized submissions (each the same late wrong answer with a different
  number) in one `check --jobs 2` call.
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def bptrace_command() -> list[str]:
    """This checkout's bptrace (run from its root), whatever is installed."""
    return [sys.executable, "-m", "bptrace"]

# Near the size guard: Zhang's network on a 56x56 input (about 4x its work)
NEAR_GUARD = """name: near the size guard
conventions: {kernel: convolution, flatten: column, index_base: 1}
input: {random: uniform, shape: [60, 60], seed: 3}
init: {scheme: glorot_uniform, seed: 0}
layers:
  - {type: conv, name: C1, out_channels: 6, size: 5}
  - {type: sigmoid, name: sig1}
  - {type: avgpool, name: S1, size: 2}
  - {type: conv, name: C2, out_channels: 12, size: 5}
  - {type: sigmoid, name: sig2}
  - {type: avgpool, name: S2, size: 2}
  - {type: flatten, name: F}
  - {type: dense, name: FC, out: 10}
  - {type: sigmoid, name: out}
loss: {type: half_sse, target: [1, 0, 0, 0, 0, 0, 0, 0, 0, 0]}
"""


CPU: list = []          # CPU seconds (user + system, the process and its workers) of each `seconds` call


def seconds(command) -> float:
    """Wall clock of one whole process; its CPU time goes to CPU (on a machine shared with
    other work the CPU time says what the process itself costs)."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    done = subprocess.run(command, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    if done.returncode not in (0, 1):
        raise SystemExit(f"{' '.join(map(str, command))} failed: {done.stderr.decode()[-400:]}")
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    CPU.append(after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime)
    return wall


def late_sheet(scenario: Path, folder: Path, count: int = 1) -> list[Path]:
    """Sheets answering every backward step of the last kernel's layer onwards right (from
    the export), with C1.grad.kernel's first number off."""
    export = json.loads(subprocess.run(bptrace_command() + ["run", str(scenario), "--format", "json",
                                                             "--no-size-limit"],
                                       cwd=ROOT, capture_output=True, check=True).stdout)
    steps = {step["name"]: step["values"] for step in export["steps"]}
    paths = []
    for k in range(count):
        kernel = json.loads(json.dumps(steps["C1.grad.kernel"]))
        cell = kernel
        while isinstance(cell[0], list):
            cell = cell[0]
        cell[0] = round(cell[0] + 0.01 * (k + 1), 6)
        answers = {"C1.delta": steps["C1.delta"], "C1.grad.kernel": kernel, "FC.grad.weights": steps["FC.grad.weights"]}
        path = folder / f"sheet{k:03d}.json"
        path.write_text(json.dumps(answers))
        paths.append(path)
    return paths


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--class-repeat", type=int, default=0,
                        help="repetitions of the 200-submission case (default: half of --repeat)")
    parser.add_argument("--only-class", action="store_true", help="time the 200-submission case alone")
    options = parser.parse_args()
    bp = bptrace_command()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        near = tmp / "near_guard.yaml"
        near.write_text(NEAR_GUARD)
        late_cases = () if options.only_class else (("Zhang 2016", ROOT / "scenarios/zhang2016.yaml"),
                                                     ("near the size guard", near))
        for label, scenario in late_cases:
            sheet = late_sheet(scenario, tmp)[0]
            runs, checks = [], []
            for _ in range(options.repeat):
                runs.append(seconds(bp + ["run", str(scenario), "--format", "json", "--no-size-limit"]))
                checks.append(seconds(bp + ["check", str(scenario), "--expected", str(sheet), "--no-size-limit"]))
            run, check = statistics.median(runs), statistics.median(checks)
            print(f"late wrong answer, {label}: check {check:.2f} s, run --format json {run:.2f} s, "
                  f"ratio {check / run:.2f}x (target ≤ 3x)")
        folder = tmp / "class"
        folder.mkdir()
        late_sheet(ROOT / "scenarios/zhang2016.yaml", folder, 200)
        jobs = str(min(2, os.cpu_count() or 1))
        times, cpu = [], []
        for _ in range(options.class_repeat or max(1, options.repeat // 2)):
            times.append(seconds(bp + ["check", "scenarios/zhang2016.yaml", "--expected", str(folder), "--jobs", jobs]))
            cpu.append(CPU[-1])
        print(f"200 Zhang-sized submissions, check --jobs {jobs}: {statistics.median(times):.1f} s "
              f"(CPU {statistics.median(cpu):.1f} s; target < 60 s)")


if __name__ == "__main__":
    main()
