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

from .. import notation as nt
from ..formula import text as formula_text
from .common import sum_pieces
from .layout import DEFAULT_DIGITS, split_columns
from .circuit import circuit_data, stages
from .view import HEAT_LIMIT, trace_view, zero_note

# the text width in points (A4, 2 cm margins), for as many columns as a table holds
LINE_POINTS = 480
DIGIT_POINTS = 4.25       # a digit in \footnotesize, the one size of every table
CELL_POINTS = 6.0         # the space around a cell (2 \tabcolsep)
SUM_CHARACTERS = 84       # a written-out sum breaks into lines of about this many characters
SHORT_RULE = 78          # longer rules are typeset as a paragraph that can break lines

PREAMBLE = r"""\documentclass[10pt]{article}
\usepackage[a4paper,margin=2cm,headheight=14pt]{geometry}
\usepackage{amsmath,amssymb,array,colortbl}
\usepackage{fancyhdr}
\definecolor{bplink}{rgb}{0.12,0.37,0.60}
\definecolor{bpindex}{rgb}{0.45,0.48,0.52}
\usepackage[bookmarks=true,bookmarksopen=true,bookmarksopenlevel=1,colorlinks=true,linkcolor=bplink,
  pdfborder={0 0 0}]{hyperref}
\pagestyle{fancy}
\fancyhf{}
\renewcommand{\sectionmark}[1]{\markboth{#1}{#1}}
\renewcommand{\subsectionmark}[1]{\markright{#1}}
\fancyhead[L]{\small\nouppercase{\leftmark}}
\fancyhead[R]{\small\ttfamily\nouppercase{\rightmark}}
\fancyfoot[C]{\small\thepage}
\setlength{\parindent}{0pt}
\setlength{\parskip}{0.5ex}
\allowdisplaybreaks
\begin{document}
"""

# what a --fragment needs from the document it goes into (written at its top)
FRAGMENT_NEEDS = ("% bptrace output (fragment): needs \\usepackage{amsmath,amssymb,array,colortbl} and, for\n"
                  "% links, hyperref (without it names are plain text)\n")

# macros of the output, defined by the document (and by a fragment, where it has none)
MACROS = r"""\providecommand{\hyperlink}[2]{#2}
\providecommand{\hypertarget}[2]{#2}
\providecommand{\bpidx}[1]{{\color[rgb]{0.45,0.48,0.52}#1}}
\providecommand{\bpresult}[1]{\fbox{\rule[-0.6ex]{0pt}{2.6ex}#1}}
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
for _digit, _sup in zip("0123456789-", "⁰¹²³⁴⁵⁶⁷⁸⁹⁻"):
    MATH_CHARS.setdefault(_sup, "^{" + _digit + "}")
SPECIAL_TEXT = {"\\": r"\textbackslash{}", "{": r"\{", "}": r"\}", "#": r"\#", "%": r"\%", "&": r"\&",
                "$": r"\$", "_": r"\_", "~": r"\textasciitilde{}", "^": r"\textasciicircum{}",
                "<": r"\ensuremath{<}", ">": r"\ensuremath{>}", "|": r"\ensuremath{|}"}

# a recorded term's label: traced names, words, and symbols (see `label_math`)
_LABEL_TOKEN = re.compile(r"(?P<name>[A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*)+)|(?P<word>[A-Za-z]{2,})"
                          r"|(?P<space> +)|(?P<other>.)")


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


def label_math(label: str, links=frozenset()) -> str:
    """A recorded term's label (`1 − s1.out`, `1 (x > 0)`, `1/4`) as math: traced names
    upright and linked, longer words as text, every other character as its symbol.  Labels
    are the short words the loops write beside a factor; rules are notation (`math`)."""
    out = []
    for match in _LABEL_TOKEN.finditer(label):
        value = match.group(0)
        if match.lastgroup == "name":
            out.append(linked(value, name(value), links))
        elif match.lastgroup == "word":
            out.append(r"\text{" + text(value) + "}")
        elif match.lastgroup == "space":
            out.append(r"\ ")
        else:
            out.append(_math_char(value))
    return _one_script("".join(out).strip())


def _one_script(latex: str) -> str:
    """k₂₂ char by char is k_{2}_{2}, a double subscript: one _{22} (and one ^{12})."""
    latex = re.sub(r"(?:_\{\d\})+", lambda m: "_{" + "".join(re.findall(r"\d", m.group(0))) + "}", latex)
    return re.sub(r"(?:\^\{[\d-]\}){2,}", lambda m: "^{" + "".join(re.findall(r"[\d-]", m.group(0))) + "}", latex)


# --- rules: bptrace.notation as LaTeX ---------------------------------------------------------

SIGNS = {"+": " + ", "−": " - ", "·": r" \cdot ", "⊙": r" \odot ", "/": " / ", " ": r"\,", "": ""}
TEX_FUNCTIONS = {"exp", "log", "tanh", "max", "min", "sin", "cos"}
SUPERSCRIPT_DIGITS = dict(zip("⁰¹²³⁴⁵⁶⁷⁸⁹⁻", "0123456789-"))


def _chars(value: str) -> str:
    """A math atom (a letter, a number, an index expression) character by character."""
    return _one_script("".join(_math_char(c) for c in value))


def _function_name(value: str) -> str:
    """σ, exp, tanh², softmax as the command that typesets the name."""
    power = ""
    while value and value[-1] in SUPERSCRIPT_DIGITS:
        power, value = SUPERSCRIPT_DIGITS[value[-1]] + power, value[:-1]
    if value in TEX_FUNCTIONS:
        head = "\\" + value + " "
    elif len(value) == 1:
        head = _math_char(value)
    else:
        head = r"\operatorname{" + value.replace("_", r"\_") + "}"
    return head + (f"^{{{power}}}" if power else "")


def _all_math(pieces) -> bool:
    return all(kind == "math" for kind, _ in pieces)


def _joined(pieces) -> str:
    return "".join(latex for _, latex in pieces)


def _bare(node):
    """A fraction's numerator or denominator without the parentheses the bar replaces."""
    return node.body if isinstance(node, nt.Paren) else node


