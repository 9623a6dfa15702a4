"""The labs, found through one registry: adding a lab means adding its module to `LAB_MODULES`.

Each module defines `LAB`, a `Lab` entry; the CLI, `dlc labs`, `dlc run all` and the tests read
only this registry.
"""

from __future__ import annotations

import importlib

from dlconcepts.errors import UserError, did_you_mean
from dlconcepts.labs.base import Lab, LabContext, Result

# In course order.
LAB_MODULES = (
    "linear_gd",
    "backprop",
    "matrix",
    "parallel",
    "mlp_regression",
    "mlp_classification",
    "sparse_data",
    "overfitting",
    "regularization",
    "variance",
    "gait",
    "conv",
    "cnn_digits",
    "autoencoder",
    "vae",
    "gan",
    "gan_1d",
    "ppo_cartpole",
    "ppo_pendulum",
    "ppo_walker",
    "ppo_gym",
)


def all_labs() -> dict[str, Lab]:
    labs = {}
    for name in LAB_MODULES:
        lab = importlib.import_module(f"dlconcepts.labs.{name}").LAB
        labs[lab.id] = lab
    return labs


def get_lab(lab_id: str) -> Lab:
    # A lab's module is named after its id ('gan-1d' -> gan_1d.py): import that one alone, so that running
    # one lab (dlc run, run_lab in a notebook) does not pay for importing all of them.
    name = lab_id.replace("-", "_")
    if name in LAB_MODULES:
        lab = importlib.import_module(f"dlconcepts.labs.{name}").LAB
        if lab.id == lab_id:
            return lab
    labs = all_labs()
    if lab_id not in labs:
        raise UserError(f"unknown lab '{lab_id}'{did_you_mean(lab_id, labs)}; available: {', '.join(labs)}, all")
    return labs[lab_id]


__all__ = ["LAB_MODULES", "Lab", "LabContext", "Result", "all_labs", "get_lab"]
