"""The few commands this project needs, with nothing but Python 3.11 installed.

    python3 tasks.py run      # set up .venv if needed, then the main job
    python3 tasks.py test     # set up .venv if needed, then the whole test suite
    python3 tasks.py lab      # set up .venv if needed, then cam.ipynb in JupyterLab (Ctrl-C stops it)

Each command creates the virtual environment `.venv` from requirements.txt when it is
missing or older than requirements.txt.
"""

import json
import os
import re
import secrets
import shutil
import signal
import subprocess
import sys
import time
import venv
from pathlib import Path

ROOT = Path(__file__).resolve().parent
VENV = ROOT / ".venv"
PYTHON = VENV / "bin" / "python"
STAMP = VENV / ".requirements-installed"
REQUIREMENTS = ROOT / "requirements.txt"
LAB = Path(os.environ.get("CAM_LAB_DIR") or ROOT / "artifacts" / "lab")  # the student's copy of the lesson
ENV = {"TF_CPP_MIN_LOG_LEVEL": "2", "TF_ENABLE_ONEDNN_OPTS": "0", "PYTHONHASHSEED": "0"}
OFFLINE = {"fetchNews": "false", "checkForUpdates": False}  # JupyterLab's settings: no news, no update check
# `jupyter lab`, quiet when Ctrl-C comes before the server has set up its own handling of it
JUPYTER_LAB = """import sys
sys.argv[0] = "jupyter-lab"
try:
    from jupyterlab.labapp import main
    sys.exit(main())
except KeyboardInterrupt:
    sys.exit(130)
"""


def setup() -> None:
    """Create .venv and install requirements.txt into it, when needed."""
    if not PYTHON.exists():
        print(f"creating {VENV}", flush=True)
        venv.EnvBuilder(with_pip=True).create(VENV)
    if not STAMP.exists() or STAMP.stat().st_mtime < REQUIREMENTS.stat().st_mtime:
        sh(PYTHON, "-m", "pip", "install", "--quiet", "--upgrade", "pip")
        sh(PYTHON, "-m", "pip", "install", "--quiet", "-r", REQUIREMENTS)
        STAMP.touch()


def sh(*args, env: dict[str, str] | None = None) -> None:
    """Run a command in the project folder, with ENV and `env` added to the environment;
    stop with its exit code if it fails."""
    code = subprocess.call([str(a) for a in args], cwd=ROOT, env={**os.environ, **ENV, **(env or {})})
    if code:
        sys.exit(code)


def execute_notebook(*where: str, env: dict[str, str] | None = None) -> None:
    """Execute cam.ipynb top to bottom with nbconvert; `where`: --inplace or --output-dir DIR."""
    sh(PYTHON, "-m", "jupyter", "nbconvert", "--to", "notebook", "--execute", "cam.ipynb", *where,
       "--ExecutePreprocessor.timeout=1200", "--log-level=WARN", env=env)  # fmt: skip


def run() -> None:
    """The main job: top-5 predictions for the example photos, then the whole notebook,
    executed into artifacts/cam.ipynb (the committed cam.ipynb is left as it is)."""
    sh(PYTHON, "-m", "predict")
    execute_notebook("--output-dir", "artifacts")
    print("executed notebook: artifacts/cam.ipynb; figures: artifacts/figures/")


def notebook() -> None:
    """Rebuild cam.ipynb from its paired source cam.py, execute it in place (one clean
    top-to-bottom run) and so rewrite the figures in images/."""
    sh(PYTHON, "-m", "jupytext", "--to", "ipynb", "cam.py", "-o", "cam.ipynb")
    execute_notebook("--inplace", env={"CAM_FIGURES": str(ROOT / "images")})
    tidy_notebook(ROOT / "cam.ipynb")


def tidy_notebook(path: Path) -> None:
    """Keep the outputs and execution counts, drop what changes on every run (timestamps,
    random cell ids, widget state), so a diff of cam.ipynb shows only what really changed."""
    nb = json.loads(path.read_text())
    nb["metadata"].pop("widgets", None)  # the explorer's state (PNGs): it needs a live kernel anyway
    for i, cell in enumerate(nb["cells"]):
        cell["id"] = f"cell-{i:03d}"
        cell.get("metadata", {}).pop("execution", None)
    path.write_text(json.dumps(nb, indent=1, ensure_ascii=False) + "\n")


def test() -> None:
    """The whole test suite: unit and end-to-end tests, the notebook re-executed by nbval,
    the slides in Chromium. pytest's exit code 5 (no tests collected) counts as a failure."""
    sh(PYTHON, "-m", "pytest", "-p", "no:cacheprovider", *sys.argv[2:])


def slides() -> None:
    """Rebuild presentation/slides.html and slides.pdf from presentation/slides.md."""
    sh("bash", "presentation/build.sh")


def bench() -> None:
    """The speed benchmark (benchmarks/README.md)."""
    sh(PYTHON, "benchmarks/bench.py", *sys.argv[2:])


