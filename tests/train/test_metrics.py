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
