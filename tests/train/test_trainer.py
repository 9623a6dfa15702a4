import math

import numpy as np
import pytest
import torch
from torch import nn

from dlconcepts.errors import ShapeMismatchError, TrainingDiverged
from dlconcepts.nets import mlp
from dlconcepts.train import Callback, Checkpoint, EarlyStopping, ProgressBar, Trainer, accuracy, load_checkpoint


def regression_data(n=40, seed=0):
    g = torch.Generator().manual_seed(seed)
    X = torch.linspace(-2, 2, n, dtype=torch.float64).reshape(-1, 1)
    y = X**2 + 0.1 * torch.randn(n, 1, generator=g, dtype=torch.float64)
    return X, y


def fresh_model(seed=0, activation="tanh"):
    torch.manual_seed(seed)
    return mlp((1, 8, 4, 1), activation).double()


def hand_loop(model, opt, X, y, epochs):
    """The course's loop, for reference: params after each epoch and the loss of each epoch."""
    losses, params = [], []
    loss_fn = nn.MSELoss()
    for _ in range(epochs):
        params.append([p.detach().clone() for p in model.parameters()])
        loss = loss_fn(model(X), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    return losses, params


def test_full_batch_equals_the_hand_loop_in_float64():
    X, y = regression_data()
    ref = fresh_model()
    ref_losses, _ = hand_loop(ref, torch.optim.Adam(ref.parameters(), lr=0.01), X, y, 30)
    model = fresh_model()
    t = Trainer(model, nn.MSELoss(), torch.optim.Adam(model.parameters(), lr=0.01), dtype=torch.float64)
    h = t.fit(X, y, 30)
    assert h.column("train_loss") == ref_losses
    for a, b in zip(model.parameters(), ref.parameters()):
        assert torch.equal(a, b)


def test_fused_default_optimizer_makes_the_same_update():
    X, y = regression_data()
    a, b = fresh_model(), fresh_model()
    Trainer(a, nn.MSELoss(), "adam", lr=0.01, dtype=torch.float64).fit(X, y, 50)
    Trainer(b, nn.MSELoss(), torch.optim.Adam(b.parameters(), lr=0.01), dtype=torch.float64).fit(X, y, 50)
    for p, q in zip(a.parameters(), b.parameters()):
        torch.testing.assert_close(p, q, rtol=1e-9, atol=1e-12)


def test_history_has_one_row_per_epoch_with_validation_and_metrics():
    X = torch.randn(30, 2)
    y = (X[:, 0] > 0).long()
    t = Trainer(mlp((2, 5, 2)), nn.CrossEntropyLoss(), lr=0.01, batch_size=7, metrics={"accuracy": accuracy})
    h = t.fit(X, y, 7, valid=(X[:10], y[:10]))
    assert len(h) == 7 and h.column("epoch") == list(range(1, 8))
    assert set(h.epochs[0]) == {"epoch", "train_loss", "valid_loss", "train_accuracy", "valid_accuracy"}
    assert h.stop_reason == "completed"
    assert t.steps == 7 * math.ceil(30 / 7)


class SeenRows(nn.Module):
    """Passes its input through a linear layer and remembers which rows it saw in training."""

    def __init__(self):
        super().__init__()
        self.lin = nn.Linear(1, 1)
        self.seen: list[float] = []

    def forward(self, x):
        if self.training:
            self.seen.extend(x[:, 0].tolist())
        return self.lin(x)


@pytest.mark.parametrize("batch_size", [1, 4, 7, 30, 100])
def test_mini_batches_cover_every_sample_once_per_epoch(batch_size):
    n = 30
    X = torch.arange(n, dtype=torch.float32).reshape(-1, 1)
    y = torch.zeros(n, 1)
    model = SeenRows()
    t = Trainer(model, nn.MSELoss(), "sgd", lr=1e-6, batch_size=batch_size, seed=1)
    t.fit(X, y, 3)
    # The shape check runs the model on two rows in eval mode; every training row after that is one epoch's.
    seen = model.seen
    assert len(seen) == 3 * n
    orders = [seen[i * n : (i + 1) * n] for i in range(3)]
    for order in orders:
        assert sorted(order) == list(range(n))
    if batch_size < n:
        assert orders[0] != orders[1]  # reshuffled every epoch


def test_early_stopping_stops_at_patience_and_restores_the_best_weights():
    # Validation targets are the negatives of the training targets: the better it fits the training
    # data, the worse the validation loss gets after the first few epochs.
    X, y = regression_data()
    states = {}

    class Record(Callback):
        def on_epoch_end(self, trainer, epoch, logs):
            states[epoch] = {k: v.clone() for k, v in trainer.model.state_dict().items()}

    model = fresh_model()
    stop = EarlyStopping(patience=5)
    t = Trainer(model, nn.MSELoss(), "adam", lr=0.05, callbacks=[Record(), stop], dtype=torch.float64)
    h = t.fit(X, y, 500, valid=(X, -y))
    valid = h.column("valid_loss")
    best = int(np.argmin(valid)) + 1
    assert h.best_epoch == best
    assert len(h) == best + 5 < 500
    assert "early stopping" in h.stop_reason
    for k, v in model.state_dict().items():
        assert torch.equal(v, states[best][k])


def test_early_stopping_treats_nan_as_no_improvement():
    class Fake:
        stop_training = False

        class history:
            stop_reason = ""
            best_epoch = None

        model = nn.Linear(1, 1)

    stop, fake = EarlyStopping(patience=2), Fake()
    stop.on_fit_start(fake)
    for epoch, value in enumerate([3.0, float("nan"), float("nan")], start=1):
        stop.on_epoch_end(fake, epoch, {"valid_loss": value})
    assert fake.stop_training and stop.best_epoch == 1


def test_early_stopping_without_validation_says_how_to_fix():
    X, y = regression_data()
    t = Trainer(fresh_model(), nn.MSELoss(), callbacks=[EarlyStopping(3)], dtype=torch.float64)
    with pytest.raises(ValueError, match="pass validation data"):
        t.fit(X, y, 5)


def test_nan_guard_stops_on_the_first_bad_step_and_keeps_the_last_good_weights():
    X, y = regression_data()
    ref = fresh_model(activation="relu")
    ref_losses, ref_params = hand_loop(ref, torch.optim.SGD(ref.parameters(), lr=10.0), X, y, 500)
    first_bad = next(i for i, v in enumerate(ref_losses) if not math.isfinite(v)) + 1  # 1-based epoch
    assert first_bad > 2

    model = fresh_model(activation="relu")
    t = Trainer(model, nn.MSELoss(), torch.optim.SGD(model.parameters(), lr=10.0), dtype=torch.float64)
    with pytest.raises(TrainingDiverged, match=f"at epoch {first_bad}.*learning rate.*standardize") as info:
        t.fit(X, y, 500)
    assert info.value.epoch == first_bad
    assert len(t.history) == first_bad - 1
    assert t.steps == first_bad - 1
    # The weights kept are those of the last epoch whose loss was finite.
    for p, q in zip(model.parameters(), ref_params[first_bad - 2]):
        assert torch.equal(p, q)
    assert all(torch.isfinite(p).all() for p in model.parameters())


def test_nan_guard_in_the_mini_batch_path_names_the_step():
    calls = {"n": 0}

    def loss_fn(pred, target):
        calls["n"] += 1
        loss = nn.functional.mse_loss(pred, target)
        return loss * float("nan") if calls["n"] == 7 else loss

    X, y = regression_data(n=12)
    t = Trainer(fresh_model(), loss_fn, batch_size=4, dtype=torch.float64)
    with pytest.raises(TrainingDiverged, match=r"at epoch 3 \(step 7\)"):
        t.fit(X, y, 10)
    assert t.steps == 6 and len(t.history) == 2


def test_shape_mismatch_is_caught_before_it_broadcasts():
    X, y = regression_data()
    t = Trainer(fresh_model(), nn.MSELoss(), dtype=torch.float64)
    with pytest.raises(ShapeMismatchError, match=r"predictions have shape \[2, 1\] but targets \[2\].*reshape"):
        t.fit(X, y[:, 0], 3)


def test_class_targets_must_be_flat():
    X = torch.randn(10, 2)
    y = torch.zeros(10, 1, dtype=torch.long)
    with pytest.raises(ShapeMismatchError, match="class targets must have shape"):
        Trainer(mlp((2, 3, 2)), nn.CrossEntropyLoss()).fit(X, y, 1)


def test_softmax_before_cross_entropy_is_refused():
    model = nn.Sequential(nn.Linear(2, 2), nn.Softmax(dim=1))
    with pytest.raises(ShapeMismatchError, match="CrossEntropyLoss applies log-softmax itself"):
        Trainer(model, nn.CrossEntropyLoss())


def test_checkpoint_round_trip_with_weights_only(tmp_path):
    X, y = regression_data()
    model = fresh_model()
    path = tmp_path / "ckpt.pt"
    t = Trainer(model, nn.MSELoss(), callbacks=[Checkpoint(path, every=4, extra={"config": {"lr": 0.001}})],
                dtype=torch.float64)
    t.fit(X, y, 10, valid=(X, y))
    other = fresh_model(seed=1)
    opt = torch.optim.Adam(other.parameters())
    state = load_checkpoint(path, other, opt)
    assert state["epoch"] == 10 and state["config"] == {"lr": 0.001}
    assert state["best_valid_loss"] == pytest.approx(min(t.history.column("valid_loss")))
    for p, q in zip(model.parameters(), other.parameters()):
        assert torch.equal(p, q)


def test_progress_bar_is_hidden_when_not_a_terminal(capsys):
    X, y = regression_data()
    Trainer(fresh_model(), nn.MSELoss(), callbacks=[ProgressBar(5)], dtype=torch.float64).fit(X, y, 5)
    captured = capsys.readouterr()
    assert captured.out == "" and captured.err == ""


def test_bad_arguments():
    with pytest.raises(ValueError, match="lr must be a positive number"):
        Trainer(fresh_model(), nn.MSELoss(), lr=-1)
    with pytest.raises(ValueError, match="batch_size"):
        Trainer(fresh_model(), nn.MSELoss(), batch_size=0)
    X, y = regression_data()
    with pytest.raises(ValueError, match="epochs must be >= 1"):
        Trainer(fresh_model(), nn.MSELoss(), dtype=torch.float64).fit(X, y, 0)
    with pytest.raises(ShapeMismatchError, match="X has 40 rows but y has 39"):
        Trainer(fresh_model(), nn.MSELoss(), dtype=torch.float64).fit(X, y[:-1], 1)


def test_predict_uses_eval_mode():
    torch.manual_seed(0)
    model = mlp((1, 50, 1), dropout=0.5)
    t = Trainer(model, nn.MSELoss())
    X = torch.randn(5, 1)
    assert torch.equal(t.predict(X), t.predict(X))  # dropout off: deterministic
    assert model.training  # and the model is back in training mode
