"""How traces, steps, explanations and check reports show themselves outside the CLI.

* `repr(x)` stays one short line (`<Trace 'seed 001 …': 6 layers, 35 steps, loss 0.1195>`), so
  that a list of them, a debugger or a log line stays readable.
* `str(x)`, `print(x)` and IPython's terminal display (`_repr_pretty_`) give the terminal text
  that `bptrace run` / `explain` / `check` print, without colour codes.
* rich (`rich.print(x)`, `console.print(x)`) gets the same text in colour (`__rich__`).
* Jupyter gets static HTML (`_repr_html_`): inline CSS whose every selector sits under a
  wrapper `div` with a class of its own, so that it styles nothing else on the page, and no
  JavaScript (an untrusted notebook runs none).

Nothing here computes: each object hands over a rich renderable and an HTML body made by the
renderers in `bptrace/render/`.
"""
from __future__ import annotations

import io
import re
import secrets

DEFAULT_WIDTH = 100


class Shown:
    """Mixin: a class gives `_renderable(width)` (rich) and `_html_body(scope)` (HTML)
    plus `_short()` (the one-line repr); this gives every way of showing it."""

    def _short(self) -> str:                      # pragma: no cover - each class has its own
        return f"<{type(self).__name__}>"

    def _renderable(self, width: int):            # pragma: no cover
        raise NotImplementedError

    def _html_body(self, scope: str) -> str:      # pragma: no cover
        raise NotImplementedError

    def __repr__(self) -> str:
        return self._short()

    def to_text(self, width: int = DEFAULT_WIDTH) -> str:
        """The terminal text, `width` columns wide, without colour codes."""
        return plain_text(self._renderable(width), width)

    def __str__(self) -> str:
        return self.to_text(terminal_width())

    def __rich__(self):
        return self._renderable(terminal_width())

    def _repr_pretty_(self, printer, cycle: bool) -> None:
        printer.text(self._short() if cycle else self.to_text(terminal_width()).rstrip("\n"))

    def _repr_html_(self) -> str:
        scope = new_scope()
        return f'<div class="{scope}">{self._html_body(scope)}</div>'


def terminal_width() -> int:
    """The terminal's width (100 where there is none, as in a notebook kernel)."""
    import shutil

    return max(40, shutil.get_terminal_size((DEFAULT_WIDTH, 24)).columns)


def plain_text(renderable, width: int) -> str:
    """A rich renderable as plain text, as `bptrace run ... -o FILE` writes it.  (Not through
    the CLI's console: inside Jupyter a rich console would display what it prints instead of
    writing it to the buffer.)"""
    from rich.console import Console

    buffer = io.StringIO()
    Console(width=width, file=buffer, no_color=True, color_system=None, highlight=False, soft_wrap=False,
            force_jupyter=False).print(renderable, crop=False)
    return buffer.getvalue()


def new_scope() -> str:
    """A class name for one displayed object: its CSS applies under it and nowhere else."""
    return f"bptrace-{secrets.token_hex(4)}"


def rich_html(renderable, scope: str, width: int = DEFAULT_WIDTH) -> str:
    """A rich renderable as a `<pre>` whose colours are inline `style` attributes: the
    terminal text, coloured as in a terminal, for the objects that have no HTML renderer of
    their own (explanations, check reports)."""
    from rich.console import Console

    console = Console(record=True, file=io.StringIO(), width=width, force_terminal=True,
                      color_system="truecolor", highlight=False, soft_wrap=False, force_jupyter=False)
    console.print(renderable, crop=False)
    pre = ('<pre style="font-family: \'DejaVu Sans Mono\', Menlo, Consolas, monospace; font-size: 12.5px; '
           'line-height: 1.35; color: #1d232a; background: #fff; padding: 8px; margin: 0; '
           'overflow-x: auto; white-space: pre">{code}</pre>')
    return console.export_html(inline_styles=True, code_format=pre)


# --- scoping the HTML page's stylesheet ----------------------------------------------------

_PAGE_SELECTORS = (":root", "html", "body", "main")
_RULE = re.compile(r"\s*([^{}]+?)\s*\{")


def scoped_css(css: str, scope: str) -> str:
    """The page stylesheet with every selector put under `.scope`: what styled the page
    (`:root`, `body`, `main`) styles the wrapper, the rest only what is inside it."""
    out, at = [], 0
    while True:
        found = _RULE.match(css, at)
        if not found:
            break
        head, start = found.group(1), found.end()
        if head.startswith("@"):
            depth, end = 1, start
            while depth:
                depth += {"{": 1, "}": -1}.get(css[end], 0)
                end += 1
            out.append(f"{head} {{ {scoped_css(css[start:end - 1], scope)} }}")
        else:
            end = css.index("}", start) + 1
            selectors = ", ".join(_scoped_selector(s.strip(), scope) for s in head.split(","))
            out.append(f"{selectors} {{{css[start:end - 1]}}}")
        at = end
    return "\n".join(out)


def _scoped_selector(selector: str, scope: str) -> str:
    first, _, rest = selector.partition(" ")
    if first in _PAGE_SELECTORS:
        return f".{scope} {rest}" if rest else f".{scope}"
    return f".{scope} {selector}"
