"""The course in a real browser: the built website, and the live notebooks in JupyterLab.

Chromium is Debian's (`apt-get install -y chromium`, at /usr/bin/chromium or
$SDNOTES_CHROMIUM), driven by Playwright from PyPI through `executable_path`
(`playwright install` downloads browsers and cannot work offline). These tests
are marked `browser` and left out of the README's test command; `.ci/run` runs
them after building the site (scripts/ci_site.sh):

    python scripts/build_site.py && python -m pytest -m browser tests/test_browser.py

1. The site (build/site, or $SDNOTES_SITE_DIR): every page reachable from the
   index loads with no page error and no request to another host, every image
   has loaded (naturalWidth > 0), every link between pages resolves (file and
   #anchor), and the maths is typeset by the bundled MathJax.
2. The live notebooks, in JupyterLab (ipywidgets 8, the default) or, with
   SDNOTES_NOTEBOOK_FRONT_END=classic, in the classic Notebook 6.5 with
   ipywidgets 7: Colab's own packages (scripts/test_versions.sh colab runs it
   in .venv-colab; Colab's front end itself cannot be run here, so this is
   the closest honest check). The server starts from this environment on a
   free localhost port, on copies of the notebooks (the repository's are
   never written): notebook 00 runs with no error output, its widget panel is
   live (prompt box, seed box, sliders, Generate button), a new prompt and
   seed + Generate change the picture and the status shows the time; notebook
   01's t slider redraws its figure; every later notebook that uses ipywidgets
   runs with live widgets, and its sliders and buttons change a picture.

Set SDNOTES_SCREENSHOTS=DIR to keep a PNG of every page.
"""

import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from urllib.parse import unquote, urldefrag, urlparse

import pytest
from notebook_kernel import kernel_environment  # scripts/ is on sys.path (conftest.py)

REPO_ROOT = Path(__file__).resolve().parent.parent
NOTEBOOK_DIR = REPO_ROOT / "notebooks"
SITE_DIR = Path(os.environ.get("SDNOTES_SITE_DIR", REPO_ROOT / "build" / "site"))
CHROMIUM = os.environ.get("SDNOTES_CHROMIUM", "/usr/bin/chromium")
SCREENSHOTS = os.environ.get("SDNOTES_SCREENSHOTS")
FRONT_END = os.environ.get("SDNOTES_NOTEBOOK_FRONT_END", "lab")
if FRONT_END not in ("lab", "classic"):
    raise ValueError(f"SDNOTES_NOTEBOOK_FRONT_END={FRONT_END!r}: use lab (JupyterLab) or classic (Notebook 6.5)")
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run", "--disable-dev-shm-usage"]
NO_BROWSER = (
    "no browser to test with: install Debian's Chromium (apt-get install -y chromium) and Playwright "
    "(pip install playwright, or bash scripts/setup.sh site); never `playwright install`"
)

pytestmark = pytest.mark.browser


@pytest.fixture(scope="module")
def browser_context():
    """A headless Chromium with a fresh profile; every request to another host is blocked and recorded."""
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        pytest.skip(NO_BROWSER + " (playwright is not installed)")
    if not Path(CHROMIUM).exists():
        pytest.skip(NO_BROWSER + f" ({CHROMIUM} does not exist)")
    profile = tempfile.mkdtemp(prefix="sdnotes-chromium-")
    with sync_playwright() as playwright:
        context = playwright.chromium.launch_persistent_context(
            profile, executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS,
            viewport={"width": 1280, "height": 900})
        context.external_requests = []

        def block_other_hosts(route):
            url = route.request.url
            host = urlparse(url).hostname
            if url.startswith(("file:", "data:", "blob:")) or host in ("127.0.0.1", "localhost"):
                route.continue_()
            else:
                context.external_requests.append(url)
                route.abort()

        context.route("**/*", block_other_hosts)
        yield context
        context.close()
    shutil.rmtree(profile, ignore_errors=True)


def screenshot(page, name):
    if SCREENSHOTS:
        Path(SCREENSHOTS).mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(Path(SCREENSHOTS) / f"{name}.png"))


# ---------------------------------------------------------------- 1. the built site

IMAGES_LOADED = """async () => {
  const images = Array.from(document.images);
  for (const image of images) { image.loading = "eager"; }
  await Promise.all(images.map(image => image.decode().catch(() => null)));
  return images.map(image => [image.getAttribute("src"), image.naturalWidth]);
}"""
LINKS = "() => Array.from(document.querySelectorAll('a[href]')).map(a => a.href)"
MATH = """async () => {
  if (!window.MathJax || !window.MathJax.startup) return null;
  await window.MathJax.startup.promise;
  return [document.querySelectorAll('mjx-container').length, document.querySelectorAll('mjx-merror').length];
}"""


