"""`bptrace check`: hand-worked answers held against the trace.

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
"""
from __future__ import annotations

import dataclasses
import json
import math
import os
import shlex
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation

import numpy as np

from .errors import ScenarioError
from .rounding import round_array, round_number
from .scenario import (DEFAULT_WORK_LIMIT, Rounding, Scenario, Tolerance, load, make_patch, merge_patches, resolve,
                       tolerance_problem)
from .source import Document, _brief, read_document, read_regular_file
from .spec import kind_of, read_tensor
from .tensors import describe_shape, display_index, fits, format_index, plain, squeezed_shape

# Two numbers this close are the same number computed two ways (float noise), whatever
# was written: |a − b| ≤ NOISE·max(|a|, |b|) + FLOOR.
NOISE = 1e-9
FLOOR = 1e-12
# Before rounding a computed number to the decimals a person wrote, keep this many
# significant digits: 0.04675 computed as 0.046749999999999997 rounds up, as on paper.
DENOISE_DIGITS = 12
# Numbers from an .npz have no text to read decimals from.  Each is right within NPZ_ULPS
# units in the last place of its own float type at its own magnitude (storing bptrace's number
# in that type costs half of one), plus NPZ_STEP_EPSILONS epsilons of the step's largest
# magnitude: a sum that cancels (a delta of 1e-7 out of terms near 1) keeps the absolute
# error of the terms, which float32 PyTorch gradients of the shipped scenarios show at up to
# 7.4 epsilons of their step.  That floor is taken in float32 epsilons for coarser types
# (float16 arrays are float32 results stored small), so a float16 number 1% off fails.
NPZ_ULPS = 4
NPZ_STEP_EPSILONS = 16
# An .npz array may hold at most this many numbers, or its step's count when that is more
# (a wrong-shape answer is reported as such); checked in its header before any data is read.
NPZ_MIN_LIMIT = 10_000
NPZ_DIGITS = 6          # what a match with a number without text (.npz, export) is worth, in digits
ANSWER_SUFFIXES = (".yaml", ".yml", ".json", ".npz")

RIGHT, FOLLOWS, WRONG = "right", "follows", "wrong"
FOLLOWS_TEXT = "follows from your earlier values"


# --- tolerance ----------------------------------------------------------------------------

def command_line_tolerance(absolute: float | None, relative: float | None) -> Tolerance | None:
    """--tolerance ABS and --rtol REL, held to the rules of a scenario's `tolerance:`."""
    if absolute is None and relative is None:
        return None
    for option, key, value in (("--tolerance", "abs", absolute), ("--rtol", "rel", relative)):
        problem = tolerance_problem(key, value) if value is not None else None
        if problem:
            raise ScenarioError(problem, key=option)
    return Tolerance(absolute or 0.0, relative or 0.0)


# --- numbers as written -------------------------------------------------------------------

@dataclass(frozen=True)
class Written:
    """One number of a sheet: its value, and its text as written by a person (None from an
    .npz, or from a program's export, whose digits are a float's and not a claim)."""
    value: float
    text: str | None
    dtype: str | None = None   # an .npz number's float type ("float32"), which sets its precision
    scale: float = 0.0         # and the largest magnitude of the step it answers (bptrace's)

    def slack(self, value: float) -> float:
        """How far from `value` an .npz number may be and still be that number (0 without
        a float type): see NPZ_ULPS."""
        if self.dtype is None:
            return 0.0
        info = np.finfo(self.dtype)
        eps = float(info.eps)
        ulp = max(math.ldexp(eps, math.frexp(abs(value))[1] - 1), float(info.smallest_subnormal))
        return NPZ_ULPS * ulp + NPZ_STEP_EPSILONS * min(eps, float(np.finfo(np.float32).eps)) * self.scale

    @property
    def digits(self) -> int | None:
        """Significant digits the text claims: 0.0364 → 3, 0.0360 → 3, 0 → 1."""
        if self.text is None:
            return None
        try:
            return max(1, len(Decimal(self.text.replace("_", "").strip()).as_tuple().digits))
        except InvalidOperation:
            return 1

    @property
    def decimals(self) -> int | None:
        """Decimals the text claims: 0.0360 → 4, 1.5e-3 → 4, 2 → 0; None without text."""
        if self.text is None:
            return None
        try:
            exponent = Decimal(self.text.replace("_", "").strip()).as_tuple().exponent
        except InvalidOperation:
            return 0
        return -exponent if isinstance(exponent, int) and exponent < 0 else 0


