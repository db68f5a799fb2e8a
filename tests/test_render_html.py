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
