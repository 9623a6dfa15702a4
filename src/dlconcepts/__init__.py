"""dlconcepts: the course "Deep Learning – Concepts and PyTorch Development" as a library and a CLI.

Every lab follows the course's three steps: (1) define the function to be learned, (2) define a loss,
(3) find the parameters that minimize it.

From Python (Jupyter, Colab): `dlconcepts.run_lab("mlp-regression", quick=True)` and
`dlconcepts.labs_table()`, and `dlconcepts.resume_lab(run_dir)` for an interrupted run; see `dlconcepts.notebook`.
"""

from __future__ import annotations

from typing import Any

__version__ = "0.1.0"
__all__ = ["__version__", "labs_table", "resume_lab", "run_lab"]


def __getattr__(name: str) -> Any:
    # Imported on first use, so that `dlc --help` and `import dlconcepts` stay free of torch's start-up.
    if name in ("run_lab", "resume_lab", "labs_table"):
        from dlconcepts import notebook

        return getattr(notebook, name)
    raise AttributeError(f"module 'dlconcepts' has no attribute {name!r}")
