"""Read a YAML (or JSON) document into plain Python data while remembering where every
value stood in the file.

PyYAML's `safe_load` is not enough for hand-written scenario files: it silently keeps the
last of two duplicate keys, expands aliases (a "billion laughs" file takes forever), and
forgets line numbers, so a later validation error could not say where the mistake is.
Here we compose the node tree ourselves and build the data from it, refusing aliases,
duplicate keys and any tag that is not a plain scalar, sequence or mapping.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

from .errors import ScenarioError

Path = tuple  # key path: ("layers", 2, "kernel")


def format_path(path: Path) -> str:
    text = ""
    for part in path:
        if isinstance(part, int):
            text += f"[{part}]"
        else:
            text += ("." if text else "") + str(part)
    return text


@dataclass
class Document:
    """Plain data plus, for every key path, where it stood and (for scalars) its text."""
    data: object
    file: str | None = None
    lines: list[str] = field(default_factory=list)
    marks: dict = field(default_factory=dict)   # path -> (line, column), both 1-based
    raw: dict = field(default_factory=dict)     # path -> scalar text as written

    def mark(self, path: Path):
        """The location of `path`, or of its nearest ancestor that has one."""
        path = tuple(path)
        while path and path not in self.marks:
            path = path[:-1]
        return self.marks.get(path, (None, None))

    def error(self, path: Path, message: str, hint: str | None = None) -> ScenarioError:
        line, column = self.mark(path)
        return ScenarioError(message, file=self.file, line=line, column=column,
                             key=format_path(path) or None, hint=hint,
                             snippet=self.snippet(line, column))

    def snippet(self, line, column) -> str | None:
        if not line or line > len(self.lines):
            return None
        text = self.lines[line - 1].rstrip("\n").expandtabs(1)
        caret = " " * max((column or 1) - 1, 0) + "^"
        return f"  {line:>4} | {text}\n       | {caret}"


_SCALAR_TAGS = {
    "tag:yaml.org,2002:null", "tag:yaml.org,2002:bool", "tag:yaml.org,2002:int",
    "tag:yaml.org,2002:float", "tag:yaml.org,2002:str",
}


def parse_text(text: str, file: str | None = None) -> Document:
    import yaml
    from yaml.composer import Composer
    from yaml.events import AliasEvent

    doc = Document(data=None, file=file, lines=text.splitlines())

    class Loader(yaml.SafeLoader):
        def compose_node(self, parent, index):
            if self.check_event(AliasEvent):
                event = self.peek_event()
                raise doc_error(event.start_mark, "YAML aliases (*name) are not allowed in a scenario",
                                "write the values out in full")
            return Composer.compose_node(self, parent, index)

    def doc_error(mark, message, hint=None):
        line, column = mark.line + 1, mark.column + 1
        return ScenarioError(message, file=file, line=line, column=column, hint=hint,
                             snippet=doc.snippet(line, column))

    loader = Loader(text)
    try:
        root = loader.get_single_node()
    except ScenarioError:
        raise
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        problem = exc.problem or exc.context or "invalid YAML"
        if "\t" in text and "tab" in str(problem):
            problem += "; use spaces, not tabs, to indent"
        raise doc_error(mark, f"YAML syntax error: {problem}") if mark else \
            ScenarioError(f"YAML syntax error: {problem}", file=file)
    except yaml.YAMLError as exc:
        raise ScenarioError(f"YAML syntax error: {exc}", file=file)
    finally:
        loader.dispose()

    def build(node, path):
        doc.marks[path] = (node.start_mark.line + 1, node.start_mark.column + 1)
        if isinstance(node, yaml.MappingNode):
            if node.tag != "tag:yaml.org,2002:map":
                raise doc.error(path, f"the tag {node.tag} is not allowed", "write a plain mapping")
            out = {}
            for key_node, value_node in node.value:
                if not isinstance(key_node, yaml.ScalarNode):
                    raise doc_error(key_node.start_mark, "a key must be a plain word")
                if key_node.tag == "tag:yaml.org,2002:merge":
                    raise doc_error(key_node.start_mark, "YAML merge keys (<<) are not allowed")
                key = key_node.value
                key_path = path + (key,)
                key_mark = (key_node.start_mark.line + 1, key_node.start_mark.column + 1)
                if key in out:
                    first = doc.marks[key_path][0]
                    raise doc_error(key_node.start_mark,
                                    f"{format_path(key_path)}: duplicate key '{key}' (first written on line {first})",
                                    "each key may appear once; remove one")
                out[key] = build(value_node, key_path)
                if not isinstance(value_node, yaml.ScalarNode):
                    # errors about a list or mapping point at its key, not at its opening bracket
                    doc.marks[key_path] = key_mark
            return out
        if isinstance(node, yaml.SequenceNode):
            if node.tag != "tag:yaml.org,2002:seq":
                raise doc.error(path, f"the tag {node.tag} is not allowed", "write a plain list")
            return [build(item, path + (i,)) for i, item in enumerate(node.value)]
        if node.tag not in _SCALAR_TAGS:
            raise doc.error(path, f"the tag {node.tag} is not allowed",
                            "only plain numbers, words, lists and mappings may be written")
        value = loader.construct_object(node, deep=True)
        if isinstance(value, float) and not math.isfinite(value):
            raise doc.error(path, f"'{node.value}' is not a finite number",
                            "every number must be finite (no .nan, .inf, or values beyond ±1.8e308)")
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            doc.raw[path] = node.value
        return value

    if root is None:
        raise ScenarioError("the file is empty", file=file, hint="start from `bptrace new`")
    doc.data = build(root, ())
    return doc


def read_document(path) -> Document:
    """Read a scenario or answer file, turning every way it can fail into a ScenarioError."""
    import os

    name = str(path)
    if not os.path.exists(name):
        raise ScenarioError("no such file", file=name)
    if os.path.isdir(name):
        raise ScenarioError("this is a directory, not a scenario file", file=name)
    try:
        with open(name, "rb") as fh:
            blob = fh.read()
    except OSError as exc:
        raise ScenarioError(f"cannot read the file: {exc.strerror}", file=name)
    if b"\0" in blob:
        raise ScenarioError("this is a binary file, not a YAML scenario", file=name)
    try:
        text = blob.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = blob[:exc.start].count(b"\n") + 1
        raise ScenarioError(f"the file is not UTF-8 text (byte 0x{blob[exc.start]:02x})",
                            file=name, line=line, hint="save it as UTF-8")
    return parse_text(text, name)
