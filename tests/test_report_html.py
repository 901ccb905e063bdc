"""The HTML page of ``localcode report --html`` in a real headless Chromium (Debian's
``chromium``, installed by scripts/install-chromium.sh), driven by playwright: it renders
without console errors and without any network request, the task matrix sorts and filters,
a task's drill-down shows its conversation and test output. A screenshot is saved as a
test artifact ($LOCALCODE_TEST_ARTIFACTS, default .test-artifacts/ in the repository).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from report_util import RUN_A, RUN_B, make_repeat_run, make_run

REPO = Path(__file__).resolve().parent.parent
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]


def _chromium() -> str:
    path = shutil.which("chromium") or shutil.which("chromium-browser")
    if path is None:
        if os.environ.get("CI"):
            pytest.fail("chromium is not installed: scripts/install-chromium.sh (bootstrap.sh) installs it")
        pytest.skip("chromium is not installed (sh scripts/install-chromium.sh)")
    return path


def _artifacts() -> Path:
    folder = Path(os.environ.get("LOCALCODE_TEST_ARTIFACTS", REPO / ".test-artifacts"))
    folder.mkdir(parents=True, exist_ok=True)
    return folder


@pytest.fixture(scope="module")
def page_file(tmp_path_factory) -> Path:
    home = tmp_path_factory.mktemp("home")
    make_run(home / "runs" / "A", RUN_A)
    make_run(home / "runs" / "B", RUN_B)
    make_repeat_run(home / "runs" / "R", [{"python/a": "1", "python/b": "fail"}, {"python/a": "fail", "python/b": "1"}],
                    seeds=[0, 1])
    out = home / "report.html"
    env = dict(os.environ, LOCALCODE_HOME=str(home))
    proc = subprocess.run([sys.executable, "-m", "localcode", "report", "A", "B", "R", "--html", str(out), "-q"],
                          capture_output=True, text=True, env=env, timeout=300, cwd=home)
    assert proc.returncode == 0, proc.stderr
    return out


def test_page_is_self_contained(page_file):
    html = page_file.read_text(encoding="utf-8")
    assert "<svg" in html and html.count("<svg") >= 2  # both plots inline
    for needle in ("http://", "https://", "src=\"//"):
        # the only URLs allowed are SVG namespace identifiers, which are never fetched
        hits = [h for h in html.split(needle)[1:] if not h.startswith(("www.w3.org", "creativecommons.org",
                                                                        "purl.org", "matplotlib.org"))]
        assert not hits, (needle, hits[0][:80])
    assert "<script src" not in html and "<link " not in html
    assert "<b>not bold</b>" not in html  # log text is data, never markup
    assert "How often each task was solved (2 tasks)" in html
    assert '<details id="configurations" open>' in html and "<th>quantization</th>" not in html  # unset facts stay out
    # the conversations travel packed: every try of every task of every run
    from localcode.harness.report_html import unpack

    packed = html.split('<script id="conversations" type="application/octet-stream">', 1)[1].split("</script>")[0]
    data = unpack(packed)
    assert sorted(data) == ["A", "B", "R#1", "R#2"] and sorted(data["A"]) == sorted(RUN_A)
    assert [t["index"] for t in data["A"]["python/c"]] == [1, 2]
    assert data["A"]["python/c"][0]["events"][0]["task"].endswith("<b>not bold</b>")


def open_drill(page, run: str, task: str) -> None:
    """Click a matrix cell and wait until its conversation is shown (it is unpacked asynchronously)."""
    page.locator(f'button.cell[data-run="{run}"][data-task="{task}"]').click()
    page.wait_for_selector("#drill:not([hidden]) #drill-body .try")
    page.wait_for_function("t => document.getElementById('drill-title').textContent.startsWith(t)", arg=task)


def test_page_in_headless_chromium(page_file):
    chromium = _chromium()
    sync_api = pytest.importorskip("playwright.sync_api")
    errors: list[str] = []
    requests: list[str] = []
    with sync_api.sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS, headless=True)
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 1000})
            page.on("console", lambda m: errors.append(m.text) if m.type in ("error", "warning") else None)
            page.on("pageerror", lambda e: errors.append(str(e)))
            page.on("request", lambda r: requests.append(r.url))
            page.goto(page_file.as_uri())
            page.wait_for_load_state("load")

            rows = page.locator("#matrix tbody tr")
            ids = lambda: [r for r in page.eval_on_selector_all(  # noqa: E731
                "#matrix tbody tr", "rs => rs.filter(r => !r.hidden).map(r => r.dataset.task)")]
            everything = sorted(set(RUN_A) | set(RUN_B))
            assert rows.count() == len(everything)
            assert page.locator("#shown").inner_text() == f"{len(everything)} of {len(everything)} tasks shown"

            # sorting: by task name, then reversed; by run A's outcome (pass@1 < pass@2 < fail < error < none)
            head = page.locator('#matrix thead th[data-col="0"]')
            head.click()
            assert ids() == everything
            head.click()
            assert ids() == everything[::-1]
            page.locator('#matrix thead th[data-col="2"]').click()  # run A
            order = ids()
            rank = {"1": 1, "2": 2, "fail": 90, "stuck": 90, "error": 95}
            keys = [rank[RUN_A[t]] if t in RUN_A else 99 for t in order]
            assert keys == sorted(keys), order

            # filtering: by name, by language, by outcome
            page.fill("#filter", "python/")
            assert sorted(ids()) == [t for t in everything if t.startswith("python/")]
            page.fill("#filter", "")
            page.select_option("#lang-filter", "go")
            assert sorted(ids()) == [t for t in everything if t.startswith("go/")]
            page.select_option("#lang-filter", "")
            page.select_option("#outcome-filter", "flip")
            assert sorted(ids()) == ["python/a", "python/b", "python/d"]  # python/a flips within repeat R
            assert page.locator("#shown").inner_text() == f"3 of {len(everything)} tasks shown"
            page.select_option("#outcome-filter", "error")
            assert ids() == ["go/g"]
            page.select_option("#outcome-filter", "")

            # drill-down: run A's python/c, solved on try 2
            drill = page.locator("#drill")
            assert drill.is_hidden()
            open_drill(page, "A", "python/c")
            text = drill.inner_text()
            assert "python/c" in text and "try 1: failed" in text and "try 2: passed" in text
            assert "ok: wrote x.py for python/c" in text and "FAILED test_x" in text
            assert "<b>not bold</b>" in text  # shown as text, not markup
            assert "Solve python/c (try 1)" in text and "sub-agent" not in text
            assert drill.locator("pre.call").first.inner_text().startswith("\u2192 write")
            page.screenshot(path=str(_artifacts() / "report-drilldown.png"), full_page=False)
            page.click("#drill-close")
            assert drill.is_hidden()
            open_drill(page, "A", "go/f")
            text = drill.inner_text()
            assert "go/f \u2014 A" in text and "stop: stuck" in text
            assert 'stuck: the same failing call 3 times\nread {"path": "missing.py"}' in text
            page.click("#drill-close")
            page.locator("#matrix").scroll_into_view_if_needed()
            page.screenshot(path=str(_artifacts() / "report.png"), full_page=True)
        finally:
            browser.close()
    assert errors == []
    assert all(u.startswith(("file:", "data:", "about:")) for u in requests), requests
    assert (_artifacts() / "report.png").stat().st_size > 10_000
