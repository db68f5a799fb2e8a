"""Exercises: a template (a scenario plus `vary:`, `ask:` and `constraints:`) drawn into
variants, each a plain scenario with its question sheet, answer key and answers file.

A template's numbers are drawn from grids of decimals written in the template, and written
into the variant exactly as decimals (0.1, never 0.1000000000000000055).  A draw is kept when
its constraints hold, judged on the variant's trace: max-pool ties as the max-pool layer
itself finds them, a relu input at 0 and an answer's decimals on the variant traced in exact
arithmetic (`arithmetic: exact`: fractions of the written numbers), never on float noise.
"""
from __future__ import annotations

import csv
import hashlib
import io
import math
import os
import re
from dataclasses import dataclass, field
from decimal import Decimal
from fractions import Fraction

import numpy as np

from .errors import ScenarioError, did_you_mean, suggest
from .source import Document, parse_text, read_document
from .spec import kind_of

EXERCISE_KEYS = ("vary", "ask", "constraints")
GRID_KEYS = ("low", "high", "step", "values")
CONSTRAINT_KEYS = ("no_pool_ties", "no_relu_at_zero", "max_decimals", "max_draws")
# Draws tried before giving up, unless the template's `constraints.max_draws` says otherwise.
MAX_DRAWS = 1000
MAX_GRID = 1_000_000          # points of one grid: a typo (step 1e-9) is refused, not enumerated
RELU_TYPES = ("relu", "leaky_relu")
FILES = ("variant.yaml", "sheet.md", "sheet.tex", "sheet.html", "key.md", "key.tex", "key.html", "answers.yaml")


@dataclass
class Varied:
    """One `vary:` entry: where its numbers stand in the scenario and the grid they come from."""
    target: str                   # as written: input, c1.kernel, upstream.delta, loss.target
    path: tuple                   # its key path in the scenario document
    shape: tuple                  # the written value's shape (() for one number)
    grid: list                    # Decimal


@dataclass
class Constraints:
    no_pool_ties: bool = False
    no_relu_at_zero: bool = False
    max_decimals: int | None = None
    max_draws: int = MAX_DRAWS


@dataclass
class Template:
    text: str                     # the template's text: with the student id, it makes the seed
    file: str | None
    base: dict                    # the scenario's data without the exercise keys
    vary: list
    ask: list
    constraints: Constraints


@dataclass
class Variant:
    """One drawn exercise: its scenario text and the trace of it."""
    template: Template
    seed: int
    draws: int                    # how many draws it took to meet the constraints
    text: str                     # the variant scenario, as written to variant.yaml
    scenario: object
    trace: object
    answers: dict = field(default_factory=dict)   # asked name -> nested list of decimal texts (or floats)

    @property
    def ask(self) -> list:
        return self.template.ask

    def answers_yaml(self) -> str:
        lines = [f"# answers of {self.trace.name}: check a sheet with",
                 "#   bptrace check variant.yaml --expected SHEET.yaml"]
        lines += [f"{name}: {_flow(values)}" for name, values in self.answers.items()]
        return "\n".join(lines) + "\n"


# --- reading a template -------------------------------------------------------------------

def load_template(source, *, text: str | None = None) -> Template:
    """A template file (or its `text`), validated as a scenario and as an exercise: a bad
    key raises ScenarioError with file, line and key path."""
    from .scenario import from_document

    doc = parse_text(text, source) if text is not None else read_document(source, what="a template")
    if not isinstance(doc.data, dict):
        raise doc.error((), f"a template is a scenario (a mapping), found {kind_of(doc.data)}")
    missing = [key for key in ("vary", "ask") if key not in doc.data]
    if missing:
        raise doc.error((), f"a template has `vary:` (what is drawn) and `ask:` (what is asked); "
                            f"this one has no `{missing[0]}:`", "see the README's \"Exercises\"")
    if "expected" in doc.data:
        raise doc.error(("expected",), "a template's answers are what `ask:` names; it has no `expected:`",
                        "remove `expected:`")
    base = {key: value for key, value in doc.data.items() if key not in EXERCISE_KEYS}
    scenario = from_document(Document(data=base, file=doc.file, lines=doc.lines, marks=doc.marks,
                                      keys=doc.keys, raw=doc.raw))
    body = text if text is not None else _file_text(source)
    return Template(text=body, file=doc.file, base=base, vary=_vary(doc, scenario),
                    ask=_ask(doc, scenario), constraints=_constraints(doc))


