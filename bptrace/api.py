"""The Python API: `load`, `run`, and what a `Trace` (and its steps, explanations and check
reports) can do in a script or a notebook.

It adds no computing of its own: `load` is the scenario loader, `run` the engine, `explain`
and `check` the modules of those names, and every `to_*` a renderer in `bptrace/render/`.
Heavy modules are imported inside the functions, so that `import bptrace` stays cheap.
"""
from __future__ import annotations

import os
import re
from typing import TYPE_CHECKING, Any, Iterable, Mapping, Union

from .display import DEFAULT_WIDTH, Shown, rich_html, scoped_css

if TYPE_CHECKING:                     # pragma: no cover
    from .check import CheckReport
    from .scenario import Scenario
    from .trace import Trace

Source = Union[str, "os.PathLike[str]", Mapping[str, Any]]


def load(source: Source, *, size_limit: bool = True, arithmetic: str | None = None) -> "Scenario":
    """Read and validate a scenario.

    `source` is a path (`str` without a line break, or `os.PathLike`), YAML text (a `str`
    holding a line break), or a mapping shaped like a scenario file (numpy arrays and tuples
    may stand for lists).  Bad input raises `bptrace.ScenarioError`; for a file or text it
    names the line, for a mapping the key path (`layers[1].kernel`).  `size_limit=False`
    runs networks above the scalar-loop size limit (`--no-size-limit`); `arithmetic`
    ("float", "exact", "symbolic") overrides the file's `arithmetic:`.

        >>> import bptrace
        >>> bptrace.load({"input": [1.0, 2.0], "layers": [{"type": "dense", "weights": [[0.5, -1]]}],
        ...               "upstream": {"delta": [1.0]}}).layers[0].name
        'dense1'
    """
    from .scenario import DEFAULT_WORK_LIMIT, from_document, load as load_file, loads

    _arithmetic(arithmetic)
    limit = DEFAULT_WORK_LIMIT if size_limit else None
    if isinstance(source, Mapping):
        return from_document(document_from_mapping(source), work_limit=limit, arithmetic=arithmetic)
    if isinstance(source, str) and ("\n" in source or "\r" in source):
        return loads(source, work_limit=limit, arithmetic=arithmetic)
    if isinstance(source, (str, os.PathLike)):
        return load_file(source, work_limit=limit, arithmetic=arithmetic)
    raise TypeError(f"bptrace.load takes a path, YAML text or a mapping, not {type(source).__name__}")


def document_from_mapping(data: Mapping[str, Any]):
    """A mapping as the loader's `Document`: written out as YAML and read back, so that it
    passes every check a file passes (finite numbers, no stray types), with the numbers'
    text kept for `check`'s "as written"; the line numbers of that text, which nobody
    wrote, are dropped, so errors name the key path alone."""
    import yaml

    from .errors import ScenarioError
    from .source import Document, parse_text

    try:
        text = yaml.safe_dump(plain_data(data), sort_keys=False, allow_unicode=True)
    except yaml.YAMLError as exc:
        raise ScenarioError(f"this mapping cannot be read as a scenario: {exc}") from None
    try:
        parsed = parse_text(text)
    except ScenarioError as error:     # its line is in text nobody wrote: keep the key alone
        error.line = error.column = error.snippet = None
        raise
    return Document(data=parsed.data, file=None, raw=parsed.raw)


def plain_data(value, path: tuple = ()):
    """numpy arrays and scalars, tensors and tuples as the lists and numbers YAML writes; a
    number that is not finite is refused here, by its key path."""
    import math

    from .errors import ScenarioError
    from .source import format_path

    if isinstance(value, Mapping):
        return {key: plain_data(item, path + (key,)) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain_data(item, path + (k,)) for k, item in enumerate(value)]
    if hasattr(value, "tolist") and not isinstance(value, (str, bytes)):
        return plain_data(value.tolist(), path)     # numpy arrays and scalars, torch tensors
    if isinstance(value, bool) or value is None or isinstance(value, (int, str)):
        return value
    try:
        number = float(value)                       # floats, fractions, decimals, ...
    except (TypeError, ValueError):
        return value                                # refused by the loader, with its key path
    if not math.isfinite(number):
        raise ScenarioError(f"{number} is not a finite number", key=format_path(path) or None)
    return number