def rule_pieces(node, links=frozenset(), sized: bool = True) -> list:
    """[(kind, latex)] of a notation node, kind "math" or "text" (prose, escaped).  With
    `sized` parentheses grow with what they hold (\\left( … \\right)); without, they are
    plain, so that a rule set as a paragraph can break inside them."""
    left, right = (r"\left(", r"\right)") if sized else ("(", ")")

    def inner(child):
        return rule_pieces(child, links, sized)

    if isinstance(node, nt.Ref):
        index = "[" + ",".join(_chars(i) for i in node.index) + "]" if node.index else ""
        return [("math", linked(node.name, name(node.name), links) + index)]
    if isinstance(node, nt.Sym):
        if re.fullmatch(r"[−-]?\d+(\.\d+)?e[−-]?\d+", node.text):     # 1e-08 as 10^{-8}
            return [("math", number_math(node.text.replace("−", "-")))]
        return [("math", _chars(node.text))]
    if isinstance(node, nt.Word):
        return [("math", _function_name(node.text))]
    if isinstance(node, nt.Text):
        return [("text", node.text)]
    if isinstance(node, nt.Sum):
        head = "".join(rf"\sum_{{{letter}}}" for letter in node.letters) or r"\sum"
        return [("math", head + " ")] + inner(node.body)
    if isinstance(node, nt.Op):
        out = []
        for k, term in enumerate(node.terms):
            if k:
                out.append(("math", SIGNS.get(node.sign, _chars(node.sign))))
            out += inner(term)
        return out
    if isinstance(node, nt.Func):
        arg = inner(node.arg)
        if node.name == "√" and _all_math(arg):
            return [("math", r"\sqrt{" + _joined(arg) + "}")]
        head = _function_name(node.name)
        if node.bare:
            return [("math", head)] + arg
        if _all_math(arg):
            return [("math", head + left + _joined(arg) + right)]
        return [("math", head + "(")] + arg + [("math", ")")]
    if isinstance(node, nt.Paren):
        if isinstance(node.body, nt.Frac) and sized:
            return inner(node.body)         # the fraction bar groups it: (1/3) as a bare \frac
        body = inner(node.body)
        if _all_math(body):
            return [("math", left + _joined(body) + right)]
        return [("math", "(")] + body + [("math", ")")]
    if isinstance(node, nt.Frac):
        atoms = all(isinstance(x, (nt.Sym, nt.Ref, nt.Word)) for x in (node.num, node.den))
        if not sized and not atoms:         # a paragraph keeps its line height: a / b
            return inner(node.num) + [("math", " / " if node.spaced else "/")] + inner(node.den)
        # each side typeset once: a nested fraction took twice the work per level
        num, den = inner(_bare(node.num)), inner(_bare(node.den))
        if _all_math(num) and _all_math(den):
            return [("math", r"\frac{" + _joined(num) + "}{" + _joined(den) + "}")]
        return inner(node.num) + [("math", " / ")] + inner(node.den)
    if isinstance(node, nt.Power):
        exponent = node.exp[1:-1] if node.exp.startswith("(") and node.exp.endswith(")") else node.exp
        return inner(node.base) + [("math", "^{" + _chars(exponent) + "}")]
    if isinstance(node, nt.Eq):
        out = []
        for k, side in enumerate(node.sides):
            if k:
                out.append(("math", " = "))
            out += inner(side)
        return out
    if isinstance(node, nt.Seq):
        return [piece for part in node.parts for piece in inner(part)]
    if isinstance(node, nt.Formula):
        traced = dict(node.names)
        return [("math", formula_text(node.tree, lambda v: linked(traced[v], name(traced[v]), links), latex=True))]
    raise TypeError(f"not a notation node: {node!r}")


