"""`bptrace autograder`: a Gradescope autograder for one scenario, or for a class's variants
(a folder of `bptrace exercise --roster`), as a zip to upload.

The zip holds, at its root (Gradescope's autograder specification):

* `setup.sh`: run once when Gradescope builds the image: a Python virtual environment at
  /autograder/venv with bptrace installed from the wheel in the zip (its dependencies,
  numpy, click, rich and pyyaml, come from PyPI);
* `run_autograder`: run for every submission: finds the one answer file (.yaml, .yml,
  .json or .npz) under /autograder/submission, checks it against the scenario and writes
  /autograder/results/results.json (`check --format gradescope`); `AUTOGRADER_ROOT`
  replaces /autograder, to try it on a copy of that tree;
* the scenario, `bptrace-autograder.json` (which file is the scenario, the points given with
  `--points`), and the wheel, built from the bptrace that writes the zip.

From a roster folder the zip holds every student's variant as `variants/FOLDER/variant.yaml`
and the folder's `roster.csv`, and the config maps each student id to its variant:
run_autograder grades a submission against the variant of the student Gradescope names in
/autograder/submission_metadata.json.
"""
from __future__ import annotations

import base64
import csv
import hashlib
import io
import json
import os
import re
import stat
import sys
import time
import zipfile
from pathlib import Path

from . import __version__
from .check.answers import ANSWER_SUFFIXES
from .check.checker import Checker, check_files
from .check.gradescope import grade
from .check.report import FileReport
from .errors import ScenarioError
from .scenario import load, read_points
from .source import Document

CONFIG = "bptrace-autograder.json"
# zip entries dated as the zip format's epoch: the same scenario and source give the same zip
EPOCH = (1980, 1, 1, 0, 0, 0)

SETUP = """#!/usr/bin/env bash
# Gradescope runs this once, when it builds the autograder's image (written by bptrace {version}).
# bptrace needs Python 3.10 or later: Gradescope's Ubuntu 22.04 and 24.04 base images have it.
set -euo pipefail
cd "$(dirname "$0")"
apt-get update
apt-get install -y python3 python3-venv python3-pip
python3 -m venv /autograder/venv
/autograder/venv/bin/python -m pip install --upgrade pip
/autograder/venv/bin/python -m pip install ./{wheel}
"""

RUN = """#!/autograder/venv/bin/python
# Gradescope runs this for every submission (written by bptrace {version}): the submission's
# answer file checked against the scenario beside it, as /autograder/results/results.json.
# AUTOGRADER_ROOT replaces /autograder, to try it on a copy of that tree.
import os
import sys

from bptrace.autograder import grade_submission

sys.exit(grade_submission(os.environ.get("AUTOGRADER_ROOT", "/autograder")))
"""


ROSTER = "roster.csv"
# Gradescope's user fields tried against the roster's ids, in this order, for each user of the
# submission (several for a group): the email is always there and unique; `sid`, the school's
# student id, only when the course set it; the name last, as names repeat
METADATA_FIELDS = ("email", "sid", "name")
# A problem graded "as written" takes each answer at its own decimals (check's default): a
# scenario's `rounding:` rounds bptrace's numbers but leaves that rule, so only `tolerance:`
# asks for digits (measured: with `rounding: {decimals: 4}`, 0.0 still passes for 0.0364)
AS_WRITTEN_WARNING = (
    "warning: {what} grade{s} answers as written (no `tolerance:`): an answer rounded to one decimal "
    "earns full credit (0.0 for 0.0364); write `tolerance:` in the problem to ask for more digits, "
    "such as `tolerance: {{abs: 0.00005}}` for 4 decimals")


def is_roster(path) -> bool:
    """A folder written by `bptrace exercise --roster`: it holds roster.csv."""
    return Path(path).is_dir() and (Path(path) / ROSTER).is_file()


