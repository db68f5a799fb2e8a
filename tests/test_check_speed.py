"""`bptrace check`'s shortcuts for speed give what the plain way gives: the float32-printout
test of a number's text, and the text report written without styles."""
from __future__ import annotations

import io
import random
import re

import numpy as np
from rich.console import Console

from bptrace.check import Written, check_files
from bptrace.check.matching import _float32_text
from bptrace.render import check_text
from conftest import ROOT


def test_the_float32_cast_is_numpys():
    """`Written.float32` casts with struct; numpy's cast (overflow to inf: no float32's text)
    decides the same for every text, at float32's range and subnormals too."""
    rng = random.Random(13)
    values = [0.0, -0.0, 1e-46, 7.006e-46, 1.4e-45, 1e-39, 3.4028234663852886e38, 3.4028235677973362e38,
              3.4028235677973366e38, 3.5e38, -3.5e38, 1e300]
    values += [rng.uniform(-1, 1) * 10.0 ** rng.randint(-47, 39) for _ in range(3000)]
    texts = [(text, float(text)) for v in values
             for text in (repr(v), f"{v:.8f}", f"{v:.7g}", f"{v:.9e}",
                          f"{float(np.float32(v)) if abs(v) < 3.4e38 else v:.8f}")]
    _float32_text.cache_clear()
    for text, value in texts:
        with np.errstate(over="ignore"):
            nearest = float(np.float32(value))
        exponent = __import__("decimal").Decimal(text).as_tuple().exponent
        if not np.isfinite(nearest):
            expected = False
        elif nearest == value:
            expected = True
        elif exponent > 0:
            expected = round(nearest, -exponent) == value
        else:
            expected = float(f"{nearest:.{-exponent}f}") == value
        assert Written(value, text).float32 == expected, text


def test_a_report_without_styles_is_the_styled_report_as_text(tmp_path):
    """The answer table goes out in long plain segments when nothing styled is written:
    the same characters as the styled report, line for line, inline and at a narrow width."""
    sheet = tmp_path / "sheet.yaml"
    # right as written, right when truncated, wrong (with a number from your own values)
    sheet.write_text("p1.delta: [[0.0364, 0.0686], [0.0467, -0.0690]]\n"
                     "c1.grad.kernel: [[0.0446, 0.0941], [0.0113, 0.0683]]\n"
                     "c1.out[0,0]: 9.5\n")
    report = check_files([ROOT / "scenarios/seed001.yaml"], [sheet])
    assert {row.verdict for row in report.files[0].rows} == {"right", "wrong"}
    for width in (120, 50):
        plain, styled = io.StringIO(), io.StringIO()
        Console(width=width, file=plain, color_system=None).print(check_text.render(report), crop=False)
        Console(width=width, file=styled, color_system="truecolor", force_terminal=True).print(
            check_text.render(report), crop=False)
        assert "\x1b[" in styled.getvalue()
        assert plain.getvalue() == re.sub(r"\x1b\[[0-9;]*m", "", styled.getvalue())
        assert plain.getvalue().count("\n") > len(report.files[0].rows)