def _arithmetic(arithmetic):
    from .numbers import ARITHMETICS

    if arithmetic is not None and arithmetic not in ARITHMETICS:
        raise ValueError(f"arithmetic={arithmetic!r}: bptrace computes in "
                         + ", ".join(repr(a) for a in ARITHMETICS))


def run(scenario: "Scenario | Source", *, arithmetic: str | None = None, size_limit: bool = True,
        **engine_options: Any) -> "Trace":
    """Trace a scenario (or anything `load` takes): every forward value, delta, gradient and
    update, as a `Trace` that remembers its scenario (for `explain` and `check`).

    `arithmetic` is how the numbers are computed: "float" (IEEE double precision, as
    PyTorch's float64), "exact" (fractions) or "symbolic" (sympy); None keeps the scenario's
    own `arithmetic:`.  `engine_options` go to `bptrace.engine.run` (`overrides=`,
    `explain=`, `terms=`: what the checker uses).

        >>> import bptrace
        >>> net = {"input": [0.1, 0.2], "layers": [{"type": "dense", "weights": [[0.1, 0.2]]}],
        ...        "upstream": {"delta": [1.0]}}
        >>> bptrace.run(net)["dense1.out"].values.tolist()
        [[0.05000000000000001]]
        >>> bptrace.run(net, arithmetic="exact")["dense1.out"].exact.tolist()
        [[Fraction(1, 20)]]
    """
    from .engine import run as run_engine
    from .errors import ScenarioError
    from .scenario import Scenario

    _arithmetic(arithmetic)
    if not isinstance(scenario, Scenario):
        scenario = load(scenario, size_limit=size_limit, arithmetic=arithmetic)
    elif arithmetic is not None and arithmetic != scenario.numbers.name:
        scenario = _renumbered(scenario, arithmetic)
    try:
        trace = run_engine(scenario, **engine_options)
    except ScenarioError as error:
        raise error.located(file=scenario.path) from None
    trace.scenario = scenario
    return trace


def variant(template, seed: int):
    """The exercise variant of `seed` drawn from a template (a path, the template's YAML text,
    or a loaded `bptrace.exercise.Template`), as `bptrace exercise TEMPLATE --seed S` draws it:
    `.text` (the variant scenario), `.scenario`, `.trace`, `.answers` (asked name -> values)."""
    from .exercise import Template, draw, load_template

    if not isinstance(template, Template):
        template = load_template(None, text=template) if isinstance(template, str) and "\n" in template \
            else load_template(template)
    return draw(template, seed)


def _renumbered(scenario, arithmetic: str):
    """A loaded scenario on another number system: from floats, a copy read again in
    `arithmetic`; the other way the written decimals are gone, so the file is read again."""
    import copy

    from .numbers import system
    from .scenario import use_numbers

    if scenario.numbers.name == "float" and arithmetic != "symbolic":
        scenario = copy.deepcopy(scenario)
        use_numbers(scenario, system(arithmetic))
        return scenario
    if scenario.document is None:
        raise ValueError(f"this scenario was loaded with arithmetic {scenario.numbers.name!r}; "
                         f"load it again with arithmetic={arithmetic!r}")
    from .scenario import from_document

    return from_document(scenario.document, arithmetic=arithmetic)


def _selected(trace: "Trace", only) -> set | None:
    """`only`: step names, name prefixes, phases or shell-style patterns (`"c1.*"`), as `--only`
    takes them."""
    if only is None:
        return None
    from .errors import did_you_mean
    from .render.view import PHASE_SELECTORS, select

    wanted = [only] if isinstance(only, str) else list(only)
    chosen, missing = select(trace, wanted)
    for pattern in missing:
        hint = did_you_mean(pattern, trace.names() + list(PHASE_SELECTORS))
        raise KeyError(f"no step of this trace is called {pattern!r}" + (f" ({hint})" if hint else ""))
    return chosen


def _page_body(page: str) -> str:
    """The content of the HTML renderer's page, without its document frame, and without what
    only its script makes work (a notebook runs none): the number-to-sum links and their hint."""
    from .render.html import CLICK_HINT

    return _static(page.split("<main>", 1)[1].rsplit("</main>", 1)[0]).replace(CLICK_HINT, "")


# what the page's script reads to open a number's sum (the renderer escapes its value's quotes);
# without the script it would only leave a pointer cursor on numbers that do nothing
_SCRIPT_ONLY = re.compile(r' data-e="[^"]*"')


