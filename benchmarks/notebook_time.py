"""How long "Run All" of cam.ipynb takes: the core path and the whole notebook.

Executes the notebook top to bottom in a fresh kernel of the project's environment, as
"Run All" in JupyterLab would, and times every code cell. The core path runs from the
first cell up to (not including) the first Markdown cell with a heading "Going further"
(`# Going further`, `## Going further: ...`; any level, any case); a notebook without
that heading gets only its total. Targets: the core path in at most 3 minutes, the whole
notebook in at most 6.

Nothing in the repository changes: the executed notebook is kept in memory and thrown
away, and the notebook's figures go to its default, the git-ignored artifacts/figures/
($CAM_FIGURES is removed from the kernel's environment so that it cannot point at
images/). The kernel runs with TF_ENABLE_ONEDNN_OPTS=0, TF_CPP_MIN_LOG_LEVEL=2 and
PYTHONHASHSEED=0, as `python3 tasks.py` runs everything. It uses both cores for about
six minutes: run it on an otherwise idle machine.

    .venv/bin/python benchmarks/notebook_time.py                      # cam.ipynb
    .venv/bin/python benchmarks/notebook_time.py --json /tmp/notebook-time.json
    .venv/bin/python benchmarks/notebook_time.py --notebook other.ipynb --slowest 10

Prints a table: the commit (`git rev-parse --short HEAD`, "+dirty" when tracked files
differ from it), the machine, the two times against their targets and the slowest
cells with their first line. `--json PATH` also writes every cell's time.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import json
import os
import platform
import re
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
VENV = ROOT / ".venv"
TARGETS = {"core path": 180.0, "whole notebook": 360.0}  # seconds
GOING_FURTHER = re.compile(r"^ {0,3}#{1,6}\s+(?:\d+\.?\s+)?going further\b", re.IGNORECASE | re.MULTILINE)

# The project's environment: re-run with .venv's Python when started with another one.
if Path(sys.prefix).resolve() != VENV.resolve() and (VENV / "bin" / "python").exists():
    os.execv(VENV / "bin" / "python", [str(VENV / "bin" / "python"), *sys.argv])

import nbformat  # noqa: E402
from nbclient import NotebookClient  # noqa: E402
from nbclient.exceptions import CellExecutionError  # noqa: E402


def commit() -> str:
    """The short commit of HEAD, with "+dirty" when a tracked file differs from it."""
    git = ["git", "-C", str(ROOT)]
    try:
        head = subprocess.run([*git, "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=True)
        status = subprocess.run([*git, "status", "--porcelain", "--untracked-files=no"], capture_output=True, text=True)
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return head.stdout.strip() + ("+dirty" if status.stdout.strip() else "")


def machine() -> dict:
    """The CPU model, cores, memory and the versions that set the speed (the project
    installs tensorflow-cpu: no GPU is used even where there is one)."""

    def proc(name: str, pattern: str) -> str | None:
        path = Path("/proc") / name
        found = re.search(pattern, path.read_text(), re.MULTILINE) if path.exists() else None
        return found.group(1).strip() if found else None

    def version(*names: str) -> str | None:
        for name in names:
            try:
                return f"{name} {importlib.metadata.version(name)}"
            except importlib.metadata.PackageNotFoundError:
                pass
        return None

    kb = proc("meminfo", r"^MemTotal:\s*(\d+) kB")
    return {
        "cpu": proc("cpuinfo", r"^model name\s*:\s*(.+)$") or platform.processor() or platform.machine(),
        "cores": os.cpu_count(),
        "memory_gb": round(int(kb) / 2**20) if kb else None,
        "python": platform.python_version(),
        "tensorflow": version("tensorflow-cpu", "tensorflow"),
        "keras": version("keras"),
    }


def first_line(cell) -> str:
    """The cell's first non-empty line, shortened for the table."""
    line = next((s.strip() for s in cell.source.splitlines() if s.strip()), "")
    return line if len(line) <= 70 else line[:67] + "..."


def going_further(nb) -> int | None:
    """Index of the first Markdown cell with a "Going further" heading, or None."""
    return next(
        (i for i, c in enumerate(nb.cells) if c.cell_type == "markdown" and GOING_FURTHER.search(c.source)), None
    )


