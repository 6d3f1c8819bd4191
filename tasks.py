"""The few commands this project needs, with nothing but Python 3.11 installed.

    python3 tasks.py run      # set up .venv if needed, then the main job
    python3 tasks.py test     # set up .venv if needed, then the whole test suite

Each command creates the virtual environment `.venv` from requirements.txt when it is
missing or older than requirements.txt.
"""

import json
import os
import signal
import subprocess
import sys
import venv
from pathlib import Path

ROOT = Path(__file__).resolve().parent
VENV = ROOT / ".venv"
PYTHON = VENV / "bin" / "python"
STAMP = VENV / ".requirements-installed"
REQUIREMENTS = ROOT / "requirements.txt"


def setup() -> None:
    """Create .venv and install requirements.txt into it, when needed."""
    if not PYTHON.exists():
        print(f"creating {VENV}", flush=True)
        venv.EnvBuilder(with_pip=True).create(VENV)
    if not STAMP.exists() or STAMP.stat().st_mtime < REQUIREMENTS.stat().st_mtime:
        sh(PYTHON, "-m", "pip", "install", "--quiet", "--upgrade", "pip")
        sh(PYTHON, "-m", "pip", "install", "--quiet", "-r", REQUIREMENTS)
        STAMP.touch()


def sh(*args) -> None:
    """Run a command in the project folder; stop with its exit code if it fails."""
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "TF_ENABLE_ONEDNN_OPTS": "0", "PYTHONHASHSEED": "0"}
    code = subprocess.call([str(a) for a in args], cwd=ROOT, env=env)
    if code:
        sys.exit(code)


def execute_notebook(*where: str) -> None:
    """Execute cam.ipynb top to bottom with nbconvert; `where`: --inplace or --output-dir DIR."""
    sh(PYTHON, "-m", "jupyter", "nbconvert", "--to", "notebook", "--execute", "cam.ipynb", *where,
       "--ExecutePreprocessor.timeout=1200", "--log-level=WARN")  # fmt: skip


def run() -> None:
    """The main job: top-5 predictions for the example photos, then the whole notebook,
    executed into artifacts/cam.ipynb (the committed cam.ipynb is left as it is)."""
    sh(PYTHON, "-m", "predict")
    execute_notebook("--output-dir", "artifacts")
    print("executed notebook: artifacts/cam.ipynb; figures: images/")


def notebook() -> None:
    """Rebuild cam.ipynb from its paired source cam.py, execute it in place (one clean
    top-to-bottom run) and so rewrite the figures in images/."""
    sh(PYTHON, "-m", "jupytext", "--to", "ipynb", "cam.py", "-o", "cam.ipynb")
    execute_notebook("--inplace")
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
    "lint": lint,
}

if __name__ == "__main__":
    command = sys.argv[1] if len(sys.argv) > 1 else "run"
    if command not in COMMANDS:
        sys.exit(f"usage: python3 tasks.py {{{'|'.join(COMMANDS)}}}")
    setup()
    if command != "setup":
        COMMANDS[command]()
