"""Read a YAML (or JSON) document into plain Python data while remembering where every
value stood in the file.

PyYAML's `safe_load` is not enough for hand-written scenario files: it silently keeps the
last of two duplicate keys, expands aliases (a "billion laughs" file takes forever), and
forgets line numbers, so a later validation error could not say where the mistake is.
Here we compose the node tree ourselves and build the data from it, refusing aliases,
duplicate keys and any tag that is not a plain scalar, sequence or mapping.  PyYAML's own
syntax messages ("expected <block end>, but found '<block sequence start>'") are turned
into words a student can act on.
"""
from __future__ import annotations

import functools
import math
import re
import sys
from dataclasses import dataclass, field

from .errors import ScenarioError

Path = tuple  # key path: ("layers", 2, "kernel")

# Deeper than any tensor a scenario holds ([N][C][H][W] inside a mapping inside a list);
# also keeps the recursive readers far from Python's recursion limit.
MAX_DEPTH = 32

# A snippet line longer than this is cut to a window around the caret.
SNIPPET_WIDTH = 100

_YAML = "tag:yaml.org,2002:"
_SCALAR_TAGS = {_YAML + t for t in ("null", "bool", "int", "float", "str")}

# Numbers are read as YAML 1.2 and JSON read them, not as PyYAML's YAML 1.1: there `1e-3`,
# `1.5e3` and `-.5` are text (a student would be told "write numbers without quotes" about
# numbers without quotes), `010` is octal 8 and `1:30` is base 60, 90.  The forms on which the
# two versions disagree are refused (`_YAML11_NUMBER`): whoever wrote `010` meant 10 or 0.10,
# whoever wrote `1:30` a time or a ratio, and no reading of ours can know which.  `_` between
# digits (`1_000`) stays allowed, as YAML 1.1 has it.
_INT = re.compile(r"^(?:[-+]?(?:0|[1-9][0-9_]*)|0x[0-9a-fA-F_]+)$")
_YAML11_NUMBER = re.compile(r"^[-+]?(?:0[0-9_]+|[0-9][0-9_]*(?::[0-5]?[0-9])+(?:\.[0-9_]*)?)$")
_FLOAT = re.compile(r"^(?:[-+]?(?:\.[0-9][0-9_]*|[0-9][0-9_]*(?:\.[0-9_]*)?)(?:[eE][-+]?[0-9]+)?"
                    r"|[-+]?\.(?:inf|Inf|INF)|\.(?:nan|NaN|NAN))$")
_YAML11_TAG = "tag:bptrace:yaml-1.1-number"

# A scenario or an answer sheet is a few kilobytes; a `run --format json` export of a
# million numbers is 20 MB (and takes ten seconds to read).  Anything beyond this is not a
# file bptrace wrote or a person typed: refused before it is read into memory.
MAX_FILE_BYTES = 64 * 1024 * 1024


def format_path(path: Path) -> str:
    text = ""
    for part in path:
        if isinstance(part, int):
            text += f"[{part}]"
        else:
            text += ("." if text else "") + str(part)
    return text


def parse_path(key: str) -> Path:
    """The inverse of `format_path` for plain keys ("loss.type", "layers[2].kernel"), used to
    place errors raised where the document is not at hand (the engine, the losses)."""
    parts = []
    for word, index in re.findall(r"([^.\[\]]+)|\[(\d+)\]", key):
        parts.append(int(index) if index else word)
    return tuple(parts)


def short_tag(tag: str) -> str:
    return "!!" + tag[len(_YAML):] if tag.startswith(_YAML) else tag


