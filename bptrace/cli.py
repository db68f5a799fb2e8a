"""The command line: a thin click layer over the library.

Each command parses its options, calls the library, and maps a `ScenarioError` to a
message and exit status 2.  Heavy modules (rich, the renderers) are imported inside the
command that needs them, so `bptrace --help` starts fast.
"""
from __future__ import annotations

import contextlib
import os
import sys
import time

import click

from . import __version__
from .errors import ScenarioError

FORMATS = ("text", "json", "markdown", "latex", "html")


class BadInput(click.ClickException):
    """A scenario or command-line mistake: exit status 2, no traceback (BRIEF section 5)."""
    exit_code = 2

    def show(self, file=None):
        from .errors import visible

        # a message may quote the command line (a file name, a pattern): shown, never obeyed
        click.echo(f"error: {visible(self.format_message())}", err=True)


def fail(error: ScenarioError, path=None):
    raise BadInput(str(error.located(file=str(path) if path else None)))


def load_scenario(path, *, size_limit=True, arithmetic=None):
    from .scenario import DEFAULT_WORK_LIMIT, load

    try:
        return load(path, work_limit=DEFAULT_WORK_LIMIT if size_limit else None, arithmetic=arithmetic)
    except ScenarioError as error:
        fail(error, path)


def trace_scenario(scenario, **options):
    from .engine import run

    try:
        return run(scenario, **options)
    except ScenarioError as error:
        fail(error, scenario.path)


def select_steps(trace, patterns):
    """--only: phases, names, name prefixes or shell-style patterns (`c1.*`), several or
    comma-separated."""
    if not patterns:
        return None
    from .render.view import PHASE_SELECTORS, select

    wanted = [p.strip() for item in patterns for p in item.split(",") if p.strip()]
    chosen, missing = select(trace, wanted)
    if missing:
        from .errors import did_you_mean

        hint = did_you_mean(missing[0], trace.names() + list(PHASE_SELECTORS))
        raise BadInput(f"--only {missing[0]}: no step of this trace is called that"
                       + (f" ({hint})" if hint else "") + "; bptrace run --list SCENARIO lists them")
    return chosen


def complete_names(ctx, param, incomplete):
    """Shell completion of trace names (`explain SCENARIO c1.g<TAB>`, `--only`), from the
    scenario already on the command line; nothing when it cannot be read."""
    from click.shell_completion import CompletionItem

    # while an option still waits for its value, click leaves the arguments unparsed in ctx.args
    path = ctx.params.get("scenario") or next((arg for arg in ctx.args if not arg.startswith("-")), None)
    if not path:
        return []
    try:
        from .scenario import load

        names = list(load(path).shapes)
    except Exception:       # a half-typed command line: complete nothing rather than fail
        return []
    return [CompletionItem(name) for name in names if name.startswith(incomplete)]


def make_console(width=None, file=None, force_plain=False):
    from rich.console import Console

    plain = force_plain or "NO_COLOR" in os.environ
    return Console(width=width, file=file, no_color=plain, color_system=None if plain else "auto",
                   highlight=False, soft_wrap=False)


def refuse_overwriting_inputs(output, inputs):
    """`-o` naming a file the command reads (`run s.yaml -o s.yaml`, or the same file through
    another path, a link or a hard link) would replace the scenario or the student's sheet."""
    if output is None or not os.path.exists(output):
        return
    for path in inputs:
        try:
            same = os.path.samefile(output, path)
        except OSError:
            continue
        if same:
            raise BadInput(f"-o {output} is the input file {path}; writing there would replace it "
                           "(choose another name)")


# Signals whose default action ends the process: an interrupted write removes its temporary
# file first.  (SIGINT raises KeyboardInterrupt, which the `finally` below already handles.)
_FATAL_SIGNALS = ("SIGHUP", "SIGTERM", "SIGQUIT", "SIGUSR1", "SIGUSR2", "SIGALRM", "SIGVTALRM",
                  "SIGPROF", "SIGXCPU", "SIGXFSZ")


