"""`run --format latex`: the trace as a LaTeX document (or, with `fragment=True`, its body).

It needs only what every TeX installation has (Debian's texlive-latex-base): amsmath for
the `bmatrix` value tables and the displayed rules, amssymb for a few symbols, geometry for
the margins.  Everything from the trace is escaped: names and descriptions become text-mode
LaTeX, the rules become math.  Wide values are split into blocks of columns, so that no
matrix runs off the page; each block says which columns it holds.
"""
from __future__ import annotations

import re
import unicodedata

from . import document as doc
from .circuit import circuit_data, stages
from .common import number, sum_pieces

# the text width in points (A4, 2 cm margins), less the brackets, to fit a block's columns
LINE_POINTS = 440
MAX_COLUMNS = 16
SHORT_RULE = 78          # longer rules are typeset as a paragraph that can break lines

PREAMBLE = r"""\documentclass[10pt]{article}
\usepackage[a4paper,margin=2cm]{geometry}
\usepackage{amsmath,amssymb}
\setcounter{MaxMatrixCols}{40}
\setlength{\parindent}{0pt}
\setlength{\parskip}{0.5ex}
\allowdisplaybreaks
\begin{document}
"""

# characters outside ASCII, in text mode and in math mode
TEXT_CHARS = {
    "—": "---", "–": "--", "…": r"\dots{}", "’": "'", "‘": "`", "“": "``", "”": "''", "†": r"\dag{}",
    "°": r"\ensuremath{^\circ}", " ": "~", "✓": r"\ensuremath{\checkmark}", "✗": r"\ensuremath{\times}",
}
MATH_CHARS = {
    "Σ": r"\sum ", "·": r"\cdot ", "⊙": r"\odot ", "×": r"\times ", "−": "-", "±": r"\pm ",
    "≤": r"\le ", "≥": r"\ge ", "≠": r"\ne ", "≈": r"\approx ", "→": r"\to ", "←": r"\leftarrow ",
    "∂": r"\partial ", "∇": r"\nabla ", "⌊": r"\lfloor ", "⌋": r"\rfloor ", "⌈": r"\lceil ", "⌉": r"\rceil ",
    "′": "'", "ᵀ": r"^{\mathsf{T}}", "²": "^{2}", "³": "^{3}", "¹": "^{1}", "½": r"\tfrac{1}{2}",
    "°": r"^{\circ}", "★": r"\star ", "ŷ": r"\hat{y}", "∞": r"\infty ", "√": r"\surd ", "∈": r"\in ",
    "⟨": r"\langle ", "⟩": r"\rangle ", "∑": r"\sum ", "…": r"\dots ", "⋯": r"\cdots ", "†": r"^{\dagger}",
    "{": r"\{", "}": r"\}", "#": r"\#", "%": r"\%", "&": r"\&", "$": r"\$", "_": r"\_", "~": r"\sim ",
    "^": r"\hat{}", "\\": r"\backslash ", "'": "'",
}
for _digit, _sub in zip("0123456789", "₀₁₂₃₄₅₆₇₈₉"):
    MATH_CHARS[_sub] = "_{" + _digit + "}"
SPECIAL_TEXT = {"\\": r"\textbackslash{}", "{": r"\{", "}": r"\}", "#": r"\#", "%": r"\%", "&": r"\&",
                "$": r"\$", "_": r"\_", "~": r"\textasciitilde{}", "^": r"\textasciicircum{}",
                "<": r"\ensuremath{<}", ">": r"\ensuremath{>}", "|": r"\ensuremath{|}"}

# words of a rule that are math (function names, the names of values), not prose
OPERATORS = {"max", "min", "exp", "log", "softmax", "relu", "tanh", "leaky_relu", "identity", "sigmoid"}
VALUE_WORDS = {"input", "target", "loss"}

_TOKEN = re.compile(r"""
    (?P<ie>i\.e\.|e\.g\.)
  | (?P<name>[A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*)+)
  | (?P<word>[A-Za-z][A-Za-z0-9_]*)
  | (?P<number>\d+(?:\.\d+)?)
  | (?P<space>\s+)
  | (?P<sum>Σ_(?P<sub>[A-Za-z]))
  | (?P<other>.)
""", re.X)
_PUNCTUATION = set(",;:.!?'\"-()")


