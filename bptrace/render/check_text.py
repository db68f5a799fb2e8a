"""`check` as text: the report of one sheet (every compared number, the first wrong step,
the likely mistake), or one verdict line per sheet when a call checks many.  The last
line is always `N passed, M failed`.  Formats the `CheckReport`; computes nothing."""
from __future__ import annotations

from rich import box
from rich.console import Group
from rich.padding import Padding
from rich.segment import Segment
from rich.style import Style
from rich.table import Table
from rich.text import Text

from ..check import FOLLOWS, WRONG
from ..errors import visible
from .common import all_right_text, first_wrong_text, minus_sign, numbers_text, signed

WRONG_STYLE = Style(bold=True, color="red")
FOLLOWS_STYLE = Style(color="yellow")
RIGHT_STYLE = Style(color="green")
TITLE = Style(bold=True)
DIM = Style(dim=True)
NAME = Style(bold=True, color="cyan")


def _yours(row) -> str:
    if row.shape is not None:
        return numbers_text(row.shape)
    if row.written is not None and row.written.text is not None:
        # as written: its decimals are the point (but a zero has no sign)
        text = row.written.text.strip()
        return minus_sign(text.lstrip("-") if row.yours == 0 else text)
    return signed(row.yours)


def _difference(value) -> str:
    """A difference needs only its size: three significant digits (none when it overflows)."""
    return "" if value is None else signed(value, 3)


def _verdict(row) -> tuple:
    """(text, style): not a `Text`, of which a big sheet would make tens of thousands."""
    if row.verdict == WRONG:
        # a follows-row's own value is its answer; a wrong row's tells what it should have been
        extra = f" ({signed(row.own)} from your values)" if row.own is not None else ""
        return f"✗ {row.how}{extra}", WRONG_STYLE
    return f"✓ {row.how}", FOLLOWS_STYLE if row.verdict == FOLLOWS else RIGHT_STYLE


def _counts(passed: int, failed: int) -> str:
    return f"{passed} passed, {failed} failed"


def render(report) -> Group:
    parts = _sheet(report.files[0]) if len(report.files) == 1 and not report.files[0].error else _many(report)
    parts.append(Text(_counts(report.passed, report.failed)))
    # the answer table ends its lines itself, and may be too long to go through rich's lines
    return Group(*(part if isinstance(part, AnswerTable) else Trimmed(part) for part in parts))


class Trimmed:
    """A renderable without the spaces rich pads lines with (a table's last column, a
    wrapped paragraph): lines end where their text ends."""

    def __init__(self, renderable):
        self.renderable = renderable

    def __rich_console__(self, console, options):
        for line in console.render_lines(self.renderable, options, pad=False):
            while line and not line[-1].text.rstrip(" "):
                line.pop()
            if line:
                last = line[-1]
                line[-1] = Segment(last.text.rstrip(" "), last.style, last.control)
            yield from line
            yield Segment.line()


def _indented(text: Text) -> Trimmed:
    """A line under a heading, indented by two, its wrapped continuation lines too."""
    return Trimmed(Padding(text, (0, 0, 0, 2)))


def _sheet(sheet) -> list:
    parts = [Text(sheet.title, style=TITLE)]
    # file names are the user's text (a class's submissions): shown, never obeyed by the terminal
    source = visible(sheet.file if sheet.file == sheet.scenario else f"{sheet.file} against {sheet.scenario}")
    parts.append(Text(f"checking {source}", style=DIM))
    parts.append(Text(f"tolerance: {sheet.tolerance.describe()}", style=DIM))
    if sheet.rounding:
        parts.append(Text(f"rounding: {sheet.rounding}", style=DIM))
    rows = []
    for row in sheet.rows:
        if row.shape is not None:
            bptrace, difference = numbers_text(row.bptrace_shape), ""
        else:
            bptrace, difference = signed(row.bptrace), _difference(row.difference)
        rows.append(([row.label, _yours(row), bptrace, difference], _verdict(row), row.verdict == WRONG))
    parts.append(AnswerTable(rows))
    first = sheet.first_wrong
    if first is None:
        parts.append(Text(all_right_text(sheet.follows), style=RIGHT_STYLE))
        return parts
    parts.append(Text.assemble(("first wrong step: ", TITLE), (first.name, NAME)))
    parts.append(_indented(Text(f"rule: {first.rule}")))
    # as in the table: the answer as written (0.75000000001 is not 0.75, though both show so)
    row = next((row for row in sheet.rows if not row.passed), None)
    yours = _yours(row) if first.shape is None and row is not None and row.label == first.label else None
    parts.append(_indented(Text(first_wrong_text(first, yours))))
    parts.append(_indented(Text(f"see every term: {first.explain}")))
    if not sheet.diagnosis:
        parts.append(Text.assemble(("likely mistake: ", TITLE), "no known mistake explains this"))
    for diagnosis in sheet.diagnosis:
        parts.append(Text.assemble(("likely mistake: ", TITLE), (diagnosis.id, WRONG_STYLE), f" — {diagnosis.message}"))
        parts.append(_indented(Text(f"reproduces {_listed(diagnosis.explains)}", style=DIM)))
    if sheet.diagnosis and sheet.unexplained:
        parts.append(Text(f"no known mistake explains {_listed(sheet.unexplained)}"))
    return parts