@contextlib.contextmanager
def _removed_if_killed(holder: list):
    """While inside, a fatal signal removes the file named in `holder` and then ends the
    process as that signal would have."""
    import signal

    def handler(number, frame):
        for path in holder:
            with contextlib.suppress(OSError):
                os.remove(path)
        signal.signal(number, signal.SIG_DFL)
        os.kill(os.getpid(), number)

    previous = {}
    for name in _FATAL_SIGNALS:
        number = getattr(signal, name, None)
        if number is None:
            continue
        try:
            if signal.getsignal(number) is signal.SIG_DFL:
                previous[number] = signal.signal(number, handler)
        except ValueError:      # not the main thread: signals cannot be caught here
            break
    try:
        yield
    finally:
        for number, old in previous.items():
            signal.signal(number, old)


def write_output(text: str | bytes, output):
    """Write all at once, so that a failure never leaves a half-written file: into a
    temporary file beside it, then renamed over it.  The temporary file is made by
    `mkstemp` (a new name, never a link someone planted) and removed whatever ends the
    write.  What is not a regular file (`-o /dev/null`, `/dev/stdout`, a pipe) is written to
    directly: renaming over it would replace it."""
    if output is None:
        click.echo(text, nl=False)
        return
    import tempfile

    # text in UTF-8 (never the locale's encoding: the outputs are UTF-8 documents); bytes as they are
    mode, encoding = ("wb", None) if isinstance(text, bytes) else ("w", "utf-8")
    try:
        if _is_stream(output):
            with open(output, mode, encoding=encoding) as fh:
                fh.write(text)
            return
        folder, base = os.path.split(os.path.abspath(output))
        holder = []
        with _removed_if_killed(holder):
            try:
                fd, tmp = tempfile.mkstemp(dir=folder, prefix=f".{base}.", suffix=".tmp")
                holder.append(tmp)
                with os.fdopen(fd, mode, encoding=encoding) as fh:
                    # mkstemp makes the file private (0600); the output gets the usual mode
                    os.fchmod(fh.fileno(), _new_file_mode(output))
                    fh.write(text)
                os.replace(tmp, output)
                holder.clear()
            finally:
                for path in holder:
                    if os.path.lexists(path):
                        os.remove(path)
    except OSError as exc:
        raise BadInput(f"cannot write {output}: {exc.strerror}") from None


def _is_stream(output) -> bool:
    """A device or a pipe, or a name for one of the process's streams (`/dev/stdout`,
    `/dev/fd/3`, whatever file the shell opened behind it): written into, never replaced."""
    import stat

    if str(output).startswith(("/dev/", "/proc/")):
        return True
    return os.path.exists(output) and not stat.S_ISREG(os.stat(output).st_mode)


def _new_file_mode(output) -> int:
    """The mode the output keeps (when it exists) or would get from open(): 0666 less the umask."""
    import stat

    try:
        return stat.S_IMODE(os.stat(output).st_mode)
    except OSError:
        umask = os.umask(0)
        os.umask(umask)
        return 0o666 & ~umask


def show(renderable, output, width):
    """A rich renderable on the terminal, or as plain 100-column text into `-o FILE`.

    Our renderers never write past the width, so rich need not crop each line (which costs
    more than the layout itself on a big trace)."""
    if output is None:
        make_console(width=width, force_plain=not sys.stdout.isatty()).print(renderable, crop=False)
        return
    import io

    buffer = io.StringIO()
    make_console(width=width or 100, file=buffer, force_plain=True).print(renderable, crop=False)
    write_output(buffer.getvalue(), output)