@dataclass
class Document:
    """Plain data plus, for every key path, where it stood and (for scalars) its text."""
    data: object
    file: str | None = None
    lines: list[str] = field(default_factory=list)
    marks: dict = field(default_factory=dict)   # path -> (line, column) of the value (of the key, for lists and mappings)
    keys: dict = field(default_factory=dict)    # path -> (line, column) of the key itself
    raw: dict = field(default_factory=dict)     # path -> scalar text as written
    letters: object = None                      # `arithmetic: symbolic`: the scenario's letters (symbolic.Letters)

    def mark(self, path: Path, at_key: bool = False):
        """The location of `path`, or of its nearest ancestor that has one."""
        path = tuple(path)
        if at_key and path in self.keys:
            return self.keys[path]
        while path and path not in self.marks:
            path = path[:-1]
        return self.marks.get(path, (None, None))

    def error(self, path: Path, message: str, hint: str | None = None, *, at_key: bool = False) -> ScenarioError:
        """A located error about the value at `path` (or about its key, for `expected` and
        `given` keys that name a trace value)."""
        line, column = self.mark(path, at_key)
        return ScenarioError(message, file=self.file, line=line, column=column,
                             key=format_path(path) or None, hint=hint,
                             snippet=self.snippet(line, column))

    def locate(self, error: ScenarioError) -> ScenarioError:
        """Fill in the file, line and snippet of an error raised by code that only knew
        its key path (a loss that finds an output outside (0, 1), an overflow)."""
        if error.line is None and error.key:
            line, column = self.mark(parse_path(error.key))
            error.located(line=line, column=column, snippet=self.snippet(line, column))
        return error.located(file=self.file)

    def snippet(self, line, column) -> str | None:
        if not line or line > len(self.lines):
            return None
        text = self.lines[line - 1].rstrip("\r\n").expandtabs(1)  # a tab is one column, as YAML counts
        column = max(column or 1, 1)
        if len(text) > SNIPPET_WIDTH:
            start = max(0, min(column - SNIPPET_WIDTH // 2, len(text) - SNIPPET_WIDTH))
            text = ("…" if start else "") + text[start:start + SNIPPET_WIDTH] + \
                   ("…" if start + SNIPPET_WIDTH < len(text) else "")
            column = column - start + (1 if start else 0)
        return f"  {line:>4} | {text}\n       | {' ' * (column - 1)}^"


class _Refused(Exception):
    """Raised while composing, before the document exists: turned into a located error."""
    def __init__(self, mark, message, hint):
        super().__init__(message)
        self.mark, self.message, self.hint = mark, message, hint


@functools.lru_cache(maxsize=None)
def _loaders() -> tuple:
    """YAML loaders to try in order: libyaml's parser when PyYAML has it (ten times faster),
    then PyYAML's own, whose error messages `_syntax_error` knows how to reword.  Both
    compose nodes here, refusing aliases before anything is expanded."""
    import yaml
    from yaml.composer import Composer
    from yaml.constructor import SafeConstructor
    from yaml.events import AliasEvent
    from yaml.resolver import Resolver

    class Composing(Composer):
        depth = 0

        def compose_node(self, parent, index):
            if self.check_event(AliasEvent):
                raise _Refused(self.peek_event().start_mark, "YAML aliases (*name) are not allowed in a scenario",
                               "write the values out in full")
            if self.depth >= MAX_DEPTH:
                # the composer recurses once a level: stop long before Python's recursion limit
                raise _Refused(self.peek_event().start_mark, f"nested more than {MAX_DEPTH} levels deep",
                               "a scenario's deepest value is a tensor [N][C][H][W]")
            self.depth += 1
            try:
                return Composer.compose_node(self, parent, index)
            finally:
                self.depth -= 1

    class PureLoader(Composing, yaml.SafeLoader):
        pass

    loaders = [PureLoader]
    try:
        from yaml._yaml import CParser
    except ImportError:
        pass
    else:
        class FastLoader(Composing, CParser, SafeConstructor, Resolver):
            def __init__(self, stream):
                CParser.__init__(self, stream)
                Composer.__init__(self)
                SafeConstructor.__init__(self)
                Resolver.__init__(self)

        loaders.insert(0, FastLoader)
    for loader in loaders:
        numeric = (_YAML + "int", _YAML + "float")
        loader.yaml_implicit_resolvers = {
            first: [(tag, rx) for tag, rx in resolvers if tag not in numeric]
            for first, resolvers in Resolver.yaml_implicit_resolvers.items()}
        # tried in this order: a whole number, then a form the YAML versions disagree on
        loader.add_implicit_resolver(_YAML + "int", _INT, list("-+0123456789"))
        loader.add_implicit_resolver(_YAML11_TAG, _YAML11_NUMBER, list("-+0123456789"))
        loader.add_implicit_resolver(_YAML + "float", _FLOAT, list("-+.0123456789"))
    return tuple(loaders)


def parse_text(text: str, file: str | None = None) -> Document:
    import yaml

    doc = Document(data=None, file=file, lines=text.splitlines())

    def located(line, column, message, hint=None, key=None):
        return ScenarioError(message, file=file, line=line, column=column, hint=hint, key=key,
                             snippet=doc.snippet(line, column))

    def at(mark, message, hint=None, key=None):
        return located(mark.line + 1, mark.column + 1, message, hint, key)

    loaders = _loaders()
    for attempt, cls in enumerate(loaders):
        loader = None
        try:
            loader = cls(text)   # PyYAML's reader refuses control characters here already
            root = loader.get_single_node()
            break
        except _Refused as refused:
            loader.dispose()
            raise at(refused.mark, refused.message, refused.hint) from None
        except yaml.YAMLError as exc:
            if loader is not None:
                loader.dispose()
            if attempt + 1 < len(loaders):
                continue      # the next loader words the same mistake in the way we read
            raise _read_error(exc, text, file, at, located) from None

    def build(node, path):
        doc.marks[path] = (node.start_mark.line + 1, node.start_mark.column + 1)
        if isinstance(node, yaml.MappingNode):
            if node.tag != _YAML + "map":
                raise doc.error(path, f"the tag {short_tag(node.tag)} is not allowed", "write a plain mapping")
            out = {}
            for key_node, value_node in node.value:
                if key_node.tag == _YAML + "merge":
                    raise at(key_node.start_mark, "YAML merge keys (<<) are not allowed in a scenario",
                             "write the keys out in full")
                if not isinstance(key_node, yaml.ScalarNode) or key_node.tag not in _SCALAR_TAGS:
                    raise at(key_node.start_mark, "a key must be a plain word such as `input`",
                             key=format_path(path) or None)
                key = whole_characters(key_node.value,
                                       lambda message: at(key_node.start_mark, message, key=format_path(path) or None))
                key_path = path + (key,)
                key_mark = (key_node.start_mark.line + 1, key_node.start_mark.column + 1)
                if key in out:
                    first = doc.keys[key_path][0]
                    raise located(*key_mark, f"duplicate key '{key}' (first written on line {first})",
                                  "each key may appear once; remove one", key=format_path(key_path))
                doc.keys[key_path] = key_mark
                out[key] = build(value_node, key_path)
                if not isinstance(value_node, yaml.ScalarNode):
                    # errors about a list or mapping point at its key, not at its opening bracket
                    doc.marks[key_path] = key_mark
            return out
        if isinstance(node, yaml.SequenceNode):
            if node.tag != _YAML + "seq":
                raise doc.error(path, f"the tag {short_tag(node.tag)} is not allowed", "write a plain list")
            return [build(item, path + (i,)) for i, item in enumerate(node.value)]
        if node.tag == _YAML + "timestamp":
            raise doc.error(path, f"'{node.value}' reads as a date in YAML, which a scenario has no use for",
                            "put it in quotes if it is text")
        if node.tag == _YAML11_TAG:
            raise doc.error(path, *_yaml11_number(node.value))
        if node.tag not in _SCALAR_TAGS:
            raise doc.error(path, f"the tag {short_tag(node.tag)} is not allowed",
                            "only plain numbers, words, lists and mappings may be written")
        value = loader.construct_object(node, deep=True)
        if isinstance(value, str):
            value = whole_characters(value, lambda message: doc.error(path, message))
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            if not _finite(value):
                raise doc.error(path, f"'{_brief(node.value)}' is not a finite number",
                                "every number must be finite: no .nan or .inf, nothing beyond ±1.8e308")
            doc.raw[path] = node.value
        return value

    try:
        if root is None:
            raise ScenarioError("the file is empty (or holds only comments)", file=file,
                                hint="start from `bptrace new`")
        doc.data = build(root, ())
    finally:
        loader.dispose()
    return doc


def _read_error(exc, text, file, at, located) -> ScenarioError:
    import yaml

    if isinstance(exc, yaml.MarkedYAMLError):
        return _syntax_error(exc, at)
    if isinstance(exc, yaml.reader.ReaderError):
        line = text.count("\n", 0, exc.position) + 1
        column = exc.position - (text.rfind("\n", 0, exc.position) + 1) + 1
        code = exc.character if isinstance(exc.character, int) else ord(exc.character[:1] or "\0")
        return located(line, column, f"the control character {code:#04x} is not allowed in a YAML file",
                       "delete it, or retype the line")
    return ScenarioError(f"YAML syntax error: {exc}", file=file)


def _yaml11_number(text: str) -> tuple:
    """The message and hint refusing a number YAML 1.1 and YAML 1.2 read differently."""
    if ":" in text:
        return (f"'{text}' is a base-60 number in YAML 1.1 (1:30 is 90) and text in YAML 1.2",
                "write the number itself; put it in quotes if it is text")
    sign, digits = (text[0], text[1:]) if text[0] in "+-" else ("", text)
    plain = digits.replace("_", "").lstrip("0") or "0"
    return (f"'{text}' starts with a zero: YAML 1.1 reads it as an octal number, YAML 1.2 as decimal",
            f"write {sign}{plain}, or {sign}0.{digits.replace('_', '')[1:]} if you meant a fraction")


def whole_characters(text: str, refuse) -> str:
    """Text with each UTF-16 surrogate pair joined into its character.

    A JSON file may spell a character beyond U+FFFF as two escapes (`"\\ud835\\udc65"` is
    what `json.dumps` writes for 𝑥) and the YAML reader decodes them one by one; left
    apart, they cannot be printed or written as UTF-8.  A lone half is refused with
    `refuse(message)`, which returns the error to raise."""
    if not any("\ud800" <= char <= "\udfff" for char in text):
        return text
    try:
        return text.encode("utf-16-le", "surrogatepass").decode("utf-16-le")
    except UnicodeDecodeError:
        lone = next(char for char in text if "\ud800" <= char <= "\udfff")
        raise refuse(f"the escape \\u{ord(lone):04x} is half of a character (a lone UTF-16 surrogate)") from None


def _brief(text: str, width: int = 24) -> str:
    return text if len(text) <= width else text[:width - 1] + "…"


def _finite(value) -> bool:
    if isinstance(value, int):
        return abs(value) <= sys.float_info.max   # a longer integer has no float value
    return math.isfinite(value)


_TOKEN_WORDS = {"'<scalar>'": "text", "'<stream end>'": "the end of the file", "'-'": "a '-' list entry",
                "'<block mapping start>'": "a key", "'<block sequence start>'": "a '-' list entry"}


def _syntax_error(exc, at) -> ScenarioError:
    """PyYAML's parser messages in words: what is wrong, where, and what to do."""
    context, problem = exc.context or "", exc.problem or ""
    start, stop = exc.context_mark, exc.problem_mark
    found = problem.rsplit("but found ", 1)[-1] if "but found " in problem else \
        problem.rsplit("but got ", 1)[-1] if "but got " in problem else None
    found_words = _TOKEN_WORDS.get(found, found)

    if "flow sequence" in context or "flow mapping" in context:
        kind, close = ("list", "]") if "sequence" in context else ("mapping", "}")
        if stop.line != start.line or found == "'<stream end>'":
            opening = "[" if close == "]" else "{"
            return at(start, f"YAML syntax error: the {kind} opened here with '{opening}' misses a ',' between "
                             f"two entries or its closing '{close}' (YAML stopped at line {stop.line + 1}, "
                             f"column {stop.column + 1})")
        hint = "is a comma missing between two entries?"
        if kind == "mapping" and found == "'['":
            # an element's name inside { } (c1.grad.kernel[0,1]: ...): '[' there opens a list
            hint = ("a key with an index inside { } needs quotes, as in {'c1.grad.kernel[0,1]': 0.09}; "
                    "or write the keys one per line")
        return at(stop, f"YAML syntax error: expected ',' or '{close}' here, in the {kind} opened at column "
                        f"{start.column + 1}, found {found_words}", hint)
    if "'\\t'" in problem:
        return at(stop, "YAML syntax error: a tab character; YAML is indented with spaces only",
                  "use spaces, not tabs, to indent")
    if "that cannot start any token" in problem:
        char = problem.split("'")[1] if "'" in problem else "this character"
        return at(stop, f"YAML syntax error: a value cannot start with '{char}'", "put the value in quotes")
    if "quoted scalar" in context:
        return at(start, "YAML syntax error: the quoted text that starts here is never closed",
                  "add the closing quote")
    if "mapping values are not allowed" in problem:
        return at(stop, "YAML syntax error: unexpected ':' (bad indentation, or a value with ': ' in it)",
                  "indent a key like the keys beside it; put a value that contains ': ' in quotes")
    if "simple key" in context and "could not find expected ':'" in problem:
        return at(start, "YAML syntax error: this line is neither `key: value` nor a `- ` list entry",
                  "add the ':' after the key, or join it to the line above")
    if "single document" in context:
        return at(stop, "YAML syntax error: the file holds several YAML documents; a second one starts here",
                  "a scenario is one document: delete this `---` line and what follows, or make it a file of its own")
    if "block" in context and "expected <block end>" in problem:
        kind = "mapping" if "mapping" in context else "list"
        if found in ("'<block sequence start>'", "'<block mapping start>'", "'-'") or stop.line != start.line \
                and found == "'<scalar>'" and stop.column != start.column:
            return at(stop, f"YAML syntax error: bad indentation: this line does not line up with the {kind} "
                            f"that starts on line {start.line + 1}, column {start.column + 1}",
                      "entries of one list or mapping start in the same column")
        return at(stop, f"YAML syntax error: unexpected {found_words} here, after a complete value",
                  "check the brackets and quotes on this line")
    text = f"{context}: {problem}" if context and problem else problem or context or "invalid YAML"
    mark = stop or start
    if mark is None:
        return ScenarioError(f"YAML syntax error: {text}")
    return at(mark, f"YAML syntax error: {text}")


def read_regular_file(path, *, limit: int | None = None, what: str = "a scenario file") -> bytes:
    """The bytes of the regular file `path`, or a ScenarioError saying why not: no such file
    (with the closest name beside it), a link to nothing, a directory, a device or a pipe
    (`/dev/zero` never ends, a named pipe without a writer never starts), more than `limit`
    bytes.  Every reader of a user's file goes through here: scenarios, answer sheets,
    `.npz` archives."""
    import os
    import stat

    name = str(path)
    limit = MAX_FILE_BYTES if limit is None else limit
    try:
        # O_NONBLOCK: opening a named pipe would wait for a writer; on a regular file it does nothing
        fd = os.open(name, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
    except FileNotFoundError:
        if os.path.islink(name):
            raise ScenarioError(f"this is a symbolic link to '{os.readlink(name)}', which does not exist",
                                file=name) from None
        raise ScenarioError("no such file", file=name, hint=_closest_file(name)) from None
    except IsADirectoryError:
        raise _directory(name, what) from None
    except OSError as exc:
        raise ScenarioError(f"cannot read the file: {exc.strerror}", file=name) from None
    try:
        mode = os.fstat(fd).st_mode
        if stat.S_ISDIR(mode):
            raise _directory(name, what)
        if not stat.S_ISREG(mode):
            kind = "a named pipe" if stat.S_ISFIFO(mode) else "a socket" if stat.S_ISSOCK(mode) else "a device"
            raise ScenarioError(f"this is {kind}, not a regular file", file=name,
                                hint="bptrace reads only regular files: save it to one first")
        with os.fdopen(fd, "rb") as fh:
            fd = None
            blob = fh.read(limit + 1)
    except OSError as exc:
        raise ScenarioError(f"cannot read the file: {exc.strerror}", file=name) from None
    finally:
        if fd is not None:
            os.close(fd)
    if len(blob) > limit:
        size = f"{limit // 2 ** 20} MB" if limit >= 2 ** 20 else f"{limit:,} bytes"
        raise ScenarioError(f"the file is larger than {size}, far more than {what} holds", file=name)
    return blob


def _directory(name: str, what: str) -> ScenarioError:
    return ScenarioError(f"this is a directory, not {what}", file=name, hint="name a .yaml file in it")


def _closest_file(name: str) -> str | None:
    """"did you mean ...?" for a missing file: the closest name in its folder, never itself."""
    import difflib
    import os

    folder = os.path.dirname(name) or "."
    if not os.path.isdir(folder):
        return None
    # compare the names without their endings, or every .yaml file looks close
    by_stem = {}
    readable = [".yaml", ".yml", ".json", ".npz"]       # in the order a suggestion prefers them

    def preference(entry):
        ext = os.path.splitext(entry)[1]
        return (readable.index(ext) if ext in readable else len(readable), entry)

    for entry in sorted(os.listdir(folder), key=preference):
        if entry != os.path.basename(name):
            by_stem.setdefault(os.path.splitext(entry)[0], entry)
    stem = os.path.splitext(os.path.basename(name))[0]
    close = difflib.get_close_matches(stem, list(by_stem), n=1, cutoff=0.6)
    return f"did you mean '{by_stem[close[0]]}'?" if close else None


def read_document(path, what: str = "a scenario file") -> Document:
    """Read a scenario or answer file, turning every way it can fail into a ScenarioError."""
    name = str(path)
    blob = read_regular_file(name, what=what)
    if blob.startswith((b"\xff\xfe", b"\xfe\xff")):
        raise ScenarioError("the file is UTF-16 text; bptrace reads UTF-8", file=name,
                            hint="save it as UTF-8")
    if b"\0" in blob:
        # named as what the caller reads: a student's PDF under an answer file's name is no scenario
        noun = "a YAML scenario" if what == "a scenario file" else f"{what} (YAML or JSON text)"
        raise ScenarioError(f"this is a binary file, not {noun}", file=name)
    try:
        text = blob.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = blob[:exc.start].count(b"\n") + 1
        column = exc.start - (blob.rfind(b"\n", 0, exc.start) + 1) + 1
        raise ScenarioError(f"the file is not UTF-8 text (byte 0x{blob[exc.start]:02x})",
                            file=name, line=line, column=column, hint="save it as UTF-8") from None
    return parse_text(text, name)
