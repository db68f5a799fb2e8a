"""Running a check: hand-worked answers held against the trace.

A sheet is a set of answers: whole steps (`p1.delta: [[...]]`) or single elements
(`c1.grad.kernel[0,1]: 0.094061`), from a scenario's `expected:` or a separate file.  Each
written number gets one of three verdicts:

* right: it matches the trace's number at the tolerance in force.  By default that is the
  number "as written": with k decimals it is right when the trace's number rounded half-up
  to k decimals equals it, or (reported as such) when truncated to k decimals does.  The
  decimals are read from the file's text, so `0.0360` claims four decimals, not two.
* follows from your earlier values: wrong against the clean trace, but right against the
  number computed from the sheet's own earlier answers.  One engine run with every answer
  pinned (`overrides=`) gives that number for every step at once (`Step.computed` is what
  the step computed before its own pin), so a slip is counted once, and a sheet that
  carried its own rounded numbers forward passes.
* wrong.

The first wrong step is named, and `mistakes.diagnose` looks for classic mistakes that
reproduce the wrong numbers.  `Checker` keeps the clean run and the catalog's runs of each
scenario it has seen, so a class's submissions of one problem share them.

A number written with framework precision (`Written.precise`) that fails as written is
held to what float32 arithmetic makes of its sum: `Model.magnitudes` gives Σ|terms| of each
such element, recorded by one engine run that explains only those elements.
"""

from __future__ import annotations

import dataclasses
import itertools
import json
import multiprocessing
import shlex
from concurrent.futures import ProcessPoolExecutor

import numpy as np

from ..engine import run
from ..errors import ScenarioError
from ..scenario import (DEFAULT_WORK_LIMIT, Points, Rounding, Scenario, Tolerance, load, make_patch, merge_patches,
                        read_points)
from ..source import Document
from ..tensors import describe_shape, display_index, fits, format_index, plain, squeezed_shape
from .answers import answer_files, is_answer_sheet, read_answers, scenario_answers
from .matching import FOLLOWS, FOLLOWS_TEXT, RIGHT, WRONG, evidence, match, near, references, same_number
from .mistakes import Catalog, diagnose
from .report import CheckReport, FileReport, FirstWrong, Row