def _plural(count, word):
    return f"{count} {word}{'' if count == 1 else 's'}"


def match(written: Written, value: float, tolerance: Tolerance) -> str | None:
    """How `written` matches the computed `value` (a phrase for the report), or None."""
    mine = written.value
    if not math.isfinite(value):
        return None
    if not tolerance.as_written:
        return "within tolerance" if abs(mine - value) <= tolerance.abs + tolerance.rel * abs(value) else None
    if same_number(mine, value, written.slack(value)):
        return "equal at the array's precision" if written.dtype else "exact"
    decimals = written.decimals
    if not decimals:
        # A whole number (no decimals) is taken as exact: "0" is not right for 0.3.
        return None
    clean = float(f"{value:.{DENOISE_DIGITS}g}")
    if round_number(clean, decimals, "half_up") == mine:
        return f"as written ({_plural(decimals, 'decimal')})"
    if round_number(clean, decimals, "truncate") == mine:
        return f"matches when truncated ({_plural(decimals, 'decimal')})"
    return None


def evidence(written: Written, tolerance: Tolerance) -> float:
    """How many significant digits a match with this number is worth: what it claims as
    written, what the tolerance resolves of it, or a float's worth without text (.npz, export)."""
    if not tolerance.as_written:
        width = tolerance.abs + tolerance.rel * abs(written.value)
        ratio = abs(written.value) / width if width > 0 else 0.0
        return max(0.0, math.log10(ratio)) if ratio > 0 else 0.0
    return written.digits if written.text is not None else NPZ_DIGITS


def same_number(a: float, b: float, slack: float = 0.0) -> bool:
    """The same number computed two ways (float noise), or within `slack` of it."""
    return abs(a - b) <= NOISE * max(abs(a), abs(b)) + FLOOR + slack


# --- answers ------------------------------------------------------------------------------

@dataclass
class Answer:
    """One answer as written: a whole step (`index` None) or one element."""
    key: str
    name: str
    index: tuple | None          # canonical index of an element
    values: np.ndarray           # as written (written shape)
    written: list                # Written per number, in the order written (C order)
    path: tuple                  # where it stands in its document, for messages
    doc: Document


def _number(doc: Document, path: tuple, item, what: str, typed: bool) -> Written:
    """typed: the text is a person's (its decimals count), not a program's float."""
    if isinstance(item, bool) or not isinstance(item, (int, float, str)):
        raise doc.error(path, f"expected a number in {what}, found {kind_of(item)}")
    if isinstance(item, str):
        # `1e-5` and JSON's `1e-05` are text to YAML 1.1; as answers they are numbers
        try:
            value = float(item.replace("_", "")) if item.strip() else math.nan
        except ValueError:
            value = math.nan
        if not math.isfinite(value):
            raise doc.error(path, f"expected a number in {what}, found the text '{item}'")
        text = item.strip()
    else:
        value, text = float(item), doc.raw.get(path, repr(item))
    if value == 0 and _nonzero(text):
        # as a number beyond ±1.8e308 is refused, not read as infinity
        raise doc.error(path, f"{_brief(text)} is too small for a float (it would be read as 0)",
                        "write 0, or a number of magnitude 5e-324 or more")
    return Written(value, text if typed else None)


def _nonzero(text: str) -> bool:
    try:
        return Decimal(text.replace("_", "").strip()) != 0
    except InvalidOperation:
        return False


def _numbers(doc: Document, path: tuple, value, what: str, typed: bool = True):
    """A number or a rectangular nested list → (array, [Written...] in C order)."""
    written = []

    def numbers(item, where):
        # each entry read as a number (YAML 1.1 leaves `1e-5` as text), then the whole held
        # to the rules of every tensor a scenario holds
        if isinstance(item, list):
            return [numbers(sub, where + (i,)) for i, sub in enumerate(item)]
        written.append(_number(doc, where, item, what, typed))
        return written[-1].value

    return read_tensor(doc, path, numbers(value, tuple(path)), what=what), written


