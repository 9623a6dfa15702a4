"""The notebooks in notebooks/: committed stripped and valid, one for every lab, and each executed top to
bottom in a fresh kernel in quick mode (DLC_QUICK=1), its last cell asserting the lab's number."""

from __future__ import annotations

import os
import re
import time
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient
from nbclient.exceptions import CellExecutionError

from dlconcepts.labs import all_labs

NOTEBOOK_DIR = Path(__file__).resolve().parents[1] / "notebooks"
NOTEBOOKS = sorted(NOTEBOOK_DIR.glob("*.ipynb"))
CELL_TIMEOUT_S = 300  # a hung kernel fails the test instead of the suite


def read(path: Path) -> nbformat.NotebookNode:
    return nbformat.read(path, as_version=nbformat.NO_CONVERT)


def code_of(nb: nbformat.NotebookNode) -> list[str]:
    return [cell.source for cell in nb.cells if cell.cell_type == "code"]


def execute(nb: nbformat.NotebookNode, cwd: Path) -> nbformat.NotebookNode:
    """Run every cell in a fresh kernel, in quick mode (DLC_QUICK=1), whose working directory is `cwd`
    (so a notebook can read nothing of the repository by a relative path); nbclient shuts the kernel
    down when the notebook ends or fails, and a cell that runs past CELL_TIMEOUT_S fails it."""
    env = {k: v for k, v in os.environ.items() if k != "MPLBACKEND"}  # the kernel sets its inline backend
    env["DLC_QUICK"] = "1"
    # Kernels run side by side, one per core (executed_notebooks): each gets one thread for torch and for
    # the BLAS under NumPy and scikit-learn, or two kernels' threads fight over the cores (the gait lab's
    # logistic baselines ran 4-7x slower so).
    env.update(OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1", MKL_NUM_THREADS="1")
    client = NotebookClient(nb, timeout=CELL_TIMEOUT_S, kernel_name="python3",
                            resources={"metadata": {"path": str(cwd)}})
    client.execute(env=env)
    return nb


def _timed_execution(path: Path, cwd: Path) -> tuple[nbformat.NotebookNode, float]:
    start = time.perf_counter()
    nb = execute(read(path), cwd)
    return nb, time.perf_counter() - start


@pytest.fixture(scope="session")
def executed_notebooks(request, tmp_path_factory) -> dict[Path, Future]:
    """The selected notebooks (all, or those `-k` picked) started at once, as many at a time as there
    are cores: a kernel spends seconds importing torch and matplotlib on one core, so two kernels keep
    two cores busy."""
    name = test_notebook_runs_top_to_bottom_and_its_check_passes.__name__
    selected = [item.callspec.params["path"] for item in request.session.items if item.originalname == name]
    workers = max(1, min(4, os.cpu_count() or 1))
    pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="notebook")
    futures = {p: pool.submit(_timed_execution, p, tmp_path_factory.mktemp("notebook")) for p in selected}
    yield futures
    pool.shutdown(wait=True, cancel_futures=True)


def test_there_are_notebooks():
    assert len(NOTEBOOKS) >= 21, [p.name for p in NOTEBOOKS]


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_is_committed_stripped_and_valid(path):
    nb = read(path)
    assert nb.nbformat == 4
    nbformat.validate(nb)
    for i, cell in enumerate(nb.cells):
        if cell.cell_type == "code":
            assert cell.outputs == [], f"{path.name}: cell {i} holds outputs; strip them before committing"
            assert cell.execution_count is None, f"{path.name}: cell {i} has an execution count"
    first = code_of(nb)[0]
    assert '"google.colab" in sys.modules' in first and "pip" in first, f"{path.name}: the first code cell installs in Colab"
    tagged = [c for c in nb.cells if "parameters" in c.get("metadata", {}).get("tags", [])]
    assert len(tagged) == 1 and 'os.environ.get("DLC_QUICK")' in tagged[0].source, f"{path.name}: one parameters cell reading DLC_QUICK"
    assert "assert " in code_of(nb)[-1], f"{path.name}: the last cell checks the lab's number"


