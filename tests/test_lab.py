"""`python3 tasks.py lab` as a student uses it: JupyterLab on 127.0.0.1 with cam.ipynb, opened in
headless Chromium; the saved outputs cleared, then Shift+Enter from the first cell on until the
top-5 list appears, live; the first code exercise run untouched, answered wrongly, then rightly, with
the checker's reply each time; then Ctrl-C, as a terminal sends it, stops the server and its kernel at
once, quietly. A second test presses Ctrl-C while JupyterLab is still starting.

The command really runs (tasks.py, then JupyterLab and a kernel in the venv), with a terminal as
its standard input, a known token ($JUPYTER_TOKEN) and a free port. It makes the student's copy of
cam.ipynb in a temporary folder ($CAM_LAB_DIR instead of artifacts/lab/) and serves that, so the
committed notebook is never opened for writing. JupyterLab's settings, workspaces, config and
runtime files go to temporary folders too,
and so do the notebook's figures ($CAM_FIGURES). A screenshot goes to artifacts/lab/. The
processes are found in /proc (Linux).

Chromium is the system one, driven with Playwright (tests/browser.py): nothing but 127.0.0.1 is
reachable, and a request elsewhere fails the test. The browser test is skipped only when no
Chromium is installed.
"""

from __future__ import annotations

import os
import pty
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from browser import NO_CHROMIUM, chromium, find_chromium, watch
from playwright.sync_api import TimeoutError as PlaywrightTimeout

ROOT = Path(__file__).resolve().parents[1]
VENV_PYTHON = ROOT / ".venv" / "bin" / "python"
ARTIFACTS = ROOT / "artifacts" / "lab"
TOKEN = "cam-lab-test-token"
URL_LINE = re.compile(r"JupyterLab is running; open (http://127\.0\.0\.1:(\d+)/lab/tree/cam\.ipynb\?token=(\S+))")
TOP5 = re.compile(r"coffee: espresso \d\.\d\d")
MAX_PRESSES = 20  # Shift+Enter presses, markdown cells included
MAX_CODE_CELLS = 6  # code cells run, the one that prints the top-5 included
STARTUP, CELL, STOP = 240, 300, 15  # seconds; a busy 2-core machine is slow, never flaky

NOTEBOOK = ".jp-NotebookPanel:not(.lm-mod-hidden) .jp-Notebook"  # the notebook of the tab shown
CELLS = f"document.querySelectorAll('{NOTEBOOK} .jp-Cell')"
ACTIVE = f"[...{CELLS}].findIndex(c => c.classList.contains('jp-mod-active'))"
RAN = f"i => /^\\[\\d+\\]:$/.test({CELLS}[i].querySelector('.jp-InputPrompt').textContent.trim())"
KERNEL_IDLE = (
    "() => document.querySelector('.jp-KernelName')?.textContent.includes('Python')"
    " && document.querySelector('.jp-Notebook-ExecutionIndicator')?.dataset.status === 'idle'"
)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def listening(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=2).close()
        return True
    except OSError:
        return False


def children(pid: int) -> list[int]:
    """The processes whose parent is `pid` (Linux /proc)."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            found.append(int(stat.parent.name))
    return found


def command_line(pid: int) -> list[str]:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().decode().split("\0")[:-1]
    except OSError:
        return []


def alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def kernels(server: subprocess.Popen) -> list[int]:
    """The ipykernel processes JupyterLab started (tasks.py -> JupyterLab -> kernels)."""
    return [k for lab in children(server.pid) for k in children(lab) if "ipykernel_launcher" in command_line(k)]


def wait_for_url(server: subprocess.Popen, log: Path) -> re.Match:
    deadline = time.monotonic() + STARTUP
    while not (found := URL_LINE.search(log.read_text(errors="replace"))):
        assert server.poll() is None, f"tasks.py lab stopped ({server.returncode}):\n{log.read_text()}"
        assert time.monotonic() < deadline, f"no URL within {STARTUP} s:\n{log.read_text()}"
        time.sleep(0.3)
    return found


def stop(server: subprocess.Popen, pids: list[int]) -> None:
    """The server's process group and the kernels, whatever state they are in."""
    pids = pids or (kernels(server) if server.poll() is None else [])
    try:
        os.killpg(server.pid, signal.SIGKILL)  # tasks.py and JupyterLab; nothing when they have stopped
    except ProcessLookupError:
        pass
    server.wait()
    for pid in pids:  # the kernels have sessions of their own
        if alive(pid):
            os.kill(pid, signal.SIGKILL)