def _answers(scenario: Scenario, doc: Document, items, typed: bool = True) -> list[Answer]:
    """items: (key as written, value, key path) → answers, each key checked against the trace."""
    answers = []
    for key, value, path in items:
        name, index = resolve(scenario, doc, path, str(key))
        values, written = _numbers(doc, path, value, f"the answer {key}", typed)
        if index is not None and values.ndim != 0:
            raise doc.error(path, f"{key} is one element; write a single number")
        answers.append(Answer(str(key), name, index, values, written, path, doc))
    _refuse_overlaps(answers, doc)
    return answers


def _refuse_overlaps(answers, doc: Document):
    seen = {}
    for answer in answers:
        for other in seen.get(answer.name, []):
            if answer.index is None or other.index is None or other.index == answer.index:
                raise doc.error(answer.path, f"{answer.key} answers numbers {other.key} already answers",
                                "write each number once")
        seen.setdefault(answer.name, []).append(answer)


def scenario_answers(scenario: Scenario) -> list[Answer]:
    doc = scenario.document
    return _answers(scenario, doc, [(key, value, ("expected", key)) for key, value in scenario.expected.items()])


def read_answers(path, scenario: Scenario) -> list[Answer]:
    """An answer file: YAML or JSON (`{name: values}`, `{expected: {...}}`, or bptrace's own
    `run --format json` export, whose steps' values are taken), or an .npz of named arrays."""
    name = str(path)
    if os.path.isdir(name):
        raise ScenarioError("no answer files (" + ", ".join(ANSWER_SUFFIXES) + ") in this directory", file=name)
    if name.lower().endswith(".npz"):
        return _npz_answers(name, scenario)
    doc = read_document(name, what="an answer file")
    data = doc.data
    if not isinstance(data, dict):
        raise doc.error((), "an answer file is a mapping of names to numbers, such as "
                            "`c1.grad.kernel: [[0.1, 0.2], [0.3, 0.4]]`")
    if "steps" in data and "bptrace" in data:
        steps = data["steps"]
        if not isinstance(steps, list):
            raise doc.error(("steps",), "`steps` of a bptrace export must be a list")
        items = []
        for i, step in enumerate(steps):
            if not isinstance(step, dict) or "name" not in step or "values" not in step:
                raise doc.error(("steps", i), "each step of a bptrace export has a `name` and `values`")
            items.append((step["name"], step["values"], ("steps", i, "values")))
        answers = _answers(scenario, doc, items, typed=False)
    elif "expected" in data:
        extra = [key for key in data if key != "expected"]
        if extra:
            raise doc.error((extra[0],), f"unknown key '{extra[0]}' beside `expected:` in an answer file",
                            "an answer file holds answers only; tolerance and rounding belong to the scenario")
        mapping = data["expected"]
        if not isinstance(mapping, dict):
            raise doc.error(("expected",), "`expected` must be a mapping of names to numbers")
        answers = _answers(scenario, doc, [(key, value, ("expected", key)) for key, value in mapping.items()])
    else:
        answers = _answers(scenario, doc, [(key, value, (key,)) for key, value in data.items()])
    if not answers:
        raise ScenarioError("the answer file has no answers", file=name)
    return answers