def build(scenario_path, *, points=None) -> tuple[list[str], bytes, list[str]]:
    """The autograder zip for `scenario_path` (a scenario file, or a roster folder of
    `bptrace exercise --roster`: see `is_roster`): its entries, its bytes for the caller to
    write, and the warnings to show.  Every scenario (and `points`, as `points:` holds them)
    is checked first: a mistake raises ScenarioError."""
    scenario_path = Path(scenario_path)
    if scenario_path.name == ROSTER and is_roster(scenario_path.parent):
        scenario_path = scenario_path.parent        # hw3/roster.csv named for its folder
    if scenario_path.is_dir() and not is_roster(scenario_path):
        raise ScenarioError(f"{scenario_path} is a folder without {ROSTER}: give a scenario file, or the "
                            f"folder `bptrace exercise --roster` wrote", file=str(scenario_path))
    if is_roster(scenario_path):
        students = read_variants(scenario_path)
        asked = _asked(scenario_path)
        sources = {path: "variants/" + path.relative_to(scenario_path).as_posix() for path in students.values()}
        config = {"roster": ROSTER, "students": {student: sources[path] for student, path in students.items()}}
        files = [(ROSTER, (scenario_path / ROSTER).read_bytes())]
        files += [(name, path.read_bytes()) for path, name in sources.items()]
        what = f"the variants in {scenario_path}"
    else:
        scenario_name = scenario_path.name if scenario_path.suffix in (".yaml", ".yml") else "scenario.yaml"
        sources, config = {scenario_path: scenario_name}, {"scenario": scenario_name}
        files = [(scenario_name, scenario_path.read_bytes())]
        what, asked = str(scenario_path), None
    as_written = False
    for path in sources:
        scenario = load(path)
        if points is not None:
            read_points(scenario, Document(data=points), ("--points",), points)
        as_written = as_written or scenario.tolerance.as_written
    if asked and points is None and not scenario.points.listed:
        # the template's `points: N` (or 1 each), given to every asked step: a student who
        # leaves one out loses its points, and every student's maximum is the same
        points = {name: scenario.points.each for name in asked}
    warnings = [AS_WRITTEN_WARNING.format(what=what, s="" if what.startswith("the ") else "s")] if as_written else []
    wheel_name, wheel = build_wheel()
    config = {"bptrace": __version__, **config, "points": points, "wheel": wheel_name}
    entries = [("setup.sh", SETUP.format(version=__version__, wheel=wheel_name).encode(), True),
               ("run_autograder", RUN.format(version=__version__).encode(), True),
               *((name, data, False) for name, data in files),
               (CONFIG, (json.dumps(config, indent=1) + "\n").encode(), False),
               (wheel_name, wheel, False)]
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, data, executable in entries:
            _add(archive, name, data, executable)
    return [name for name, _, _ in entries], buffer.getvalue(), warnings


def read_variants(folder) -> dict:
    """student id -> its variant scenario's path, from a roster folder's roster.csv (the
    columns `student` and `variant_yaml` that `bptrace exercise --roster` writes)."""
    from .source import read_regular_file

    folder = Path(folder)
    roster = folder / ROSTER
    try:
        rows = list(csv.DictReader(io.StringIO(read_regular_file(roster, what="a roster").decode("utf-8-sig"))))
    except (UnicodeDecodeError, csv.Error) as exc:
        raise ScenarioError(f"cannot read this roster: {exc}", file=str(roster)) from None
    if not rows or not {"student", "variant_yaml"} <= set(rows[0]):
        raise ScenarioError("not a roster of `bptrace exercise --roster`: it needs the columns student and "
                            "variant_yaml and a row per student", file=str(roster))
    students, seen = {}, {}
    for line, row in enumerate(rows, start=2):
        student, variant = (row.get("student") or "").strip(), (row.get("variant_yaml") or "").strip()
        path = folder / variant
        # a roster names files inside its own folder: an absolute or `..` path is not packed
        if not student or not variant or Path(variant).is_absolute() or ".." in Path(variant).parts \
                or not path.is_file():
            raise ScenarioError(f"no variant file for student '{student}' ({variant or 'none named'})",
                                file=str(roster), line=line)
        if _same(student) in seen:
            raise ScenarioError(f"'{student}' is on the roster twice (as '{seen[_same(student)]}')",
                                file=str(roster), line=line)
        seen[_same(student)] = student
        students[student] = path
    return students


