"""Step 3 of the course — minimizers."""

from dlconcepts.train.callbacks import Callback, Checkpoint, EarlyStopping, LRScheduler, ProgressBar, load_checkpoint
from dlconcepts.train.metrics import accuracy, confusion_matrix, rmse
from dlconcepts.train.optim import OPTIMIZERS, make_optimizer
from dlconcepts.train.trainer import History, Trainer, check_prediction_shape

__all__ = [
    "OPTIMIZERS",
    "Callback",
    "Checkpoint",
    "EarlyStopping",
    "History",
    "LRScheduler",
    "ProgressBar",
    "Trainer",
    "check_prediction_shape",
    "accuracy",
    "confusion_matrix",
    "load_checkpoint",
    "make_optimizer",
    "rmse",
]
