"""The one error type the library raises for bad input.

A `ScenarioError` says where the mistake is (file, line, column, key path) and what was
expected; the CLI turns it into a message and exit status 2.  Nothing in the library prints
or exits.
"""
from __future__ import annotations

import re


class ScenarioError(Exception):
    def __init__(self, message: str, *, file: str | None = None, line: int | None = None,
                 column: int | None = None, key: str | None = None, hint: str | None = None,
                 snippet: str | None = None):
        super().__init__(message)
        self.message = message
        self.file = file
        self.line = line          # 1-based
        self.column = column      # 1-based
        self.key = key            # key path, e.g. "layers[2].kernel"
        self.hint = hint          # "did you mean 'kernel'?"
        self.snippet = snippet    # the offending source line with a caret under it

    def located(self, *, file=None, line=None, column=None, key=None, snippet=None) -> "ScenarioError":
        """Fill in whatever location parts are still unknown (inner code knows the key,
        outer code knows the file)."""
        self.file = self.file or file
        self.line = self.line or line
        self.column = self.column or column
        self.key = self.key or key
        self.snippet = self.snippet or snippet
        return self

    def where(self) -> str:
        parts = []
        if self.file:
            parts.append(self.file)
        if self.line:
            parts.append(str(self.line))
            if self.column:
                parts.append(str(self.column))
        return ":".join(parts)

    def __str__(self) -> str:
        # every part may quote the user's text (a key, a value, a file name): shown, never obeyed
        head = visible(self.where())
        text = f"{head}: " if head else ""
        if self.key:
            text += f"{visible(self.key)}: "
        text += visible(self.message)
        if self.hint:
            text += f" ({visible(self.hint)})"
        if self.snippet:
            text += "\n" + visible(self.snippet)
        return text


# Characters that steer a terminal or a reader instead of showing: C0 and C1 controls (ESC
# starts the sequences that recolour, retitle or rewrite a terminal), DEL, the line and
# paragraph separators, and the bidirectional overrides that reorder what is displayed.
_STEERING = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u2028\u2029\u200e\u200f\u202a-\u202e\u2066-\u2069]")


def visible(text: str) -> str:
    """User text quoted in a message, with each steering character written as its escape
    (`\\x1b`, `\\u202e`): the reader sees what is in the file, the terminal obeys nothing.
    Line breaks and tabs stay."""
    return _STEERING.sub(lambda m: f"\\x{ord(m.group()):02x}" if ord(m.group()) < 0x100
                         else f"\\u{ord(m.group()):04x}", text)


def plain_text(text: str) -> str:
    """A scenario's name or description as one line of prose: every run of white space and
    steering characters (line breaks and blank lines included) one space.  Done
    where the scenario is read, so that the trace and every format written from it (text,
    Markdown, LaTeX, HTML, JSON) hold the same clean text."""
    return " ".join(_STEERING.sub(" ", text).split())


def did_you_mean(word: str, choices) -> str | None:
    """A suggestion for a misspelt key or value, or None when nothing is close."""
    import difflib

    close = difflib.get_close_matches(str(word), [str(c) for c in choices], n=1, cutoff=0.6)
    return f"did you mean '{close[0]}'?" if close else None


def suggest(word, choices, label: str = "one of", *, limit: int = 16) -> str:
    """A suggestion when one is close, then the valid values, so that a reader never has
    to look them up: "did you mean 'maxpool'? one of: conv, maxpool, avgpool, ..." """
    choices = [str(c) for c in choices]
    listed = ", ".join(choices[:limit]) + (f", ... ({len(choices)} in all)" if len(choices) > limit else "")
    close = did_you_mean(word, choices)
    return f"{close} {label}: {listed}" if close else f"{label}: {listed}"