def anchors_of(path, cache={}):
    if path not in cache:
        text = path.read_text(encoding="utf-8", errors="replace")
        cache[path] = set(re.findall(r'\bid="([^"]+)"', text)) | set(re.findall(r'\bname="([^"]+)"', text))
    return cache[path]


def test_every_site_page_loads_with_its_images_links_and_maths(browser_context):
    index = SITE_DIR / "index.html"
    assert index.exists(), f"no site at {SITE_DIR}: build it first with python scripts/build_site.py"
    site_root = SITE_DIR.resolve()
    page = browser_context.new_page()
    page_errors = []
    page.on("pageerror", lambda error: page_errors.append(str(error)))
    failed_requests = []
    page.on("requestfailed", lambda request: failed_requests.append(request.url))
    to_visit, seen, problems, math_pages = [index.resolve()], set(), [], 0
    start = time.perf_counter()
    while to_visit:
        path = to_visit.pop(0)
        if path in seen:
            continue
        seen.add(path)
        name = path.relative_to(site_root).as_posix()
        page_errors.clear()
        failed_requests.clear()
        page.goto(path.as_uri(), wait_until="load")
        for src, natural_width in page.evaluate(IMAGES_LOADED):
            if natural_width == 0:
                problems.append(f"{name}: image {src} did not load (naturalWidth 0)")
        math = page.evaluate(MATH)
        if math is not None:
            math_pages += 1
            typeset, errors = math
            if typeset == 0 or errors:
                problems.append(f"{name}: MathJax typeset {typeset} formulas with {errors} errors")
        if "notebooks/" in name or name == "index.html":
            screenshot(page, name.replace("/", "_").removesuffix(".html"))
        for href in page.evaluate(LINKS):
            target_url, fragment = urldefrag(href)
            if not target_url.startswith("file:"):
                continue
            target = Path(unquote(urlparse(target_url).path))
            if not target.exists():
                problems.append(f"{name}: link to {href} points at a missing file")
                continue
            if target.suffix == ".html":
                if fragment and unquote(fragment) not in anchors_of(target):
                    problems.append(f"{name}: link {href} names an anchor that {target.name} does not have")
                if target.resolve().is_relative_to(site_root):
                    to_visit.append(target.resolve())
        problems += [f"{name}: page error {error}" for error in page_errors]
        problems += [f"{name}: request failed {url}" for url in failed_requests]
    elapsed = time.perf_counter() - start
    print(f"checked {len(seen)} pages ({math_pages} with maths) in {elapsed:.1f} s; "
          f"{len(browser_context.external_requests)} requests to other hosts")
    problems += [f"asked another host for {url}" for url in sorted(set(browser_context.external_requests))]
    assert not problems, "\n".join(problems[:40])
    notebook_pages = {path.stem for path in seen if path.parent.name == "notebooks"}
    notebooks = {path.stem for path in NOTEBOOK_DIR.glob("[0-9][0-9]_*.ipynb")}
    assert notebooks <= notebook_pages, f"notebooks with no page reachable from the index: {sorted(notebooks - notebook_pages)}"
    assert math_pages > 0, "no page loaded MathJax: the notebooks' formulas are not typeset"


# ---------------------------------------------------------------- 2. the live course in JupyterLab