def _static(html: str) -> str:
    return _SCRIPT_ONLY.sub("", html)


def _html_style(scope: str) -> str:
    from .render.html import HEAT_CSS, STYLE

    # the page keeps room on the left for its step sidebar; a notebook shows no sidebar
    return f"<style>{scoped_css(STYLE + HEAT_CSS + 'main { margin-left: 0; }', scope)}</style>"


class TraceMethods(Shown):
    """What a `Trace` can do beyond holding its steps (mixed into `bptrace.trace.Trace`)."""

    scenario: "Scenario | None"

    def _scenario(self) -> "Scenario":
        if getattr(self, "scenario", None) is None:
            raise ValueError("this trace does not know its scenario; make it with bptrace.run(scenario)")
        return self.scenario

    def explain(self, target: str) -> "Explained":
        """Where one number comes from (`"c1.grad.kernel[0,1]"`: its rule and every term of its
        sum), or a whole step (`"c1.delta"`), as `bptrace explain` shows it."""
        from .explain import explain

        from .errors import ScenarioError

        scenario = self._scenario()
        try:
            return Explained(explain(scenario, target))
        except ScenarioError as error:
            raise error.located(file=scenario.path) from None

    def check(self, answers: "Mapping[str, Any] | str | os.PathLike[str]", *,
              tolerance: float | Mapping[str, float] | None = None) -> "CheckReport":
        """Check answers against this trace's scenario, as `bptrace check` does.

        `answers`: a mapping `{name or name[index]: values}`, or the path of an answer file
        (YAML, JSON, a `run --format json` export, .npz).  Python numbers are judged "as
        written" (their shortest repr is their text); numpy arrays and tensors as an .npz
        array, to 100 machine epsilons of their float type.  `tolerance`: an absolute number
        or `{"abs": ..., "rel": ...}` instead of "as written".
        """
        from .check import Checker, FileReport, read_answers
        from .errors import ScenarioError
        from .scenario import Tolerance

        scenario = self._scenario()
        if isinstance(tolerance, Mapping):
            tolerance = Tolerance(float(tolerance.get("abs", 0.0)), float(tolerance.get("rel", 0.0)))
        elif tolerance is not None:
            tolerance = Tolerance(float(tolerance), 0.0)
        label = "answers" if isinstance(answers, Mapping) else str(answers)
        scenario_path = str(scenario.path or "the scenario")
        try:
            sheet = _mapping_answers(answers, scenario) if isinstance(answers, Mapping) \
                else read_answers(answers, scenario)
            report = Checker(tolerance).check(scenario, sheet, file=label, scenario_path=scenario_path)
        except ScenarioError as error:
            report = FileReport(file=label, scenario=scenario_path, error=str(error.located(
                file=None if isinstance(answers, Mapping) else label)))
        return check_result_class()([report])

    def to_json(self, only: Iterable[str] | str | None = None) -> str:
        """The JSON export (`run --format json`): one step per line."""
        from .render import json

        return json.render(self, _selected(self, only))

    def to_markdown(self, only: Iterable[str] | str | None = None, *, digits: int = 7) -> str:
        """GitHub Markdown with `$$…$$` rules (`run --format markdown`)."""
        from .render import markdown

        return markdown.render(self, _selected(self, only), digits=digits)

    def to_latex(self, only: Iterable[str] | str | None = None, *, fragment: bool = False, digits: int = 7) -> str:
        """A LaTeX document (`run --format latex`); `fragment=True` gives the body only."""
        from .render import latex

        return latex.render(self, _selected(self, only), fragment=fragment, digits=digits)

    def to_html(self, only: Iterable[str] | str | None = None, *, digits: int = 7) -> str:
        """A self-contained HTML page (`run --format html`)."""
        from .render import html

        return html.render(self, _selected(self, only), digits=digits)

    def to_text(self, width: int = DEFAULT_WIDTH, only: Iterable[str] | str | None = None, *,
                digits: int = 7) -> str:
        """The text `bptrace run` prints, `width` columns wide, without colour codes
        (`digits`: significant digits shown, as `--digits`)."""
        from .display import plain_text
        from .render import text

        return plain_text(text.render(self, _selected(self, only), digits=digits), width)

    def _short(self) -> str:
        layers = sum(1 for row in self.summary if row.type)
        loss = f", loss {self.loss:.6g}" if self.loss is not None else ""
        return f"<Trace {self.name!r}: {layers} layers, {len(self.steps)} steps{loss}>"

    def _renderable(self, width: int):
        from .render import text

        return text.render(self)

    def _html_body(self, scope: str) -> str:
        from .render import html

        return _html_style(scope) + _page_body(html.render(self))


