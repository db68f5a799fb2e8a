"""Reading answers: a scenario's `expected:`, answer files (YAML, JSON, bptrace's own JSON
export, .npz archives) and directories of them, each answer's key checked against the trace."""
from __future__ import annotations

import io
import json
import math
import os
import zipfile
import zlib
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation

import numpy as np
from numpy.lib import format as npy

from ..errors import ScenarioError
from ..numbers import written_fraction
from ..scenario import Scenario, resolve
from ..source import Document, _brief, read_document, read_regular_file
from ..spec import kind_of, read_tensor
from ..tensors import describe_shape
from .matching import NPZ_MIN_LIMIT, Written

ANSWER_SUFFIXES = (".yaml", ".yml", ".json", ".npz")


@dataclass
class Answer:
    """One answer as written: a whole step (`index` None) or one element."""
    key: str
    name: str
    index: tuple | None          # canonical index of an element
    values: np.ndarray           # as written (written shape)
    written: list                # Written per number, in the order written (C order)
    path: tuple                  # where it stands in its document, for messages
    doc: Document


def _number(doc: Document, path: tuple, item, what: str, typed: bool) -> Written:
    """typed: the text is a person's (its decimals count), not a program's float."""
    if type(item) is _Text:
        value, text = float(item), str(item)       # a JSON number: json has read it as one
        if not math.isfinite(value):
            raise doc.error(path, f"{_brief(text)} is not a finite number")
    elif isinstance(item, bool) or not isinstance(item, (int, float, str)):
        raise doc.error(path, f"expected a number in {what}, found {kind_of(item)}")
    elif isinstance(item, str):
        # `1e-5` and JSON's `1e-05` are text to YAML 1.1; as answers they are numbers, and
        # so is a fraction, `3/8` or `-1/3`, taken as the exact number it names; a leading
        # `−` (U+2212) is the minus bptrace itself prints, so a number copied from its output
        item = "-" + item.strip()[1:] if item.strip().startswith("\u2212") else item
        fraction = written_fraction(item)
        try:
            value = float(fraction) if fraction is not None else \
                float(item.replace("_", "")) if item.strip() else math.nan
        except ValueError:
            value = math.nan
        if not math.isfinite(value):
            raise doc.error(path, f"expected a number in {what}, found the text '{item}'")
        text = item.strip()
    else:
        value, text = float(item), doc.raw.get(path, repr(item))
    if value == 0 and _nonzero(text):
        # as a number beyond ±1.8e308 is refused, not read as infinity
        raise doc.error(path, f"{_brief(text)} is too small for a float (it would be read as 0)",
                        "write 0, or a number of magnitude 5e-324 or more")
    return Written(value, text if typed else None)


def _nonzero(text: str) -> bool:
    try:
        return Decimal(text.replace("_", "").strip()) != 0
    except InvalidOperation:
        return False


def _numbers(doc: Document, path: tuple, value, what: str, typed: bool = True):
    """A number or a rectangular nested list → (array, [Written...] in C order)."""
    written = []

    def numbers(item, where):
        # each entry read as a number (YAML 1.1 leaves `1e-5` as text), then the whole held
        # to the rules of every tensor a scenario holds
        if isinstance(item, list):
            return [numbers(sub, where + (i,)) for i, sub in enumerate(item)]
        written.append(_number(doc, where, item, what, typed))
        return written[-1].value

    floats = numbers(value, tuple(path))
    try:
        # every entry is a float by now: numpy sees a rectangular list at once, and
        # `read_tensor` words what is wrong with any other
        values = np.array(floats, dtype=float)
    except ValueError:
        values = None
    if values is None or not values.size:
        values = read_tensor(doc, path, floats, what=what)
    return values, written


def _answers(scenario: Scenario, doc: Document, items, typed: bool = True) -> list[Answer]:
    """items: (key as written, value, key path) → answers, each key checked against the trace."""
    answers = []
    for key, value, path in items:
        name, index = resolve(scenario, doc, path, str(key))
        if scenario.in_letters:
            # formulas in the scenario's letters ("w11*x11 + w12*x12"), read by the number
            # system (symbolic.py: sympy is loaded only by a symbolic scenario)
            values, written = scenario.numbers.formula_answer(scenario, doc, path, value, f"the answer {key}")
        else:
            values, written = _numbers(doc, path, value, f"the answer {key}", typed)
        if index is not None and values.ndim != 0:
            raise doc.error(path, f"{key} is one element; write a single number")
        answers.append(Answer(str(key), name, index, values, written, path, doc))
    _refuse_overlaps(answers, doc)
    return answers


