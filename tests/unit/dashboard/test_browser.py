"""The dashboard in headless Chromium: every chart renders as SVG and the page logs nothing to the console.

Chromium runs with `--dump-dom` on the file:// URL (the DOM after the page's scripts ran) and
`--enable-logging=stderr`, which prints every console message and uncaught exception of the page as a
`CONSOLE` line; host resolution is disabled, so the page could not load anything from the network even
if it tried. Needs a `chromium` binary (Debian package `chromium`); skipped, saying so, without one.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess

import pytest

from tests.unit.dashboard.conftest import FRONTS, RUNS

BROWSERS = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")


def _browser() -> str | None:
    for name in (os.environ.get("F3OCUS_CHROMIUM"), *BROWSERS):
        if name and shutil.which(name):
            return shutil.which(name)
    return None


def _render(path, tmp_path) -> tuple[str, list[str]]:
    """(DOM after load, console lines) of the page at `path`."""
    browser = _browser()
    if browser is None:
        pytest.skip("no chromium binary on PATH (apt-get install chromium, or set F3OCUS_CHROMIUM)")
    command = [browser, "--headless=new", "--disable-gpu", "--no-sandbox", "--no-first-run", "--disable-extensions",
               "--disable-background-networking", "--host-resolver-rules=MAP * ~NOTFOUND",
               f"--user-data-dir={tmp_path / 'profile'}", "--window-size=1280,4000",
               "--enable-logging=stderr", "--v=0", "--dump-dom", path.resolve().as_uri()]
    done = subprocess.run(command, capture_output=True, text=True, timeout=90)
    assert done.returncode == 0, done.stderr[-2000:]
    console = [line for line in done.stderr.splitlines() if ":CONSOLE" in line]
    return done.stdout, console


def _section(dom: str, name: str) -> str:
    match = re.search(rf'<section id="panel-{name}">(.*?)</section>', dom, re.S)
    assert match, f"panel {name} missing from the rendered DOM"
    return match.group(1)


def _count(html: str, cls: str) -> int:
    return len(re.findall(rf'class="[^"]*\b{re.escape(cls)}\b[^"]*"', html))


def test_dashboard_renders_every_chart_without_console_errors(demo_report, tmp_path):
    dom, console = _render(demo_report[0], tmp_path)
    assert console == []
    assert re.search(r'<body[^>]* data-f3ocus-rendered="ok"', dom)
    assert dom.count('data-rendered="ok"') == 5 and 'data-rendered="error"' not in dom
    with_metrics = sum(final is not None for _, final, _, _ in RUNS.values())  # 8 runs, the sweep parent has none
    for panel in ("acc", "comm"):
        html = _section(dom, panel)
        assert _count(html, "f3-chart") == 1
        assert _count(html, "f3-line") == with_metrics
        assert _count(html, "f3-dot") == with_metrics * 4  # rounds 0..3
        assert _count(html, "f3-legend-item") == 4  # groups: top_k·llava, top_k·blip2·ultra, nsga2, sa
    fronts = _section(dom, "fronts")  # first run with fronts (nsga2-s0), its last round
    last_front, _ = FRONTS[max(FRONTS)]
    assert _count(fronts, "f3-point") == len(last_front) and _count(fronts, "f3-chosen") == 1
    ranks = _section(dom, "ranks")  # topk-s0: 3 clients x 3 rounds x 4 units, ranks 1-2 trained
    assert _count(ranks, "f3-ranks") == 3 and _count(ranks, "f3-cell") == 36 and _count(ranks, "f3-trained") == 18
    sweep = _section(dom, "sweep")
    assert _count(sweep, "f3-parcoords") == 1 and _count(sweep, "f3-pc-line") == 3 and _count(sweep, "f3-pc-axis") == 4


def test_dashboard_without_sweep_renders_cleanly(mlflow_store, tmp_path):
    from f3ocus.dashboard import write_report

    path, _ = write_report("flat", mlflow_store[0], tmp_path / "flat.html")
    dom, console = _render(path, tmp_path)
    assert console == []
    assert re.search(r'<body[^>]* data-f3ocus-rendered="ok"', dom) and dom.count('data-rendered="ok"') == 2  # acc and comm
    assert 'id="no-sweep"' in _section(dom, "sweep") and _count(_section(dom, "acc"), "f3-line") == 2