def test_every_lab_has_a_notebook_and_so_do_excel_and_dlc_train():
    sources = {p.name: "\n".join(code_of(read(p))) for p in NOTEBOOKS}
    everything = "\n".join(sources.values())
    missing = [lab for lab in all_labs() if f'run_lab("{lab}"' not in everything]
    assert not missing, f"no notebook runs {missing}"
    assert any("write_workbook" in s and "recalculate" in s for s in sources.values()), "an Excel notebook writes and reads back the workbook"
    assert any("tabular.train(" in s or "dlc train" in s for s in sources.values()), "a notebook runs dlc train on the gait table"


# Reading outside the notebook's run directory or the package, or fetching anything, is refused by
# pattern; executing each notebook in an empty working directory proves it needs no file of the repository.
FORBIDDEN = [
    (re.compile(r"\b(urllib|requests|httpx|wget|curl)\b"), "downloads"),
    (re.compile(r"https?://"), "a URL"),
    (re.compile(r"download\s*=\s*True"), "a dataset download"),
    (re.compile(r"""["'](/|~|\.\./)"""), "a path outside the run directory"),
    (re.compile(r"Path\.home|expanduser"), "the home folder"),
]


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_reads_no_outside_path_and_downloads_nothing(path):
    cells = code_of(read(path))
    for i, source in enumerate(cells[1:], start=1):  # cell 0 is the Colab install (pip from the repository)
        for pattern, what in FORBIDDEN:
            assert not pattern.search(source), f"{path.name}: code cell {i} has {what}: {pattern.pattern}"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_runs_top_to_bottom_and_its_check_passes(path, executed_notebooks):
    try:
        _, seconds = executed_notebooks[path].result()
    except CellExecutionError as exc:
        pytest.fail(f"{path.name} failed in quick mode:\n{str(exc)[-3000:]}")
    print(f"{path.name}: {seconds:.1f} s")


def _with_cell_after_parameters(nb: nbformat.NotebookNode, source: str) -> nbformat.NotebookNode:
    """What papermill does with parameters: a cell right after the one tagged 'parameters'."""
    (index,) = [i for i, c in enumerate(nb.cells) if "parameters" in c.get("metadata", {}).get("tags", [])]
    nb.cells.insert(index + 1, nbformat.v4.new_code_cell(source))
    return nb


def test_a_check_cell_fails_when_its_lab_is_broken(tmp_path):
    # One epoch cannot fit the quadratic: the lab runs to its end, and only the check cell objects.
    nb = _with_cell_after_parameters(read(NOTEBOOK_DIR / "1.2 MLP regression.ipynb"), 'CONFIG = {"epochs": 1}')
    with pytest.raises(CellExecutionError) as caught:
        execute(nb, tmp_path)
    assert caught.value.ename == "AssertionError"
    assert "the target is ≤ 1%" in caught.value.evalue
    failed = [i for i, c in enumerate(nb.cells) if any(o.get("output_type") == "error" for o in c.get("outputs", []))]
    assert failed == [len(nb.cells) - 1], failed


def test_a_user_error_in_a_notebook_is_one_line(tmp_path):
    nb = nbformat.v4.new_notebook(cells=[
        nbformat.v4.new_code_cell('import dlconcepts\ndlconcepts.run_lab("mlp-regression", quick=True, lrr=0.1)'),
    ])
    with pytest.raises(CellExecutionError):
        execute(nb, tmp_path)
    (error,) = [o for o in nb.cells[0].outputs if o.output_type == "error"]
    assert error.traceback == [
        "ConfigError: unknown config key 'lrr' for lab 'mlp-regression' (did you mean 'lr'?); accepted keys: "
        "hidden, activation, optimizer, lr, epochs, patience, valid_fraction, test_fraction"
    ]
    assert list(tmp_path.iterdir()) == [], "nothing is written before the config is valid"