def _asked(folder: Path) -> list | None:
    """The asked steps: the keys of the first student's answers.yaml (every variant of a
    template asks the same), or None when the roster names no answers file."""
    import yaml

    with open(folder / ROSTER, encoding="utf-8-sig", newline="") as fh:
        first = next(csv.DictReader(fh), {}) or {}
    answers = (first.get("answers_yaml") or "").strip()
    if not answers or Path(answers).is_absolute() or ".." in Path(answers).parts or not (folder / answers).is_file():
        return None
    try:
        data = yaml.safe_load((folder / answers).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError):
        return None
    return [str(key) for key in data] if isinstance(data, dict) and data else None


def _same(student) -> str:
    """An id as compared: without surrounding spaces or case (emails are case-blind, and the
    roster's folders already refuse ids that differ only in case)."""
    return str(student).strip().casefold()


def find_student(metadata: dict, students) -> tuple[str | None, list[str]]:
    """The roster id of a submission from Gradescope's submission_metadata.json (`users`:
    one per group member, each with `email`, `name` and, when the course has them, `sid`):
    for each user in turn its email, sid and name (METADATA_FIELDS); returns (the id or
    None, every id tried, as `field 'value'`)."""
    known = {_same(student): student for student in students}
    tried = []
    users = metadata.get("users") if isinstance(metadata, dict) else None
    for user in users if isinstance(users, list) else []:
        for field in METADATA_FIELDS:
            value = user.get(field) if isinstance(user, dict) else None
            if value is None or not str(value).strip():
                continue
            tried.append(f"{field} '{value}'")
            if _same(value) in known:
                return known[_same(value)], tried
    return None, tried


def _add(archive: zipfile.ZipFile, name: str, data: bytes, executable: bool = False):
    info = zipfile.ZipInfo(name, EPOCH)
    info.compress_type = zipfile.ZIP_DEFLATED
    # Unix permissions in the high bits: Gradescope runs run_autograder as a program
    info.external_attr = (stat.S_IFREG | (0o755 if executable else 0o644)) << 16
    archive.writestr(info, data)


# --- the wheel ----------------------------------------------------------------------------

def _project() -> dict:
    """Name, summary, Python and dependencies: from pyproject.toml beside the package (a
    source checkout: the source being packed), else from the installed distribution."""
    pyproject = Path(__file__).resolve().parent.parent / "pyproject.toml"
    if pyproject.is_file() and sys.version_info >= (3, 11):
        import tomllib

        project = tomllib.loads(pyproject.read_text())["project"]
        return {"summary": project.get("description", ""), "python": project.get("requires-python", ""),
                "requires": list(project.get("dependencies", []))}
    from importlib import metadata

    meta = metadata.metadata("bptrace")
    requires = [r for r in metadata.requires("bptrace") or [] if "extra ==" not in r]
    return {"summary": meta.get("Summary", ""), "python": meta.get("Requires-Python", ""), "requires": requires}


def build_wheel() -> tuple[str, bytes]:
    """A pure-Python wheel of the running bptrace's own source files (no network, no build
    tools): (file name, bytes), as `pip install` takes it."""
    package = Path(__file__).resolve().parent
    info = f"bptrace-{__version__}.dist-info"
    project = _project()
    files = []
    for path in sorted(package.rglob("*.py")):
        if "__pycache__" not in path.parts:
            files.append(("bptrace/" + path.relative_to(package).as_posix(), path.read_bytes()))
    metadata = ["Metadata-Version: 2.1", "Name: bptrace", f"Version: {__version__}",
                f"Summary: {project['summary']}"]
    if project["python"]:
        metadata.append(f"Requires-Python: {project['python']}")
    metadata += [f"Requires-Dist: {requirement}" for requirement in project["requires"]]
    files += [(f"{info}/METADATA", ("\n".join(metadata) + "\n").encode()),
              (f"{info}/WHEEL", b"Wheel-Version: 1.0\nGenerator: bptrace autograder\n"
                                b"Root-Is-Purelib: true\nTag: py3-none-any\n"),
              (f"{info}/entry_points.txt", b"[console_scripts]\nbptrace = bptrace.cli:main\n")]
    record = [f"{name},sha256={_digest(data)},{len(data)}" for name, data in files] + [f"{info}/RECORD,,"]
    files.append((f"{info}/RECORD", ("\n".join(record) + "\n").encode()))
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as wheel:
        for name, data in files:
            _add(wheel, name, data)
    return f"bptrace-{__version__}-py3-none-any.whl", buffer.getvalue()


