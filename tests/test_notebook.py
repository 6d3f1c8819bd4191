"""The lesson's shape: cam.ipynb is cam.py, the core path has a "Your turn" exercise in every
section with its solution folded under it, the figures go where they should, and the top of
the notebook states how long it runs. (nbval executes the notebook itself.)"""

from __future__ import annotations

import json
import re
from pathlib import Path

import jupytext
import pytest

import helpers

ROOT = Path(__file__).resolve().parents[1]
CORE_SECTIONS = 9  # sections 1 to 9 before "# Going further"


@pytest.fixture(scope="module")
def source() -> str:
    return (ROOT / "cam.py").read_text()


@pytest.fixture(scope="module")
def core(source) -> str:
    assert "\n# # Going further\n" in source, "cam.py has no '# Going further' heading"
    return source.split("\n# # Going further\n")[0]


def test_notebook_is_its_paired_source():
    """cam.ipynb's cells are cam.py's (python3 tasks.py notebook rebuilds one from the other)."""
    paired = jupytext.read(ROOT / "cam.py")
    saved = json.loads((ROOT / "cam.ipynb").read_text())
    assert [(c.cell_type, c.source) for c in paired.cells] == [
        (c["cell_type"], "".join(c["source"])) for c in saved["cells"]
    ], "cam.ipynb is not cam.py: run python3 tasks.py notebook"


def test_every_core_section_has_an_exercise(core):
    sections = re.split(r"\n# ## (?=\d+\. )", core)[1:]
    assert [s.split(".")[0] for s in sections] == [str(i) for i in range(1, CORE_SECTIONS + 1)]
    for section in sections:
        assert "\n# ### Your turn" in section, f"section {section.splitlines()[0]!r} has no 'Your turn' cell"
    assert core.count("\n# ### Your turn") >= 6


def test_every_code_exercise_shows_its_checked_solution(source):
    """Each solution the checkers are tested on (tests/test_exercises.py) is the one folded
    under its exercise, line for line."""
    for name, solution in helpers.SOLUTIONS.items():
        lines = [("# " + line).rstrip() for line in solution.strip().splitlines()]
        folded = "\n".join(["# ```python", *lines, "# ```"])
        block = f"# <details><summary>{'Answer' if name in helpers.QUESTIONS else 'Solution'}</summary>\n#\n{folded}\n"
        assert block in source, f"the solution of {name!r} is not folded in cam.py as in camlib/exercises.py"


def test_every_exercise_cell_starts_unanswered(source):
    calls = re.findall(r"^helpers\.check_\w+\(", source, flags=re.M)
    assert len(calls) >= 12
    cells = source.split("# %%")
    for cell in cells:
        if re.search(r"^helpers\.check_\w+\(", cell, flags=re.M):
            assert "...  #" in cell or "return ..." in cell, f"an exercise cell is already answered:\n{cell}"


def test_figures_go_to_figures_not_images(source):
    assert "helpers.IMAGES" not in source
    assert "FIGURES = helpers.FIGURES" in source
    for name in re.findall(r'FIGURES / "([\w.]+)"', source):
        assert name.endswith((".jpg", ".png")), name


def test_the_top_states_the_run_times(source):
    top = source.split("# # Core path")[0]
    assert "CORE_TIME" not in top and "TOTAL_TIME" not in top
    assert re.search(r"core path takes\s+(#\s+)?about \d", top), "the top must state the core path's run time"
    assert re.search(r"whole notebook about \d", top)
