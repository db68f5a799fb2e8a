"""bptrace.check is a package of six modules without an import cycle, imports at module top."""
import ast
import pathlib
import subprocess
import sys

import bptrace.check

PACKAGE = pathlib.Path(bptrace.check.__file__).parent
MODULES = ("matching", "answers", "report", "mistakes", "checker", "gradescope")


def test_the_package_holds_the_six_modules():
    assert {path.stem for path in PACKAGE.glob("*.py")} >= set(MODULES) | {"__init__"}
    assert not (PACKAGE.parent / "mistakes.py").exists()


def test_each_module_imports_first_and_alone():
    # a cycle shows as an ImportError when the module that closes it is imported first
    for module in MODULES:
        done = subprocess.run([sys.executable, "-c", f"import bptrace.check.{module}"], capture_output=True,
                              text=True, cwd=PACKAGE.parent.parent)
        assert done.returncode == 0, (module, done.stderr)


def test_imports_only_at_module_top():
    for path in PACKAGE.glob("*.py"):
        tree = ast.parse(path.read_text())
        top = {id(node) for node in tree.body}
        inner = [node.lineno for node in ast.walk(tree)
                 if isinstance(node, (ast.Import, ast.ImportFrom)) and id(node) not in top]
        assert not inner, (path.name, inner)


def test_modules_import_only_modules_listed_before_them():
    for position, module in enumerate(MODULES):
        tree = ast.parse((PACKAGE / f"{module}.py").read_text())
        siblings = {node.module for node in tree.body
                    if isinstance(node, ast.ImportFrom) and node.level == 1 and node.module}
        assert siblings <= set(MODULES[:position]), (module, siblings)


def test_public_names_stay_where_callers_find_them():
    for name in ("Checker", "CheckReport", "FileReport", "Written", "Tolerance", "match", "check_files",
                 "read_answers", "references", "scenario_answers", "answer_files", "command_line_tolerance",
                 "DEFAULT_WORK_LIMIT", "FOLLOWS", "WRONG"):
        assert hasattr(bptrace.check, name), name
