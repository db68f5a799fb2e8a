"""`run --format html`: one self-contained page that fetches nothing, is well formed, holds
the trace's numbers, and renders in a real headless Chromium.

Chromium is Debian's `chromium` (installed by .ci/run).  Without it the screenshot test
skips, unless BPTRACE_REQUIRE_TOOLS=1 (as in CI), where a missing chromium fails.
"""
from __future__ import annotations

import os
import re
import shutil
import struct
import subprocess
import zlib
from html.parser import HTMLParser

import pytest
from click.testing import CliRunner

from bptrace.cli import main
from bptrace.engine import run
from bptrace.render import html
from bptrace.render.view import values_of
from bptrace.scenario import load, loads
from conftest import ROOT, SCENARIOS

SEED001 = ROOT / "scenarios" / "seed001.yaml"
ZHANG = ROOT / "scenarios" / "zhang2016.yaml"
VOID = {"meta", "br", "hr", "img", "input", "link", "wbr"}


class Checker(HTMLParser):
    """Collects what a self-contained page must not have, and checks tags nest."""

    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.stack, self.problems, self.cells = [], [], []
        self._cell, self._cell_open, self.scripts = None, True, 0

    def handle_starttag(self, tag, attrs):
        for key, value in attrs:
            # links within the page only (#step); nothing loaded from anywhere, no event handlers
            if key == "href" and (value or "").startswith("#"):
                continue
            if key in ("src", "href", "srcset", "action", "poster", "data") or key.startswith("on"):
                self.problems.append(f"<{tag} {key}={value!r}>")
        if tag in ("iframe", "object", "embed", "link", "img"):
            self.problems.append(f"<{tag}>")
        if tag == "script":
            self.scripts += 1
        if tag == "td":
            self._cell = ""
        elif self._cell is not None:
            self._cell_open = False       # a note under the number (<small>) is not the number
        if tag not in VOID:
            self.stack.append(tag)

    def handle_endtag(self, tag):
        if not self.stack or self.stack[-1] != tag:
            self.problems.append(f"</{tag}> closes <{self.stack[-1] if self.stack else None}>")
        else:
            self.stack.pop()
        if tag == "td":
            self.cells.append(self._cell.strip().rstrip("†"))
            self._cell, self._cell_open = None, True

    def handle_data(self, data):
        if self._cell is not None and self._cell_open:
            self._cell += data


def check(page: str) -> Checker:
    checker = Checker()
    checker.feed(page)
    checker.close()
    return checker


@pytest.mark.parametrize("path", SCENARIOS, ids=[p.stem for p in SCENARIOS])
def test_every_shipped_scenario_is_self_contained_and_well_formed(path):
    trace = run(load(path))
    page = html.render(trace)
    checker = check(page)
    assert checker.problems == [] and checker.stack == []
    # two scripts: the sums as JSON and the code that shows them, both inline
    assert checker.scripts == 2 and len(re.findall(r"<script[^>]*\ssrc", page)) == 0
    # no address of any kind: nothing to fetch, offline or not
    assert not re.search(r"https?:|//[a-z0-9.-]+\.[a-z]{2,}/|url\(|@import", page, re.I)
    # every number of every step is on the page, in a table cell, as its table writes it
    cells = set(checker.cells)
    for step in trace.steps:
        if step.values.size > 1:
            for text in values_of(step, trace, 7).texts[:50]:
                assert text in cells, (step.name, text)


def test_scenario_text_is_escaped():
    trace = run(loads("""
name: '<script>alert(1)</script> & "quotes"'
description: '<img src=x onerror=alert(1)>'
input: [[1, 2], [3, 4]]
layers: [{type: conv, name: c, kernel: [[1, 0], [0, 1]]}]
upstream: {layer: c, delta: 1}
"""))
    page = html.render(trace)
    assert "<script>alert" not in page and "<img" not in page and "&lt;script&gt;" in page
    assert check(page).problems == []