def arithmetic_option(command):
    """--arithmetic, shared by run, explain and check."""
    # numbers.ARITHMETICS, written out: importing numbers.py would load numpy for --help
    # (tests/test_cli.py holds the two equal)
    return click.option("--arithmetic", type=click.Choice(("float", "exact", "symbolic")),
                        help="The numbers every loop runs on (default: the scenario's `arithmetic:`, else float): "
                             "exact = fractions, every written number as the decimal it is.")(command)


class _Group(click.Group):
    def invoke(self, ctx):
        # click ends an interrupt with status 1, which `check` uses for "a wrong answer": an
        # interrupted command ends as a shell reports Ctrl-C, 128 + SIGINT
        try:
            return super().invoke(ctx)
        except KeyboardInterrupt:
            click.echo("\ninterrupted", err=True)
            ctx.exit(130)


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="bptrace")
def main():
    """Work backpropagation through a small CNN step by step, showing every number.

    \b
    Start from a scenario (a YAML file describing the network and its numbers):
      bptrace new > problem.yaml
      bptrace run problem.yaml
    """


@main.command()
@click.argument("scenario", type=click.Path(dir_okay=True))
@click.option("--format", "fmt", type=click.Choice(FORMATS), default="text", show_default=True,
              help="How to write the trace.")
@click.option("--only", multiple=True, metavar="NAME", shell_complete=complete_names,
              help="Show only these steps: names, name prefixes (C1.grad), phases (forward, loss, backward, "
                   "deltas, gradients, updates) or patterns such as 'c1.*'; repeat or separate by commas.")
@click.option("--digits", type=click.IntRange(1, 17), default=7, show_default=True,
              help="Significant digits shown (of each step's largest number; JSON keeps every digit).")
@click.option("--summary", is_flag=True, help="Only the network summary and the results.")
@click.option("--list", "list_steps", is_flag=True, help="List the steps' names, phases and shapes, and stop.")
@click.option("-o", "--output", type=click.Path(dir_okay=False, writable=True),
              help="Write to this file instead of the terminal.")
@click.option("--width", type=click.IntRange(40, 1000), help="Terminal width for text output.")
@click.option("--no-size-limit", is_flag=True, help="Run networks above the scalar-loop size limit.")
@click.option("--fragment", is_flag=True,
              help="With --format latex: only the body, to \\input into your own document (needs amsmath).")
@click.option("--expand", is_flag=True,
              help="`arithmetic: symbolic`: every formula all the way down in the scenario's letters.")
@arithmetic_option
def run(scenario, fmt, only, digits, summary, list_steps, output, width, no_size_limit, fragment, expand, arithmetic):
    """Trace SCENARIO: forward values, every delta, every gradient, every update.

    \b
    Examples:
      bptrace run scenarios/seed001.yaml
      bptrace run scenarios/seed001.yaml --only 'c1.*'
      bptrace run scenarios/zhang2016.yaml --only gradients --digits 4
      bptrace run scenarios/zhang2016.yaml --summary
      bptrace run scenarios/zhang2016.yaml --format json -o trace.json
      bptrace run scenarios/seed001.yaml --arithmetic exact    # fractions: 0.0364182 exactly
      bptrace run scenarios/seed002_symbolic.yaml --expand     # formulas in the letters
    """
    if fragment and fmt != "latex":
        raise BadInput("--fragment goes with --format latex")
    refuse_overwriting_inputs(output, [scenario])
    sc = load_scenario(scenario, size_limit=not no_size_limit, arithmetic=arithmetic)
    trace = trace_scenario(sc)
    trace.scenario = sc                   # the results name the explain command with its path
    if expand:
        if sc.numbers.name != "symbolic":
            raise BadInput("--expand writes formulas in letters: it goes with `arithmetic: symbolic`")
        from .symbolic import expand as expand_formulas

        expand_formulas(trace)
    if list_steps:
        from .render.view import listing

        rows = listing(trace)
        widths = [max(len(row[k]) for row in rows) for k in range(2)]
        write_output("".join(f"{n.ljust(widths[0])}  {p.ljust(widths[1])}  {s}\n" for n, p, s in rows), output)
        return
    chosen = select_steps(trace, only)
    options = {"digits": digits, "summary": summary}
    if fmt == "text":
        from .render import text

        show(text.render(trace, chosen, **options), output, width)
        return
    from importlib import import_module

    # every document format has its renderer module of the same name in bptrace/render
    document = import_module(f".render.{fmt}", __package__)
    if fmt == "latex":
        options["fragment"] = fragment
    if fmt == "json":
        options = {}          # every digit, every step: the export is for programs
    write_output(document.render(trace, chosen, **options), output)


