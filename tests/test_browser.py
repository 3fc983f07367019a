"""Lesson 01 in a real browser: JupyterLab runs every cell, and the tokenizer playground works on the page.

Headless Chromium (Debian's ``chromium`` package) driven by Playwright's
Python API; Playwright's own browser download is never used. Marked
``browser``: a plain ``pytest`` deselects it, and ``.ci/run`` installs what it
needs and runs it with ``pytest -m browser``. If the browser cannot start,
the test fails and says what is missing; it never skips.

The playground (``llmedu.display.tokenizer_playground``) is a
``widgets.Textarea`` followed by a ``widgets.HTML`` holding one
``<span title="<id>">`` per token, each on a coloured background.
"""

import json
import os
import secrets
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

pytestmark = pytest.mark.browser

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOK = "01_tokenizer.ipynb"
CHROMIUM = os.environ.get("LLMEDU_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run"]
INSTALL_HINT = ('install them with: apt-get install -y chromium fonts-noto-cjk && pip install -e ".[browser]" '
                "(never `playwright install`: the test drives Debian's Chromium)")
PLAYGROUND_SPANS = ".jp-OutputArea-output:has(.widget-textarea) .widget-html span[title]"  # the widget's tokens
TYPED = "Typing changes the tokens: 你好, world 42!"
SETTINGS = {  # JupyterLab user settings for the run: no news pop-up, every cell attached to the page
    "@jupyterlab/apputils-extension/notification.jupyterlab-settings": {"fetchNews": "false", "checkForUpdates": False},
    "@jupyterlab/notebook-extension/tracker.jupyterlab-settings": {"windowingMode": "none"},
}


def missing_tools() -> list[str]:
    missing = [] if Path(CHROMIUM).is_file() else [f"Chromium at {CHROMIUM} (Debian package chromium)"]
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        missing.append("the Python package playwright (the [browser] extra)")
    if not any(Path("/usr/share/fonts").glob("**/Noto*CJK*")):
        missing.append("a CJK font (Debian package fonts-noto-cjk), or Chinese renders as boxes")
    return missing


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def jupyterlab(tmp_path):
    """JupyterLab on a free loopback port with a one-off token, serving a copy of the lesson: (url, folder)."""
    work, home = tmp_path / "notebooks", tmp_path / "jupyter"
    work.mkdir()
    shutil.copy(ROOT / "solutions" / NOTEBOOK, work / NOTEBOOK)
    for name, values in SETTINGS.items():
        (home / "settings" / name).parent.mkdir(parents=True, exist_ok=True)
        (home / "settings" / name).write_text(json.dumps(values))
    env = {**os.environ, "JUPYTER_CONFIG_DIR": str(home / "config"), "JUPYTER_RUNTIME_DIR": str(home / "runtime"),
           "JUPYTERLAB_SETTINGS_DIR": str(home / "settings"), "JUPYTERLAB_WORKSPACES_DIR": str(home / "workspaces"),
           "IPYTHONDIR": str(home / "ipython")}
    port, token = free_port(), secrets.token_hex(16)
    server = subprocess.Popen(
        [sys.executable, "-m", "jupyterlab", "--no-browser", "--allow-root", "--ip=127.0.0.1", f"--port={port}",
         f"--IdentityProvider.token={token}", f"--ServerApp.root_dir={work}", "--LabApp.news_url=None"],
        env=env, stdout=subprocess.DEVNULL, stderr=open(tmp_path / "jupyterlab.log", "w"))
    url = f"http://127.0.0.1:{port}"
    try:
        wait_for_server(f"{url}/api/status?token={token}", server, tmp_path / "jupyterlab.log")
        yield f"{url}/lab/tree/{NOTEBOOK}?token={token}", tmp_path
    finally:
        server.terminate()
        server.wait(timeout=30)