def _npz_answers(name: str, scenario: Scenario) -> list[Answer]:
    """numpy.savez's archive of NAME.npy members, each member's header held against its step
    before any of its data is read (a header may claim 10^11 numbers, a zip member may
    inflate to gigabytes)."""
    import io
    import zipfile
    import zlib

    doc = Document(data=None, file=name)
    blob = read_regular_file(name, what="an answer file")
    if blob.startswith(b"\x93NUMPY"):
        raise ScenarioError("this is a single .npy array, not an .npz of named arrays", file=name,
                            hint="save with numpy.savez(path, **{'c1.grad.kernel': array, ...})")
    try:
        archive = zipfile.ZipFile(io.BytesIO(blob))
    except (ValueError, zipfile.BadZipFile) as exc:
        raise ScenarioError(f"cannot read this .npz: {exc}", file=name) from None
    answers = []
    with archive:
        for member in archive.infolist():
            key = member.filename.removesuffix(".npy")
            if key == member.filename:
                raise doc.error((key,), "this member is not a .npy array",
                                "an .npz holds NAME.npy arrays, as numpy.savez writes them")
            cell, index = resolve(scenario, doc, (key,), key)
            size = 1 if index is not None else math.prod(scenario.shapes[cell])
            try:
                with archive.open(member) as stream:
                    array = _npy_array(stream, doc, key, size, element=index is not None)
            except (OSError, EOFError, RuntimeError, NotImplementedError, zipfile.BadZipFile, zlib.error) as exc:
                raise doc.error((key,), f"cannot read this array: {exc}") from None
            values = array.astype(float)
            if not np.isfinite(values).all():
                raise doc.error((key,), "every number must be finite")
            if index is not None:
                values = values.reshape(())
            dtype = array.dtype.name if array.dtype.kind == "f" else None
            written = [Written(float(v), None, dtype) for v in values.reshape(-1)]
            answers.append(Answer(key, cell, index, values, written, (key,), doc))
    _refuse_overlaps(answers, doc)
    if not answers:
        raise ScenarioError("the .npz holds no arrays", file=name)
    return answers


def _npy_array(stream, doc: Document, key: str, size: int, element: bool) -> np.ndarray:
    """One .npy member: its header read and checked against the `size` numbers it answers
    (one for an element; for a step, at most NPZ_MIN_LIMIT or `size`, a wrong shape being
    reported as such), then exactly the bytes it declares."""
    from numpy.lib import format as npy

    try:
        version = npy.read_magic(stream)
        if version not in ((1, 0), (2, 0)):
            raise ValueError(f"unsupported .npy format version {version[0]}.{version[1]}")
        read_header = npy.read_array_header_1_0 if version == (1, 0) else npy.read_array_header_2_0
        shape, fortran_order, dtype = read_header(stream)
    except ValueError as exc:
        raise doc.error((key,), f"this member is not a .npy array ({exc})") from None
    if dtype.kind not in "fiu" or dtype.fields is not None or dtype.subdtype is not None:
        raise doc.error((key,), f"expected numbers, found an array of {dtype}")
    count = math.prod(shape)
    if element and count != 1:
        raise doc.error((key,), f"{key} is one element; save a single number")
    if count > max(size, NPZ_MIN_LIMIT):
        raise doc.error((key,), f"the array's header declares {count} numbers; {key} has {size}")
    data = stream.read(count * dtype.itemsize)
    if len(data) != count * dtype.itemsize or stream.read(1):
        raise doc.error((key,), f"the array's data does not match its header ({describe_shape(shape)} of {dtype})")
    return np.frombuffer(data, dtype=dtype).reshape(shape, order="F" if fortran_order else "C")


def answer_files(paths) -> list[str]:
    """--expected arguments: files, or directories standing for the answer files in them."""
    files = []
    for path in paths:
        path = str(path)
        if os.path.isdir(path):
            found = sorted(os.path.join(path, entry) for entry in os.listdir(path)
                           if entry.lower().endswith(ANSWER_SUFFIXES) and not entry.startswith("."))
            files.extend(found or [path])      # an empty directory is reported as broken
        else:
            files.append(path)
    return files


# --- the report ---------------------------------------------------------------------------

@dataclass
class Row:
    """One compared number (or one answer of the wrong shape)."""
    name: str
    index: tuple | None           # canonical index; None for a wrong-shape answer
    label: str                    # as a person writes it: c1.grad.kernel[0,1]
    yours: object                 # float, or a nested list for a wrong-shape answer
    bptrace: object               # the clean trace's number (nested list for a wrong shape)
    verdict: str                  # RIGHT, FOLLOWS, WRONG
    how: str                      # "as written (4 decimals)", "follows from your earlier values", "wrong", ...
    written: Written | None = None
    own: float | None = None      # computed from your own earlier values, when that differs
    shape: tuple | None = None    # a wrong-shape answer's shape (squeezed)
    bptrace_shape: tuple | None = None   # and the step's (squeezed)
    answer: Answer | None = None  # a wrong-shape answer, for the catalog
    shown_index: tuple | None = None   # the index as written: length-1 axes dropped, index base added

    @property
    def passed(self) -> bool:
        return self.verdict != WRONG

    @property
    def difference(self):
        """yours − bptrace; None for a wrong shape, or when the difference overflows."""
        if self.shape is not None:
            return None
        difference = 0.0 if same_number(self.yours, self.bptrace) else self.yours - self.bptrace
        return difference if math.isfinite(difference) else None