class StepMethods(Shown):
    """How a `Step` shows itself (mixed into `bptrace.trace.Step`).  A step shows with the
    labels of the trace it belongs to (`Trace` tells each of its steps)."""

    def _short(self) -> str:
        from .render.common import shape_text

        return f"<Step {self.name} ({self.phase}) {shape_text(self.shape) or 'one number'}>"

    def _trace(self) -> "Trace":
        trace = getattr(self, "trace", None)
        if trace is None:
            raise ValueError(f"step {self.name} belongs to no trace; take it from one: trace[{self.name!r}]")
        return trace

    def _renderable(self, width: int):
        from .render.text import step_renderable

        return step_renderable(self, self._trace())

    def _html_body(self, scope: str) -> str:
        from .render import html

        return _html_style(scope) + _static(html.step_html(self, self._trace()))


class Explained(Shown):
    """An explanation of one number (or an overview of one step), showing itself as
    `bptrace explain` does; its fields (`value`, `terms`, `rule`, ...) are the explanation's."""

    def __init__(self, explanation):
        self.explanation = explanation

    def __getattr__(self, name: str):
        if name == "explanation":
            raise AttributeError(name)
        return getattr(self.explanation, name)

    def _short(self) -> str:
        e = self.explanation
        if hasattr(e, "element"):
            from .render.common import signed

            terms = f", {len(e.terms)} terms" if e.kind == "sum" else ""
            return f"<Explanation {e.element} = {signed(e.value)}{terms}>"
        return f"<Explanation {e.name} {e.shape}, {len(e.elements)} elements>"

    def _renderable(self, width: int):
        from .render.explain_text import render

        return render(self.explanation, width)

    def _html_body(self, scope: str) -> str:
        return rich_html(self._renderable(DEFAULT_WIDTH), scope)


def _mapping_answers(answers: Mapping[str, Any], scenario: "Scenario") -> list:
    """A mapping of answers as the checker's answers: arrays through an .npz (judged at their
    float type's precision), the rest through YAML text (judged as written)."""
    import tempfile

    import numpy as np

    from .check import _answers, read_answers

    arrays = {str(k): np.asarray(v.detach().cpu().numpy() if hasattr(v, "detach") else v)
              for k, v in answers.items() if hasattr(v, "dtype") or hasattr(v, "detach")}
    written = {str(k): v for k, v in answers.items() if str(k) not in arrays}
    sheet = []
    if written:
        doc = document_from_mapping(written)
        sheet += _answers(scenario, doc, [(key, value, (key,)) for key, value in doc.data.items()])
    if arrays:
        with tempfile.TemporaryDirectory() as folder:
            path = os.path.join(folder, "answers.npz")
            np.savez(path, **arrays)
            sheet += read_answers(path, scenario)
    return sheet


_CHECK_RESULT = []


def check_result_class():
    """`CheckResult`, made on first use: it extends the checker's report class, which
    imports numpy."""
    if not _CHECK_RESULT:
        _CHECK_RESULT.append(_make_check_result())
    return _CHECK_RESULT[0]


def _make_check_result():
    from dataclasses import dataclass

    from .check import CheckReport

    @dataclass(repr=False)
    class CheckResult(Shown, CheckReport):
        """A check report (`bptrace.check.CheckReport`: `files`, `passed`, `failed`,
        `exit_code`) that shows itself as `bptrace check` does."""

        def _short(self) -> str:
            sheet = self.files[0]
            if sheet.error:
                return f"<CheckResult: {sheet.error.splitlines()[0]}>"
            return f"<CheckResult: {self.passed} passed, {self.failed} failed>"

        def _renderable(self, width: int):
            from .render.check_text import render

            if self.broken:
                from rich.text import Text

                return Text("error: " + "\n".join(sheet.error for sheet in self.files if sheet.error))
            return render(self)

        def _html_body(self, scope: str) -> str:
            return rich_html(self._renderable(DEFAULT_WIDTH), scope)

        def to_json(self) -> str:
            """The report as `bptrace check --format json` writes it."""
            from .render import check_json

            return check_json.render(self)

    return CheckResult