def _file_text(path) -> str:
    with open(path, encoding="utf-8") as fh:
        return fh.read()


def _targets(doc: Document, scenario) -> dict:
    """What `vary:` may name -> its key path: the input(s), each written parameter as
    `layer.role`, the upstream error and the loss target."""
    data = doc.data
    targets = {}
    if isinstance(data.get("input"), (list, int, float)):
        targets["input"] = ("input",)
    for name, value in (data.get("inputs") or {}).items() if isinstance(data.get("inputs"), dict) else ():
        if isinstance(value, (list, int, float)):
            targets[f"inputs.{name}"] = ("inputs", name)
    for i, layer in enumerate(scenario.layers if "layers" in data else ()):
        for role in layer.param_roles:
            spec = data["layers"][i] if i < len(data["layers"]) else {}
            if isinstance(spec, dict) and isinstance(spec.get(role), (list, int, float)) \
                    and not isinstance(spec.get(role), bool):
                targets[f"{layer.name}.{role}"] = ("layers", i, role)
    if isinstance(data.get("upstream"), dict) and "delta" in data["upstream"]:
        targets["upstream.delta"] = ("upstream", "delta")
    if isinstance(data.get("loss"), dict) and isinstance(data["loss"].get("target"), list):
        targets["loss.target"] = ("loss", "target")
    return targets


def _value_at(data, path):
    for part in path:
        data = data[part]
    return data


def _vary(doc: Document, scenario) -> list:
    spec = doc.data["vary"]
    if not isinstance(spec, dict) or not spec:
        raise doc.error(("vary",), "`vary:` maps what varies to its grid, such as "
                                   "`input: {low: -1, high: 1, step: 0.1}`, found "
                        + ("an empty mapping" if spec == {} else kind_of(spec)))
    targets = _targets(doc, scenario)
    varied = []
    for target, grid in spec.items():
        where = ("vary", target)
        if target not in targets:
            raise doc.error(where, f"'{target}' is not a value this template writes",
                            suggest(str(target), list(targets), "it can vary") if targets else
                            "write the numbers to vary in the scenario (their shape is kept)", at_key=True)
        shape = np.shape(_value_at(doc.data, targets[target]))
        varied.append(Varied(str(target), targets[target], tuple(shape), _grid(doc, where, grid)))
    return varied


def _decimal(doc: Document, path: tuple, what: str) -> Decimal:
    value = _value_at(doc.data, path)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise doc.error(path, f"{what} is a number, found {kind_of(value)}")
    text = doc.raw.get(path, repr(value)).replace("_", "")
    return Decimal(text)


def _grid(doc: Document, where: tuple, spec) -> list:
    if not isinstance(spec, dict):
        raise doc.error(where, f"a grid is `{{low: L, high: H, step: S}}` or `{{values: [...]}}`, found {kind_of(spec)}")
    for key in spec:
        if key not in GRID_KEYS:
            raise doc.error(where + (key,), f"unknown key '{key}' in a grid", suggest(str(key), GRID_KEYS), at_key=True)
    if "values" in spec:
        extra = [key for key in spec if key != "values"]
        if extra:
            raise doc.error(where + (extra[0],), "a grid is either `values:` or `low/high/step`, not both", at_key=True)
        values = spec["values"]
        if not isinstance(values, list) or not values:
            raise doc.error(where + ("values",), "`values:` is a non-empty list of numbers")
        return [_decimal(doc, where + ("values", k), "each value") for k in range(len(values))]
    for key in ("low", "high", "step"):
        if key not in spec:
            raise doc.error(where, f"this grid has no `{key}:`", "write {low: L, high: H, step: S} or {values: [...]}")
    low, high, step = (_decimal(doc, where + (key,), f"`{key}`") for key in ("low", "high", "step"))
    if step <= 0:
        raise doc.error(where + ("step",), f"`step` must be positive, found {step}")
    if high < low:
        raise doc.error(where + ("high",), f"`high` ({high}) is below `low` ({low})")
    count = int((high - low) / step) + 1
    if count > MAX_GRID:
        raise doc.error(where + ("step",), f"this grid has {count:,} points; at most {MAX_GRID:,}")
    # Decimal arithmetic: low + k·step is exactly the decimal a person would write
    return [low + k * step for k in range(count)]


