"""Each model of a stack must train exactly as it would alone (float64), and as a population in float32."""

import numpy as np
import pytest
import torch
from torch import nn

from dlconcepts.nets import mlp
from dlconcepts.train import EarlyStopping, Trainer
from dlconcepts.train.many_models import (
    ManySettings,
    RowMasks,
    StackedMLP,
    bytes_per_model,
    chunk_size,
    seeded_models,
    train_many,
)

SIZES = (1, 12, 8, 1)


def per_model_data(R, n, seed=0, dtype=torch.float64):
    g = torch.Generator().manual_seed(seed)
    X = torch.rand(R, n, 1, generator=g, dtype=dtype) * 4 - 2
    y = X**3 - X + 0.1 * torch.randn(R, n, 1, generator=g, dtype=dtype)
    return X, y


def assert_close_relative(a: torch.Tensor, b: torch.Tensor, rtol: float):
    scale = torch.maximum(a.abs().max(), b.abs().max())
    assert (a - b).abs().max() <= rtol * scale, float((a - b).abs().max() / scale)


def test_stack_and_unstack_round_trip():
    models = seeded_models(SIZES, seeds=[3, 4, 5], activation="tanh")
    stack = StackedMLP.from_models(models, "tanh")
    X = torch.randn(3, 7, 1)
    out = stack(X)
    for r, model in enumerate(models):
        torch.testing.assert_close(out[r], model(X[r]))
        for p, q in zip(stack.model(r).parameters(), model.parameters()):
            assert torch.equal(p, q)


def test_seeded_models_are_what_a_seed_builds_alone():
    torch.manual_seed(11)
    alone = mlp(SIZES)
    (from_seed,) = seeded_models(SIZES, [11])
    for p, q in zip(alone.parameters(), from_seed.parameters()):
        assert torch.equal(p, q)
    small = seeded_models(SIZES, [0, 1], init_std=0.002)
    weights = torch.cat([p.flatten() for m in small for p in m.parameters()])
    assert float(weights.detach().std()) == pytest.approx(0.002, rel=0.15)


def train_alone(model, X, y, settings: ManySettings, valid=None):
    """The reference: the package's single-model Trainer, with the same optimizer settings."""
    def loss_fn(pred, target):
        loss = nn.functional.mse_loss(pred, target)
        if settings.l1:
            loss = loss + settings.l1 * sum(m.weight.abs().sum() for m in model if isinstance(m, nn.Linear))
        return loss

    callbacks = [EarlyStopping(settings.patience)] if settings.patience else []
    trainer = Trainer(model, loss_fn, settings.optimizer, lr=settings.lr, weight_decay=settings.weight_decay,
                      callbacks=callbacks, dtype=torch.float64)
    return trainer.fit(X, y, settings.epochs, valid=valid)


@pytest.mark.parametrize(
    "settings",
    [
        ManySettings(epochs=40, optimizer="adam", lr=0.01),
        ManySettings(epochs=40, optimizer="sgd", lr=0.05),
        ManySettings(epochs=40, optimizer="adam", lr=0.01, weight_decay=0.01),
        ManySettings(epochs=40, optimizer="adam", lr=0.01, l1=1e-3),
    ],
    ids=["adam", "sgd", "l2", "l1"],
)
def test_each_model_trains_exactly_as_alone_in_float64(settings):
    R, seeds = 5, [10, 11, 12, 13, 14]
    X, y = per_model_data(R, 16)
    stack = StackedMLP.from_models(seeded_models(SIZES, seeds), "relu").double()
    result = train_many(stack, X, y, settings, dtype=torch.float64)
    for r, model in enumerate(seeded_models(SIZES, seeds)):
        history = train_alone(model.double(), X[r], y[r], settings)
        if not settings.l1:  # the reference's loss includes the penalty; the stack reports the data loss
            np.testing.assert_allclose(result.train_loss[:, r], history.column("train_loss"), rtol=1e-6)
        for p, q in zip(result.model.model(r).parameters(), model.parameters()):
            assert_close_relative(p, q, 1e-6)