def _refuse_overlaps(answers, doc: Document):
    seen = {}
    for answer in answers:
        for other in seen.get(answer.name, []):
            if answer.index is None or other.index is None or other.index == answer.index:
                raise doc.error(answer.path, f"{answer.key} answers numbers {other.key} already answers",
                                "write each number once")
        seen.setdefault(answer.name, []).append(answer)


def scenario_answers(scenario: Scenario) -> list[Answer]:
    doc = scenario.document
    return _answers(scenario, doc, [(key, value, ("expected", key)) for key, value in scenario.expected.items()])


def read_answers(path, scenario: Scenario) -> list[Answer]:
    """An answer file: YAML or JSON (`{name: values}`, `{expected: {...}}`, or bptrace's own
    `run --format json` export, whose steps' values are taken), or an .npz of named arrays."""
    name = str(path)
    if os.path.isdir(name):
        raise ScenarioError("no answer files (" + ", ".join(ANSWER_SUFFIXES) + ") in this directory", file=name)
    if name.lower().endswith(".npz"):
        return _npz_answers(name, scenario)
    if name.lower().endswith(".json"):
        doc = _json_document(name)
        if doc is not None:
            try:
                return _sheet_answers(doc, scenario, name)
            except ScenarioError:
                pass          # said again below, located by line and column
    return _sheet_answers(read_document(name, what="an answer file"), scenario, name)


class _Text(str):
    """A JSON number kept as its text, as a YAML document keeps a number's text in `raw`:
    `_number` reads its value and its decimals from it."""


def _json_document(name: str) -> Document | None:
    """A .json sheet read by the json module, fifty times faster than the YAML reader for
    a class's sheets of thousands of numbers.  Only a file json reads cleanly (no duplicate
    key, NaN or infinity) comes back; any other, and any sheet whose answers are refused,
    goes through `read_document`, whose messages carry the line and column."""
    try:
        text = read_regular_file(name, what="an answer file").decode("utf-8-sig")
        data = json.loads(text, parse_float=_Text, parse_int=_Text, parse_constant=_refused,
                          object_pairs_hook=_unique)
    except (ScenarioError, ValueError, RecursionError):
        return None
    return Document(data=data, file=name)


def _refused(constant):
    raise ValueError(constant)


def _unique(pairs):
    out = dict(pairs)
    if len(out) != len(pairs):
        raise ValueError("duplicate key")
    return out


def _sheet_answers(doc: Document, scenario: Scenario, name: str) -> list[Answer]:
    data = doc.data
    if not isinstance(data, dict):
        raise doc.error((), "an answer file is a mapping of names to numbers, such as "
                            "`c1.grad.kernel: [[0.1, 0.2], [0.3, 0.4]]`")
    if "steps" in data and "bptrace" in data:
        steps = data["steps"]
        if not isinstance(steps, list):
            raise doc.error(("steps",), "`steps` of a bptrace export must be a list")
        items = []
        for i, step in enumerate(steps):
            if not isinstance(step, dict) or "name" not in step or "values" not in step:
                raise doc.error(("steps", i), "each step of a bptrace export has a `name` and `values`")
            items.append((step["name"], step["values"], ("steps", i, "values")))
        answers = _answers(scenario, doc, items, typed=False)
    elif "expected" in data:
        extra = [key for key in data if key != "expected"]
        if extra:
            raise doc.error((extra[0],), f"unknown key '{extra[0]}' beside `expected:` in an answer file",
                            "an answer file holds answers only; tolerance and rounding belong to the scenario")
        mapping = data["expected"]
        if not isinstance(mapping, dict):
            raise doc.error(("expected",), "`expected` must be a mapping of names to numbers")
        answers = _answers(scenario, doc, [(key, value, ("expected", key)) for key, value in mapping.items()])
    else:
        answers = _answers(scenario, doc, [(key, value, (key,)) for key, value in data.items()])
    if not answers:
        raise ScenarioError("the answer file has no answers", file=name)
    return answers