@main.command()
@click.argument("scenario", type=click.Path(dir_okay=True))
@click.argument("target", metavar="NAME[INDEX]", shell_complete=complete_names)
@click.option("--unrolled", is_flag=True,
              help="TARGET is a conv layer: show it as a dense layer (its weight matrix with shared weights).")
@click.option("--width", type=click.IntRange(40, 1000), help="Terminal width.")
@click.option("--digits", type=click.IntRange(1, 17), default=10, show_default=True,
              help="Significant digits shown (the numbers themselves keep every digit).")
@click.option("--no-size-limit", is_flag=True, help="Run networks above the scalar-loop size limit.")
@arithmetic_option
def explain(scenario, target, unrolled, width, digits, no_size_limit, arithmetic):
    """Where one number comes from: its rule, every term of its sum, and what each term is.

    \b
    Examples:
      bptrace explain scenarios/seed001.yaml 'c1.grad.kernel[0,1]'
      bptrace explain scenarios/seed001.yaml 'input.delta[1,2]'   # chain rule and full convolution
      bptrace explain scenarios/seed001.yaml c1.delta              # the whole step, every element
      bptrace explain --unrolled scenarios/seed002_two_convs.yaml c1
    """
    from . import explain as explaining

    sc = load_scenario(scenario, size_limit=not no_size_limit, arithmetic=arithmetic)
    console = make_console(width=width, force_plain=not sys.stdout.isatty())
    try:
        if unrolled:
            from .render.explain_text import render_unrolled
            from .unrolled import unroll, unrollable

            unrollable(sc, target)      # before the trace is run: a layer too large is refused at once
            shown = render_unrolled(unroll(sc, trace_scenario(sc), target), console.width, digits=digits)
        else:
            from .render.explain_text import render

            shown = render(explaining.explain(sc, target), console.width, digits=digits)
    except ScenarioError as error:
        fail(error, scenario)
    console.print(shown, crop=False)


@main.command()
@click.argument("scenarios", nargs=-1, required=True, metavar="SCENARIO...")
@click.option("--expected", "expected", multiple=True, metavar="FILE",
              help="Answers to check instead of the scenario's `expected:`: YAML, JSON (also a "
                   "`run --format json` export) or .npz; repeat it, or give a directory, for many sheets.")
@click.option("--tolerance", "absolute", type=click.FloatRange(min=0), metavar="ABS",
              help="Right when |yours − bptrace| ≤ ABS (+ REL·|bptrace|), instead of 'as written'.")
@click.option("--rtol", "relative", type=click.FloatRange(min=0), metavar="REL",
              help="Relative tolerance (with or without --tolerance).")
@click.option("--round", "decimals", type=click.IntRange(0, 20), metavar="N",
              help="Round every computed value to N decimals, as by hand (replaces the scenario's rounding).")
@click.option("--mode", type=click.Choice(("half_up", "half_even", "truncate")),
              help="How --round rounds (default half_up).")
@click.option("--format", "fmt", type=click.Choice(("text", "json", "gradescope")), default="text",
              show_default=True,
              help="A table for people, JSON for an autograder, or Gradescope's results.json (one sheet).")
@click.option("--points", "points", multiple=True, metavar="N|KEY=N",
              help="Points per answer (N), or per answer key (KEY=N, repeated), for --format gradescope; "
                   "replaces the scenario's `points:`.")