def _greek(char: str) -> str | None:
    name = unicodedata.name(char, "")
    match = re.fullmatch(r"GREEK (SMALL|CAPITAL) LETTER (\w+)", name)
    if not match:
        return None
    letter = match.group(2).lower()
    if match.group(1) == "CAPITAL":
        if letter in ("gamma", "delta", "theta", "lambda", "xi", "pi", "sigma", "upsilon", "phi", "psi", "omega"):
            return "\\" + letter.capitalize() + " "
        return None
    return "\\" + ("epsilon" if letter == "epsilon" else letter) + " "


def text(value) -> str:
    """Any string as text-mode LaTeX: specials escaped, Unicode spelt with commands."""
    out = []
    for char in str(value):
        if char in SPECIAL_TEXT:
            out.append(SPECIAL_TEXT[char])
        elif ord(char) < 128:
            out.append(char)
        elif char in TEXT_CHARS:
            out.append(TEXT_CHARS[char])
        elif char in MATH_CHARS or _greek(char):
            out.append(r"\ensuremath{" + (MATH_CHARS.get(char) or _greek(char)) + "}")
        else:
            out.append(_fallback(char))
    return "".join(out)


def _fallback(char: str) -> str:
    """Accented letters lose their accent (é → e), anything else is named, never dropped."""
    plain = unicodedata.normalize("NFKD", char).encode("ascii", "ignore").decode()
    if plain and all(c.isalnum() for c in plain):
        return plain
    return f"[U+{ord(char):04X}]"


def _math_char(char: str) -> str:
    if char in MATH_CHARS:
        return MATH_CHARS[char]
    if ord(char) < 128:
        return char
    greek = _greek(char)
    if greek:
        return greek
    return r"\text{" + _fallback(char) + "}"


def name(value: str) -> str:
    """A traced name in math: `\\mathrm{c1.grad.kernel}`."""
    return r"\mathrm{" + "".join(r"\_" if c == "_" else c for c in value) + "}"


def _classify(rule: str):
    """[(kind, latex)] with kind "math", "text" or "neutral" (spaces and punctuation,
    which join whichever side surrounds them)."""
    tokens = []
    for match in _TOKEN.finditer(rule):
        kind = match.lastgroup
        value = match.group(0)
        if kind == "name":
            tokens.append(("math", name(value), value))
        elif kind == "ie":
            tokens.append(("text", value, value))
        elif kind == "word":
            if len(value) == 1:
                tokens.append(("math", value, value))
            elif value in VALUE_WORDS:
                tokens.append(("math", name(value), value))
            elif value in OPERATORS:
                tokens.append(("math", r"\operatorname{" + value.replace("_", r"\_") + "}", value))
            else:
                tokens.append(("text", value, value))
        elif kind == "number":
            tokens.append(("math", value, value))
        elif kind == "space":
            tokens.append(("neutral", " ", value))
        elif kind == "sum":
            tokens.append(("math", r"\sum_{" + match.group("sub") + "}", value))
        elif value in _PUNCTUATION:
            tokens.append(("neutral", value, value))
        else:
            tokens.append(("math", _math_char(value), value))
    # a space or punctuation mark joins the prose when prose is on either side of it (so
    # "the input, as written" keeps its spaces and comma); between two formulas it is math
    kinds = [kind for kind, _, _ in tokens]
    for k, kind in enumerate(kinds):
        if kind != "neutral":
            continue
        before = next((kinds[j] for j in range(k - 1, -1, -1) if kinds[j] != "neutral"), None)
        after = next((kinds[j] for j in range(k + 1, len(kinds)) if kinds[j] != "neutral"), None)
        kinds[k] = "text" if "text" in (before, after) else "math"
    return [(kind, latex, raw) for kind, (_, latex, raw) in zip(kinds, tokens)]


def _runs(rule: str):
    runs = []
    for kind, latex, raw in _classify(rule):
        if runs and runs[-1][0] == kind:
            runs[-1][1].append((latex, raw))
        else:
            runs.append((kind, [(latex, raw)]))
    return runs