def test_early_stopping_per_model_matches_the_callback():
    R, seeds = 4, [1, 2, 3, 4]
    X, y = per_model_data(R, 16, seed=1)
    Xv, yv = per_model_data(R, 16, seed=2)
    yv = -yv  # the better a model fits its training rows, the worse it does here: each stops early
    settings = ManySettings(epochs=300, optimizer="adam", lr=0.02, patience=7)
    result = train_many(StackedMLP.from_models(seeded_models(SIZES, seeds)).double(), X, y, settings,
                        valid=(Xv, yv), dtype=torch.float64)
    for r, model in enumerate(seeded_models(SIZES, seeds)):
        history = train_alone(model.double(), X[r], y[r], settings, valid=(Xv[r], yv[r]))
        assert result.epochs_used[r] == len(history) < 300
        assert result.best_epoch[r] == history.best_epoch
        for p, q in zip(result.model.model(r).parameters(), model.parameters()):
            assert_close_relative(p, q, 1e-6)
        assert np.isnan(result.train_loss[len(history):, r]).all()


def test_row_masks_and_per_model_l2_train_each_model_as_alone():
    """Folds of one table as one stack: model r learns from its rows, early-stops on its other rows and has its
    own L2 strength; models that stop leave the stack on the way. Each must equal the same model trained alone."""
    R, n, seeds = 6, 24, [5, 6, 7, 8, 9, 10]
    g = torch.Generator().manual_seed(3)
    X = torch.rand(n, 1, generator=g, dtype=torch.float64) * 4 - 2
    y = X**3 - X + 0.5 * torch.randn(n, 1, generator=g, dtype=torch.float64)
    folds = np.arange(n) % 3
    train = np.array([folds != r % 3 for r in range(R)])
    l2 = np.array([0.0, 0.0, 0.0, 0.3, 0.3, 0.3])
    settings = ManySettings(epochs=400, optimizer="adam", lr=0.03, patience=15)
    result = train_many(StackedMLP.from_models(seeded_models(SIZES, seeds)).double(), X, y, settings,
                        rows=RowMasks(train, ~train), l2=l2, dtype=torch.float64)
    assert len(set(result.epochs_used.tolist())) > 2  # stops spread out: the stack shrank while training
    for r, model in enumerate(seeded_models(SIZES, seeds)):
        model = model.double()
        linears = [m for m in model if isinstance(m, nn.Linear)]
        # torch's own coupled L2 (λ·W added to the gradient), on the weights' parameter group only
        adam = torch.optim.Adam([{"params": [m.weight for m in linears], "weight_decay": float(l2[r])},
                                 {"params": [m.bias for m in linears], "weight_decay": 0.0}], lr=settings.lr)
        trainer = Trainer(model, nn.MSELoss(), adam, callbacks=[EarlyStopping(settings.patience)], dtype=torch.float64)
        rows, held_out = np.flatnonzero(train[r]), np.flatnonzero(~train[r])
        history = trainer.fit(X[rows], y[rows], settings.epochs, valid=(X[held_out], y[held_out]))
        assert result.epochs_used[r] == len(history) and result.best_epoch[r] == history.best_epoch
        np.testing.assert_allclose(result.train_loss[: len(history), r], history.column("train_loss"), rtol=1e-6)
        np.testing.assert_allclose(result.valid_loss[: len(history), r], history.column("valid_loss"), rtol=1e-6)
        for p, q in zip(result.model.model(r).parameters(), model.parameters()):
            assert_close_relative(p, q, 1e-6)


def test_row_masks_are_checked():
    stack = StackedMLP.from_models(seeded_models(SIZES, [0, 1])).double()
    X, y = torch.randn(6, 1), torch.randn(6, 1)
    masks = np.ones((2, 6), dtype=bool)
    with pytest.raises(ValueError, match="shape"):
        train_many(stack, X, y, ManySettings(epochs=2), rows=RowMasks(masks[:, :5]))
    with pytest.raises(ValueError, match="at least one row"):
        RowMasks(np.zeros((2, 6), dtype=bool))
    with pytest.raises(ValueError, match="one strength"):
        train_many(stack, X, y, ManySettings(epochs=2), rows=RowMasks(masks), l2=[0.1])