def chromium():
    for name in ("chromium", "chromium-browser"):
        path = shutil.which(name)
        if path:
            return path
    if os.environ.get("BPTRACE_REQUIRE_TOOLS") == "1":
        pytest.fail("BPTRACE_REQUIRE_TOOLS=1 but chromium is not installed (apt-get install chromium)")
    pytest.skip("chromium is not installed")


def png_pixels(path):
    """(width, height, distinct byte values, share of non-white bytes) of an 8-bit RGB(A) PNG."""
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    pos, idat, width, height = 8, b"", 0, 0
    while pos < len(data):
        length, kind = struct.unpack(">I4s", data[pos:pos + 8])
        chunk = data[pos + 8:pos + 8 + length]
        if kind == b"IHDR":
            width, height = struct.unpack(">II", chunk[:8])
        elif kind == b"IDAT":
            idat += chunk
        pos += 12 + length
    raw = zlib.decompress(idat)
    stride = len(raw) // height
    # drop each row's filter byte; filtered bytes still tell a blank page from a drawn one
    pixels = b"".join(raw[r * stride + 1:(r + 1) * stride] for r in range(height))
    return width, height, len(set(pixels)), sum(1 for b in pixels if b not in (0, 255)) / len(pixels)


@pytest.mark.parametrize("path", [SEED001, ZHANG], ids=["seed001", "zhang2016"])
def test_renders_in_headless_chromium(path, tmp_path):
    browser = chromium()
    page = tmp_path / "trace.html"
    result = CliRunner().invoke(main, ["run", str(path), "--format", "html", "-o", str(page)])
    assert result.exit_code == 0, result.output
    shot = tmp_path / "shot.png"
    subprocess.run([browser, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                    "--disable-background-networking", "--disable-component-update", "--disable-sync",
                    "--disable-dev-shm-usage", f"--user-data-dir={tmp_path / 'profile'}", "--window-size=1200,1600",
                    f"--screenshot={shot}", page.as_uri()],
                   capture_output=True, timeout=180, env={**os.environ, "HOME": str(tmp_path)})
    assert shot.exists(), "chromium wrote no screenshot"
    width, height, distinct, inked = png_pixels(shot)
    assert (width, height) == (1200, 1600)
    assert distinct > 20 and inked > 0.005, "the screenshot is blank"


def test_blocks_are_named_and_zero_terms_counted():
    page = html.render(run(load(SEED001)))
    assert "left out of each sum: 12 of its 16 terms, which have a zero factor" in page and "0·0.01" not in page
    page = html.render(run(loads("""
input: [[[1, 2], [3, 4]], [[5, 6], [7, 8]]]
layers: [{type: relu, name: r}]
upstream: {layer: r, delta: [[[1, 0], [0, 1]], [[1, 1], [0, 0]]]}
""")))
    assert '<div class="block-title">map 1</div>' in page and ":, :" not in page


# --- pictures, navigation and the explain panel, in a real browser -----------------------------

STRIDE = ROOT / "scenarios" / "stride_padding.yaml"
REFERENCE = ROOT / "tests" / "golden" / "html_seed001_1400x900_half.png"


def browse(tmp_path, page, fragment="", *, dump=True, size="1400,900", scale=None, extra_script=""):
    """Open `page` (HTML text) in headless Chromium at `size`: its DOM after the scripts ran
    (`dump=True`), or the path of a screenshot."""
    browser = chromium()
    path = tmp_path / "page.html"
    path.write_text(page.replace("</body>", f"<script>{extra_script}</script></body>") if extra_script else page,
                    encoding="utf-8")
    options = [browser, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
               "--disable-background-networking", "--disable-component-update", "--disable-sync",
               "--disable-dev-shm-usage", "--hide-scrollbars", f"--user-data-dir={tmp_path / 'profile'}",
               f"--window-size={size}", "--virtual-time-budget=5000"]
    if scale:
        options.append(f"--force-device-scale-factor={scale}")
    shot = tmp_path / "shot.png"
    options += ["--dump-dom"] if dump else [f"--screenshot={shot}"]
    result = subprocess.run(options + [path.as_uri() + fragment], capture_output=True, timeout=180,
                            env={**os.environ, "HOME": str(tmp_path)})
    return result.stdout.decode("utf-8") if dump else shot