def _ask(doc: Document, scenario) -> list:
    from .scenario import parse_element

    spec = doc.data["ask"]
    items = spec if isinstance(spec, list) else [spec]
    if not items or not all(isinstance(item, str) for item in items):
        raise doc.error(("ask",), "`ask:` lists the trace names asked, such as [p1.delta, c1.grad.kernel]")
    computed = {name for name in scenario.shapes} - set(scenario.inputs)
    computed -= {f"{layer.name}.{role}" for layer in scenario.layers for role in layer.param_roles}
    asked = []
    for k, item in enumerate(items):
        where = ("ask", k) if isinstance(spec, list) else ("ask",)
        try:
            name, index = parse_element(item)
        except ValueError as exc:
            raise doc.error(where, str(exc)) from None
        if index is not None:
            raise doc.error(where, f"ask for whole steps; '{item}' is one element", f"ask for {name}")
        if name not in computed:
            hint = did_you_mean(name, sorted(computed)) or "bptrace run --list lists the names"
            said = "a number the scenario writes, not one to compute" if name in scenario.shapes \
                else "not a value in this trace"
            raise doc.error(where, f"'{name}' is {said}", hint)
        if name in asked:
            raise doc.error(where, f"'{name}' is asked twice")
        asked.append(name)
    return asked


def _constraints(doc: Document) -> Constraints:
    spec = doc.data.get("constraints", {})
    if not isinstance(spec, dict):
        raise doc.error(("constraints",), f"`constraints:` is a mapping, found {kind_of(spec)}")
    found = Constraints()
    for key, value in spec.items():
        where = ("constraints", key)
        if key not in CONSTRAINT_KEYS:
            raise doc.error(where, f"unknown constraint '{key}'", suggest(str(key), CONSTRAINT_KEYS), at_key=True)
        if key in ("no_pool_ties", "no_relu_at_zero"):
            if not isinstance(value, bool):
                raise doc.error(where, f"`{key}` is true or false, found {kind_of(value)}")
            setattr(found, key, value)
            continue
        low, high = (0, 12) if key == "max_decimals" else (1, 1_000_000)
        if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
            raise doc.error(where, f"`{key}` is a whole number from {low} to {high}, found {value!r}")
        setattr(found, key, value)
    return found


# --- seeds ---------------------------------------------------------------------------------