def test_float32_population_agrees_over_a_long_run():
    # In float32, rounding differences between a batched and a single product grow over training,
    # so single models drift apart; the spread of the population must still be the same.
    scipy_stats = pytest.importorskip("scipy.stats")
    R = 40
    seeds = list(range(100, 100 + R))
    X, y = per_model_data(R, 16, seed=3, dtype=torch.float32)
    settings = ManySettings(epochs=400, optimizer="adam", lr=0.01)
    result = train_many(StackedMLP.from_models(seeded_models(SIZES, seeds)), X, y, settings)
    stacked = result.train_loss[-1]
    alone = []
    for r, model in enumerate(seeded_models(SIZES, seeds)):
        trainer = Trainer(model, nn.MSELoss(), "adam", lr=0.01)
        alone.append(trainer.fit(X[r], y[r], settings.epochs).epochs[-1]["train_loss"])
    alone = np.array(alone)
    assert scipy_stats.ks_2samp(stacked, alone).pvalue > 0.05
    assert np.median(stacked) == pytest.approx(np.median(alone), rel=0.1)


def test_chunks_give_the_same_models_as_one_stack():
    R, seeds = 6, list(range(6))
    X, y = per_model_data(R, 8, seed=4)
    settings = ManySettings(epochs=15, lr=0.01)  # the default budgets hold all six models in one stack
    whole = train_many(StackedMLP.from_models(seeded_models(SIZES, seeds)).double(), X, y, settings,
                       dtype=torch.float64)
    per_model = bytes_per_model(SIZES, 8, 0, 0, dtype_bytes=8)
    budget_mb = 2.5 * per_model / 2**20  # room for two models at a time
    chunked = train_many(StackedMLP.from_models(seeded_models(SIZES, seeds)).double(), X, y,
                         ManySettings(epochs=15, lr=0.01, memory_budget_mb=budget_mb), dtype=torch.float64)
    cpu_chunked = train_many(StackedMLP.from_models(seeded_models(SIZES, seeds)).double(), X, y,
                             ManySettings(epochs=15, lr=0.01, cpu_chunk_mb=budget_mb), dtype=torch.float64)
    assert cpu_chunked.chunks == 3
    assert whole.chunks == 1 and chunked.chunks == 3
    for p, q in zip(whole.model.parameters(), chunked.model.parameters()):
        torch.testing.assert_close(p, q, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(whole.train_loss, chunked.train_loss, rtol=1e-12)


def test_chunk_size_grows_linearly_with_budget():
    per = bytes_per_model((1, 200, 150, 1), 32, 0, 0)
    assert chunk_size(300, per, 10 * per / 2**20) == 10
    assert chunk_size(300, per, 1e9) == 300
    assert chunk_size(300, per, 1e-9) == 1


def test_shared_data_and_classification():
    R = 3
    g = torch.Generator().manual_seed(0)
    X = torch.randn(40, 2, generator=g)
    y = (X[:, 0] + X[:, 1] > 0).long()
    stack = StackedMLP.from_models(seeded_models((2, 8, 2), [0, 1, 2], "tanh"), "tanh")
    result = train_many(stack, X, y, ManySettings(epochs=60, lr=0.05, loss="cross_entropy"))
    accuracy = (result.predict(X).argmax(dim=2) == y).float().mean(dim=1)
    assert accuracy.shape == (R,) and bool((accuracy > 0.85).all())
    assert result.train_loss.shape == (60, R) and result.train_loss[-1].max() < result.train_loss[0].min()


def test_a_diverging_model_does_not_touch_the_others():
    R, seeds = 3, [0, 1, 2]
    X, y = per_model_data(R, 16)
    X[1] *= 1e30  # model 1's rows overflow its loss
    clean = train_many(StackedMLP.from_models(seeded_models(SIZES, [0, 2])).double(), X[[0, 2]], y[[0, 2]],
                       ManySettings(epochs=20, optimizer="sgd", lr=1e-2), dtype=torch.float64)
    mixed = train_many(StackedMLP.from_models(seeded_models(SIZES, seeds)).double(), X, y,
                       ManySettings(epochs=20, optimizer="sgd", lr=1e-2), dtype=torch.float64)
    assert mixed.diverged.tolist() == [False, True, False]
    np.testing.assert_allclose(mixed.train_loss[:, [0, 2]], clean.train_loss, rtol=1e-12)


def test_dropout_is_off_in_predict_and_validation_needs_data():
    stack = StackedMLP.from_models(seeded_models(SIZES, [0, 1], dropout=0.5), dropout=0.5)
    X, y = per_model_data(2, 8, dtype=torch.float32)
    result = train_many(stack, X, y, ManySettings(epochs=3))
    assert torch.equal(result.predict(X), result.predict(X))
    with pytest.raises(ValueError, match="needs validation data"):
        train_many(stack, X, y, ManySettings(epochs=3, patience=2))


@pytest.mark.parametrize("activation", ["relu", "tanh", "sigmoid", "identity"])
@pytest.mark.parametrize("loss", ["mse", "cross_entropy"])
@pytest.mark.parametrize("weighted", [False, True], ids=["mean", "row-weights-and-l2"])
@pytest.mark.parametrize("outputs", [4, 2, 1], ids=["wide", "narrow-2", "narrow-1"])  # NARROW = 3: both products
def test_hand_gradients_equal_autograd(activation, loss, weighted, outputs):
    sizes = (3, 7, 5, outputs)
    stack = StackedMLP.from_models(seeded_models(sizes, [1, 2, 3], activation), activation).double()
    g = torch.Generator().manual_seed(0)
    X = torch.randn(3, 6, 3, generator=g, dtype=torch.float64)
    y = torch.randn(3, 6, outputs, generator=g, dtype=torch.float64) if loss == "mse" else torch.randint(0, outputs, (3, 6), generator=g)
    l1 = 1e-2
    weights = l2 = None
    if weighted:  # each model its own rows (some weight 0) and its own L2 strength
        mask = torch.rand(3, 6, generator=g, dtype=torch.float64) > 0.4
        mask[:, 0] = True
        weights = mask / mask.sum(dim=1, keepdim=True)
        l2 = torch.tensor([0.0, 0.1, 1.0], dtype=torch.float64).view(3, 1, 1)
    row_losses = stack._gradients(X, y, loss, l1, weights, l2)
    hand = [p.grad.clone() for p in stack.parameters()]
    for p in stack.parameters():
        p.grad = None
    from dlconcepts.train.many_models import _per_model_loss

    auto_losses = _per_model_loss(stack(X), y, loss, weights)
    penalty = l1 * sum(W.abs().sum() for W in stack.weights())
    if weighted:
        penalty = penalty + sum((l2 / 2 * W**2).sum() for W in stack.weights())
    (auto_losses.sum() + penalty).backward()
    reduced = row_losses.mean(dim=1) if weights is None else (row_losses * weights).sum(dim=1)
    torch.testing.assert_close(reduced, auto_losses.detach(), rtol=1e-12, atol=1e-14)
    for h, p in zip(hand, stack.parameters()):
        torch.testing.assert_close(h, p.grad, rtol=1e-10, atol=1e-13)


def test_per_layer_dropout_rates():
    stack = StackedMLP((1, 40, 30, 1), 2, dropout=(0.5, 0.2))
    assert stack.dropout_rates == (0.5, 0.2)
    with pytest.raises(ValueError, match="one rate in"):
        StackedMLP((1, 40, 30, 1), 2, dropout=(0.5,))
    # Training draws fresh masks each step; eval mode uses none, so its gradients repeat exactly.
    stack = StackedMLP.from_models(seeded_models((1, 40, 30, 1), [0, 1]), dropout=(0.5, 0.2))
    X, y = torch.randn(2, 50, 1), torch.randn(2, 50, 1)
    stack.train()
    stack._gradients(X, y, "mse")
    first = [p.grad.clone() for p in stack.parameters()]
    stack._gradients(X, y, "mse")
    assert not all(torch.equal(a, p.grad) for a, p in zip(first, stack.parameters()))
    stack.eval()
    stack._gradients(X, y, "mse")
    once = [p.grad.clone() for p in stack.parameters()]
    stack._gradients(X, y, "mse")
    assert all(torch.equal(a, p.grad) for a, p in zip(once, stack.parameters()))