# Reports the page's width and what overflows it, into the DOM that --dump-dom prints.
MEASURE = """
var main = document.querySelector('main');
var wide = Array.prototype.filter.call(document.querySelectorAll('main *'), function (e) {
  var box = e.getBoundingClientRect(); return box.right > window.innerWidth + 1 && !e.closest('.scroll');
}).map(function (e) { return e.tagName + '.' + e.className; });
document.body.setAttribute('data-measure', JSON.stringify({page: document.documentElement.scrollWidth,
  window: window.innerWidth, wide: wide.slice(0, 5)}));
"""


@pytest.mark.parametrize("path", [SEED001, STRIDE, ZHANG], ids=["seed001", "stride_padding", "zhang2016"])
def test_the_page_fits_1400_pixels_and_has_its_parts(path, tmp_path):
    import json

    trace = run(load(path))
    dom = browse(tmp_path, html.render(trace), extra_script=MEASURE)
    measure = json.loads(re.search(r'data-measure="([^"]*)"', dom).group(1).replace("&quot;", '"'))
    assert measure["page"] <= measure["window"] and measure["wide"] == [], measure
    # a sidebar link to every step, a section for each, the network drawn layer by layer
    nav = re.search(r'<nav class="steps".*?</nav>', dom, re.S).group(0)
    for name in trace.names():
        assert f'href="#s-{name}"' in nav and f'id="s-{name}"' in dom
    assert len(re.findall(r"<rect ", dom)) == len(trace.summary)
    assert '<h2 id="results">Results</h2>' in dom


def test_clicking_a_number_shows_its_terms(tmp_path):
    # `page.html#explain=name[index]` opens the panel as a click does (Chromium headless runs no clicks)
    page = html.render(run(load(SEED001)))
    dom = browse(tmp_path, page, "#explain=c1.grad.kernel%5B0,1%5D")
    panel = re.search(r'<div id="explain" class="open" data-open="c1.grad.kernel\[0,1\]">(.*?)</div>\s*<script',
                      dom, re.S).group(1)
    assert "= 0.09411869</b>" in panel
    rows = re.findall(r"<tr>.*?</tr>", panel, re.S)
    assert len(rows) == 4
    # each factor links to the step it came from, and a factor with a sum of its own opens it
    assert '<a href="#s-c1.delta" data-e="c1.delta[0,2]">0.068628</a>' in rows[0]
    assert '<a href="#s-input">0.84</a><br><small>input[0,3]</small>' in rows[0]
    assert '−0.06818625' in rows[3] and "input[3,4]" in rows[3]
    # every number with a written-out sum is clickable: the table cells carry their element
    assert 'data-e="c1.grad.kernel[0,1]"' in page and 'data-e="p1.out[1,1]"' in page


def test_pictures_of_pooling_windows_routing_and_kernel_windows():
    page = html.render(run(load(SEED001)))
    pool = page[page.index('id="s-p1.out"'):page.index('id="s-s1.out"')]
    assert "c1.out: each window in its colour, its winner outlined" in pool and "⟶ max ⟶" in pool
    assert pool.count('class="win"') == 4 and "<small>from [1,1]</small>" in pool
    routed = page[page.index('id="s-c1.delta"'):page.index('id="s-c1.grad.kernel"')]
    assert "delta goes back to its winner; the other cells get 0" in routed and routed.count("color:#fff") == 4
    assert "<small>← [0,1]</small>" in routed
    kernel = page[page.index('id="s-c1.grad.kernel"'):page.index('id="s-c1.grad.bias"')]
    assert "reads (outlined): 4 terms" in kernel and kernel.count("outline:2px solid #c0392b") == 8
    # a big value is a heatmap on a diverging scale, each square with its index and value
    zhang = html.render(run(load(ZHANG)), only={"C1.out"})
    assert 'class="heat"' in zhang and 'title="[1,1,1] ' in zhang and "one scale for the whole step" in zhang


