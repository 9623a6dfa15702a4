import numpy as np
import torch

from dlconcepts.train import accuracy, confusion_matrix, rmse


def test_accuracy_from_logits():
    logits = torch.tensor([[2.0, 1.0], [0.0, 3.0], [1.0, 0.0]])
    assert accuracy(logits, torch.tensor([0, 1, 1])) == 2 / 3


def test_rmse_by_hand():
    assert rmse(np.array([[1.0], [3.0]]), np.array([[0.0], [0.0]])) == np.sqrt(5)


def test_confusion_matrix_counts():
    cm = confusion_matrix(np.array([0, 0, 1, 1, 1]), np.array([0, 1, 1, 1, 0]), 2)
    np.testing.assert_array_equal(cm, [[1, 1], [1, 2]])


def test_binary_metrics_by_hand():
    from dlconcepts.train.metrics import (
        binary_accuracy,
        binary_balanced_accuracy,
        binary_roc_auc,
        binary_sensitivity,
        binary_specificity,
        mae,
    )

    y = np.array([1, 1, 1, 0, 0, 0, 0])
    score = np.array([0.9, 0.6, 0.2, 0.7, 0.1, 0.3, 0.8])
    assert binary_sensitivity(y, score) == 2 / 3 and binary_specificity(y, score) == 2 / 4
    assert binary_accuracy(y, score) == 4 / 7
    assert binary_balanced_accuracy(y, score) == (2 / 3 + 2 / 4) / 2
    # AUC by counting the 12 (positive, negative) pairs ranked correctly: 0.9 beats all 4, 0.6 beats 2, 0.2 beats 1.
    assert binary_roc_auc(y, score) == (4 + 2 + 1) / 12
    assert mae(np.array([1.0, 3.0]), np.array([2.0, 1.0])) == 1.5