def math(rule: str) -> str:
    """A rule as math: names upright, Σ_i as \\sum_{i}, prose in \\text{}."""
    out = []
    for kind, pieces in _runs(rule):
        if kind == "text":
            raw = "".join(raw for _, raw in pieces)
            # a wide gap before a remark, as in "f.out[k] = s1.out[i,j]  (each map row by row)"
            gap = r"\quad" if raw.startswith("  ") and out else ""
            out.append(gap + r"\text{" + text(raw) + "}")
        else:
            out.append("".join(latex for latex, raw in pieces if raw.strip() or latex.strip()))
    return "".join(out).strip()


def mixed(rule: str) -> str:
    """A rule as a paragraph: prose as text (so it can break lines), formulas as $…$."""
    out = []
    for kind, pieces in _runs(rule):
        if kind == "text":
            out.append(text("".join(raw for _, raw in pieces)))
        else:
            body = "".join(latex for latex, raw in pieces if raw.strip()).strip()
            lead = " " if pieces[0][1].isspace() else ""
            tail = " " if pieces[-1][1].isspace() else ""
            out.append(f"{lead}${body}${tail}" if body else lead + tail)
    return "".join(out).strip()


def displayed(rule: str) -> str:
    """Each rule as a displayed equation; a long one as a displayed paragraph that breaks."""
    if len(rule) <= SHORT_RULE:
        return r"\[" + "\n" + math(rule) + "\n" + r"\]" + "\n"
    return (r"\[" + "\n" + r"\parbox{0.94\linewidth}{\raggedright " + mixed(rule) + "}\n" + r"\]" + "\n")


def number_math(value: str) -> str:
    """`1.5e-7` → `1.5\\times 10^{-7}`; other numbers as they are."""
    if "e" in value:
        mantissa, exponent = value.split("e")
        return rf"{mantissa}\times 10^{{{int(exponent)}}}"
    return value


# --- the document ------------------------------------------------------------------------

def render(trace, only=None, fragment: bool = False) -> str:
    base = trace.conventions["index_base"]
    out = []
    out.append(r"\section*{" + text(trace.name) + "}\n")
    if trace.description:
        out.append(text(trace.description.strip()) + "\n\n")
    out.append(r"\textit{conventions:} " + text(doc.conventions_text(trace)) + r"\\" + "\n")
    if trace.start:
        out.append(r"\textit{backward pass:} " + text(trace.start) + "\n\n")
    out.append(_summary(trace))
    circuit = circuit_data(trace)       # an expression graph: its staged equations first
    if circuit:
        forward, backward = stages(circuit)
        for title, lines in (("Forward, node by node", forward), ("Backward, from the output", backward)):
            out.append(r"\subsection*{" + text(title) + "}\n" + "".join(displayed(line) for line in lines))
    for title, steps in doc.sections(trace, only):
        out.append(r"\subsection*{" + text(title) + "}\n")
        for step in steps:
            out.append(_step(step, trace, base))
    body = "".join(out)
    if fragment:
        return ("% bptrace output (fragment): needs \\usepackage{amsmath,amssymb} and\n"
                "% \\setcounter{MaxMatrixCols}{40} in the preamble\n" + body)
    return PREAMBLE + body + r"\end{document}" + "\n"


def _summary(trace) -> str:
    rows = doc.summary_rows(trace)
    lines = [r"\begin{center}\small", r"\begin{tabular}{llrr}", r"\hline",
             r"layer & type & output & parameters \\", r"\hline"]
    for layer, kind, shape, params in rows:
        lines.append(" & ".join(text(c) for c in (layer, kind, shape, params if kind else "")) + r" \\")
    lines += [r"\hline", rf" & & total & {trace.total_params} \\", r"\hline", r"\end{tabular}", r"\end{center}", ""]
    return "\n".join(lines)