def _npz_answers(name: str, scenario: Scenario) -> list[Answer]:
    """numpy.savez's archive of NAME.npy members, each member's header held against its step
    before any of its data is read (a header may claim 10^11 numbers, a zip member may
    inflate to gigabytes)."""
    doc = Document(data=None, file=name)
    blob = read_regular_file(name, what="an answer file")
    if blob.startswith(b"\x93NUMPY"):
        raise ScenarioError("this is a single .npy array, not an .npz of named arrays", file=name,
                            hint="save with numpy.savez(path, **{'c1.grad.kernel': array, ...})")
    try:
        archive = zipfile.ZipFile(io.BytesIO(blob))
    except (ValueError, zipfile.BadZipFile) as exc:
        raise ScenarioError(f"cannot read this .npz: {exc}", file=name) from None
    answers = []
    with archive:
        for member in archive.infolist():
            key = member.filename.removesuffix(".npy")
            if key == member.filename:
                raise doc.error((key,), "this member is not a .npy array",
                                "an .npz holds NAME.npy arrays, as numpy.savez writes them")
            cell, index = resolve(scenario, doc, (key,), key)
            size = 1 if index is not None else math.prod(scenario.shapes[cell])
            try:
                with archive.open(member) as stream:
                    array = _npy_array(stream, doc, key, size, element=index is not None)
            except (OSError, EOFError, RuntimeError, NotImplementedError, zipfile.BadZipFile, zlib.error) as exc:
                raise doc.error((key,), f"cannot read this array: {exc}") from None
            values = array.astype(float)
            if not np.isfinite(values).all():
                raise doc.error((key,), "every number must be finite")
            if index is not None:
                values = values.reshape(())
            dtype = array.dtype.name if array.dtype.kind == "f" else None
            written = [Written(float(v), None, dtype) for v in values.reshape(-1)]
            answers.append(Answer(key, cell, index, values, written, (key,), doc))
    _refuse_overlaps(answers, doc)
    if not answers:
        raise ScenarioError("the .npz holds no arrays", file=name)
    return answers


def _npy_array(stream, doc: Document, key: str, size: int, element: bool) -> np.ndarray:
    """One .npy member: its header read and checked against the `size` numbers it answers
    (one for an element; for a step, at most NPZ_MIN_LIMIT or `size`, a wrong shape being
    reported as such), then exactly the bytes it declares."""
    try:
        version = npy.read_magic(stream)
        if version not in ((1, 0), (2, 0)):
            raise ValueError(f"unsupported .npy format version {version[0]}.{version[1]}")
        read_header = npy.read_array_header_1_0 if version == (1, 0) else npy.read_array_header_2_0
        shape, fortran_order, dtype = read_header(stream)
    except ValueError as exc:
        raise doc.error((key,), f"this member is not a .npy array ({exc})") from None
    if not all(type(length) is int and length >= 0 for length in shape):
        # numpy's header reader lets (-1,) and (True,) through: a negative count read the
        # whole member, however large it inflates
        raise doc.error((key,), f"this member is not a .npy array (its shape {shape} needs whole numbers of at least 0)")
    if dtype.kind not in "fiu" or dtype.fields is not None or dtype.subdtype is not None:
        raise doc.error((key,), f"expected numbers, found an array of {dtype}")
    count = math.prod(shape)
    if element and count != 1:
        raise doc.error((key,), f"{key} is one element; save a single number")
    if count > max(size, NPZ_MIN_LIMIT):
        raise doc.error((key,), f"the array's header declares {count} numbers; {key} has {size}")
    data = stream.read(count * dtype.itemsize)
    if len(data) != count * dtype.itemsize or stream.read(1):
        raise doc.error((key,), f"the array's data does not match its header ({describe_shape(shape)} of {dtype})")
    return np.frombuffer(data, dtype=dtype).reshape(shape, order="F" if fortran_order else "C")


def answer_files(paths) -> list[str]:
    """--expected arguments: files, or directories standing for the answer files in them."""
    files = []
    for path in paths:
        path = str(path)
        if os.path.isdir(path):
            found = sorted(os.path.join(path, entry) for entry in os.listdir(path)
                           if entry.lower().endswith(ANSWER_SUFFIXES) and not entry.startswith("."))
            files.extend(found or [path])      # an empty directory is reported as broken
        else:
            files.append(path)
    return files



SCENARIO_KEYS = ("layers", "input", "inputs")


def is_answer_sheet(path) -> bool:
    """An answer file rather than a scenario: an .npz, bptrace's JSON export, or a mapping
    with no network (`layers:`, `input:`) whose keys are answers (`expected:`, or names of
    traced steps such as `c1.grad.kernel`)."""
    name = str(path)
    if name.lower().endswith(".npz"):
        return True
    try:
        data = read_document(name, what="an answer file").data
    except ScenarioError:
        return False
    if not isinstance(data, dict) or not data or any(key in data for key in SCENARIO_KEYS):
        return False
    if "steps" in data and "bptrace" in data:
        return True
    keys = [key for key in data if key != "expected"]
    return all(isinstance(key, str) and ("." in key or "[" in key) for key in keys)