@dataclass
class FirstWrong:
    label: str
    name: str
    rule: str
    yours: object
    bptrace: object
    own: float | None
    explain: str                  # the command that explains it
    shape: tuple | None = None    # a wrong-shape answer's shape and the step's (squeezed)
    bptrace_shape: tuple | None = None


@dataclass
class Diagnosis:
    id: str
    message: str
    explains: list                # labels of the wrong answers it reproduces
    layers: list = field(default_factory=list)


@dataclass
class FileReport:
    file: str                     # the answer file, or the scenario holding `expected:`
    scenario: str
    title: str = ""
    tolerance: Tolerance | None = None
    rounding: str | None = None
    rows: list = field(default_factory=list)
    first_wrong: FirstWrong | None = None
    diagnosis: list = field(default_factory=list)
    unexplained: list = field(default_factory=list)
    error: str | None = None      # the file could not be checked (exit status 2)

    @property
    def passed(self) -> int:
        return sum(1 for row in self.rows if row.passed)

    @property
    def failed(self) -> int:
        return sum(1 for row in self.rows if not row.passed)

    @property
    def follows(self) -> int:
        return sum(1 for row in self.rows if row.verdict == FOLLOWS)


@dataclass
class CheckReport:
    files: list

    @property
    def passed(self) -> int:
        return sum(report.passed for report in self.files)

    @property
    def failed(self) -> int:
        return sum(report.failed for report in self.files)

    @property
    def broken(self) -> int:
        return sum(1 for report in self.files if report.error)

    @property
    def all_right(self) -> int:
        """Sheets that were read and have no wrong answer."""
        return sum(1 for report in self.files if not report.error and not report.failed)

    @property
    def with_wrong_answers(self) -> int:
        return sum(1 for report in self.files if not report.error and report.failed)

    @property
    def exit_code(self) -> int:
        """2 when a file could not be read (even if others were checked), else 1 when an
        answer is wrong, else 0."""
        if self.broken:
            return 2
        return 1 if self.failed else 0


# --- checking -----------------------------------------------------------------------------

def references(trace, scenario: Scenario) -> dict:
    """Each step's numbers as a careful worker would have them in this run: what the step
    computed from what it read (rounded where the scenario rounds), with the problem's
    `given` values in place, but not the answers pinned onto it."""
    out = {}
    for step in trace.steps:
        if step.computed is None:
            out[step.name] = step.values
            continue
        values = step.computed
        if step.rounded:
            values = round_array(values, scenario.rounding.decimals, scenario.rounding.mode, step.noise)
        given = scenario.given.get(step.name)
        if given is not None:
            values = np.where(given.mask, given.values, values)
        out[step.name] = values
    return out


class Model:
    """One scenario's clean run, and (made when first needed) its catalog of mistaken runs."""

    def __init__(self, scenario: Scenario):
        from .engine import run

        self.scenario = scenario
        self.trace = run(scenario, terms=False)
        self.refs = references(self.trace, scenario)
        self.order = {name: position for position, name in enumerate(self.trace.names())}
        self.reads = {step.name: step.reads for step in self.trace.steps}
        self._catalog = None

    @property
    def catalog(self):
        if self._catalog is None:
            from .mistakes import Catalog

            self._catalog = Catalog(self)
        return self._catalog


def _content_key(scenario: Scenario, rounding) -> str:
    """Scenarios that differ only in their answers (and name) share their runs."""
    data = scenario.document.data if scenario.document else None
    if not isinstance(data, dict):
        return f"id:{id(scenario)}"
    kept = {key: value for key, value in data.items()
            if key not in ("expected", "tolerance", "name", "description")}
    return json.dumps([kept, dataclasses.astuple(rounding) if rounding else None], sort_keys=True, default=repr)