def _runs(pieces) -> list:
    runs = []
    for kind, latex in pieces:
        if runs and runs[-1][0] == kind:
            runs[-1][1].append(latex)
        else:
            runs.append((kind, [latex]))
    return runs


def math(rule, links=frozenset()) -> str:
    """A rule (notation) as math: names upright and linked to their steps (those in
    `links`), Σ_i as \\sum_{i}, prose in \\text{}."""
    out = []
    for kind, pieces in _runs(rule_pieces(nt.node(rule), links)):
        if kind == "text":
            raw = "".join(pieces)
            # a wide gap before a remark, as in "f.out[k] = s1.out[i,j]  (each map row by row)"
            gap = r"\quad" if raw.startswith("  ") and out else ""
            out.append(gap + r"\text{" + text(raw) + "}")
        else:
            out.append("".join(pieces))
    return "".join(out).strip()


def mixed(rule, links=frozenset()) -> str:
    """A rule as a paragraph: prose as text (so it can break lines), formulas as $…$."""
    out = []
    for kind, pieces in _runs(rule_pieces(nt.node(rule), links, sized=False)):
        if kind == "text":
            out.append(text("".join(pieces)))
        else:
            out.append("$" + "".join(pieces).strip() + "$")
    return "".join(out).strip()


def displayed(rule, links=frozenset()) -> str:
    """A rule as a displayed equation; a long one as a displayed paragraph that breaks."""
    if len(str(rule)) <= SHORT_RULE:
        return r"\[" + "\n" + math(rule, links) + "\n" + r"\]" + "\n"
    return (r"\[" + "\n" + r"\parbox{0.94\linewidth}{\raggedright " + mixed(rule, links) + "}\n" + r"\]" + "\n")


def anchor(step_name: str) -> str:
    """The hyperref target of a step: `step:c1.grad.kernel` (names are letters, digits, _ and .)."""
    return "step:" + step_name.replace("_", "-")


def linked(value: str, latex: str, links) -> str:
    """`latex` (a name as math) linked to the step `value` when it is one of `links`."""
    return rf"\hyperlink{{{anchor(value)}}}{{{latex}}}" if value in links else latex


def number_math(value: str) -> str:
    """`1.5e-7` → `1.5\\times 10^{-7}`; other numbers as they are; a formula
    (`arithmetic: symbolic`) as math."""
    if _is_formula(value):
        return formula_math(value)
    if "e" in value:
        mantissa, exponent = value.split("e")
        return rf"{mantissa}\times 10^{{{int(exponent)}}}"
    return value


# --- the document ------------------------------------------------------------------------