class Model:
    """One scenario's clean run, and (made when first needed) its catalog of mistaken runs."""

    def __init__(self, scenario: Scenario):
        self.scenario = scenario
        self.kept: dict = {}                       # each layer's loop results, for the catalog's runs
        self.trace = run(scenario, terms=False, keep=self.kept, bounds=True)
        self.refs = references(self.trace, scenario)
        self.order = {name: position for position, name in enumerate(self.trace.names())}
        self.reads = {step.name: step.reads for step in self.trace.steps}
        self._catalog = None
        self._magnitudes: dict = {}
        self._elements: dict = {}

    def elements(self, name: str) -> list:
        """(cell, index as shown, label) of every element of the step `name`, in C order (as
        a whole answer's numbers are written): worked out once for every sheet of the problem."""
        if name not in self._elements:
            shape, base = self.scenario.shapes[name], self.scenario.conventions.index_base
            self._elements[name] = [self.element(name, cell, shape, base)
                                    for cell in itertools.product(*map(range, shape))]
        return self._elements[name]

    def element(self, name: str, cell: tuple, shape=None, base=None) -> tuple:
        """(cell, index as shown: its axes of length 1 dropped, the index base added, label)."""
        shape = self.scenario.shapes[name] if shape is None else shape
        base = self.scenario.conventions.index_base if base is None else base
        shown = display_index(shape, cell, base)
        return cell, shown, name + format_index(shown)

    def reusable(self, changed: set, exclude=()) -> dict:
        """The clean run's layer loops (`engine.run(keep=)`) that a run differing from it
        only in the steps `changed` (closed under what reads them) would repeat: each loop
        that neither reads nor makes a changed step, a mistaken layer's (`exclude`) forward
        pass only (its mistake, if in the forward pass, changes its output)."""
        sc, kept = self.scenario, {}
        if getattr(sc, "steps", 1) != 1:
            return kept                # the engine keeps one training step's loops only
        for layer in sc.layers:
            n = sc.names(layer)
            reads = set(self.reads[n.out])
            if not (reads | {n.out}) & changed and ("forward", layer.name) in self.kept:
                kept["forward", layer.name] = self.kept["forward", layer.name]
            if layer.name not in exclude and n.delta in self.order and not (reads | {n.out, n.delta}) & changed \
                    and ("backward", layer.name) in self.kept:
                kept["backward", layer.name] = self.kept["backward", layer.name]
        # a reused loop's float-noise bounds with it (a pinned answer equal to the clean number
        # would zero its noise: the clean bounds are at most that much larger)
        kept.update({key + ("noise",): self.kept[key + ("noise",)] for key in list(kept)
                     if key + ("noise",) in self.kept})
        return kept

    def downstream(self, names) -> set:
        """`names` and every step that reads them, directly or not."""
        reached = set(names)
        for name in self.order:
            if any(r in reached for r in self.reads[name]):
                reached.add(name)
        return reached

    def magnitudes(self, cells) -> dict:
        """(name, cell) → Σ|terms| of the element's sum in the clean run (at least its own
        magnitude).  An activation's or a max-pool's element takes the magnitude of the
        element it was computed from (the error of its input passes through, scaled by a
        slope of at most 1), followed until a sum or a given number."""
        wanted = [cell for cell in cells if cell not in self._magnitudes]
        follow: dict = {}                          # element -> the element whose magnitude it takes
        for _ in range(len(self.order)):
            todo = {cell for cell in wanted if cell not in self._magnitudes and cell not in follow}
            if not todo:
                break
            explain: dict = {}
            for name, cell in todo:
                explain.setdefault(name, set()).add(cell)
            trace = run(self.scenario, explain=explain, terms=False)
            for name, cell in todo:
                step = trace[name]
                own = abs(float(step.values[cell]))
                expansion = (step.expansions or {}).get(cell)
                if expansion is None or not expansion.terms:
                    self._magnitudes[(name, cell)] = own       # as given: exact
                elif expansion.kind == "sum":
                    self._magnitudes[(name, cell)] = max(own, sum(
                        abs(float(np.prod([factor.value for factor in term]))) for term in expansion.terms))
                else:
                    term = expansion.terms[expansion.winner or 0]
                    source = next((f for f in term if f.index is not None and f.name in self.order), None)
                    if source is None:
                        self._magnitudes[(name, cell)] = own
                    else:
                        follow[(name, cell)] = (source.name, tuple(source.index))
                        self._magnitudes.setdefault((name, cell), own)
                        wanted.append(follow[(name, cell)])
        for cell in reversed(list(follow)):
            self._magnitudes[cell] = max(self._magnitudes[cell], self._magnitudes.get(follow[cell], 0.0))
        return {cell: self._magnitudes[cell] for cell in cells}

    @property
    def catalog(self):
        if self._catalog is None:
            self._catalog = Catalog(self)
        return self._catalog


def _content_key(scenario: Scenario, rounding) -> str:
    """Scenarios that differ only in their answers (and name) share their runs."""
    data = scenario.document.data if scenario.document else None
    if not isinstance(data, dict):
        return f"id:{id(scenario)}"
    kept = {key: value for key, value in data.items()
            if key not in ("expected", "tolerance", "points", "name", "description")}
    return json.dumps([kept, dataclasses.astuple(rounding) if rounding else None], sort_keys=True, default=repr)


