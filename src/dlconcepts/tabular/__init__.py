"""The researcher's own table: `dlc train` and `dlc predict`.

* `validation` — the one home for cross-validation, baselines and bootstrap intervals (the gait lab uses it too);
* `tuned_mlp` — the MLP whose width and weight decay are chosen by an inner cross-validation;
* `pipeline` — `dlc train`, from reading the table to the report;
* `saved_model` — model.pt, and `dlc predict`, which applies it.
"""

from dlconcepts.tabular.pipeline import TrainOptions, parse_cv, parse_features, parse_hidden, train
from dlconcepts.tabular.saved_model import load_model, predict_table, write_predictions

__all__ = ["TrainOptions", "load_model", "parse_cv", "parse_features", "parse_hidden", "predict_table", "train",
           "write_predictions"]
