"""The one error type the library raises for bad input.

A `ScenarioError` says where the mistake is (file, line, column, key path) and what was
expected; the CLI turns it into a message and exit status 2.  Nothing in the library prints
or exits.
"""
from __future__ import annotations


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
        head = self.where()
        text = f"{head}: " if head else ""
        if self.key:
            text += f"{self.key}: "
        text += self.message
        if self.hint:
            text += f" ({self.hint})"
        if self.snippet:
            text += "\n" + self.snippet
        return text


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