def explain() -> None:
    """Class activation maps for your photos (python3 tasks.py explain --help): camlib.cli in
    the venv, run in the caller's folder so that relative paths are the caller's. Ctrl-C
    reaches both processes; this one waits while the run saves its last batch."""
    path = os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "TF_ENABLE_ONEDNN_OPTS": "0", "PYTHONPATH": path}
    child = subprocess.Popen([str(PYTHON), "-m", "camlib.cli", *sys.argv[2:]], env=env)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    sys.exit(child.wait())


def lab() -> None:
    """The lesson in JupyterLab, the venv's Python as its kernel (python3 tasks.py lab
    [--no-browser] [--port 8899] [any option of `jupyter lab`]). It opens the student's copy
    of cam.ipynb (`lab_copy`), so answers can be saved and git sees nothing change. The
    server listens on 127.0.0.1 only and stays offline: no news feed, no update check, no
    extension listing. It prints the URL to open, with its token ($JUPYTER_TOKEN, or a new
    one). Ctrl-C reaches both processes: the server shuts its kernels down and stops without
    asking, and this one waits for it."""
    args = sys.argv[2:]
    lab_copy()
    desktop = sys.platform in ("darwin", "win32") or os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")
    if not (desktop or os.environ.get("BROWSER")) and "--no-browser" not in args:
        args.append("--no-browser")  # no screen: Python would start a text-mode browser in this terminal
    env = {**os.environ, **ENV, "JUPYTER_TOKEN": os.environ.get("JUPYTER_TOKEN") or secrets.token_hex(24),
           "PATH": os.pathsep.join(filter(None, [str(PYTHON.parent), os.environ.get("PATH")])),
           "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}  # fmt: skip
    overrides = VENV / "share" / "jupyter" / "lab" / "settings" / "overrides.d" / "offline.json"
    overrides.parent.mkdir(parents=True, exist_ok=True)  # JupyterLab's defaults for this venv: never ask for news
    overrides.write_text(json.dumps({"@jupyterlab/apputils-extension:notification": OFFLINE}, indent=1) + "\n")
    command = [
        str(PYTHON), "-c", JUPYTER_LAB, "--LabApp.default_url=/lab/tree/cam.ipynb", "--ip=127.0.0.1",
        f"--ServerApp.root_dir={LAB}",
        "--ServerApp.answer_yes=True",  # Ctrl-C: no 'Shut down this Jupyter server (y/[n])?'
        "--LabApp.news_url=None", "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate",
        "--LabApp.extension_manager=readonly", "--LabApp.log_level=WARN", "--ServerApp.log_level=WARN",
        "--ServerApp.jpserver_extensions=notebook_shim=False",  # old Notebook-server config; loaded, it warns
        *(["--allow-root"] if hasattr(os, "geteuid") and os.geteuid() == 0 else []), *args,
    ]  # fmt: skip
    child = subprocess.Popen(command, cwd=ROOT, env=env)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    runtime = subprocess.run([PYTHON, "-c", "from jupyter_core.paths import jupyter_runtime_dir as d; print(d())"],
                             env=env, capture_output=True, text=True).stdout.strip()  # fmt: skip
    info_file = Path(runtime or ROOT) / f"jpserver-{child.pid}.json"  # written once the server listens
    while child.poll() is None:
        try:
            info = json.loads(info_file.read_text())
        except (OSError, ValueError):
            time.sleep(0.2)
            continue
        token = f"?token={info['token']}" if info.get("token") else ""
        print(f"\nJupyterLab is running; open {info['url']}lab/tree/cam.ipynb{token}  (Ctrl-C stops it)\n", flush=True)
        break
    code = child.wait()
    sys.exit(128 - code if code < 0 else code)  # killed by signal N: 128 + N, as a shell reports it


def lab_copy() -> Path:
    """The student's copy of the lesson, LAB/cam.ipynb (artifacts/lab/, ignored by git, or
    $CAM_LAB_DIR): made from cam.ipynb the first time, then never overwritten, since it holds
    the student's answers; with it, the pictures its text shows (JupyterLab serves nothing
    outside the folder it opens). The kernel finds helpers.py through PYTHONPATH."""
    copy, lesson = LAB / "cam.ipynb", ROOT / "cam.ipynb"
    (LAB / "images").mkdir(parents=True, exist_ok=True)
    if not copy.exists():
        shutil.copyfile(lesson, copy)
        print(f"your copy of the lesson: {copy} (save your answers there; git ignores it)")
    elif copy.stat().st_mtime < lesson.stat().st_mtime:
        print(f"your copy {copy} is older than the lesson cam.ipynb: delete it to start from the new one")
    for picture in set(re.findall(r"\(images/([\w.-]+)\)", lesson.read_text())):
        shutil.copyfile(ROOT / "images" / picture, LAB / "images" / picture)
    return copy


def lint() -> None:
    sh(PYTHON, "-m", "ruff", "check", ".")


COMMANDS = {
    "setup": setup,
    "run": run,
    "test": test,
    "notebook": notebook,
    "slides": slides,
    "bench": bench,
    "explain": explain,
    "lab": lab,
    "lint": lint,
}

if __name__ == "__main__":
    command = sys.argv[1] if len(sys.argv) > 1 else "run"
    if command not in COMMANDS:
        sys.exit(f"usage: python3 tasks.py {{{'|'.join(COMMANDS)}}}")
    setup()
    if command != "setup":
        COMMANDS[command]()
