"""`bptrace autograder`: a Gradescope autograder for one scenario, as a zip to upload.

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
"""
from __future__ import annotations

import base64
import hashlib
import io
import json
import os
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


def build(scenario_path, *, points=None) -> tuple[list[str], bytes]:
    """The autograder zip for `scenario_path`: its entries and its bytes, for the caller to
    write.  The scenario (and `points`, as `points:` holds them) is checked first: a mistake
    in either raises ScenarioError."""
    scenario_path = Path(scenario_path)
    scenario = load(scenario_path)
    if points is not None:
        read_points(scenario, Document(data=points), ("--points",), points)
    wheel_name, wheel = build_wheel()
    scenario_name = scenario_path.name if scenario_path.suffix in (".yaml", ".yml") else "scenario.yaml"
    config = {"bptrace": __version__, "scenario": scenario_name, "points": points, "wheel": wheel_name}
    entries = [("setup.sh", SETUP.format(version=__version__, wheel=wheel_name).encode(), True),
               ("run_autograder", RUN.format(version=__version__).encode(), True),
               (scenario_name, scenario_path.read_bytes(), False),
               (CONFIG, (json.dumps(config, indent=1) + "\n").encode(), False),
               (wheel_name, wheel, False)]
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, data, executable in entries:
            _add(archive, name, data, executable)
    return [name for name, _, _ in entries], buffer.getvalue()


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
    root/source, written to root/results/results.json.  A submission that cannot be graded
    (no answer file, several, one that cannot be read) gets a score of 0 and says why."""
    from .render import check_gradescope

    started = time.monotonic()
    root = Path(root)
    source, submission, results = root / "source", root / "submission", root / "results"
    config = json.loads((source / CONFIG).read_text())
    scenario_path = source / config["scenario"]
    checker = Checker(points=config.get("points"))
    scenario = load(scenario_path)
    files = submitted_answers(submission) if submission.is_dir() else []
    kinds = ", ".join(ANSWER_SUFFIXES[:-1]) + " or " + ANSWER_SUFFIXES[-1]
    if len(files) == 1:
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
        sheet = FileReport(file="submission", scenario=config["scenario"], title=scenario.name, error=error)
    sheet.scenario = config["scenario"]
    sheet.title = sheet.title or scenario.name
    if sheet.points is None:
        try:
            sheet.points = checker.scenario_points(scenario)
        except ScenarioError:
            pass                    # checked when the zip was built
    results.mkdir(parents=True, exist_ok=True)
    (results / "results.json").write_text(
        check_gradescope.render(grade(sheet, time.monotonic() - started)), encoding="utf-8")
    print(f"bptrace {__version__} from {Path(__file__).resolve().parent}: graded "
          f"{sheet.file}, results in {results / 'results.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(grade_submission(sys.argv[1] if len(sys.argv) > 1 else os.environ.get("AUTOGRADER_ROOT", "/autograder")))