class Checker:
    """Checks sheets, keeping each scenario's runs for every sheet of the same problem."""

    def __init__(self, tolerance: Tolerance | None = None, rounding: Rounding | None = None):
        self.tolerance = tolerance        # from the command line; overrides the scenario's
        self.rounding = rounding          # from the command line; replaces the scenario's
        self._models: dict = {}

    def model(self, scenario: Scenario) -> Model:
        key = _content_key(scenario, self.rounding)
        if key not in self._models:
            if self.rounding is not None:
                scenario = dataclasses.replace(scenario, rounding=self.rounding)
            self._models[key] = Model(scenario)
        return self._models[key]

    def check(self, scenario: Scenario, answers: list, *, file: str, scenario_path: str) -> FileReport:
        from .engine import run

        tolerance = self.tolerance or scenario.tolerance
        model = self.model(scenario)
        sc = model.scenario
        base = sc.conventions.index_base
        report = FileReport(file=file, scenario=scenario_path, title=scenario.name, tolerance=tolerance,
                            rounding=_rounding_text(sc))

        fitting = [a for a in answers if a.index is not None or fits(a.values.shape, sc.shapes[a.name])]
        fitting_ids = {id(answer) for answer in fitting}
        overrides = merge_patches(make_patch(sc, a.doc, a.path, a.key, a.values.tolist()) for a in fitting)
        try:
            own = references(run(sc, overrides=overrides, terms=False), sc)
        except ScenarioError:
            # the answers drive the network where it cannot go (a bce output outside 0..1):
            # nothing can follow from them, so each is held against the clean trace alone
            own = model.refs
        rows = []
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
            cells = [answer.index] if answer.index is not None else list(np.ndindex(*shape))
            scale = float(np.abs(model.refs[answer.name]).max(initial=0))
            for cell, written in zip(cells, answer.written):
                if written.dtype:
                    written = dataclasses.replace(written, scale=scale)
                clean, mine = float(model.refs[answer.name][cell]), float(own[answer.name][cell])
                how = match(written, clean, tolerance)
                verdict = RIGHT
                if how is None:
                    if match(written, mine, tolerance) is not None:
                        verdict, how = FOLLOWS, FOLLOWS_TEXT
                    else:
                        verdict, how = WRONG, "wrong"
                shown = display_index(shape, cell, base)
                rows.append(Row(answer.name, cell, answer.name + format_index(shown), written.value,
                                clean, verdict, how, written=written,
                                own=None if same_number(clean, mine) else mine,
                                shown_index=shown))
        rows.sort(key=lambda row: (model.order[row.name], row.index is None, row.index or ()))
        report.rows = rows

        wrong = [row for row in rows if not row.passed]
        if wrong:
            first = wrong[0]
            report.first_wrong = FirstWrong(
                first.label, first.name, model.trace[first.name].rule, first.yours, first.bptrace, first.own,
                f"bptrace explain {shlex.quote(scenario_path)} {shlex.quote(first.label)}",
                first.shape, first.bptrace_shape)
            from .mistakes import diagnose

            report.diagnosis, report.unexplained = diagnose(
                model.catalog, rows, overrides, own, lambda written, value: match(written, value, tolerance),
                lambda written: evidence(written, tolerance))
        return report


def _rounding_text(scenario: Scenario) -> str | None:
    rounding = scenario.rounding
    if rounding is None:
        return None
    return f"{rounding.describe()}, applied to {', '.join(rounding.apply)}"


def check_files(scenario_paths, expected_paths=(), *, tolerance: Tolerance | None = None,
                rounding: Rounding | None = None, work_limit: int | None = DEFAULT_WORK_LIMIT) -> CheckReport:
    """Check several sheets in one go: each scenario's own `expected:`, or (with
    `expected_paths`, which need exactly one scenario) each answer file against that
    scenario.  A file that cannot be read becomes a report with `error` set; the rest are
    still checked."""
    checker = Checker(tolerance, rounding)
    reports = []
    if expected_paths:
        if len(scenario_paths) != 1:
            raise ScenarioError("--expected goes with exactly one scenario (each answer file is "
                                "checked against it)")
        scenario_path = str(scenario_paths[0])
        try:
            scenario = load(scenario_path, work_limit=work_limit)
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
            scenario = load(p, work_limit=work_limit)
            answers = scenario_answers(scenario)
            if not answers:
                from .engine import run
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
