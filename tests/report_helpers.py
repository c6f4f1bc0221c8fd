"""Reading a report as a user sees it, shared by the report tests and the loop's (test_distill.py).

Debian's headless `chromium` opens the page from `file://` with every host mapped nowhere;
`Page` reads back the numbers the template marked with data attributes.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from html.parser import HTMLParser
from pathlib import Path

import pytest

SUMMARY_LOOP_CHARTS = {"dev_lines", "dev_heatmap", "budgets", "rows", "loss", "test"}


# The browser ------------------------------------------------------------------------------
def chromium() -> str:
    found = shutil.which("chromium")
    if found is None:
        pytest.fail("chromium is not installed: `apt-get install -y --no-install-recommends chromium` (.ci/run does)")
    return found


def browse(page: Path, tmp_path: Path, *extra: str) -> subprocess.CompletedProcess:
    """Chromium on `page` with no network (every host resolves nowhere) and its own profile."""
    profile = tmp_path / f"profile-{len(list(tmp_path.glob('profile-*')))}"
    return subprocess.run(
        [
            chromium(),
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--no-first-run",
            f"--user-data-dir={profile}",
            "--host-resolver-rules=MAP * ~NOTFOUND",
            "--virtual-time-budget=5000",
            "--enable-logging=stderr",
            "--v=0",
            *extra,
            page.resolve().as_uri(),
        ],
        capture_output=True,
        text=True,
        timeout=180,
    )


class Page(HTMLParser):
    """The charts of a DOM (drawn or not) and the text of every element with a data- attribute."""

    VOID = frozenset(
        {"meta", "link", "br", "img", "input", "hr", "path", "rect", "line", "circle", "stop", "use", "image"}
    )

    def __init__(self, html: str):
        super().__init__()
        self.stack: list[tuple[str, str | None]] = []  # (tag, chart name of an open figure.chart)
        self.charts: dict[str, set[str]] = {}  # chart name -> classes seen inside it
        self.cells: list[tuple[dict[str, str], list[str]]] = []
        self.open_cells: list[int] = []
        self.feed(html)

    def handle_starttag(self, tag, attrs):
        a = {k: v or "" for k, v in attrs}
        name = a.get("data-chart") if tag == "figure" else None
        if name is not None:
            self.charts[name] = set()
        inside = [n for _, n in self.stack if n]
        for chart in inside:
            self.charts[chart].update(a.get("class", "").split())
        if tag in self.VOID:
            return
        self.stack.append((tag, name))
        data = {k: v for k, v in a.items() if k.startswith("data-") and k != "data-chart"}
        self.open_cells.append(len(self.cells) if data else -1)
        if data:
            self.cells.append((data, []))

    def handle_endtag(self, tag):
        if tag in self.VOID or not self.stack:
            return
        if tag not in (t for t, _ in self.stack):  # a stray end tag
            return
        while self.stack:  # tolerate an unclosed element
            top, _ = self.stack.pop()
            self.open_cells.pop()
            if top == tag:
                break

    def handle_data(self, data):
        for index in self.open_cells:
            if index >= 0:
                self.cells[index][1].append(data)

    def text(self, **attrs: str) -> list[str]:
        return ["".join(t).strip() for a, t in self.cells if all(a.get(f"data-{k}") == v for k, v in attrs.items())]

    def one(self, **attrs: str) -> str:
        found = self.text(**attrs)
        assert len(found) == 1, (attrs, found)
        return found[0]


def check_in_browser(page: Path, tmp_path: Path, charts: set[str]) -> Page:
    """Open the page as a user would; every chart drawn, no console message, a non-blank picture."""
    raw = page.read_text(encoding="utf-8")
    # Self-contained: no script, style, image or frame from anywhere else.
    assert not re.search(r"""<(script|link|img|iframe|source|embed)\b[^>]*\b(src|href)\s*=""", raw, re.I)
    assert not re.search(r"""url\(\s*['"]?\s*(https?:)?//|@import""", raw, re.I)
    import plotly.offline

    bundle = plotly.offline.get_plotlyjs()
    assert raw.count(bundle) == 1  # plotly.js inlined, once
    outside = raw.replace(bundle, "")
    for script in re.findall(r"<script\b[^>]*>(.*?)</script>", outside, re.S):
        assert not re.search(r"https?://", script), script[:200]

    shown = browse(page, tmp_path, "--dump-dom")
    assert shown.returncode == 0, shown.stderr[-2000:]
    console = [line for line in shown.stderr.splitlines() if ":CONSOLE" in line or "Uncaught" in line]
    assert not console, console
    dom = Page(shown.stdout)
    assert set(dom.charts) == charts
    for name, classes in dom.charts.items():
        assert {"plot-container", "main-svg"} <= classes, f"chart {name} was not drawn"

    png = tmp_path / f"{page.stem}.png"
    shot = browse(page, tmp_path, "--window-size=1200,3000", f"--screenshot={png}")
    assert shot.returncode == 0 and png.is_file(), shot.stderr[-2000:]
    from PIL import Image

    with Image.open(png) as image:
        colours = image.convert("RGB").getcolors(maxcolors=1 << 20)
    assert colours is not None and len(colours) > 200  # text, bars, lines: far from a blank page
    return dom


def pct(value: float | None, digits: int = 0) -> str:
    return "-" if value is None else f"{value:.{digits}%}"


def assert_loop_numbers(dom: Page, run: Path) -> None:
    """The scores and budgets on the page are summary.json's and budgets.json's."""
    summary = json.loads((run / "summary.json").read_text())
    for record in summary["rounds"]:
        k = str(record["round"])
        for node, scores in record["nodes"].items():
            assert dom.one(node=node, round=k) == pct(scores["dev"])
        assert dom.one(**{"mean-round": k}) == pct(record["dev"], 1)
        for node, rows in record["budgets"].items():
            assert dom.one(**{"budget-node": node, "round": k}).startswith(f"{rows} ·")
    assert dom.one(value="best-round") == str(summary["best_round"])
    assert dom.one(value="rounds-finished") == str(len(summary["rounds"]) - 1)
    # The final comparison on test items: each node's row ends with its verdict, its items counted.
    test = json.loads((run / "test" / "comparison.json").read_text())
    for node, block in test["nodes"].items():
        cells = dom.one(**{"test-node": node})
        assert cells.startswith(f"{node}{block['items']}") and cells.endswith(block["verdict"]), cells