def run(nb, folder: Path, timeout: int) -> tuple[dict[int, tuple[float, float]], float]:
    """Execute the notebook in a new kernel started in `folder`: for each code cell its
    (start, end) in seconds after the first cell started, and the kernel's start-up time."""
    spans: dict[int, list[float]] = {}

    def started(cell, cell_index, **_):
        spans[cell_index] = [time.perf_counter()]

    def finished(cell, cell_index, **_):
        spans[cell_index].append(time.perf_counter())
        seconds = spans[cell_index][1] - spans[cell_index][0]
        print(f"cell {cell_index:3d}  {seconds:6.1f} s  {first_line(cell)}", file=sys.stderr, flush=True)

    env = {**os.environ, "TF_ENABLE_ONEDNN_OPTS": "0", "TF_CPP_MIN_LOG_LEVEL": "2", "PYTHONHASHSEED": "0"}
    env.pop("CAM_FIGURES", None)  # the notebook's default: the ignored artifacts/figures/
    client = NotebookClient(
        nb,
        timeout=timeout,
        kernel_name=nb.metadata.get("kernelspec", {}).get("name", "python3"),
        resources={"metadata": {"path": str(folder)}},
        on_cell_execute=started,
        on_cell_executed=finished,
    )
    launched = time.perf_counter()
    try:
        client.execute(env=env)
    except CellExecutionError as error:
        failed = max(spans, key=lambda i: spans[i][0])
        sys.exit(f"\ncell {failed} failed, so the notebook was not timed:\n{error}")
    first = min((s for s, _ in spans.values()), default=launched)
    return {i: (s - first, e - first) for i, (s, e) in spans.items()}, first - launched


def report(path: Path, timeout: int, slowest: int) -> dict:
    """Run the notebook; everything the table and the JSON show."""
    nb = nbformat.read(path, as_version=4)
    boundary = going_further(nb)
    lines = {i: first_line(c) for i, c in enumerate(nb.cells)}  # before execution, which may change nb
    load = [round(os.getloadavg()[0], 2)]
    spans, kernel_start = run(nb, path.parent, timeout)
    load.append(round(os.getloadavg()[0], 2))
    part = (lambda i: None) if boundary is None else (lambda i: i < boundary)  # in the core path?
    cells = [
        {"index": i, "seconds": round(e - s, 2), "first_line": lines[i], "core": part(i)}
        for i, (s, e) in sorted(spans.items())
    ]
    core = None if boundary is None else max((e for i, (_, e) in spans.items() if i < boundary), default=0.0)
    return {
        "notebook": str(path.relative_to(ROOT) if path.is_relative_to(ROOT) else path),
        "commit": commit(),
        "machine": {**machine(), "load_average_before": load[0], "load_average_after": load[1]},
        "going_further_cell": boundary,
        "code_cells": len(cells),
        "core_code_cells": None if boundary is None else sum(c["core"] for c in cells),
        "core_seconds": None if core is None else round(core, 1),
        "total_seconds": round(max((e for _, e in spans.values()), default=0.0), 1),
        "kernel_start_seconds": round(kernel_start, 1),
        "targets_seconds": TARGETS,
        "slowest": sorted(cells, key=lambda c: -c["seconds"])[:slowest],
        "cells": cells,
    }


def minutes(seconds: float) -> str:
    """1.8 s, 2 min 31 s."""
    return f"{seconds:.1f} s" if seconds < 60 else f"{int(seconds // 60)} min {round(seconds % 60):02d} s"


def table(r: dict) -> str:
    """The report as text: where, the two times against their targets, the slowest cells."""
    m = r["machine"]
    lines = [
        f"{r['notebook']} at commit {r['commit']}",
        f"machine: {m['cpu']}, {m['cores']} cores, {m['memory_gb']} GB; Python {m['python']}, {m['tensorflow']}, "
        f"{m['keras']}; load average {m['load_average_before']:.2f} before, {m['load_average_after']:.2f} after",
        "",
        "| part           | code cells |         time | target |      |",
        "|----------------|-----------:|-------------:|-------:|------|",
    ]
    for name, n, seconds in [
        ("core path", r["core_code_cells"], r["core_seconds"]),
        ("whole notebook", r["code_cells"], r["total_seconds"]),
    ]:
        if seconds is not None:
            verdict, limit = ("met" if seconds <= TARGETS[name] else "OVER"), f"{TARGETS[name] / 60:.0f} min"
            lines.append(f"| {name:<14} | {n:>10} | {minutes(seconds):>12} | {limit:>6} | {verdict:<4} |")
    if r["core_seconds"] is None:
        lines.append('\nNo Markdown heading "Going further" in this notebook: only the whole notebook is timed.')
    lines += [
        f"\nNot counted: the kernel's start-up, {r['kernel_start_seconds']:.1f} s (Run All has a running kernel).",
        f"\nThe {len(r['slowest'])} slowest cells:\n",
        "| cell | seconds | part | first line |",
        "|---:|---:|---|---|",
    ]
    for c in r["slowest"]:
        part = {None: "", True: "core", False: "further"}[c["core"]]
        lines.append(f"| {c['index']} | {c['seconds']:.1f} | {part} | `{c['first_line']}` |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--notebook", type=Path, default=ROOT / "cam.ipynb", help="default: cam.ipynb")
    parser.add_argument("--json", type=Path, metavar="PATH", help="also write the results, every cell's time, here")
    parser.add_argument("--slowest", type=int, default=5, help="how many of the slowest cells to list (default 5)")
    parser.add_argument("--timeout", type=int, default=1200, help="seconds one cell may take (default 1200)")
    args = parser.parse_args(argv)

    r = report(args.notebook.resolve(), args.timeout, args.slowest)
    print()
    print(table(r))
    if args.json:
        args.json.write_text(json.dumps(r, indent=1) + "\n")
        print(f"\nwritten: {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