class AnswerTable:
    """The compared numbers, one line each, columns aligned; the verdict moves to its own
    indented line when a row does not fit the width.  Not a rich `Table`, and written as
    plain segments: a sheet may hold every number of a trace (tens of thousands of rows),
    which rich would measure and wrap cell by cell for half a minute."""
    GAP = "   "
    HEADINGS = ("answer", "yours", "bptrace", "difference")

    def __init__(self, rows):
        self.rows = rows     # ([label, yours, bptrace, difference], (verdict, its style), wrong)

    def __rich_console__(self, console, options):
        widths = [max([len(heading)] + [len(cells[i]) for cells, _, _ in self.rows])
                  for i, heading in enumerate(self.HEADINGS)]
        verdict_width = max([len("verdict")] + [len(verdict) for _, (verdict, _), _ in self.rows])

        def line(cells):
            return self.GAP.join([cells[0].ljust(widths[0])] + [c.rjust(w) for c, w in zip(cells[1:], widths[1:])])

        left = len(line(["", "", "", ""]))
        inline = left + len(self.GAP) + verdict_width <= options.max_width
        newline = Segment.line()
        yield Segment(line(self.HEADINGS) + (self.GAP + "verdict" if inline else ""), TITLE)
        yield newline
        yield Segment("─" * min(options.max_width, left + len(self.GAP) + verdict_width if inline else left))
        yield newline
        gap = self.GAP if inline else "\n    "
        if console.color_system is None and not console.record:
            # nothing styled is written (a file, a pipe, NO_COLOR): the same text in a few
            # long segments, since rich handles each segment on its way out (a second per
            # 30,000 rows of five segments each)
            for start in range(0, len(self.rows), 1000):
                yield Segment("".join(line(cells) + gap + verdict + "\n"
                                      for cells, (verdict, _), _ in self.rows[start:start + 1000]))
            return
        for cells, (verdict, style), wrong in self.rows:
            text = line(cells)
            if wrong:
                yield Segment(text, WRONG_STYLE)
            else:
                yield Segment(text[:len(cells[0])], NAME)
                yield Segment(text[len(cells[0]):])
            yield Segment(gap)
            yield Segment(verdict, style)
            yield newline


def _listed(labels, limit=6) -> str:
    shown = ", ".join(labels[:limit])
    return shown + (f" and {len(labels) - limit} more" if len(labels) > limit else "")


def _many(report) -> list:
    table = Table(box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False, header_style=TITLE)
    # a long path folds rather than squeezing the verdicts into a narrow column; no minimum
    # width, which rich would wrap to and then crop to the console (losing letters)
    table.add_column("file", overflow="fold", ratio=1)
    table.add_column("passed", justify="right", no_wrap=True)
    table.add_column("failed", justify="right", no_wrap=True)
    table.add_column("verdict", overflow="fold", ratio=2)
    for sheet in report.files:
        if sheet.error:
            table.add_row(visible(sheet.file), "–", "–", Text(f"✗ could not be read: {sheet.error.splitlines()[0]}",
                                                     style=WRONG_STYLE))
        elif sheet.failed:
            likely = ", ".join(d.id for d in sheet.diagnosis) or "no known mistake explains it"
            table.add_row(visible(sheet.file), str(sheet.passed), str(sheet.failed),
                          Text(f"✗ first wrong {sheet.first_wrong.label} · {likely}", style=WRONG_STYLE))
        else:
            table.add_row(visible(sheet.file), str(sheet.passed), "0", Text("✓ all right", style=RIGHT_STYLE))
    files = len(report.files)
    summary = f"{files} file{'s' * (files != 1)}: {report.all_right} all right, " \
              f"{report.with_wrong_answers} with wrong answers"
    if report.broken:
        summary += f", {report.broken} could not be read"
    return [table, Text(summary)]
