"""The command line as a user meets it: help, `new`, `python -m bptrace`, exit codes."""
from __future__ import annotations

import json
import subprocess
import sys

import pytest
from click.testing import CliRunner

from bptrace.cli import main
from conftest import ROOT


def test_every_command_has_help_with_an_example():
    runner = CliRunner()
    for name, command in main.commands.items():
        result = runner.invoke(main, [name, "--help"])
        assert result.exit_code == 0, name
        assert command.help and "Example" in command.help, f"`bptrace {name} --help` has no example"
        assert f"bptrace {name}" in result.output


def test_top_level_help_lists_the_commands():
    result = CliRunner().invoke(main, ["--help"])
    assert result.exit_code == 0
    for name in main.commands:
        assert name in result.output


def test_new_writes_a_scenario_that_runs(tmp_path):
    runner = CliRunner()
    target = tmp_path / "problem.yaml"
    assert runner.invoke(main, ["new", "-o", str(target)]).exit_code == 0
    result = runner.invoke(main, ["run", str(target), "--format", "json"])
    assert result.exit_code == 0, result.output
    names = [step["name"] for step in json.loads(result.output)["steps"]]
    assert "c1.grad.kernel" in names and "input.delta" in names


def test_new_refuses_to_overwrite(tmp_path):
    target = tmp_path / "problem.yaml"
    target.write_text("mine")
    result = CliRunner().invoke(main, ["new", "-o", str(target)])
    assert result.exit_code == 2
    assert "already exists" in result.output
    assert target.read_text() == "mine"


def test_only_selects_steps_by_name_and_pattern():
    result = CliRunner().invoke(main, ["run", str(ROOT / "scenarios/seed001.yaml"), "--format", "json",
                                       "--only", "c1.*", "--only", "input.delta,f.delta"])
    assert result.exit_code == 0, result.output
    names = [step["name"] for step in json.loads(result.output)["steps"]]
    assert names == ["c1.kernel", "c1.bias", "c1.out", "f.delta", "c1.delta", "c1.grad.kernel",
                     "c1.grad.bias", "input.delta"]


def test_only_with_an_unknown_name_is_an_input_error():
    result = CliRunner().invoke(main, ["run", str(ROOT / "scenarios/seed001.yaml"), "--only", "c1.grad.kernal"])
    assert result.exit_code == 2
    assert "did you mean 'c1.grad.kernel'" in result.output
    assert "Traceback" not in result.output


def test_output_file_is_written_whole(tmp_path):
    target = tmp_path / "trace.json"
    result = CliRunner().invoke(main, ["run", str(ROOT / "scenarios/seed001.yaml"), "--format", "json",
                                       "-o", str(target)])
    assert result.exit_code == 0
    assert json.loads(target.read_text())["total_params"] == 15
    assert not list(tmp_path.glob("*.tmp-*"))