def student_seed(template: Template, student: str) -> int:
    """A student's seed: the first 8 bytes of SHA-256 over the template's text and the id,
    so that the same roster and template always give the same variants, and a changed
    template gives new ones."""
    digest = hashlib.sha256(b"bptrace exercise\0" + template.text.encode("utf-8") + b"\0"
                            + student.strip().encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big")


def read_roster(path) -> list[str]:
    """Student ids from a CSV with a header row: the column `id` (or `student`, `sid`,
    `email`), else the first column."""
    from .source import read_regular_file

    raw = read_regular_file(path, what="a roster")
    try:
        rows = list(csv.reader(io.StringIO(raw.decode("utf-8-sig"))))
    except (UnicodeDecodeError, csv.Error) as exc:
        raise ScenarioError(f"cannot read this roster: {exc}", file=str(path)) from None
    rows = [row for row in rows if any(cell.strip() for cell in row)]
    if len(rows) < 2:
        raise ScenarioError("a roster is a CSV file with a header row and a row per student", file=str(path))
    header = [cell.strip().lower() for cell in rows[0]]
    column = next((header.index(name) for name in ("id", "student", "student_id", "sid", "email") if name in header), 0)
    ids, seen = [], {}
    for line, row in enumerate(rows[1:], start=2):
        student = row[column].strip() if column < len(row) else ""
        if not student:
            raise ScenarioError(f"row {line} has no student id in column '{rows[0][column]}'", file=str(path))
        folder = folder_name(student)
        # compared without case: macOS's and Windows's file systems take Ada and ada as one folder
        if folder.casefold() in seen:
            raise ScenarioError(f"'{student}' and '{seen[folder.casefold()]}' would share the folder {folder}",
                                file=str(path), line=line)
        seen[folder.casefold()] = student
        ids.append(student)
    return ids


def folder_name(student: str) -> str:
    """A student's folder: the id with anything but letters, digits, `.`, `-`, `_` and `@`
    written as `_` (an id is never a path)."""
    name = re.sub(r"[^A-Za-z0-9._@-]", "_", student.strip())
    return "_" + name if name.startswith(".") or not name else name


# --- drawing a variant ---------------------------------------------------------------------

class _Text(str):
    """A number's decimal text, written as is."""


def _yaml_dumper():
    import yaml

    class Dumper(yaml.SafeDumper):
        pass

    def number(dumper, value):
        tag = "tag:yaml.org,2002:" + ("float" if "." in value else "int")
        return dumper.represent_scalar(tag, str(value))

    Dumper.add_representer(_Text, number)
    return Dumper


def decimal_text(value: Decimal | Fraction) -> str:
    """An exact decimal as a person writes it: no exponent, no trailing zeros, no -0."""
    if isinstance(value, Fraction):
        value = Decimal(value.numerator) / Decimal(value.denominator)
    text = format(value.normalize(), "f")
    if "." in text:
        text = text.rstrip("0").rstrip(".")
    return "0" if text in ("-0", "") else text


def _nested(flat: list, shape: tuple):
    if not shape:
        return flat[0]
    size = len(flat) // shape[0]
    return [_nested(flat[k * size:(k + 1) * size], shape[1:]) for k in range(shape[0])]


def _flow(values) -> str:
    if isinstance(values, list):
        return "[" + ", ".join(_flow(v) for v in values) + "]"
    return str(values)


def variant_text(template: Template, seed: int, chosen: dict, draws: int) -> str:
    import copy

    import yaml

    data = copy.deepcopy(template.base)
    for varied in template.vary:
        *head, last = varied.path
        _value_at(data, head)[last] = _nested([_Text(decimal_text(d)) for d in chosen[varied.target]], varied.shape)
    data["name"] = f"{data.get('name') or 'exercise'} (variant {seed})"
    if isinstance(data.get("description"), str):
        data["description"] = " ".join(data["description"].split())
    source = os.path.basename(template.file) if template.file else "a template"
    header = (f"# bptrace exercise: drawn from {source} with seed {seed} (draw {draws});\n"
              f"# drawn: {', '.join(v.target for v in template.vary)}.  Asked: {', '.join(template.ask)}.\n")
    return header + yaml.dump(data, Dumper=_yaml_dumper(), sort_keys=False, allow_unicode=True,
                              default_flow_style=None, width=1000)


def draw(template: Template, seed: int, *, file: str = "variant.yaml") -> Variant:
    """The variant of `seed`: numbers drawn until the constraints hold, at most
    `constraints.max_draws` times."""
    from .engine import run
    from .scenario import loads

    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise ScenarioError(f"a seed is a whole number ≥ 0, found {seed!r}")
    rng = np.random.default_rng(seed)
    reasons = {}
    for attempt in range(1, template.constraints.max_draws + 1):
        chosen = {v.target: [v.grid[k] for k in rng.integers(len(v.grid), size=math.prod(v.shape))]
                  for v in template.vary}
        text = variant_text(template, seed, chosen, attempt)
        try:
            scenario = loads(text, file)
            every = {name: set(np.ndindex(*shape)) for name, shape in scenario.shapes.items()}
            trace = run(scenario, explain=every)
        except ScenarioError as error:     # a draw the network cannot take (an overflow): redraw
            reasons[error.message] = reasons.get(error.message, 0) + 1
            continue
        trace.scenario = scenario
        failed, answers = _unmet(template, scenario, trace)
        if failed is None:
            return Variant(template, seed, attempt, text, scenario, trace, answers)
        reasons[failed] = reasons.get(failed, 0) + 1
    common = sorted(reasons.items(), key=lambda item: -item[1])[:3]
    raise ScenarioError(
        f"no draw of seed {seed} met the constraints in {template.constraints.max_draws} draws ("
        + "; ".join(f"{reason}: {count}" for reason, count in common) + ")", file=template.file,
        key="constraints", hint="widen the grids, loosen the constraints, or raise constraints.max_draws")


def _unmet(template: Template, scenario, trace) -> tuple:
    """(the first constraint this draw breaks or None, the asked steps' answers)."""
    c = template.constraints
    types = {layer.name: layer.type for layer in scenario.layers}
    exact = _exact_trace(scenario) if c.no_relu_at_zero or c.max_decimals is not None else None
    for step in trace.steps:
        if step.phase != "forward":
            continue
        kind = types.get(step.layer)
        if c.no_pool_ties and kind == "maxpool" and any(e.kind == "max" and e.tie
                                                          for e in (step.expansions or {}).values()):
            return "a max-pool tie", {}
        if c.no_relu_at_zero and kind in RELU_TYPES:
            # the input as on paper: 0.1 + 0.2 − 0.3 is 0 (without an exact trace, within 1e-12)
            x = step.reads[0]
            if exact is not None and any(v == 0 for v in exact[x].exact.reshape(-1).tolist()) or \
                    exact is None and bool(np.any(np.abs(trace[x].values) <= 1e-12)):
                return "a relu input at 0", {}
    answers = {}
    for name in template.ask:
        step = trace[name]
        if c.max_decimals is None:
            answers[name] = _shown(step, [_Text(repr(float(v))) for v in step.values.reshape(-1)])
            continue
        if exact is None:
            return f"an answer with more than {c.max_decimals} decimals", {}
        values = [Fraction(v) for v in exact[name].exact.reshape(-1).tolist()]
        if any((10 ** c.max_decimals) % value.denominator for value in values):
            return f"an answer with more than {c.max_decimals} decimals", {}
        answers[name] = _shown(step, [_Text(decimal_text(value)) for value in values])
    return None, answers


def _exact_trace(scenario):
    """The variant traced in exact arithmetic (its numbers the decimals written, rounding on
    the true values), or None when a step has no exact value (an exp or a tanh not pinned):
    its answers are then no short decimals."""
    from .api import run

    try:
        return run(scenario, arithmetic="exact", terms=False)
    except ScenarioError:
        return None


def _shown(step, flat: list):
    """Answers in the step's shape as a person writes it (length-1 axes dropped)."""
    shape = tuple(d for d in step.shape if d != 1)
    return _nested(flat, shape) if shape else flat[0]


# --- what a variant writes -----------------------------------------------------------------

def variant_files(variant: Variant) -> dict:
    """file name -> text: the variant, its question sheet, answer key and answers file."""
    from .render import html, latex, markdown, sheet

    asked = set(variant.ask)
    view = sheet_view(variant)
    return {
        "variant.yaml": variant.text,
        "sheet.md": sheet.markdown(view),
        "sheet.tex": sheet.latex(view),
        "sheet.html": sheet.html(view),
        "key.md": markdown.render(variant.trace, asked),
        "key.tex": latex.render(variant.trace, asked),
        "key.html": html.render(variant.trace, asked),
        "answers.yaml": variant.answers_yaml(),
    }


@dataclass
class SheetView:
    """What a question sheet shows, as text: the renderers in `render/sheet.py` mark it up."""
    title: str
    description: str
    conventions: str
    start: str
    summary: list                 # [(layer, type, output, params)]
    total_params: int
    given: list                   # [(label, rows of number texts)]
    asked: list                   # [(name, shape text, rows, columns)]
    base: int
    seed: int


def _rows(values: np.ndarray) -> list:
    shown = values.reshape([d for d in values.shape if d != 1]) if values.size > 1 else values.reshape(())
    if shown.ndim == 0:
        return [[_number(shown)]]
    if shown.ndim == 1:
        return [[_number(v) for v in shown]]
    shown = shown.reshape(-1, shown.shape[-1])
    return [[_number(v) for v in row] for row in shown]


def _number(value) -> str:
    value = float(value)
    return str(int(value)) if value.is_integer() and abs(value) < 1e15 else repr(value)


def sheet_view(variant: Variant) -> SheetView:
    from .render.common import shape_text
    from .render.view import trace_view
    from .tensors import display_index, format_index

    trace, scenario = variant.trace, variant.scenario
    view = trace_view(trace, only=set(), steps=False)
    given = [(step.name, _rows(step.values)) for step in trace.steps if step.phase in ("input", "parameter")]
    if scenario.upstream is not None:
        given.append((f"{scenario.upstream.layer}.delta (the upstream error)", _rows(scenario.upstream.delta)))
    if scenario.loss is not None and scenario.loss.target is not None:
        given.append((f"the target of the {scenario.loss.type} loss", _rows(scenario.loss.target)))
    for name, patch in scenario.given.items():
        if patch.mask.all():
            given.append((f"{name} (given)", _rows(patch.values)))
        else:
            for index in zip(*np.nonzero(patch.mask)):
                at = format_index(display_index(patch.values.shape, tuple(int(i) for i in index), view.base))
                given.append((f"{name}{at} (given)", [[_number(patch.values[index])]]))
    asked = []
    for name in variant.ask:
        step = trace[name]
        rows = _rows(step.values)
        asked.append((name, shape_text(step.shape), len(rows), len(rows[0])))
    return SheetView(title=trace.name, description=view.description, conventions=view.conventions,
                     start=view.start, summary=view.summary, total_params=view.total_params, given=given,
                     asked=asked, base=view.base, seed=variant.seed)


# --- writing folders -----------------------------------------------------------------------

def write_folder(folder: str, files: dict):
    """Write every file into `folder` (which must not exist, or be empty) all at once: into a
    new folder beside it, renamed into place, so that an error leaves nothing behind."""
    import shutil
    import tempfile

    folder = os.path.abspath(folder)
    if os.path.lexists(folder) and (not os.path.isdir(folder) or os.listdir(folder)):
        raise ScenarioError(f"{folder} already exists and is not an empty folder; choose another -o")
    parent = os.path.dirname(folder)
    os.makedirs(parent, exist_ok=True)
    work = tempfile.mkdtemp(dir=parent, prefix=f".{os.path.basename(folder)}.")
    try:
        for name, text in files.items():
            path = os.path.join(work, name)
            os.makedirs(os.path.dirname(path), exist_ok=True)
            with open(path, "w", encoding="utf-8", newline="") as fh:
                fh.write(text)
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(work, 0o777 & ~umask)      # mkdtemp's folder is private; the output gets the usual mode
        if os.path.isdir(folder):
            os.rmdir(folder)
        os.rename(work, folder)
    except BaseException:
        shutil.rmtree(work, ignore_errors=True)
        raise


def output_files(template_path, *, fmt: str = "files", seed: int | None = None, roster=None,
                 folder: str | None = None) -> tuple[dict, str, str]:
    """What `bptrace exercise` writes: the files, the folder they go in (by default named
    after the template: TEMPLATE-SEED, TEMPLATE-roster or TEMPLATE-pl) and what they are,
    in a few words.  A bad template or roster raises ScenarioError."""
    template = load_template(template_path)
    stem = os.path.splitext(os.path.basename(str(template_path)))[0]
    if fmt == "prairielearn":
        from .prairielearn import question_files

        files = question_files(template)
        return files, folder or f"{stem}-pl", ", ".join(sorted(files))
    if roster is not None:
        students = read_roster(roster)
        files = roster_files(template, students)
        return (files, folder or f"{stem}-roster",
                f"{len(files) - 1} files in {len(students)} folders, and roster.csv")
    files = exercise_files(template, seed)
    return files, folder or f"{stem}-{seed}", ", ".join(sorted(files))


def exercise_files(template: Template, seed: int) -> dict:
    return variant_files(draw(template, seed))


def roster_files(template: Template, students: list) -> dict:
    """Each student's folder of variant files, and roster.csv: student, seed, folder, files."""
    files, out = {}, io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(["student", "seed", "folder", "draws"] + [name.replace(".", "_") for name in FILES])
    for student in students:
        seed, folder = student_seed(template, student), folder_name(student)
        variant = draw(template, seed)
        for name, text in variant_files(variant).items():
            files[f"{folder}/{name}"] = text
        writer.writerow([student, seed, folder, variant.draws] + [f"{folder}/{name}" for name in FILES])
    files["roster.csv"] = out.getvalue()
    return files