def _step(step, trace, base) -> str:
    shape = f" ({doc.shape_text(step.shape)})" if step.values.size > 1 else ""
    out = [r"\paragraph{" + text(step.name) + "}" + text(shape) + "\n", displayed(step.rule)]
    note = doc.replaced_note(step)
    if note:
        out.append(r"\textit{" + text(note) + "}\n\n")
    out.append(_values(step, base, step.values, step.name))
    if step.computed is not None and (step.computed != step.values).any():
        out.append(r"\textit{computed by the engine before that:}" + "\n\n")
        out.append(_values(step, base, step.computed, step.name + " (computed)", marks=False))
    for note in step.notes:
        out.append(r"\textit{" + text(note) + "}\n\n")
    lines = doc.sum_lines(step, trace)
    if lines:
        out.append(r"{\footnotesize\raggedright" + "\n")
        for line in lines:
            out.append(_sum_line(line) + r"\par" + "\n")
        out.append("}\n")
    return "".join(out) + "\n"


def _values(step, base, values, label, marks=True) -> str:
    single = doc.scalar(step) if values is step.values else (number(values.reshape(-1)[0]) if values.size == 1 else None)
    if single is not None:
        return r"\[" + name(label) + " = " + number_math(single) + r"\]" + "\n"
    widest = max(_digits(number(v)) for v in values.reshape(-1))
    # long numbers in a smaller font, and as many columns as the line holds
    size, digit = ("\\small", 4.5) if widest <= 8 else ("\\scriptsize", 3.6)
    columns = max(1, min(MAX_COLUMNS, int((LINE_POINTS - 6 * len(label)) // (widest * digit + 10))))
    blocks = doc.blocks(step, base, columns, values=values)
    out = []
    for block in blocks:
        caption = block.title or block.caption
        if len(blocks) > 1 or block.title:
            out.append(r"{\small " + text(caption) + r":}" + "\n")
        elif block.caption:
            out.append(r"{\small " + text(block.caption) + "}\n")
        rows = []
        for cells, given in zip(block.cells, block.given):
            rows.append(" & ".join(number_math(c) + (r"^{\dagger}" if g and marks else "") for c, g in zip(cells, given)))
        lhs = name(label) + " = " if len(blocks) == 1 else ""
        # a size is a text-mode command: it goes around the display, never inside the math
        out.append("{" + size + "\n" + r"\[" + "\n" + lhs + r"\begin{bmatrix}" + "\n" + " \\\\\n".join(rows) + "\n"
                   + r"\end{bmatrix}" + "\n" + r"\]" + "\n}\n")
    return "".join(out)


def _digits(value: str) -> float:
    """How many digits wide a number is once typeset: a minus sign is wider than a digit,
    and `e-5` becomes `× 10⁻⁵`."""
    width = len(value) + 0.6 * value.count("-")
    return width + 3 if "e" in value else width


def _sum_line(line) -> str:
    label = _element(line.label)
    if line.kind == "max":
        body = r"\max(" + ", ".join(number_math(t) + (r"^{\star}" if k == line.winner else "")
                                     for k, t in enumerate(line.terms)) + ")"
        tail = r"\text{, from }" + _element(line.winner_label) + (r"\text{ (a tie: the first maximum wins)}" if line.tie else "")
    elif line.kind == "apply":
        body = _fn(line.fn) + "(" + number_math(line.terms[0]) + ")"
        tail = ""
    else:
        body = "".join(sum_pieces(line.terms, dot=r" \cdot ", minus="-", factor=_factor))
        if not line.terms:
            body = r"0\text{ (" + ("every term has a zero factor" if line.zero_terms else "nothing reaches it") + ")}"
        note = doc.zero_note(line)
        tail = r"\quad\text{(" + note + ")}" if note else ""
    used = rf"\;\to\; {number_math(line.used)}\text{{ used}}" if line.used is not None else ""
    return f"${label} = {body} = {number_math(line.total)}{tail}{used}$"


def _factor(factor: str) -> str:
    """A factor's text (a number, or a constant's label such as 1/4 or ½) as math."""
    match = re.fullmatch(r"(\(?)([−-]?[\d.]+(?:e[−-]?\d+)?)(\)?)", factor)
    if match:
        return match.group(1) + number_math(match.group(2).replace("−", "-")) + match.group(3)
    return math(factor)


def _fn(fn: str) -> str:
    return math(fn) if fn else ""


def _element(label: str) -> str:
    match = re.fullmatch(r"(.+?)(\[[^\]]*\])?", label)
    return name(match.group(1)) + (match.group(2) or "")