@click.option("-o", "--output", type=click.Path(dir_okay=False, writable=True),
              help="Write the report to this file instead of the terminal.")
@click.option("--width", type=click.IntRange(40, 1000), help="Terminal width for text output.")
@click.option("--no-size-limit", is_flag=True, help="Run networks above the scalar-loop size limit.")
@click.option("--jobs", "-j", type=click.IntRange(1, 256), default=1, show_default=True,
              help="Check the sheets in this many processes.")
@arithmetic_option
def check(scenarios, expected, absolute, relative, decimals, mode, fmt, points, output, width, no_size_limit, jobs,
          arithmetic):
    """Check hand-worked answers: every number, the first wrong step, the likely mistake.

    Answers come from each SCENARIO's `expected:`, or from --expected files checked against
    one SCENARIO.  Exit status 0: all right; 1: a wrong answer; 2: a file could not be read
    (the report of the others is still written).

    \b
    Examples:
      bptrace check scenarios/seed001_rounded.yaml
      bptrace check problem.yaml --expected answers/          # a class's sheets, one line each
      bptrace check problem.yaml --expected answers/ --jobs 4 # the same in 4 processes
      bptrace check problem.yaml --expected grads.npz --rtol 1e-5
      bptrace check homework.yaml --round 4 --mode truncate   # is the mismatch only rounding?
      bptrace check homework/*.yaml --format json -o report.json   # scenarios with expected:
      bptrace check problem.yaml --expected alice.yaml --format gradescope --points 2 -o results.json
    """
    from .check import DEFAULT_WORK_LIMIT, answer_files, check_files, command_line_tolerance
    from .check.gradescope import command_line_points
    from .scenario import Rounding

    if mode and decimals is None:
        raise BadInput("--mode goes with --round N")
    if expected and len(scenarios) != 1:
        raise BadInput(f"--expected goes with exactly one SCENARIO (each answer file is checked against it); "
                       f"got {len(scenarios)}")
    sheets = answer_files(expected)
    if fmt == "gradescope" and len(sheets if expected else scenarios) != 1:
        raise BadInput(f"--format gradescope grades one submission; got {len(sheets if expected else scenarios)} "
                       f"sheets (use --format json for a class)")
    refuse_overwriting_inputs(output, [*scenarios, *sheets])
    rounding = Rounding(decimals, mode or "half_up", ("all",)) if decimals is not None else None
    try:
        tolerance = command_line_tolerance(absolute, relative)
        points = command_line_points(points)
    except ScenarioError as error:
        fail(error)
    started = time.monotonic()
    report = check_files(scenarios, expected, tolerance=tolerance, points=points,
                         rounding=rounding, work_limit=None if no_size_limit else DEFAULT_WORK_LIMIT, jobs=jobs,
                         arithmetic=arithmetic)
    for sheet in report.files:
        if sheet.error:
            click.echo(f"error: {sheet.error}", err=True)
    if fmt == "json":
        from .render import check_json

        write_output(check_json.render(report), output)
    elif fmt == "gradescope":
        from .check.gradescope import grade_report
        from .render import check_gradescope

        write_output(check_gradescope.render(grade_report(report, time.monotonic() - started)), output)
    elif not (len(report.files) == 1 and report.broken):
        from .render import check_text

        show(check_text.render(report), output, width)
    click.get_current_context().exit(report.exit_code)


@main.command()
@click.argument("template", type=click.Path(dir_okay=True))
@click.option("--seed", type=click.IntRange(min=0), help="Draw the variant of this seed.")
@click.option("--roster", type=click.Path(dir_okay=False), metavar="CSV",
              help="One variant per student of this CSV (column id, or the first), each seed derived from "
                   "the id and the template; writes roster.csv beside their folders.")
@click.option("--format", "fmt", type=click.Choice(("files", "prairielearn")), default="files", show_default=True,
              help="Variant files, or a PrairieLearn question folder that draws its own variants.")