def start(tmp_path: Path) -> tuple[subprocess.Popen, int, Path, int]:
    """`python3 tasks.py lab` serving a copy of cam.ipynb (and of images/) in tmp_path/notebook on a free
    port, standard input a terminal, output in tmp_path/lab.log: the process, its port, the log, and the
    terminal's other end (to close)."""
    port = free_port()
    env = {
        **os.environ,
        "JUPYTER_TOKEN": TOKEN,
        "CAM_LAB_DIR": str(tmp_path / "notebook"),  # where tasks.py lab makes the student's copy
        "CAM_FIGURES": str(tmp_path / "figures"),
        "JUPYTER_CONFIG_DIR": str(tmp_path / "config"),
        "JUPYTER_RUNTIME_DIR": str(tmp_path / "runtime"),
        "JUPYTERLAB_SETTINGS_DIR": str(tmp_path / "settings"),
        "JUPYTERLAB_WORKSPACES_DIR": str(tmp_path / "workspaces"),
        "PYTHONUNBUFFERED": "1",
    }
    command = [sys.executable, str(ROOT / "tasks.py"), "lab", "--no-browser", f"--port={port}",
               "--ServerApp.port_retries=0"]  # fmt: skip
    log = tmp_path / "lab.log"
    terminal, tty = pty.openpty()  # standard input is a terminal, as where a student types the command
    with open(log, "w") as out:
        server = subprocess.Popen(command, cwd=ROOT, env=env, stdin=tty, stdout=out, stderr=subprocess.STDOUT,
                                  start_new_session=True)  # fmt: skip
    os.close(tty)
    return server, port, log, terminal


def ctrl_c(server: subprocess.Popen, log: Path) -> None:
    """SIGINT to the process group, as a terminal sends it on Ctrl-C: all stops within STOP seconds,
    exit code 0 or 130, no question asked and no traceback."""
    os.killpg(server.pid, signal.SIGINT)
    code = server.wait(STOP)
    output = log.read_text(errors="replace")
    assert code in (0, 130), f"exit code {code}:\n{output}"
    assert "Traceback" not in output and "Shut down this Jupyter server" not in output, output


