"""Renderers: each turns a `Trace` (plain data) into text, a rich renderable or a
document.  They format; they never compute."""
