"""Speed and memory of `bptrace run` against a PyTorch script computing the same values.

    python bench/bench.py              # 5 repetitions of each case
    python bench/bench.py --repeat 11

Each case times whole processes, start-up included, by wall clock: the `bptrace` command and
`python bench/torch_baseline.py` (the same network in float64 with autograd, printing every
value), one after the other in each repetition so that both see the same machine state.  It
prints the medians, the ratio bptrace / PyTorch against the targets of issue 3, and the peak
memory (maximum resident set size) of each process.  Before timing it checks that the two
sides computed the same numbers.

`bench_engine` times the engine alone, in this process, and prints nanoseconds per counted
scalar operation (`python bench/bench.py --engine` runs only that).

`bench_check` is the benchmark of issue 4 (200 submissions in one `bptrace check` call
against 20 single-file calls); it is skipped while `bptrace check` does not exist.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BASELINE = ROOT / "bench" / "torch_baseline.py"
MEMORY_LIMIT_MB = 100


def bptrace_command() -> list[str]:
    """The installed console script of this interpreter (not a shell shim in front of it)."""
    script = Path(sys.executable).parent / "bptrace"
    if script.exists():
        return [str(script)]
    found = shutil.which("bptrace")
    return [found] if found else [sys.executable, "-m", "bptrace"]


class Failed(Exception):
    """A timed process did not succeed."""


@dataclass
class Sample:
    seconds: float
    peak_mb: float
    output: bytes


def timed(command: list[str]) -> Sample:
    """Run one process to the end: wall-clock seconds, its own peak RSS, its stdout."""
    with tempfile.TemporaryFile() as err:
        start = time.perf_counter()
        process = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.PIPE, stderr=err)
        output = process.stdout.read()
        # wait4 reports the resource usage of this one child, not of every child so far
        _, status, usage = os.wait4(process.pid, 0)
        seconds = time.perf_counter() - start
        process.returncode = os.waitstatus_to_exitcode(status)
        process.stdout.close()
        if process.returncode != 0:
            err.seek(0)
            message = err.read().decode(errors="replace").strip().splitlines()
            raise Failed(f"exit {process.returncode}: {message[-1] if message else 'no message'}")
    return Sample(seconds, usage.ru_maxrss / 1024, output)   # ru_maxrss is in KiB on Linux


@dataclass
class Case:
    label: str
    bptrace: list[str]
    baseline: list[str]
    target: float                      # the most bptrace may take, as a fraction of PyTorch
    ours: list = field(default_factory=list)
    theirs: list = field(default_factory=list)
    failure: str | None = None

    def median(self, samples):
        return statistics.median(s.seconds for s in samples)

    @property
    def ratio(self):
        return self.median(self.ours) / self.median(self.theirs)


def cases() -> list[Case]:
    run = bptrace_command() + ["run"]
    torch = [sys.executable, str(BASELINE)]
    return [
        Case("seed001, text", run + ["scenarios/seed001.yaml"], torch + ["seed001"], 0.3),
        Case("Zhang 2016, JSON", run + ["scenarios/zhang2016.yaml", "--format", "json"], torch + ["zhang2016"], 0.5),
        Case("Zhang 2016, text", run + ["scenarios/zhang2016.yaml"], torch + ["zhang2016"], 1.0),
        Case("residual + BN, JSON", run + ["bench/residual_bn.yaml", "--format", "json"], torch + ["residual_bn"], 1.0),
    ]


def agreement(case_json: list[str], baseline: list[str]) -> tuple[int, float]:
    """How many values both sides printed, and their largest difference."""
    ours = {step["name"]: step["values"] for step in json.loads(timed(case_json).output)["steps"]}
    worst, count = 0.0, 0
    for line in timed(baseline).output.decode().splitlines():
        name, values = line.split("\t")
        theirs = json.loads(values)
        mine = ours[name]
        flat = list(_flatten(mine))
        assert len(flat) == len(theirs), f"{name}: {len(flat)} values here, {len(theirs)} in PyTorch"
        worst = max([worst] + [abs(a - b) for a, b in zip(flat, theirs)])
        count += len(flat)
    return count, worst


def _flatten(values):
    if isinstance(values, list):
        for item in values:
            yield from _flatten(item)
    else:
        yield values


def bench_run(repeat: int):
    all_cases = cases()
    print(f"bptrace: {' '.join(all_cases[0].bptrace[:-2])}")
    print(f"pytorch: {sys.executable} {BASELINE.relative_to(ROOT)}")
    for scenario, network in (("scenarios/seed001", "seed001"), ("scenarios/zhang2016", "zhang2016"),
                              ("bench/residual_bn", "residual_bn")):
        count, worst = agreement(bptrace_command() + ["run", f"{scenario}.yaml", "--format", "json"],
                                 [sys.executable, str(BASELINE), network])
        print(f"same values: {network}: {count} numbers, largest difference {worst:.1e}")
    for case in all_cases:                      # warm the file cache; not counted
        try:
            timed(case.bptrace), timed(case.baseline)
        except Failed as failure:
            case.failure = str(failure)
    working = [case for case in all_cases if case.failure is None]
    for _ in range(repeat):
        for case in working:
            case.ours.append(timed(case.bptrace))
            case.theirs.append(timed(case.baseline))

    print(f"\nwhole process, wall clock, median of {repeat} (seconds vary with the machine's load; the"
          "\nratios compare runs interleaved in the same repetitions)\n")
    header = f"{'case':<20}{'bptrace':>9}{'pytorch':>9}{'ratio':>8}{'target':>9}   {'peak memory (bptrace / pytorch)':>31}"
    print(header)
    print("─" * len(header))
    verdicts = []
    for case in all_cases:
        if case.failure:
            verdicts.append(False)
            print(f"{case.label:<20}failed: {case.failure}")
            continue
        ours_mb = max(s.peak_mb for s in case.ours)
        theirs_mb = max(s.peak_mb for s in case.theirs)
        speed_ok = case.ratio <= case.target
        memory_ok = ours_mb < MEMORY_LIMIT_MB
        verdicts += [speed_ok, memory_ok]
        size = len(case.ours[-1].output)
        print(f"{case.label:<20}{case.median(case.ours):>8.2f}s{case.median(case.theirs):>8.2f}s"
              f"{case.ratio:>7.2f}x{'≤ ' + format(case.target, 'g') + 'x':>8} {'✓' if speed_ok else '✗'}"
              f"   {ours_mb:>7.1f} MB {'✓' if memory_ok else '✗'} / {theirs_mb:>5.0f} MB"
              f"   ({size / 1024:,.0f} KiB written)")
    print(f"\nmemory target: bptrace below {MEMORY_LIMIT_MB} MB peak RSS")
    print("all targets met" if all(verdicts) else "TARGET MISSED")
    return all(verdicts)


# --- issue 10: the engine's cost per scalar operation ------------------------------------------

NS_PER_OP_TARGET = 100


def engine_cases() -> list[tuple[str, str, str]]:
    """(label, scenario text, file name) of the in-process cases: Zhang's network, the same
    network on a 56x56 input (twice the side, 6.3 times the operations), and the residual block
    with batch norm of the whole-process cases (relu decides, so float-noise bounds are computed too)."""
    zhang = (ROOT / "scenarios" / "zhang2016.yaml").read_text(encoding="utf-8")
    wide = zhang.replace("shape: [28, 28]", "shape: [56, 56]")
    assert wide != zhang, "scenarios/zhang2016.yaml no longer draws a [28, 28] input"
    residual = ROOT / "bench" / "residual_bn.yaml"
    return [("Zhang 2016", zhang, "scenarios/zhang2016.yaml"),
            ("Zhang, 56x56 input", wide, "zhang2016-56x56.yaml"),
            ("residual + batch norm", residual.read_text(encoding="utf-8"), "bench/residual_bn.yaml")]


def bench_engine(repeat: int):
    """Nanoseconds per counted operation: `bptrace.engine.run` timed in this process (no
    start-up, no rendering), divided by the scalar operations the size guard counts (each
    layer's `multiply_adds()`, forward and backward), median of `repeat` runs after one
    warm-up run."""
    sys.path.insert(0, str(ROOT))
    from bptrace.engine import run
    from bptrace.scenario import loads

    print(f"\nengine time per counted operation, in-process, median of {repeat} "
          f"(target: at most {NS_PER_OP_TARGET} ns)\n")
    header = f"{'case':<24}{'operations':>12}{'engine':>10}{'per operation':>16}"
    print(header)
    print("─" * len(header))
    verdicts = []
    for label, text, file in engine_cases():
        scenario = loads(text, file)
        operations = scenario.work()
        run(scenario)
        times = []
        for _ in range(repeat):
            start = time.perf_counter()
            run(scenario)
            times.append(time.perf_counter() - start)
        seconds = statistics.median(times)
        per_op = seconds / operations * 1e9
        ok = per_op <= NS_PER_OP_TARGET
        verdicts.append(ok)
        print(f"{label:<24}{operations:>12,}{seconds:>9.3f}s{per_op:>12.1f} ns {'✓' if ok else '✗'}")
    return all(verdicts)


# --- issue 4: `bptrace check` over a class's submissions -------------------------------------

SUBMISSIONS = 200
SINGLE_CALLS = 20


def check_exists() -> bool:
    result = subprocess.run(bptrace_command() + ["check", "--help"], cwd=ROOT, capture_output=True)
    return result.returncode == 0


def submissions(folder: Path) -> list[Path]:
    """200 answer sheets for seed001.yaml, each wrong in one place, so that the catalog of
    likely mistakes runs for every one: a changed digit in the kernel gradient, the kernel
    gradient turned by 180° (kernel-not-flipped), or the sigmoid's slope left out of p1.delta
    (activation-derivative-missing) with the kernel gradient worked on from that number."""
    trace = json.loads(timed(bptrace_command() + ["run", "scenarios/seed001.yaml", "--format", "json"]).output)
    values = {step["name"]: step["values"] for step in trace["steps"]}
    image, c1_delta = values["input"], values["c1.delta"]

    def kernel_gradient(p1_delta):
        # the routed error map with each window's winner carrying this sheet's p1.delta
        routed = [[p1_delta[i // 2][j // 2] if c1_delta[i][j] else 0.0 for j in range(4)] for i in range(4)]
        return [[round(sum(routed[i][j] * image[i + u][j + v] for i in range(4) for j in range(4)), 6)
                 for v in range(2)] for u in range(2)]

    base = (ROOT / "scenarios" / "seed001.yaml").read_text(encoding="utf-8")
    p1 = [[round(v, 6) for v in row] for row in values["p1.delta"]]
    no_slope = [[round(v, 6) for v in row] for row in values["s1.delta"]]
    paths = []
    for k in range(SUBMISSIONS):
        sheet_p1, sheet_kernel = p1, kernel_gradient(values["p1.delta"])
        kind = k % 3
        if kind == 0:
            u, v = k % 2, (k // 2) % 2
            sheet_kernel[u][v] = round(sheet_kernel[u][v] + 0.01 * (1 + k % 7), 6)
        elif kind == 1:
            sheet_kernel = [row[::-1] for row in sheet_kernel[::-1]]
        else:
            sheet_p1, sheet_kernel = no_slope, kernel_gradient(values["s1.delta"])
        path = folder / f"student{k:03d}.yaml"
        path.write_text(base + f"\nexpected:\n  p1.delta: {json.dumps(sheet_p1)}\n"
                               f"  c1.grad.kernel: {json.dumps(sheet_kernel)}\n", encoding="utf-8")
        paths.append(path)
    return paths


def bench_check(repeat: int):
    print(f"\n`bptrace check`: {SUBMISSIONS} submissions in one call vs {SINGLE_CALLS} single-file calls")
    if not check_exists():
        print("skipped: `bptrace check` does not exist yet (issue 4)")
        return True
    check = bptrace_command() + ["check", "--format", "json"]
    with tempfile.TemporaryDirectory() as tmp:
        paths = [str(p) for p in submissions(Path(tmp))]
        one_call, single = [], []
        for _ in range(repeat):
            start = time.perf_counter()
            result = subprocess.run(check + paths, cwd=ROOT, capture_output=True)
            one_call.append(time.perf_counter() - start)
            if result.returncode != 1:      # 1: wrong answers found, as every sheet has one
                print(f"unexpected exit status {result.returncode} from the one call:\n"
                      + result.stderr.decode(errors="replace")[-2000:])
                return False
            start = time.perf_counter()
            for path in paths[:SINGLE_CALLS]:
                subprocess.run(check + [path], cwd=ROOT, capture_output=True)
            single.append(time.perf_counter() - start)
    ours, theirs = statistics.median(one_call), statistics.median(single)
    ok = ours < theirs
    print(f"one call, {SUBMISSIONS} files: {ours:.2f}s   {SINGLE_CALLS} single-file calls: {theirs:.2f}s   "
          f"{'✓' if ok else '✗'} (target: the one call is faster)")
    return ok


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeat", type=int, default=5, help="repetitions of each case (default 5)")
    parser.add_argument("--engine", action="store_true", help="only the in-process time per operation")
    args = parser.parse_args()
    if args.engine:
        sys.exit(0 if bench_engine(args.repeat) else 1)
    ok = bench_run(args.repeat)
    ok = bench_engine(args.repeat) and ok
    ok = bench_check(args.repeat) and ok
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