def _digest(data: bytes) -> str:
    return base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()


# --- grading a submission -----------------------------------------------------------------

def submitted_answers(folder: Path) -> list[Path]:
    """The answer files of a submission, in any folder of it (an upload from GitHub keeps
    its tree), hidden files and folders left out."""
    found = []
    for path in sorted(folder.rglob("*")):
        relative = path.relative_to(folder)
        if any(part.startswith(".") for part in relative.parts):
            continue
        if path.is_file() and path.name.lower().endswith(ANSWER_SUFFIXES):
            found.append(path)
    return found


def grade_submission(root) -> int:
    """run_autograder: the submission under root/submission graded against the scenario in
    root/source (from a roster: the submitter's variant, found by `find_student` in
    root/submission_metadata.json), written to root/results/results.json.  A submission
    that cannot be graded (no answer file, several, one that cannot be read, a submitter on
    no roster row) gets a score of 0 and says why."""
    from .render import check_gradescope

    started = time.monotonic()
    root = Path(root)
    source, submission, results = root / "source", root / "submission", root / "results"
    config = json.loads((source / CONFIG).read_text())
    missing = None                  # why no variant could be chosen
    if "students" in config:
        student, missing = _submitting_student(root, config["students"])
        name = config["students"][student] if student else next(iter(config["students"].values()))
    else:
        student, name = None, config["scenario"]
    scenario_path = source / name
    checker = Checker(points=config.get("points"))
    scenario = load(scenario_path)
    files = submitted_answers(submission) if submission.is_dir() else []
    kinds = ", ".join(ANSWER_SUFFIXES[:-1]) + " or " + ANSWER_SUFFIXES[-1]
    if missing:
        # the first variant only lists what is asked (every variant asks the same steps), at 0
        # titled as the template: the first variant's "(variant SEED)" is not this student's
        title = re.sub(r" \(variant \d+\)$", "", scenario.name or "")
        sheet = FileReport(file="submission", scenario="", title=title, error=missing)
    elif len(files) == 1:
        sheet = check_files([scenario_path], files, points=config.get("points")).files[0]
        sheet.file = files[0].relative_to(submission).as_posix()
        if sheet.error:
            sheet.error = sheet.error.replace(str(files[0]), sheet.file)
    else:
        if files:
            names = ", ".join(path.relative_to(submission).as_posix() for path in files)
            error = f"{len(files)} answer files in the submission ({names}): submit exactly one"
        else:
            error = f"no answer file in the submission: submit one {kinds} file of your answers"
        sheet = FileReport(file="submission", scenario=name, title=scenario.name, error=error)
    sheet.scenario = sheet.scenario if missing else name
    sheet.title = sheet.title or scenario.name
    if sheet.points is None:
        try:
            sheet.points = checker.scenario_points(scenario)
        except ScenarioError:
            pass                    # checked when the zip was built
    results.mkdir(parents=True, exist_ok=True)
    (results / "results.json").write_text(
        check_gradescope.render(grade(sheet, time.monotonic() - started)), encoding="utf-8")
    against = f" against the variant of {student} ({name})" if student else ""
    print(f"bptrace {__version__} from {Path(__file__).resolve().parent}: graded "
          f"{sheet.file}{against}, results in {results / 'results.json'}")
    return 0


def _submitting_student(root: Path, students: dict) -> tuple[str | None, str | None]:
    """(the roster id of the submitter, None), or (None, why no variant could be chosen)."""
    path = root / "submission_metadata.json"
    try:
        metadata = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        return None, (f"no variant could be chosen: {path.name} cannot be read ({exc}); "
                      "ask your instructor")
    student, tried = find_student(metadata, students)
    if student is None:
        return None, (f"no variant for this submission: none of its ids ({', '.join(tried) or 'none given'}) "
                      f"is on the roster of {len(students)} students; ask your instructor")
    return student, None


if __name__ == "__main__":
    sys.exit(grade_submission(sys.argv[1] if len(sys.argv) > 1 else os.environ.get("AUTOGRADER_ROOT", "/autograder")))