@click.option("-o", "--output", type=click.Path(file_okay=False), metavar="DIR",
              help="The folder to write (new, or empty); default TEMPLATE-SEED, TEMPLATE-roster or TEMPLATE-pl.")
def exercise(template, seed, roster, fmt, output):
    """Draw exercise variants from a TEMPLATE: a scenario with `vary:`, `ask:` and `constraints:`.

    Each variant folder holds variant.yaml (a plain scenario), sheet.md/.tex/.html (the
    question), key.md/.tex/.html (the worked answer) and answers.yaml (for bptrace check).

    \b
    Examples:
      bptrace exercise templates/seed001_exercise.yaml --seed 7 -o ex7
      bptrace exercise templates/seed001_exercise.yaml --roster students.csv -o hw3
      bptrace exercise templates/seed001_exercise.yaml --format prairielearn -o pl/questions/backprop1
    """
    from . import exercise as ex

    if fmt == "prairielearn" and (seed is not None or roster):
        raise BadInput("--format prairielearn draws each student's variant in PrairieLearn; "
                       "it takes no --seed or --roster")
    if fmt == "files" and (seed is None) == (roster is None):
        raise BadInput("give --seed S (one variant) or --roster CSV (one per student)")
    try:
        files, folder, what = ex.output_files(template, fmt=fmt, seed=seed, roster=roster, folder=output)
    except ScenarioError as error:
        fail(error, template)
    try:
        ex.write_folder(folder, files)
    except ScenarioError as error:
        fail(error)
    except OSError as exc:
        raise BadInput(f"cannot write {folder}: {exc.strerror}") from None
    click.echo(f"wrote {folder}: {what}")


@main.command()
@click.argument("scenario", type=click.Path())
@click.option("-o", "--output", type=click.Path(dir_okay=False, writable=True), default="autograder.zip",
              show_default=True, help="The zip to write.")
@click.option("--points", "points", multiple=True, metavar="N|KEY=N",
              help="Points per answer (N), or per answer key (KEY=N, repeated); replaces the scenario's `points:`.")
def autograder(scenario, output, points):
    """Build a Gradescope autograder (a zip to upload) that checks each submission's answer
    file against SCENARIO, with partial credit per answer.  SCENARIO may be the folder of
    `bptrace exercise --roster` (it holds roster.csv): each student is graded against their
    own variant.

    \b
    Examples:
      bptrace autograder problem.yaml -o autograder.zip
      bptrace autograder problem.yaml --points p1.delta=2 --points c1.grad.kernel=4
      bptrace autograder hw3/ -o autograder.zip             # one variant per student
    """
    from .autograder import build
    from .check.gradescope import command_line_points

    refuse_overwriting_inputs(output, [scenario])
    try:
        entries, archive, warnings = build(scenario, points=command_line_points(points))
    except ScenarioError as error:
        fail(error, scenario)
    write_output(archive, output)
    for warning in warnings:
        click.echo(warning, err=True)
    shown = [name for name in entries if not name.startswith("variants/")]
    variants = len(entries) - len(shown)
    click.echo(f"wrote {output}: {', '.join(shown)}" + (f" and {variants} variants" if variants else ""), err=True)


@main.command()
@click.option("-o", "--output", type=click.Path(dir_okay=False, writable=True),
              help="Write the scenario to this file (refuses to overwrite).")
def new(output):
    """Write a commented scenario to start from.

    \b
    Example:
      bptrace new -o problem.yaml && bptrace run problem.yaml
    """
    # a device or a pipe (`-o /dev/stdout`) is written into, not overwritten
    if output and os.path.lexists(output) and not _is_stream(output):
        raise BadInput(f"{output} already exists; choose another name")
    from .template import NEW_SCENARIO

    write_output(NEW_SCENARIO, output)


@main.command()
@click.option("-o", "--output", type=click.Path(dir_okay=False, writable=True),
              help="Write the schema to this file instead of the terminal.")