def render(trace, only=None, fragment: bool = False, digits: int = DEFAULT_DIGITS, summary: bool = False) -> str:
    view = trace_view(trace, only, digits, steps=not summary)
    links = frozenset(step.name for _, steps in view.sections for step in steps)
    out = [MACROS, r"\section*{" + text(view.title) + "}\n"]
    if not fragment:
        # ragged right: a title too long for one line (a variant's 20-digit seed) breaks at its
        # spaces instead of running past the margin, as justified text with few spaces would
        out[1] = (r"\thispagestyle{plain}" + "\n" + r"\pdfbookmark[0]{" + text(view.title) + "}{top}\n"
                  + r"{\Large\bfseries\raggedright " + text(view.title) + r"\par}\medskip" + "\n")
    if view.description:
        out.append(text(view.description) + "\n\n")
    out.append(r"\textit{conventions:} " + text(view.conventions) + r"\\" + "\n")
    if view.start:
        out.append(r"\textit{backward pass:} " + text(view.start) + r"\\" + "\n")
    out.append(r"\textit{legend:} " + mixed(view.legend_rule or view.legend) + "\n\n")
    out.append(_summary(view))
    if not fragment and view.sections:
        out.append(r"{\small\tableofcontents}" + "\n")
    sectioning = r"\section*" if fragment else r"\section"
    circuit = circuit_data(trace, digits)       # an expression graph: its staged equations first
    if circuit:
        forward, backward = stages(circuit)
        for title, lines in (("Forward, node by node", forward), ("Backward, from the output", backward)):
            out.append(f"{sectioning}{{{text(title)}}}\n" + "".join(displayed(line) for line in lines))
    for title, steps in view.sections:
        out.append(f"{sectioning}{{{text(title)}}}\n")
        for step in steps:
            out.append(_step(step, links, fragment))
    out.append(_results(view, links, sectioning))
    body = "".join(out)
    if fragment:
        return FRAGMENT_NEEDS + body
    return PREAMBLE + body + r"\end{document}" + "\n"


def _summary(view) -> str:
    lines = [r"\begin{center}\small", r"\begin{tabular}{llrr}", r"\hline",
             r"layer & type & output & parameters \\", r"\hline"]
    for layer, kind, shape, params in view.summary:
        lines.append(" & ".join(text(c) for c in (layer, kind, shape, params)) + r" \\")
    lines += [r"\hline", rf" & & total & {view.total_params} \\", r"\hline", r"\end{tabular}", r"\end{center}", ""]
    return "\n".join(lines)


def _step(step, links, fragment) -> str:
    shape = f" ({step.shape_text})" if step.scalar is None else ""
    heading = r"\texttt{" + text(step.name) + "}" + text(shape) + _scale(step.values)
    if fragment:
        out = [r"\paragraph{" + heading + "}\n"]
    else:
        out = [r"\subsection[" + text(step.name) + "]{" + heading + "}\n"]
    out.append(r"\hypertarget{" + anchor(step.name) + "}{}\n")
    if step.rule is not None:
        out.append(displayed(step.notation, links))
    elif step.origin:
        out.append(r"\textit{" + text(step.origin) + "}\n\n")
    for kind, note in step.notes:
        if kind != "note":
            out.append(r"\textit{" + text(note) + "}\n\n")
    if step.scalar is not None:
        out.append(r"\[" + name(step.name) + " = " + step_number(step.scalar) + r"\]" + "\n")
    elif step.window_source is not None and step.windows:
        out.append(_pooling(step))
    else:
        out.append(_values(step.values, step.windows))
    if step.same_as_computed:
        out.append(r"\textit{(the computed values already equal the ones used)}" + "\n\n")
    if step.replaced:
        for label, before, after, why in step.replaced:
            out.append(f"${_element(label)}$: computed ${step_number(before)}$ $\\to$ ${step_number(after)}$ "
                       f"{text(why)}\\par\n")
    if step.computed is not None:
        out.append(r"\textit{computed, before rounding or given values replaced them:}" + "\n\n")
        out.append(_values(step.computed))
    if step.sums:
        out.append(_sums(step.sums, links))
    for note in step.sum_notes:
        head, found, command = note.partition("see any element's terms: ")
        out.append(r"{\small\textit{" + text(head + found.rstrip()) + "}"
                   + (r"\\\texttt{" + text(command) + "}" if found else "") + "}\n\n")
    for kind, note in step.notes:
        if kind == "note":
            out.append(r"\textit{" + text(note) + "}\n\n")
    return "".join(out) + "\n"


# A formula's text (symbolic.py's printer: w²₁, c1.delta[1,1], ·, σ) has letters a number has not
_LETTERS = re.compile(r"[A-Za-zσ₀-₉⁰-⁹]")
_SCIENTIFIC = re.compile(r"[−-]?[\d.]+e[−+-]?\d+")


