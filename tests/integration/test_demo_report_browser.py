"""The demo's HTML report as a person sees it: rendered by headless Chromium (Debian's
`chromium`, installed by hack/setup.sh test) from fixed report data, then read back both as
the DOM the browser built and as the screenshot's pixels (both runs' curves drawn)."""

from __future__ import annotations

import json
import shutil
import struct
import subprocess
import zlib
from pathlib import Path

import pytest

from stickyguard_lab.demoreport import RUNS, render_html

pytestmark = pytest.mark.integration
FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "demo-report.json"
# Flags for a closed network and root: no sandbox, no background connections, a fresh profile.
FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


def chromium(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    exe = shutil.which("chromium")
    if exe is None:
        pytest.fail("chromium not found: run 'bash hack/setup.sh test'")
    profile = tmp_path / f"profile-{len(list(tmp_path.iterdir()))}"
    return subprocess.run(
        [exe, *FLAGS, f"--user-data-dir={profile}", *args],
        capture_output=True,
        text=True,
        timeout=120,
    )


def read_png(path: Path) -> tuple[int, int, list[bytes]]:
    """(width, height, rows of RGB(A) bytes) of an 8-bit RGB or RGBA PNG, filters undone."""
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    pos, idat, width, height, channels = 8, b"", 0, 0, 0
    while pos < len(data):
        (length,) = struct.unpack(">I", data[pos : pos + 4])
        kind, body = data[pos + 4 : pos + 8], data[pos + 8 : pos + 8 + length]
        if kind == b"IHDR":
            width, height, depth, colour = struct.unpack(">IIBB", body[:10])
            assert depth == 8 and colour in (2, 6), (depth, colour)
            channels = 3 if colour == 2 else 4
        elif kind == b"IDAT":
            idat += body
        pos += 12 + length
    raw, stride, rows = zlib.decompress(idat), width * channels, []
    prev = bytearray(stride)
    for y in range(height):
        f, line = (
            raw[y * (stride + 1)],
            bytearray(raw[y * (stride + 1) + 1 : (y + 1) * (stride + 1)]),
        )
        for i in range(stride):
            a = line[i - channels] if i >= channels else 0
            b, c = prev[i], prev[i - channels] if i >= channels else 0
            if f == 1:
                line[i] = (line[i] + a) & 0xFF
            elif f == 2:
                line[i] = (line[i] + b) & 0xFF
            elif f == 3:
                line[i] = (line[i] + (a + b) // 2) & 0xFF
            elif f == 4:
                p = a + b - c
                pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
                line[i] = (line[i] + (a if pa <= pb and pa <= pc else b if pb <= pc else c)) & 0xFF
        rows.append(bytes(line))
        prev = line
    return width, height, rows


def count_colour(png: Path, hex_colour: str, tolerance: int = 40) -> int:
    want = bytes.fromhex(hex_colour.lstrip("#"))
    width, _, rows = read_png(png)
    channels = len(rows[0]) // width
    return sum(
        1
        for row in rows
        for x in range(width)
        if all(abs(row[x * channels + k] - want[k]) <= tolerance for k in range(3))
    )


@pytest.fixture(scope="module")
def page(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("report") / "demo-report.html"
    out.write_text(render_html(json.loads(FIXTURE.read_text())))
    return out


def test_browser_builds_the_chart(page: Path, tmp_path: Path) -> None:
    out = chromium(tmp_path, "--dump-dom", page.as_uri())
    assert out.returncode == 0, out.stderr[-2000:]
    dom = out.stdout
    assert dom.count("<path ") == 2 and "stickyguard drains the bad pod" in dom
    assert "Without stickyguard 21.3% of users got a degraded answer" in dom


def test_screenshot_shows_both_curves(page: Path, tmp_path: Path) -> None:
    shot = tmp_path / "report.png"
    out = chromium(tmp_path, "--window-size=800,720", f"--screenshot={shot}", page.as_uri())
    assert out.returncode == 0 and shot.is_file(), out.stderr[-2000:]
    # Where to look at it by eye: the test's tmp directory (pytest keeps the last few runs).
    print(f"\nscreenshot: {shot}")
    for _, title, colour in RUNS:
        drawn = count_colour(shot, colour, tolerance=30)
        # A 2.5 px line across most of a 628 px wide plot, plus its legend swatch.
        assert drawn > 500, f"the {title} curve ({colour}) is not on the screenshot: {drawn} px"