class Checker:
    """Checks sheets, keeping each scenario's runs for every sheet of the same problem."""

    def __init__(self, tolerance: Tolerance | None = None, rounding: Rounding | None = None, points=None):
        self.tolerance = tolerance        # from the command line; overrides the scenario's
        self.rounding = rounding          # from the command line; replaces the scenario's
        self.points = points              # from the command line (as `points:` holds it); replaces the scenario's
        self._models: dict = {}

    def model(self, scenario: Scenario) -> Model:
        key = _content_key(scenario, self.rounding)
        if key not in self._models:
            if self.rounding is not None:
                scenario = dataclasses.replace(scenario, rounding=self.rounding)
            self._models[key] = Model(scenario)
        return self._models[key]

    def scenario_points(self, scenario: Scenario) -> Points:
        if self.points is None:
            return scenario.points
        return read_points(scenario, Document(data=self.points), ("--points",), self.points)

    def check(self, scenario: Scenario, answers: list, *, file: str, scenario_path: str) -> FileReport:
        tolerance = self.tolerance or scenario.tolerance
        model = self.model(scenario)
        sc = model.scenario
        report = FileReport(file=file, scenario=scenario_path, title=scenario.name, tolerance=tolerance,
                            rounding=_rounding_text(sc), points=self.scenario_points(scenario))

        if sc.in_letters:
            # formulas: right when they are the trace's formula (symbolic.py)
            return sc.numbers.check_formulas(report, model, answers, scenario_path)
        fitting = [a for a in answers if a.index is not None or fits(a.values.shape, sc.shapes[a.name])]
        fitting_ids = {id(answer) for answer in fitting}
        overrides = merge_patches(make_patch(sc, a.doc, a.path, a.key, a.values) for a in fitting)
        # only the steps downstream of an answer that differs from the clean run are re-run
        differing = {name for name, patch in overrides.items()
                     if not np.array_equal(patch.values[patch.mask], model.trace[name].values[patch.mask])}
        try:
            own = references(run(sc, overrides=overrides, terms=False, bounds=True,
                                 reuse=model.reusable(model.downstream(differing))), sc)
        except ScenarioError:
            # the answers drive the network where it cannot go (a bce output outside 0..1):
            # nothing can follow from them, so each is held against the clean trace alone
            own = model.refs
        rows, numbers = [], []
        for answer in answers:
            shape = sc.shapes[answer.name]
            if id(answer) not in fitting_ids:
                rows.append(Row(answer.name, None, answer.key, answer.values.tolist(),
                                plain(model.refs[answer.name]), WRONG,
                                f"wrong shape: yours is {describe_shape(answer.values.shape)}, "
                                f"bptrace's {describe_shape(shape)}",
                                shape=squeezed_shape(answer.values.shape), bptrace_shape=squeezed_shape(shape),
                                answer=answer))
                continue
            clean_values, own_values = model.refs[answer.name], own[answer.name]
            if answer.index is not None:
                cells = [model.element(answer.name, answer.index)]
                cleans, mines = [clean_values[answer.index]], [own_values[answer.index]]
            else:
                # C order, as the answer's numbers were written
                cells = model.elements(answer.name)
                cleans, mines = clean_values.reshape(-1).tolist(), own_values.reshape(-1).tolist()
            for (cell, shown, label), written, clean, mine in zip(cells, answer.written, cleans, mines):
                clean_noise, mine_noise = float(model.refs.noise[answer.name][cell]), float(own.noise[answer.name][cell])
                # how it matches the clean trace, None until known (held to float32 below)
                numbers.append([answer.name, cell, written, float(clean), clean_noise, float(mine), mine_noise,
                                answer.index is not None, match(written, clean, tolerance, clean_noise),
                                shown, label])
        if tolerance.as_written:
            # framework printouts: held to float32's precision of their sums where as written
            # fails (whether a number is written so is asked only of those: it costs)
            precise = [(number[0], number[1]) for number in numbers if number[8] is None and number[2].precise]
            if precise:
                magnitudes = model.magnitudes(precise)
                for number in numbers:
                    if number[8] is None and (number[0], number[1]) in magnitudes:
                        number[2] = number[2].but(magnitude=magnitudes[(number[0], number[1])])
                        number[8] = match(number[2], number[3], tolerance, number[4])
        for name, cell, written, clean, clean_noise, mine, mine_noise, element, how, shown, label in numbers:
            verdict = RIGHT
            if how is None:
                if match(written, mine, tolerance, mine_noise) is not None:
                    verdict, how = FOLLOWS, FOLLOWS_TEXT
                else:
                    verdict, how = WRONG, "wrong"
            rows.append(Row(name, cell, label, written.value, clean, verdict, how,
                            written=written, own=None if clean == mine or same_number(clean, mine, clean_noise + mine_noise)
                            else mine, shown_index=shown, element=element, noise=clean_noise))
        rows.sort(key=lambda row: (model.order[row.name], row.index is None, row.index or ()))
        report.rows = rows

        wrong = [row for row in rows if not row.passed]
        if wrong:
            first = wrong[0]
            report.first_wrong = FirstWrong(
                first.label, first.name, model.trace[first.name].rule, first.yours, first.bptrace, first.own,
                f"bptrace explain {shlex.quote(scenario_path)} {shlex.quote(first.label)}",
                first.shape, first.bptrace_shape)
            report.diagnosis, report.unexplained = diagnose(
                model.catalog, rows, overrides, own,
                lambda written, value, noise=0.0: match(written, value, tolerance, noise),
                lambda written: evidence(written, tolerance),
                near=(lambda written, value, noise=0.0: near(written, value, sc.rounding.decimals, noise))
                if sc.rounding and tolerance.as_written else None)
        return report