def _is_formula(value: str) -> bool:
    return bool(_LETTERS.search(value)) and not _SCIENTIFIC.fullmatch(value.strip())
_SUB_DIGITS = str.maketrans("₀₁₂₃₄₅₆₇₈₉", "0123456789")
_SUP_DIGITS = str.maketrans("⁰¹²³⁴⁵⁶⁷⁸⁹⁻", "0123456789-")


def formula_math(value: str) -> str:
    """A formula as bptrace writes it in text, as math: w²₁ → w^{2}_{1}, c1.delta[1,1] →
    \\mathrm{c1.delta}_{1,1}, · → \\cdot, σ → \\sigma."""
    out = re.sub(r"([A-Za-z][A-Za-z0-9_]*(?:\.[A-Za-z0-9_]+)+)(?:\[([^\]]*)\])?",
                 lambda m: r"\mathrm{" + m.group(1) + "}" + ("_{" + m.group(2) + "}" if m.group(2) else ""), value)
    out = re.sub("[⁰¹²³⁴⁵⁶⁷⁸⁹⁻]+", lambda m: "^{" + m.group(0).translate(_SUP_DIGITS) + "}", out)
    out = re.sub("[₀₁₂₃₄₅₆₇₈₉]+", lambda m: "_{" + m.group(0).translate(_SUB_DIGITS) + "}", out)
    out = re.sub(r"\b(exp|log|tanh)\(", lambda m: "\\" + m.group(1) + "(", out)
    return (out.replace("·", r" \cdot ").replace("−", "-").replace("σ", r"\sigma ").replace("…", r"\ldots ")
            .replace("(", r"\left(").replace(")", r"\right)"))


# --- tables --------------------------------------------------------------------------------

def _cell(value: str, digits: int, sign: bool) -> str:
    """A number's text in text mode, padded on the left with invisible digits (every digit is
    as wide as any other) so that the numbers of a column, set flush left, align on the point.
    `digits`: the most digits before the point in the table; `sign`: some number has a minus.
    A formula (`arithmetic: symbolic`) is set as math instead."""
    if _is_formula(value):
        return "$" + formula_math(value) + "$"
    whole, point, fraction = value.partition(".")
    negative = whole.startswith("−")
    bare = whole.lstrip("−")
    pad = (r"\phantom{$-$}" if sign and not negative else "") + r"\phantom{0}" * max(0, digits - len(bare))
    if bare == "·":
        bare = r"\makebox[0.5em]{$\cdot$}"
    elif bare == "≈0":
        bare = r"\llap{$\approx$}0"
    return pad + (r"$-$" if negative else "") + bare + point + fraction


# Pastel colours of max-pool windows (as in the HTML), each window its own.
WINDOW_COLOURS = ((0.91, 0.94, 0.99), (0.99, 0.93, 0.86), (0.91, 0.96, 0.90), (0.96, 0.91, 0.97),
                  (0.99, 0.97, 0.85), (0.88, 0.96, 0.97))


def heat_colour(fraction: float) -> tuple:
    """A diverging scale: red for positive, blue for negative, white at 0; |fraction| ≤ 1."""
    strength = 0.55 * min(1.0, abs(fraction))
    return (1.0, 1.0 - strength, 1.0 - strength) if fraction > 0 else (1.0 - strength, 1.0 - 0.6 * strength, 1.0)


def _rgb(colour) -> str:
    return r"\cellcolor[rgb]{" + ",".join(f"{c:.3f}" for c in colour) + "}"


