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


def _covered_by_windows(layer) -> np.ndarray:
    """The input cells every kernel tap reads, from every output position's window."""
    _, _, H, W = layer.in_shape
    _, _, kh, kw = layer.params["kernel"].shape
    taps = {}
    for i, j in np.ndindex(*layer.out_shape[2:]):
        for ck, _, u, v, h, w in layer.window(0, i, j):
            if ck == 0:
                taps.setdefault((h, w), set()).add((u, v))
    return np.array([[len(taps.get((h, w), ())) == kh * kw for w in range(W)] for h in range(H)])


def test_covered_cells_are_those_every_window_reads(tmp_path):
    """input-delta-valid-not-full's mask, worked out from the rows' and columns' taps, is the
    one every window's cells give, with stride, padding, dilation, groups and either kernel
    convention."""
    from bptrace.check.mistakes import covered_cells
    from bptrace.scenario import load

    cases = [("convolution", "{size: 3}"), ("correlation", "{size: [2, 3], stride: 2}"),
             ("convolution", "{size: 3, padding: 1, stride: [1, 2]}"),
             ("correlation", "{size: 2, dilation: 2, padding: [2, 1]}"),
             ("convolution", "{size: 3, stride: 3, padding: 2, dilation: [1, 2], groups: 2}")]
    seen = set()
    for kernel, options in cases:
        path = tmp_path / "s.yaml"
        path.write_text(f"conventions: {{kernel: {kernel}}}\n"
                        "input: {random: uniform, shape: [2, 7, 8], seed: 1}\n"
                        "init: {scheme: glorot_uniform, seed: 0}\n"
                        f"layers:\n  - {{type: conv, name: c1, out_channels: 2, {options[1:-1]}}}\n"
                        "  - {type: flatten, name: f}\n  - {type: dense, name: d, out: 1}\n"
                        "loss: {type: half_sse, target: [0]}\n")
        layer = load(path).layers[0]
        mask = covered_cells(layer)
        assert mask.shape == (7, 8)
        assert (mask == _covered_by_windows(layer)).all(), options
        seen.update(mask.reshape(-1).tolist())
    assert seen == {True, False}