def png_rows(path):
    """The rows of an 8-bit RGB or RGBA PNG as lists of grey levels (0 black … 255 white)."""
    data = path.read_bytes()
    pos, idat, width, height, channels = 8, b"", 0, 0, 3
    while pos < len(data):
        length, kind = struct.unpack(">I4s", data[pos:pos + 8])
        chunk = data[pos + 8:pos + 8 + length]
        if kind == b"IHDR":
            width, height = struct.unpack(">II", chunk[:8])
            channels = {2: 3, 6: 4, 0: 1}[chunk[9]]
        elif kind == b"IDAT":
            idat += chunk
        pos += 12 + length
    raw, stride, rows, previous = zlib.decompress(idat), width * channels, [], bytearray(width * channels)
    for r in range(height):
        kind, line = raw[r * (stride + 1)], bytearray(raw[r * (stride + 1) + 1:(r + 1) * (stride + 1)])
        for i in range(stride):
            a = line[i - channels] if i >= channels else 0
            b, c = previous[i], previous[i - channels] if i >= channels else 0
            if kind == 1:
                line[i] = (line[i] + a) & 255
            elif kind == 2:
                line[i] = (line[i] + b) & 255
            elif kind == 3:
                line[i] = (line[i] + (a + b) // 2) & 255
            elif kind == 4:
                p = a + b - c
                pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
                line[i] = (line[i] + (a if pa <= pb and pa <= pc else b if pb <= pc else c)) & 255
        rows.append([sum(line[k:k + 3]) // 3 if channels >= 3 else line[k] for k in range(0, stride, channels)])
        previous = line
    return rows


def ink_grid(rows, across=10, down=6):
    """How much ink (1 − mean brightness) each cell of a coarse grid holds."""
    height, width = len(rows), len(rows[0])
    return [[1 - sum(rows[y][x] for y in range(r * height // down, (r + 1) * height // down)
                     for x in range(c * width // across, (c + 1) * width // across))
             / (255 * (height // down) * (width // across)) for c in range(across)] for r in range(down)]


def test_the_screenshot_matches_the_reviewed_reference(tmp_path, request):
    """The seed-001 page at 1400×900 with a sum open, against a reviewed screenshot
    (`tests/golden/html_seed001_1400x900_half.png`, at half scale, and
    docs/html-seed001.png, the README's, at 3/4).  Fonts and anti-aliasing differ between
    machines, so pixels are not compared one by one: the page must be drawn, as large, with
    its ink where the reference has it (a 10×6 grid of ink shares, each within 0.06)."""
    page = html.render(run(load(SEED001)))
    shot = browse(tmp_path, page, "#explain=c1.grad.kernel%5B0,1%5D", dump=False, scale="0.5")
    if request.config.getoption("--update-golden"):
        REFERENCE.write_bytes(shot.read_bytes())
    mine, reference = png_rows(shot), png_rows(REFERENCE)
    assert (len(mine), len(mine[0])) == (len(reference), len(reference[0])) == (450, 700)
    grid, expected = ink_grid(mine), ink_grid(reference)
    worst = max(abs(a - b) for row, ref in zip(grid, expected) for a, b in zip(row, ref))
    assert worst <= 0.06, (worst, grid, expected)
    assert sum(map(sum, grid)) > 1, "the page is blank"


def test_a_max_pool_to_one_number_shows_its_window_and_its_value():
    # the pool's output squeezes to one number (no table): the picture's right side is that number
    sc = loads("input: [[0.1, 0.9], [-0.3, 0.4]]\nlayers: [{type: maxpool, name: p, size: 2}]\n"
               "upstream: {delta: 1}\n")
    page = html.render(run(sc))
    assert "each window in its colour" in page
    assert re.search(r'<div class="arrow">⟶ max ⟶</div><div>[^<]*<[^>]*>0\.9<', page), page[-3000:]