def wait_for_server(url: str, server: subprocess.Popen, log: Path, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.poll() is not None:
            pytest.fail(f"JupyterLab exited with code {server.returncode}:\n{log.read_text()[-2000:]}")
        try:
            with urllib.request.urlopen(url, timeout=2):
                return
        except OSError:
            time.sleep(0.3)
    pytest.fail(f"JupyterLab did not answer within {timeout:.0f} s:\n{log.read_text()[-2000:]}")


@pytest.fixture
def page(jupyterlab):
    """A Chromium page with the lesson open in JupyterLab and its kernel idle."""
    missing = missing_tools()
    if missing:
        pytest.fail("the browser test needs " + "; ".join(missing) + f". {INSTALL_HINT}")
    from playwright.sync_api import Error, sync_playwright

    url, _ = jupyterlab
    with sync_playwright() as playwright:
        try:
            browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        except Error as err:
            pytest.fail(f"Chromium at {CHROMIUM} did not start ({str(err).splitlines()[0]}). {INSTALL_HINT}")
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        page.goto(url)
        page.locator(".jp-Notebook .jp-Cell").first.wait_for(timeout=60_000)
        wait_for_idle_kernel(url)
        page.locator(".jp-Notebook-ExecutionIndicator[data-status='idle']").wait_for(state="attached", timeout=60_000)
        yield page
        browser.close()


def wait_for_idle_kernel(lab_url: str, timeout: float = 120) -> None:
    """Wait until the server holds a session for the notebook whose kernel is idle.

    The page's execution indicator reads 'idle' before any kernel exists; Run All at that moment finds no
    kernel, clears every cell and opens a kernel dialog (one CI run: 27 cells left at '[ ]').
    """
    base, token = lab_url.split("/lab/")[0], lab_url.split("token=")[1]
    deadline, sessions = time.monotonic() + timeout, []
    while time.monotonic() < deadline:
        with urllib.request.urlopen(f"{base}/api/sessions?token={token}", timeout=5) as answer:
            sessions = json.load(answer)
        if any(s.get("kernel", {}).get("execution_state") == "idle" and s.get("path", "").endswith(NOTEBOOK)
               for s in sessions):
            return
        time.sleep(0.5)
    pytest.fail(f"no idle kernel for {NOTEBOOK} within {timeout:.0f} s; the server's sessions: {sessions}")


def run_all_cells(page, shots: Path, timeout_s: float = 240, attempts: int = 3) -> None:
    """Run > Run All Cells, then wait until every code cell shows an execution count.

    The lesson runs in 10-20 s on a quiet machine; the limit is generous because a busy one (another job
    on the same two cores, a cold Numba cache) once took 90 s. If no cell has started 30 s after the click
    (a dialog, a kernel not yet attached), the dialog's text is kept, it is dismissed and the click repeated.
    """
    prompts = page.locator(".jp-Notebook .jp-CodeCell .jp-InputPrompt")
    dialogs = []
    for _ in range(attempts):
        page.get_by_role("menuitem", name="Run", exact=True).click()
        page.get_by_role("menuitem", name="Run All Cells", exact=True).click()
        if wait_for_prompts(page, prompts, lambda p: "*" in p or any(ch.isdigit() for ch in p), any, 30):
            break
        dialog = page.locator(".jp-Dialog")
        if dialog.count():
            dialogs.append(dialog.first.inner_text())
            page.keyboard.press("Escape")
    else:
        page.screenshot(path=shots / "run_all_not_started.png")
        raise AssertionError(f"Run All Cells started no cell in {attempts} tries; dialogs seen: {dialogs}; "
                             f"prompts: {prompts.all_inner_texts()}; screenshot: {shots / 'run_all_not_started.png'}")
    if not wait_for_prompts(page, prompts, lambda p: any(ch.isdigit() for ch in p), all, timeout_s):
        raise AssertionError(f"cells still running or not run after {timeout_s:.0f} s: {prompts.all_inner_texts()}")


def wait_for_prompts(page, prompts, shows, quantifier, timeout_s: float) -> bool:
    """True once `quantifier` (any/all) of the code cells' prompts satisfy `shows`, or a cell failed."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        shown = prompts.all_inner_texts()
        if shown and quantifier(shows(p) for p in shown):
            return True
        if page.locator(".jp-OutputArea-output:has-text('Traceback')").count():
            return True  # a cell failed and Run All stopped; the test reports which
        time.sleep(0.5)
    return False


def playground_tokens(page) -> list[str]:
    """The ids (span titles) shown by the playground's HTML widget, the one right after its text box."""
    return page.locator(PLAYGROUND_SPANS).evaluate_all("spans => spans.map(s => s.title)")


def test_lesson_01_runs_in_the_browser_and_its_playground_follows_typing(page, jupyterlab):
    _, tmp_path = jupyterlab
    run_all_cells(page, tmp_path)
    page.screenshot(path=tmp_path / "lesson01_after_run_all.png")

    errors = page.locator(".jp-OutputArea-output[data-mime-type='application/vnd.jupyter.stderr']"
                          ":has-text('Traceback')")
    assert errors.count() == 0, "error output in the page:\n" + "\n---\n".join(errors.all_inner_texts())[:3000]

    box = page.locator(".widget-textarea textarea")
    box.scroll_into_view_if_needed()
    assert box.is_visible(), "the playground's text box is not visible"
    first = page.locator(PLAYGROUND_SPANS).first
    assert first.is_visible(), "the playground shows no token spans"
    colour = first.evaluate("s => getComputedStyle(s).backgroundColor")
    assert colour not in ("rgba(0, 0, 0, 0)", "transparent"), f"token spans are not coloured ({colour})"

    before = playground_tokens(page)
    box.fill(TYPED)  # an input event, as typing sends; the kernel re-tokenizes and updates the HTML widget
    page.wait_for_function(
        "([selector, before]) => { const ids = [...document.querySelectorAll(selector)].map(s => s.title);"
        " return ids.length > 0 && ids.join(',') !== before.join(','); }", arg=[PLAYGROUND_SPANS, before],
        timeout=20_000)
    after = playground_tokens(page)
    page.locator(".jp-OutputArea-output:has(.widget-textarea)").screenshot(path=tmp_path / "lesson01_playground.png")
    assert after != before and len(after) >= len(TYPED.split()), (before, after)