def _rounding_text(scenario: Scenario) -> str | None:
    rounding = scenario.rounding
    if rounding is None:
        return None
    return f"{rounding.describe()}, applied to {', '.join(rounding.apply)}"


def check_files(scenario_paths, expected_paths=(), *, tolerance: Tolerance | None = None,
                rounding: Rounding | None = None, work_limit: int | None = DEFAULT_WORK_LIMIT,
                jobs: int = 1, points=None, arithmetic: str | None = None) -> CheckReport:
    """Check several sheets in one go: each scenario's own `expected:`, or (with
    `expected_paths`, which need exactly one scenario) each answer file against that
    scenario.  A file that cannot be read becomes a report with `error` set; the rest are
    still checked.  jobs > 1 checks the sheets in that many processes, each with its own
    runs of the problem, in contiguous shares so that the report keeps the sheets' order."""
    if jobs > 1:
        paths = [str(p) for p in (answer_files(expected_paths) if expected_paths else scenario_paths)]
        if len(paths) > 1:
            if expected_paths and len(scenario_paths) != 1:
                raise ScenarioError("--expected goes with exactly one scenario (each answer file is "
                                    "checked against it)")
            jobs = min(jobs, len(paths))
            options = {"tolerance": tolerance, "rounding": rounding, "work_limit": work_limit, "points": points,
                       "arithmetic": arithmetic}
            forking = "fork" in multiprocessing.get_all_start_methods()
            context = multiprocessing.get_context("fork" if forking else None)
            if expected_paths and forking:
                return _check_forked(scenario_paths[0], paths, jobs, context, options)
            shares = [paths[k * len(paths) // jobs:(k + 1) * len(paths) // jobs] for k in range(jobs)]
            tasks = [(list(scenario_paths), share) if expected_paths else (share, []) for share in shares]
            with ProcessPoolExecutor(max_workers=jobs, mp_context=context) as pool:
                parts = list(pool.map(_check_share, tasks, [options] * len(tasks)))
            files = [report for part in parts for report in part]
            if expected_paths and files and all(f.error and f.file == str(scenario_paths[0]) for f in files):
                files = files[:1]          # the scenario itself could not be read: said once
            return CheckReport(files)
    checker = Checker(tolerance, rounding, points)
    reports = []
    if expected_paths:
        if len(scenario_paths) != 1:
            raise ScenarioError("--expected goes with exactly one scenario (each answer file is "
                                "checked against it)")
        scenario_path = str(scenario_paths[0])
        try:
            scenario = load(scenario_path, work_limit=work_limit, arithmetic=arithmetic)
            checker.model(scenario)
        except ScenarioError as error:
            return CheckReport([FileReport(file=scenario_path, scenario=scenario_path,
                                           error=str(error.located(file=scenario_path)))])
        for path in answer_files(expected_paths):
            reports.append(_checked(checker, lambda p=path: (scenario, read_answers(p, scenario)), path,
                                    scenario_path))
        return CheckReport(reports)
    for path in scenario_paths:
        path = str(path)

        def sheet(p=path):
            try:
                scenario = load(p, work_limit=work_limit, arithmetic=arithmetic)
            except ScenarioError:
                if is_answer_sheet(p):
                    raise ScenarioError("this is an answer sheet, not a scenario", file=p,
                                        hint=f"check it against its scenario: bptrace check SCENARIO "
                                             f"--expected {shlex.quote(p)}") from None
                raise
            answers = scenario_answers(scenario)
            if not answers:
                run(scenario, terms=False)      # a scenario that cannot run says why, as `run` would
                raise ScenarioError("nothing to check: the scenario has no `expected:` answers", file=p,
                                    hint="add `expected:` to the scenario, or give --expected FILE")
            return scenario, answers

        reports.append(_checked(checker, sheet, path, path))
    return CheckReport(reports)


def _checked(checker: Checker, sheet, file: str, scenario_path: str) -> FileReport:
    try:
        scenario, answers = sheet()
        return checker.check(scenario, answers, file=file, scenario_path=scenario_path)
    except ScenarioError as error:
        return FileReport(file=file, scenario=scenario_path, error=str(error.located(file=file)))


# What forked workers inherit: the checker holding the problem's clean run, made once by
# the parent, and the scenario (see `_check_forked`).
_INHERITED: tuple | None = None
# Sheets per task: small enough that the parent takes in finished reports while the
# workers go on, large enough that handing out tasks costs nothing.
CHUNKS_PER_JOB = 8


def _check_forked(scenario_path, paths, jobs, context, options) -> CheckReport:
    """`check_files(jobs=N)` of many sheets against one scenario: the scenario is loaded
    and run once, here, and the forked workers inherit that run (copy-on-write), so none
    repeats it; the sheets go out in small contiguous chunks, the report in their order."""
    global _INHERITED
    scenario_path = str(scenario_path)
    checker = Checker(options["tolerance"], options["rounding"], options["points"])
    try:
        scenario = load(scenario_path, work_limit=options["work_limit"], arithmetic=options["arithmetic"])
        checker.model(scenario)
    except ScenarioError as error:
        return CheckReport([FileReport(file=scenario_path, scenario=scenario_path,
                                       error=str(error.located(file=scenario_path)))])
    size = max(1, -(-len(paths) // (jobs * CHUNKS_PER_JOB)))
    chunks = [paths[k:k + size] for k in range(0, len(paths), size)]
    _INHERITED = (checker, scenario, scenario_path)
    try:
        with ProcessPoolExecutor(max_workers=jobs, mp_context=context) as pool:
            parts = list(pool.map(_check_inherited, chunks))
    finally:
        _INHERITED = None
    return CheckReport([report for part in parts for report in part])


def _check_inherited(paths) -> list:
    checker, scenario, scenario_path = _INHERITED
    return [_checked(checker, lambda p=path: (scenario, read_answers(p, scenario)), path, scenario_path)
            for path in paths]


def _check_share(task, options) -> list:
    """One process's share of `check_files(jobs=N)`."""
    scenario_paths, expected_paths = task
    return check_files(scenario_paths, expected_paths, **options).files