def _values(values, windows=None, colours=None) -> str:
    """A value's grids as tables of one size, rows and columns labelled, numbers aligned on the
    point; a big value's cells shaded on a diverging scale (one scale per step)."""
    if values is None:
        return ""
    texts = values.texts
    widest = max(len(t) for t in texts)
    label = max(len(g.row_labels[0]) if g.row_labels else 0 for g in values.grids) if values.grids else 0
    columns = max(1, int((LINE_POINTS - label * DIGIT_POINTS - 12) // (widest * DIGIT_POINTS + CELL_POINTS)))
    heat = len(texts) > HEAT_LIMIT and values.largest > 0
    largest = values.largest
    out = []
    if values.caption:
        out.append(r"{\small\textit{" + text(values.caption) + "}}\n\n")
    if heat:
        out.append(r"{\small\textit{shaded: red positive, blue negative, strongest at the largest magnitude "
                   + text(f"{largest:.3g}") + "}}\n\n")
    if windows and colours is None:
        colours = {}
    wholes = [t.partition(".")[0] for t in texts]
    digits = max(len(w.lstrip("−")) if w not in ("·", "≈0") else 1 for w in wholes)
    sign = any(w.startswith("−") for w in wholes)
    for grid in (part for g in values.grids for part in split_columns(g, columns)):
        if grid.title:
            out.append(r"{\small " + text(grid.title) + r":}\par" + "\n")
        ncols = len(grid.column_labels)
        lines = [r"{\footnotesize\setlength{\tabcolsep}{3pt}\renewcommand{\arraystretch}{1.1}",
                 r"\begin{tabular}{r|*{" + str(ncols) + r"}{l}}",
                 " & " + " & ".join(r"\multicolumn{1}{c}{\bpidx{" + c + "}}" for c in grid.column_labels)
                 + r" \\ \hline"]
        row_labels = grid.row_labels if grid.row_labels is not None else [""]
        for row_label, row in zip(row_labels, grid.positions):
            cells = []
            for p in row:
                cell = _cell(texts[p], digits, sign)
                mark = values.marks.get(p, "")
                if mark == "*":
                    cell += r"$^{\dagger}$"
                elif mark == "★":
                    cell = r"\fbox{\textbf{" + cell + r"}}"
                colour = ""
                if colours and p in colours:
                    colour = _rgb(colours[p])
                elif heat:
                    colour = _rgb(heat_colour(values.numbers[p] / largest))
                cells.append(colour + cell)
            lines.append(r"\bpidx{" + row_label + "} & " + " & ".join(cells) + r" \\")
        lines += [r"\end{tabular}}", ""]
        out.append(r"\par\smallskip" + "\n" + "\n".join(lines) + "\n\n")
    return "".join(out)


def _pooling(step) -> str:
    """A max-pool's forward step as the picture: its input with each window in its own colour
    and each winner starred, then the result in its window's colour."""
    source = step.window_source
    colours, out_colours = {}, {}
    for k, (out_flat, cells, winner) in enumerate(step.windows):
        colour = WINDOW_COLOURS[k % len(WINDOW_COLOURS)]
        for cell in cells:
            colours.setdefault(cell, colour)
        out_colours[out_flat] = colour
    return (r"{\small " + text(f"{source.name}: each window in its own colour, its winner framed") + r"}\par" + "\n"
            + _values(source, colours=colours)
            + r"{\small " + text(f"{step.name}: each window's winner") + r"}\par" + "\n"
            + _values(step.values, colours=out_colours))


def _scale(values) -> str:
    """`, values $\\times 10^{-3}$` for a step written in multiples of a power of ten."""
    exponent = values.format.exponent if values is not None else 0
    return rf", values $\times 10^{{{exponent}}}$" if exponent else ""


# --- written-out sums -----------------------------------------------------------------------

def step_number(value: str) -> str:
    """A number's text (true minus, ≈0) as math."""
    return number_math(value.replace("−", "-")).replace("≈", r"\approx ")


def _sums(items, links) -> str:
    """Every written-out sum of a step in one `align*`, aligned on the first `=`, a long sum
    broken between its terms, its total on a line of its own."""
    rows = []
    for item in items:
        label = _element(item.label, links)
        pieces, tail = _body(item, links)
        budget = SUM_CHARACTERS - len(item.label)
        lines, line, length = [], "", 0
        for piece, size in pieces:
            if line and length + size > budget:
                lines.append(line)
                line, length = r"\quad ", 4
            line += piece
            length += size
        lines.append(line)
        total = step_number(item.total) + tail
        if item.named and item.kind == "sum":
            # which element each factor is, first, then the numbers
            plain = item.named.split(" + ")
            terms = [r" \cdot ".join(_element(f, links) if re.fullmatch(r"[\w.]+(\[[^\]]*\])?", f) else label_math(f)
                                     for f in term.split("·")) for term in plain]
            chunks, size = [[]], 0
            for term, text_ in zip(terms, plain):
                if chunks[-1] and size + len(text_) + 3 > budget:
                    chunks.append([])
                    size = 0
                chunks[-1].append(term)
                size += len(text_) + 3
            more = " \\\\\n  &\\phantom{=}\\quad + "
            named = more.join(" + ".join(chunk) for chunk in chunks)
            rows.append(f"{label} &= {named}" + "".join(f" \\\\\n  &= {line}" if k == 0 else
                                                        f" \\\\\n  &\\phantom{{=}} {line}" for k, line in enumerate(lines))
                        + f" = {total}")
            continue
        if len(lines) == 1 and length + len(item.total) + len(item.label) < SUM_CHARACTERS:
            rows.append(f"{label} &= {lines[0]} = {total}")
        else:
            rows.append(f"{label} &= {lines[0]}" + "".join(f" \\\\\n  &\\phantom{{=}} {more}" for more in lines[1:])
                        + f" \\\\\n  &= {total}")
    return (r"{\footnotesize" + "\n" + r"\begin{align*}" + "\n" + " \\\\\n".join(rows) + "\n"
            + r"\end{align*}" + "\n}\n")


def _body(item, links):
    """[(latex piece, plain length)] of the right-hand side, and the tail after the total."""
    if item.kind == "max":
        # the winner's star goes on the braced number: 2\times 10^{20} already has a superscript
        pieces = [((r"\max(" if k == 0 else " ")
                   + ("{" + step_number(t) + r"}^{\star}" if k == item.winner else step_number(t))
                   + (")" if k == len(item.products) - 1 else ","), len(t) + 2)
                  for k, t in enumerate(item.products)]
        tail = r"\ \text{from }" + _element(item.winner_label, links) + (r"\text{ (a tie: the first wins)}" if item.tie else "")
    elif item.kind == "apply":
        pieces, tail = [(_function_name(item.fn) + "(" + step_number(item.products[0]) + ")", len(item.products[0]) + 4)], ""
        if item.named:
            pieces.append((" = " + label_math(item.named.replace("−", "-")), len(item.named)))
    elif item.kind == "copy":
        source = item.products[0]
        typeset = _element(source, links) if item.sources[0][0] else label_math(source)
        pieces, tail = [(typeset, len(source))], ""
    else:
        texts = sum_pieces(item.products, dot="·")
        latex = sum_pieces(item.products, dot=r" \cdot ", minus="-", factor=_factor)
        pieces, tail = [(piece, len(plain)) for piece, plain in zip(latex, texts)], ""
        if not item.products:
            pieces = [(r"0\text{ (every term has a zero factor)}", 30)]
    if item.used is not None:
        tail += rf"\;\to\; {step_number(item.used)}\text{{ {item.why}}}"
    note = zero_note(item)
    if note:
        tail += r"\quad\text{(" + note + ")}"
    return pieces, tail


def _factor(factor: str) -> str:
    """A factor's text (a number, or a constant's label such as 1/4 or ½) as math."""
    match = re.fullmatch(r"(\(?)([−-]?[\d.]+(?:e[−-]?\d+)?)(\)?)", factor)
    if match:
        return match.group(1) + number_math(match.group(2).replace("−", "-")) + match.group(3)
    return label_math(factor)


def _element(label: str, links=frozenset()) -> str:
    match = re.fullmatch(r"(.+?)(\[[^\]]*\])?", label)
    return linked(match.group(1), name(match.group(1)), links) + (match.group(2) or "")


# --- results -------------------------------------------------------------------------------

def _results(view, links, sectioning) -> str:
    out = [f"{sectioning}{{Results}}\n"]
    if view.loss is not None:
        out.append(r"\bpresult{$\mathrm{loss} = " + step_number(view.loss) + r"$}\par\medskip" + "\n")
    for result in view.results:
        what = r"\textit{" + text(result.what) + "}"
        if result.scalar is not None:
            out.append(what + r"\quad \bpresult{$" + _element(result.name, links) + " = "
                       + step_number(result.scalar) + r"$}\par\medskip" + "\n")
        elif result.largest:
            out.append(what + ": $" + _element(result.name, links) + "$, " + text(result.largest) + r"\par\medskip" + "\n")
        else:
            out.append(what + r": $" + _element(result.name, links) + "$" + _scale(result.values)
                       + "\n\n" + r"\bpresult{\begin{minipage}{0.96\linewidth}" + "\n"
                       + _values(result.values) + r"\end{minipage}}\par\medskip" + "\n")
    if view.explain:
        out.append(r"{\small every term of any number: \texttt{" + text(view.explain) + "}}\n")
    return "".join(out)