@pytest.mark.skipif(find_chromium() is None, reason=NO_CHROMIUM)
def test_lab_runs_the_first_cells_live_and_stops_on_ctrl_c(tmp_path):
    checkpoints = (ROOT / ".ipynb_checkpoints").exists()
    server, port, log, terminal = start(tmp_path)
    pids: list[int] = []
    try:
        url, url_port, token = wait_for_url(server, log).groups()
        assert (int(url_port), token) == (port, TOKEN)
        copy = tmp_path / "notebook" / "cam.ipynb"  # the student's copy, made from the lesson
        assert copy.read_bytes() == (ROOT / "cam.ipynb").read_bytes() and "your copy of the lesson" in log.read_text()

        with chromium() as browser:
            context = browser.new_context(viewport={"width": 1400, "height": 900}, device_scale_factor=1)
            context.set_default_timeout(120_000)
            url_root = f"http://127.0.0.1:{port}/"
            problems = watch(context, allow=("data:", "blob:", url_root))
            page = context.new_page()
            page.goto(url)
            cells = page.locator(f"{NOTEBOOK} .jp-Cell")
            cells.first.wait_for()
            page.wait_for_function(KERNEL_IDLE)
            outputs = page.locator(".jp-OutputArea-output")
            try:  # the saved outputs, when the committed notebook has them
                outputs.filter(has_text="espresso").first.wait_for(timeout=20_000)
            except PlaywrightTimeout:
                pass

            page.get_by_role("menuitem", name="Edit", exact=True).click()
            page.get_by_role("menuitem", name="Clear Outputs of All Cells").click()
            page.wait_for_function("() => !document.querySelector('.jp-OutputArea-output')")
            assert outputs.filter(has_text="espresso").count() == 0

            cells.first.locator(".jp-InputPrompt").click()
            assert page.evaluate(f"() => {ACTIVE}") == 0
            ran, found = [], None
            for _ in range(MAX_PRESSES):
                index = page.evaluate(f"() => {ACTIVE}")
                code = "jp-CodeCell" in (cells.nth(index).get_attribute("class") or "")
                page.keyboard.press("Shift+Enter")
                page.wait_for_function(f"i => {ACTIVE} > i", arg=index)  # on to the next cell
                if not code:
                    continue
                ran.append(index)
                page.wait_for_function(RAN, arg=index, timeout=CELL * 1000)  # [*]: until done, then [n]:
                cell = cells.nth(index)
                errors = cell.locator(".jp-OutputArea-output", has_text="Traceback")
                assert errors.count() == 0, f"cell {index} failed:\n{errors.first.inner_text()}"
                if cell.locator(".jp-OutputArea-output", has_text="espresso").count():
                    found = cell
                    break
                assert len(ran) < MAX_CODE_CELLS, f"no top-5 list after the code cells {ran}"
            assert found is not None, f"no top-5 list after {MAX_PRESSES} presses of Shift+Enter (code cells {ran})"
            text = found.locator(".jp-OutputArea-output", has_text="espresso").inner_text()
            assert TOP5.search(text), text
            assert found.locator(".jp-InputPrompt").inner_text().strip() == f"[{len(ran)}]:"  # this kernel's count
            found.scroll_into_view_if_needed()
            ARTIFACTS.mkdir(parents=True, exist_ok=True)
            page.screenshot(path=ARTIFACTS / "top5.png")
            do_the_softmax_exercise(page, cells)

            pids = kernels(server)
            assert len(pids) == 1, f"kernels: {pids}"
            assert command_line(pids[0])[0] == str(VENV_PYTHON), command_line(pids[0])
            # the pictures in the markdown: their relative URLs start to load before JupyterLab points
            # them at /files/, which loads them; those first loads are aborted, nothing failed
            problems = [p for p in problems if not re.match(rf"load failed: net::ERR_ABORTED {url_root}lab/tree/", p)]
            assert not problems, "\n".join(problems)

            ctrl_c(server, log)  # the browser still open
        assert not listening(port)
        deadline = time.monotonic() + STOP
        while any(alive(pid) for pid in pids):
            assert time.monotonic() < deadline, f"kernels still running after Ctrl-C: {pids}"
            time.sleep(0.2)
        assert (ROOT / ".ipynb_checkpoints").exists() == checkpoints
    finally:
        stop(server, pids)
        os.close(terminal)


def do_the_softmax_exercise(page, cells) -> None:
    """The first "Your turn" with code, as a student does it: run it untouched ("Not answered
    yet"), type a wrong answer (a hint, no traceback), then the right one (a tick)."""
    index = page.evaluate(f"() => [...{CELLS}].findIndex(c => c.textContent.includes('probabilities = ...'))")
    assert index >= 0, "no softmax exercise in the notebook"
    exercise = cells.nth(index)  # by position: its text changes as the student types
    answers = [
        ("", "Not answered yet"),
        ("probabilities = np.exp(logits) / np.exp(logits).sum(axis=0, keepdims=True)", "wrong axis"),
        ("probabilities = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)", "Right!"),
    ]
    for code, reply in answers:
        if code:
            editor = exercise.locator(".cm-content")
            editor.click()
            page.keyboard.press("Control+a")
            page.keyboard.insert_text(f"{code}\nhelpers.check_softmax(probabilities, logits)")
        else:
            exercise.locator(".jp-InputPrompt").click()
        page.keyboard.press("Shift+Enter")
        output = exercise.locator(".jp-OutputArea-output", has_text=reply)
        output.wait_for(timeout=CELL * 1000)
        assert "Traceback" not in exercise.inner_text()
    exercise.scroll_into_view_if_needed()
    page.screenshot(path=ARTIFACTS / "exercise.png")


def test_lab_ctrl_c_during_startup_stops_quietly(tmp_path):
    server, port, log, terminal = start(tmp_path)
    try:
        deadline = time.monotonic() + STARTUP
        while not children(server.pid):  # JupyterLab has started: tasks.py now leaves Ctrl-C to it
            assert server.poll() is None and time.monotonic() < deadline, log.read_text()
            time.sleep(0.05)
        time.sleep(1)  # past the interpreter's own start, seconds before the server listens
        ctrl_c(server, log)
        assert not listening(port) and not children(server.pid)
    finally:
        stop(server, [])
        os.close(terminal)