def free_port():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture(scope="module")
def notebook_server():
    """JupyterLab (or the classic Notebook) from this environment, on copies of the notebooks in a temporary folder."""
    work_dir = Path(tempfile.mkdtemp(prefix="sdnotes-lab-"))
    for path in NOTEBOOK_DIR.glob("[0-9][0-9]_*.ipynb"):  # stored clean, as a learner gets them
        shutil.copy(path, work_dir / path.name)
    port = free_port()
    env = kernel_environment()
    env["JUPYTER_RUNTIME_DIR"] = str(work_dir / ".runtime")
    if FRONT_END == "classic":  # notebook 6.5's own server (Colab's notebook package)
        command = [sys.executable, "-m", "notebook", "--no-browser", f"--port={port}", "--ip=127.0.0.1",
                   f"--NotebookApp.notebook_dir={work_dir}", "--NotebookApp.token=", "--NotebookApp.password="]
    else:
        command = [sys.executable, "-m", "jupyterlab", "--no-browser", f"--port={port}", "--ip=127.0.0.1",
                   f"--ServerApp.root_dir={work_dir}", "--IdentityProvider.token=", "--ServerApp.password=",
                   "--LabApp.expose_app_in_browser=True", f"--LabApp.workspaces_dir={work_dir / '.workspaces'}",
                   "--LabApp.news_url=", "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate"]
    if hasattr(os, "geteuid") and os.geteuid() == 0:
        command.append("--allow-root")
    log = open(work_dir / "server.log", "w")
    server = subprocess.Popen(command, cwd=work_dir, env=env, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    deadline = time.time() + 90
    while True:
        try:
            urllib.request.urlopen(f"{url}/api/status", timeout=2)
            break
        except OSError:
            if server.poll() is not None or time.time() > deadline:
                log.close()
                pytest.fail(f"the {FRONT_END} notebook server did not start: {(work_dir / 'server.log').read_text()[-2000:]}")
            time.sleep(0.5)
    yield url, work_dir
    server.terminate()
    try:
        server.wait(timeout=20)
    except subprocess.TimeoutExpired:
        server.kill()
    log.close()
    shutil.rmtree(work_dir, ignore_errors=True)


# The notebook on show: JupyterLab's visible tab, or the classic Notebook's one page.
CURRENT = "#notebook" if FRONT_END == "classic" else ".jp-NotebookPanel:not(.lm-mod-hidden)"
LAB_NOTEBOOK_STATE = """() => {
  const panel = window.jupyterapp.shell.currentWidget;
  if (!panel || !panel.sessionContext || !panel.content) return null;
  const kernel = panel.sessionContext.session && panel.sessionContext.session.kernel;
  const cells = [];
  for (const cell of panel.content.widgets) {
    if (cell.model.type !== 'code') continue;
    const outputs = cell.model.outputs.toJSON();
    cells.push({count: cell.model.executionCount, errors: outputs.filter(o => o.output_type === 'error')
                .map(o => o.ename + ': ' + o.evalue), running: cell.model.executionState === 'running' ||
                (cell.promptNode ? cell.promptNode.textContent.includes('*') : false)});
  }
  return {kernel: kernel ? kernel.status : 'none', cells: cells};
}"""
CLASSIC_NOTEBOOK_STATE = """() => {
  const notebook = window.Jupyter && window.Jupyter.notebook;
  if (!notebook || !notebook.kernel) return null;
  const cells = [];
  for (const cell of notebook.get_cells()) {
    if (cell.cell_type !== 'code') continue;
    const prompt = cell.input_prompt_number;
    cells.push({count: typeof prompt === 'number' ? prompt : null, running: prompt === '*',
                errors: cell.output_area.outputs.filter(o => o.output_type === 'error').map(o => o.ename + ': ' + o.evalue)});
  }
  return {kernel: notebook.kernel_busy ? 'busy' : 'idle', cells: cells};
}"""
NOTEBOOK_STATE = CLASSIC_NOTEBOOK_STATE if FRONT_END == "classic" else LAB_NOTEBOOK_STATE
PICTURE = """(selector) => {
  const image = document.querySelector(selector);
  if (!image || !image.naturalWidth) return null;
  const canvas = document.createElement('canvas');
  canvas.width = image.naturalWidth; canvas.height = image.naturalHeight;
  canvas.getContext('2d').drawImage(image, 0, 0);
  return canvas.toDataURL();
}"""


def run_all_cells(page):
    """"Run All Cells" on the notebook on show (JupyterLab's Run menu; the classic Notebook's Cell menu)."""
    if FRONT_END == "classic":
        page.evaluate("() => window.Jupyter.notebook.execute_all_cells()")
        return
    page.evaluate("""async () => {
      const app = window.jupyterapp;
      const panel = app.shell.currentWidget;
      app.shell.activateById(panel.id);
      panel.content.activate();
      await app.commands.execute('notebook:run-all-cells');
    }""")


def open_notebook(page, url, name):
    """Open a notebook and wait until its kernel is ready."""
    if FRONT_END == "classic":
        # ... and until the widgets extension (widgetsnbextension 3.6, ipywidgets 7) has loaded the
        # kernel's widgets. Its manager first asks the kernel's "jupyter.widget.control" channel, which
        # a kernel that has not imported ipywidgets yet does not have, then falls back to asking model
        # by model; a widget shown while that is still going on is never drawn (measured here: a
        # fresh kernel that runs at once draws no widget at all; 5 s later it draws them all). A
        # person opening a notebook reads before running it; the test waits for the fallback's
        # warning in the console and then a few seconds, as long as that took here.
        with page.expect_console_message(lambda message: "jupyter.widget.control" in message.text, timeout=60_000):
            page.goto(f"{url}/notebooks/{name}", wait_until="domcontentloaded")
        page.wait_for_function("() => window.Jupyter && window.Jupyter.notebook && window.Jupyter.notebook.kernel && "
                               "window.Jupyter.notebook.kernel.is_connected() && !window.Jupyter.notebook.kernel_busy && "
                               "window.Jupyter.notebook.kernel.widget_manager", timeout=120_000)
        page.wait_for_timeout(5_000)
        return
    # A workspace of its own, so no other notebook's tab (or widgets) is open in this page.
    page.goto(f"{url}/lab/workspaces/{Path(name).stem}/tree/{name}?reset", wait_until="domcontentloaded")
    page.wait_for_function("() => window.jupyterapp && window.jupyterapp.shell.currentWidget && "
                           "window.jupyterapp.shell.currentWidget.sessionContext && "
                           "window.jupyterapp.shell.currentWidget.sessionContext.session && "
                           "window.jupyterapp.shell.currentWidget.sessionContext.session.kernel && "
                           "window.jupyterapp.shell.currentWidget.sessionContext.session.kernel.status === 'idle'",
                           timeout=120_000)


def open_and_run_all(page, url, name, timeout_s=240):
    """Open a notebook, run all cells, wait until done; returns the run time."""
    open_notebook(page, url, name)
    page.bring_to_front()
    start = time.perf_counter()
    run_all_cells(page)
    deadline = time.time() + timeout_s
    retried = False
    while True:
        state = page.evaluate(NOTEBOOK_STATE)
        started = state and any(cell["count"] is not None or cell["running"] for cell in state["cells"])
        if not started and not retried and time.perf_counter() - start > 15:
            run_all_cells(page)
            retried = True
        done = state and state["kernel"] == "idle" and all(cell["count"] is not None for cell in state["cells"]) \
            and not any(cell["running"] for cell in state["cells"])
        if done:
            break
        if time.time() > deadline:
            pytest.fail(f"{name}: run all did not finish in {timeout_s} s ({state})")
        page.wait_for_timeout(500)
    errors = [error for cell in state["cells"] for error in cell["errors"]]
    assert not errors, f"{name}: error outputs {errors}"
    return time.perf_counter() - start


def widget(page, kind, label):
    """The ipywidgets view of one kind (text, slider, ...) whose description is `label`."""
    return page.locator(f"{CURRENT} .jupyter-widgets.widget-{kind}").filter(
        has=page.locator("label.widget-label", has_text=re.compile(rf"^\s*{re.escape(label)}\s*$")))


def count_when_drawn(locator, timeout_ms=30_000):
    """How many elements match, once the first one is drawn (widget views are drawn after their
    cell has finished, the classic Notebook's noticeably later); 0 if none is drawn in time."""
    try:
        locator.first.wait_for(state="attached", timeout=timeout_ms)
    except Exception:  # playwright's TimeoutError: nothing drawn
        return 0
    return locator.count()


def wait_for_new_picture(page, selector, before, what, timeout_s=90):
    deadline = time.time() + timeout_s
    while time.time() < deadline:
        now = page.evaluate(PICTURE, selector)
        if now and now != before:
            return now
        page.wait_for_timeout(300)
    pytest.fail(f"{what}: the picture did not change within {timeout_s} s")


def set_slider(page, slider, value):
    """Type a value into a slider's readout, as a learner can (the readout is editable)."""
    readout = slider.locator(".widget-readout")
    readout.click()
    page.keyboard.press("Control+A")
    page.keyboard.type(str(value))
    page.keyboard.press("Enter")


def test_notebook_00_runs_and_its_generate_panel_is_live(browser_context, notebook_server):
    url, _ = notebook_server
    page = browser_context.new_page()
    page_errors = []
    page.on("pageerror", lambda error: page_errors.append(str(error)))
    run_s = open_and_run_all(page, url, "00_first_picture.ipynb")
    prompt_box = widget(page, "text", "prompt").locator("input")
    seed_box = widget(page, "text", "seed").locator("input")
    assert count_when_drawn(prompt_box) == 1 and count_when_drawn(seed_box) == 1, "no live prompt/seed boxes (text fallback?)"
    assert widget(page, "slider", "guidance").count() == 1 and widget(page, "slider", "steps").count() == 1
    generate = page.locator(f"{CURRENT} button.jupyter-button", has_text="Generate")
    assert generate.count() == 1, "no Generate button"
    picture_selector = f"{CURRENT} .widget-hbox img.widget-image"
    generate.scroll_into_view_if_needed()
    before = page.evaluate(PICTURE, picture_selector)
    assert before, "the panel shows no picture"
    screenshot(page, f"{FRONT_END}_00_before")
    prompt_box.fill("a red apple on a blue background")
    seed_box.fill("7")
    seed_box.press("Enter")
    start = time.perf_counter()
    generate.click()
    wait_for_new_picture(page, picture_selector, before, "00 Generate")
    status = page.locator(f"{CURRENT} .widget-hbox .widget-label", has_text=re.compile(r"seed 7: [\d.]+ s"))
    status.wait_for(timeout=30_000)
    generate_s = time.perf_counter() - start
    screenshot(page, f"{FRONT_END}_00_after")
    print(f"00: run all {run_s:.1f} s; Generate redrew in {generate_s:.1f} s; status {status.inner_text()!r}")
    assert not page_errors, f"page errors in JupyterLab: {page_errors}"
    page.close()


def test_notebook_01_t_slider_redraws(browser_context, notebook_server):
    url, _ = notebook_server
    page = browser_context.new_page()
    run_s = open_and_run_all(page, url, "01_forward_noising.ipynb")
    slider = widget(page, "slider", "t")
    assert count_when_drawn(slider) == 1, "no live t slider (text fallback?)"
    picture_selector = f"{CURRENT} .widget-vbox img.widget-image"
    slider.scroll_into_view_if_needed()
    before = page.evaluate(PICTURE, picture_selector)
    assert before, "no slider picture"
    start = time.perf_counter()
    set_slider(page, slider, 800)
    wait_for_new_picture(page, picture_selector, before, "01 t slider")
    print(f"01: run all {run_s:.1f} s; the t slider redrew in {time.perf_counter() - start:.1f} s")
    screenshot(page, f"{FRONT_END}_01_slider")
    page.close()


def later_widget_notebooks():
    names = []
    for path in sorted(NOTEBOOK_DIR.glob("[0-9][0-9]_*.ipynb")):
        if path.name[:2] not in ("00", "01") and "ipywidgets" in path.read_text(encoding="utf-8"):
            names.append(path.name)
    return names


LATER_WIDGET_NOTEBOOKS = later_widget_notebooks() or [
    pytest.param(None, marks=pytest.mark.skip(reason="no notebook after 01 uses ipywidgets (yet)"))]


@pytest.mark.parametrize("name", LATER_WIDGET_NOTEBOOKS)
def test_later_notebook_widgets_are_live(browser_context, notebook_server, name):
    url, _ = notebook_server
    page = browser_context.new_page()
    run_s = open_and_run_all(page, url, name)
    output = ".output_subarea" if FRONT_END == "classic" else ".jp-OutputArea-output"
    views = page.locator(f"{CURRENT} {output} .jupyter-widgets")
    assert count_when_drawn(views) > 0, f"{name} uses ipywidgets but shows no live widget (text fallback?)"
    pictures = page.locator(f"{CURRENT} img.widget-image")
    checked = "nothing (no picture widget)"
    if pictures.count():
        selector = f"{CURRENT} img.widget-image"
        buttons = page.locator(f"{CURRENT} button.jupyter-button").all()
        sliders = page.locator(f"{CURRENT} .jupyter-widgets.widget-slider").all()
        if buttons:  # a panel like notebook 00's: the button makes the picture
            buttons[0].scroll_into_view_if_needed()
            before = page.evaluate(PICTURE, selector)
            buttons[0].click()
            wait_for_new_picture(page, selector, before, f"{name} button")
            checked = "its first button"
        elif sliders:  # a slider like notebook 01's: moving it redraws
            sliders[0].scroll_into_view_if_needed()
            before = page.evaluate(PICTURE, selector)
            handles = sliders[0].locator(".noUi-handle")  # ipywidgets 8's slider; 7's has no such handle
            maximum = (handles.first.get_attribute("aria-valuemax") if handles.count() else None) or "1"
            set_slider(page, sliders[0], maximum)
            wait_for_new_picture(page, selector, before, f"{name} slider")
            checked = "its first slider"
    print(f"{name}: run all {run_s:.1f} s; widgets live; changed a picture with {checked}")
    screenshot(page, f"{FRONT_END}_{name[:2]}")
    page.close()