def schema(output):
    """Print the JSON Schema of scenario files, for editors that complete and check YAML.

    `bptrace new` starts a scenario with `# yaml-language-server: $schema=bptrace.schema.json`;
    write the schema beside it and an editor with the YAML language server completes layer
    types and keys and marks unknown ones.

    \b
    Example:
      bptrace schema -o bptrace.schema.json
    """
    from .schema import schema_text

    write_output(schema_text(), output)


@main.command("from-torch")
@click.argument("model", metavar="MODEL")
@click.option("--input", "input_file", metavar="FILE",
              help="The input: a .npy file, or a YAML/JSON file of nested lists.")
@click.option("--shape", metavar="N,C,H,W",
              help="Instead of --input: a random input of this shape (uniform on [0, 1), drawn by bptrace).")
@click.option("--seed", type=click.IntRange(min=0), default=0, show_default=True, help="Seed for --shape.")
@click.option("--target", metavar="FILE|VALUES",
              help="The loss target: a .npy file, a YAML/JSON file, or the values ('[1, 0]'); without it the "
                   "backward pass starts from an error of ones (the gradients of the output's sum).")
@click.option("--loss", type=click.Choice(("half_sse", "sse", "mse", "cross_entropy", "bce")), default="mse",
              show_default=True, help="The loss, as torch's MSELoss (mse), CrossEntropyLoss, BCELoss.")
@click.option("-o", "--output", type=click.Path(dir_okay=False, writable=True),
              help="Write the scenario to this file (refuses to overwrite).")
def from_torch(model, input_file, shape, seed, target, loss, output):
    """Write the scenario of a PyTorch nn.Sequential with its weights (needs torch).

    MODEL is `file.py:name` (the module, or a function returning it, named `name` in that
    Python file, which is run) or a file saved with `torch.save(model, path)`.  A saved
    model is a pickle: loading it (torch.load with weights_only=False) runs code from the
    file, so give only files you trust.

    \b
    Examples:
      bptrace from-torch net.py:model --shape 1,1,6,6 -o problem.yaml
      bptrace from-torch model.pt --input x.npy --target '[[1, 0]]' --loss cross_entropy
    """
    from .pytorch import Unsupported

    if (input_file is None) == (shape is None):
        raise BadInput("give the input with --input FILE or --shape N,C,H,W (one of them)")
    if output and os.path.lexists(output) and not _is_stream(output):
        raise BadInput(f"{output} already exists; choose another name")
    try:
        import torch  # noqa: F401
    except ImportError:
        raise BadInput("from-torch needs PyTorch: pip install 'bptrace[torch]'") from None
    from .pytorch import load_module, read_values, scenario_dict, scenario_yaml

    try:
        module = load_module(model)
        if shape is not None:
            try:
                sizes = [int(part) for part in shape.split(",")]
            except ValueError:
                raise BadInput(f"--shape {shape}: whole numbers separated by commas, such as 1,1,6,6") from None
            import numpy as np

            x = np.random.default_rng(seed).uniform(0.0, 1.0, size=sizes)
        else:
            x = read_values(input_file)
        y = read_values(target) if target is not None else None
        parameter = next(iter(module.parameters()), None) if hasattr(module, "parameters") else None
        x = torch.as_tensor(x, dtype=parameter.dtype if parameter is not None else torch.float64)
        data = scenario_dict(module, x, y, loss)
        if shape is not None:
            # the same numbers, written as bptrace draws them: short, and reproducible
            data["input"] = {"random": "uniform", "shape": sizes, "seed": seed}
        from .api import load

        load(data, size_limit=False)      # what is written must be a scenario bptrace runs
    except Unsupported as exc:
        raise BadInput(str(exc)) from None
    except ScenarioError as error:
        fail(error, model)
    write_output(scenario_yaml(data, f"from PyTorch: {model}"), output)