def test_python_dash_m_runs_the_cli():
    result = subprocess.run([sys.executable, "-m", "bptrace", "run", str(ROOT / "scenarios/seed001.yaml"),
                             "--format", "json"], capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["name"].startswith("seed 001")


def test_help_does_not_import_numpy():
    # start-up time: students run bptrace dozens of times
    code = ("import sys; from bptrace.cli import main; heavy = {'numpy', 'sympy', 'torch', 'jsonschema', "
            "'bptrace.exercise', 'bptrace.autograder', 'bptrace.check.gradescope', 'bptrace.api'}; "
            "assert not heavy & set(sys.modules), heavy & set(sys.modules)")
    subprocess.run([sys.executable, "-c", code], check=True)


def test_the_arithmetic_option_offers_the_number_systems():
    from bptrace.numbers import ARITHMETICS

    option = next(p for p in main.commands["run"].params if p.name == "arithmetic")
    assert tuple(option.type.choices) == ARITHMETICS


def test_output_to_a_device_writes_into_it_and_leaves_it_alone(tmp_path):
    # renaming a finished temporary file over `-o` would replace /dev/null with a file
    import os
    import stat

    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    received = []
    import threading

    reader = threading.Thread(target=lambda: received.append(open(fifo, encoding="utf-8").read()))
    reader.start()
    result = CliRunner().invoke(main, ["run", str(ROOT / "scenarios/seed001.yaml"), "--format", "json",
                                       "-o", str(fifo)])
    reader.join(timeout=10)
    assert result.exit_code == 0, result.output
    assert stat.S_ISFIFO(os.stat(fifo).st_mode)
    assert json.loads(received[0])["total_params"] == 15


def test_an_unwritable_output_is_an_input_error(tmp_path):
    result = CliRunner().invoke(main, ["run", str(ROOT / "scenarios/seed001.yaml"), "--format", "json",
                                       "-o", str(tmp_path / "no such folder" / "trace.json")])
    assert result.exit_code == 2
    assert "cannot write" in result.output


def test_new_writes_into_a_device():
    # /dev/null exists, but writing into a device or a pipe replaces nothing
    result = CliRunner().invoke(main, ["new", "-o", "/dev/null"])
    assert result.exit_code == 0, result.output


def test_the_temporary_file_is_not_a_name_someone_can_plant(tmp_path):
    # the temporary name was OUT.tmp-PID, opened following links: a planted link wrote elsewhere
    import os

    victim = tmp_path / "victim.txt"
    victim.write_text("precious")
    out = tmp_path / "out.json"
    (tmp_path / f"out.json.tmp-{os.getpid()}").symlink_to(victim)
    result = CliRunner().invoke(main, ["run", str(ROOT / "scenarios/seed001.yaml"), "--format", "json",
                                       "-o", str(out)])
    assert result.exit_code == 0, result.output
    assert victim.read_text() == "precious"
    assert json.loads(out.read_text())["total_params"] == 15
    assert not out.is_symlink()
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(["victim.txt", "out.json", f"out.json.tmp-{os.getpid()}"])


def test_the_output_keeps_the_usual_file_mode(tmp_path):
    import os
    import stat

    out = tmp_path / "trace.json"
    old = os.umask(0o022)
    try:
        CliRunner().invoke(main, ["run", str(ROOT / "scenarios/seed001.yaml"), "--format", "json", "-o", str(out)])
    finally:
        os.umask(old)
    assert stat.S_IMODE(out.stat().st_mode) == 0o644


WRITE_AND_DIE = """
import os, signal, sys
from bptrace import cli
real_replace = os.replace
def replace(src, dst):
    # the signal arrives while the temporary file is complete but not yet renamed
    os.kill(os.getpid(), getattr(signal, sys.argv[2]))
    real_replace(src, dst)
cli.os.replace = replace
cli.write_output("half a trace", sys.argv[1])
"""


@pytest.mark.parametrize("signal_name", ["SIGTERM", "SIGHUP", "SIGUSR1"])
def test_a_signal_during_output_leaves_no_temporary_file(tmp_path, signal_name):
    import signal

    out = tmp_path / "trace.txt"
    out.write_text("previous")
    done = subprocess.run([sys.executable, "-c", WRITE_AND_DIE, str(out), signal_name],
                          capture_output=True, text=True, check=False, cwd=ROOT)
    assert done.returncode == -getattr(signal, signal_name), done.stderr
    assert [p.name for p in tmp_path.iterdir()] == ["trace.txt"]
    assert out.read_text() == "previous"


def test_output_naming_an_input_is_refused(tmp_path):
    import os
    import shutil

    scenario = tmp_path / "s.yaml"
    shutil.copy(ROOT / "scenarios/seed001_rounded.yaml", scenario)
    original = scenario.read_text()
    (tmp_path / "link.yaml").symlink_to(scenario)
    os.link(scenario, tmp_path / "hard.yaml")
    for output in (scenario, tmp_path / "link.yaml", tmp_path / "hard.yaml", tmp_path / "." / "s.yaml"):
        for command in (["run", str(scenario)], ["check", str(scenario)]):
            result = CliRunner().invoke(main, [*command, "-o", str(output)])
            assert result.exit_code == 2, result.output
            assert "is the input file" in result.output
    # an answer sheet, named itself or through the folder that holds it
    sheet = tmp_path / "answers" / "ans.yaml"
    sheet.parent.mkdir()
    sheet.write_text("input.delta: [[0, 0, 0, 0], [0, 0, 0, 0], [0, 0, 0, 0], [0, 0, 0, 0]]\n")
    for expected in (sheet, sheet.parent):
        result = CliRunner().invoke(main, ["check", str(scenario), "--expected", str(expected), "--format", "json",
                                           "-o", str(sheet)])
        assert result.exit_code == 2, result.output
        assert "is the input file" in result.output
    assert scenario.read_text() == original and sheet.read_text().startswith("input.delta")


def test_an_interrupted_check_is_not_reported_as_wrong_answers(monkeypatch):
    # click ends a KeyboardInterrupt with status 1, which `check` documents as "a wrong answer":
    # an autograder would record a sheet it never finished checking as wrong
    import bptrace.check

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(bptrace.check, "check_files", interrupted)
    result = CliRunner().invoke(main, ["check", str(ROOT / "scenarios/seed001_rounded.yaml")])
    assert result.exit_code == 130, result.output
