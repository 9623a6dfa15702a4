"""train.self_supervised: the ELBO's parts, KL warm-up, seeded VAE runs, PCA as the best linear autoencoder,
and the importance-weighted bound against the exact log p(x) of a linear Gaussian model."""

import math

import numpy as np
import pytest
import torch
from torch import nn

from dlconcepts import losses
from dlconcepts.data.digits import load_digits, split_images
from dlconcepts.errors import TrainingDiverged
from dlconcepts.nets.autoencoder import VAE, make_vae, mlp_autoencoder
from dlconcepts.train import EarlyStopping
from dlconcepts.train.self_supervised import (
    ElboTerms,
    VAETrainer,
    autoencoder_mse,
    elbo_terms,
    fit_autoencoder,
    importance_weighted_nll,
    fit_pca,
    kl_warmup_weight,
    pca_reconstruct,
    pca_reconstruction_mse,
)


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def digits():
    data = load_digits()
    split = split_images(data, np.random.default_rng(0), 0.2, 0.2)
    return data, split


def small_vae(seed=0, likelihood="bernoulli"):
    torch.manual_seed(seed)
    return make_vae("mlp", (1, 8, 8), 2, hidden=(32,), activation="elu", likelihood=likelihood)


def test_elbo_terms_are_the_reconstruction_and_kl_of_the_given_eps():
    model = small_vae()
    x = torch.rand(7, 1, 8, 8, generator=torch.Generator().manual_seed(1))
    eps = torch.randn(7, 2, generator=torch.Generator().manual_seed(2))
    terms = elbo_terms(model, x, eps)
    mu, log_var = model.encode(x)
    z = mu + torch.exp(0.5 * log_var) * eps
    torch.testing.assert_close(terms.reconstruction, losses.bernoulli_nll(model.decoder(z), x, "none"))
    torch.testing.assert_close(terms.kl, losses.gaussian_kl_to_standard_normal(mu, log_var, "none"))
    torch.testing.assert_close(terms.negative_elbo, terms.reconstruction + terms.kl)
    torch.testing.assert_close(terms.loss(0.25), (terms.reconstruction + 0.25 * terms.kl).mean())
    torch.testing.assert_close(terms.loss(), terms.negative_elbo.mean())
    gaussian = small_vae(likelihood="gaussian")
    g_terms = elbo_terms(gaussian, x, eps)
    mu, log_var = gaussian.encode(x)
    decoded = gaussian.decoder(mu + torch.exp(0.5 * log_var) * eps)
    torch.testing.assert_close(g_terms.reconstruction, losses.gaussian_nll(decoded, x, gaussian.sigma, "none"))


def test_kl_warmup_weights():
    assert [kl_warmup_weight(e, 4) for e in range(1, 7)] == [0.25, 0.5, 0.75, 1.0, 1.0, 1.0]
    assert kl_warmup_weight(1, 0) == 1.0 and kl_warmup_weight(50, 0) == 1.0
    with pytest.raises(ValueError, match="count from 1"):
        kl_warmup_weight(0, 4)


def fit_vae(data, split, seed, epochs=4, warmup=3, batch_size=128, callbacks=()):
    model = small_vae(seed)
    trainer = VAETrainer(model, lr=3e-3, batch_size=batch_size, warmup_epochs=warmup, seed=seed, callbacks=callbacks)
    history = trainer.fit(data.images[split.train][:400], epochs, data.images[split.valid][:200])
    return model, trainer, history


def test_vae_history_parts_add_up_and_follow_the_warmup(digits):
    data, split = digits
    _, trainer, history = fit_vae(data, split, seed=3)
    assert len(history) == 4
    for row in history.epochs:
        beta = kl_warmup_weight(row["epoch"], 3)
        assert row["kl_weight"] == beta
        assert row["train_neg_elbo"] == pytest.approx(row["train_reconstruction"] + row["train_kl"], rel=1e-12)
        assert row["train_loss"] == pytest.approx(row["train_reconstruction"] + beta * row["train_kl"], rel=1e-6)
        assert row["valid_neg_elbo"] == pytest.approx(row["valid_reconstruction"] + row["valid_kl"], rel=1e-12)
        assert row["valid_loss"] == row["valid_neg_elbo"]
    assert history.epochs[-1]["train_neg_elbo"] < history.epochs[0]["train_neg_elbo"]
    # evaluate() averages the exact per-image ELBO terms; recompute them here from the same seeded ε.
    x = trainer.as_tensor(data.images[split.valid][:200])
    eps = torch.randn(len(x), 2, generator=torch.Generator().manual_seed(11))
    trainer.model.eval()
    with torch.no_grad():
        terms = elbo_terms(trainer.model, x, eps)
    result = trainer.evaluate(x, seed=11)
    assert result["reconstruction"] == pytest.approx(terms.reconstruction.mean().item(), rel=1e-6)
    assert result["kl"] == pytest.approx(terms.kl.mean().item(), rel=1e-6)


def test_seeded_vae_runs_reproduce_and_seeds_differ(digits):
    data, split = digits
    model_a, _, history_a = fit_vae(data, split, seed=5, epochs=2)
    model_b, _, history_b = fit_vae(data, split, seed=5, epochs=2)
    model_c, _, history_c = fit_vae(data, split, seed=6, epochs=2)
    assert history_a.epochs == history_b.epochs
    for a, b in zip(model_a.state_dict().values(), model_b.state_dict().values()):
        assert torch.equal(a, b)
    assert history_a.epochs != history_c.epochs


def test_vae_trainer_works_with_early_stopping_and_full_batches(digits):
    data, split = digits
    stopper = EarlyStopping(patience=1)
    _, trainer, history = fit_vae(data, split, seed=1, epochs=3, warmup=0, batch_size=None, callbacks=[stopper])
    assert trainer.steps == len(history)  # one step per epoch
    assert history.best_epoch is not None


def test_vae_trainer_stops_on_a_non_finite_loss_with_a_message():
    model = VAE(nn.Sequential(nn.Flatten(), nn.Linear(4, 2)), nn.Sequential(nn.Linear(1, 4), nn.Unflatten(1, (1, 2, 2))),
                latent_dim=1)
    with torch.no_grad():
        model.encoder[1].bias.fill_(float("nan"))
    trainer = VAETrainer(model, lr=1e-3, batch_size=None)
    with pytest.raises(TrainingDiverged, match="negative ELBO became nan at epoch 1"):
        trainer.fit(torch.rand(3, 1, 2, 2), 2)


def test_pca_error_is_the_sum_of_the_discarded_eigenvalues(digits):
    data, split = digits
    train = data.flat[split.train].astype(np.float64)
    eigenvalues = np.sort(np.linalg.eigvalsh(np.cov(train.T, bias=True)))[::-1]
    pca = fit_pca(train, 10)
    on_train = pca_reconstruction_mse(pca, train, [1, 2, 10])
    for k, mse in on_train.items():
        # mean over rows and pixels of the residual = (1/D) Σ_{j>k} λ_j (Eckart–Young).
        assert mse == pytest.approx(eigenvalues[k:].sum() / train.shape[1], rel=1e-9)
    on_test = pca_reconstruction_mse(pca, data.flat[split.test], range(1, 11))
    assert list(on_test.values()) == sorted(on_test.values(), reverse=True)  # more components, less error
    # The nested reconstruction with k of the 10 components equals a fit with k components alone (sklearn's own).
    alone = fit_pca(train, 2)
    np.testing.assert_allclose(pca_reconstruct(pca, data.flat[split.test], 2),
                               alone.inverse_transform(alone.transform(data.flat[split.test].astype(np.float64))), atol=1e-10)
    with pytest.raises(ValueError, match="has 10 components"):
        pca_reconstruct(pca, train, 11)


def test_a_linear_autoencoder_approaches_pca_from_above(digits):
    # PCA is the best linear autoencoder on the data it is fitted to: gradient descent on a linear
    # 64→2→64 autoencoder (with biases) must land at or above PCA's training MSE, and close to it.
    data, split = digits
    pca = pca_reconstruction_mse(fit_pca(data.flat[split.train], 2), data.flat[split.train], [2])[2]
    torch.manual_seed(0)
    linear = mlp_autoencoder((1, 8, 8), (), 2, "identity", output="identity")
    x = data.images[split.train].astype(np.float64)
    fit_autoencoder(linear, x, 300, None, lr=0.05, batch_size=None, dtype=torch.float64)
    trained = autoencoder_mse(linear, x)
    assert pca * (1 - 1e-9) <= trained <= 1.01 * pca, (trained, pca)


def linear_gaussian_model(posterior_exact: bool):
    """z ~ N(0, 1), x | z ~ N(w z + b, s² I) in 3-D: p(x) = N(b, w wᵀ + s² I) and q can be the exact posterior
    N(m(x), v) with v = 1 / (1 + wᵀw / s²), m(x) = v wᵀ(x − b) / s²."""
    w = torch.tensor([[1.5], [-0.7], [0.4]], dtype=torch.float64)
    b = torch.tensor([0.2, 0.0, -0.3], dtype=torch.float64)
    s = 0.5
    v = 1.0 / (1.0 + (w.T @ w).item() / s**2)
    encoder = nn.Linear(3, 2).double()
    decoder = nn.Linear(1, 3).double()
    with torch.no_grad():
        decoder.weight.copy_(w)
        decoder.bias.copy_(b)
        gain = v * w.T / s**2
        encoder.weight.copy_(torch.cat([gain, torch.zeros(1, 3, dtype=torch.float64)]))
        encoder.bias.copy_(torch.tensor([-(gain @ b).item(), math.log(v)], dtype=torch.float64))
        if not posterior_exact:
            encoder.weight[0] *= 0.6
            encoder.bias[1] += 1.0
    model = VAE(encoder, decoder, latent_dim=1, likelihood="gaussian", sigma=s)
    marginal = torch.distributions.MultivariateNormal(b, w @ w.T + s**2 * torch.eye(3, dtype=torch.float64))
    return model, marginal


def test_importance_weighted_bound_and_elbo_against_the_exact_marginal_likelihood():
    x = torch.tensor([[0.5, 0.1, -0.2], [-1.0, 1.2, 0.3], [2.0, -0.5, 0.0]], dtype=torch.float64)
    exact, marginal = linear_gaussian_model(posterior_exact=True)
    true_nll = -marginal.log_prob(x)
    # With q(z|x) the exact posterior every importance weight equals p(x): the estimate is exact for any K.
    estimate = importance_weighted_nll(exact, x, 7, torch.Generator().manual_seed(0))
    torch.testing.assert_close(estimate, true_nll, rtol=1e-10, atol=1e-10)
    in_pieces = importance_weighted_nll(exact, x, 7, torch.Generator().manual_seed(0), max_rows=2)  # 2 images × 1 draw at a time
    torch.testing.assert_close(in_pieces, true_nll, rtol=1e-10, atol=1e-10)
    # ... and the ELBO is tight: its Monte Carlo mean over many ε equals −log p(x) up to sampling error.
    eps = torch.randn(20_000, 1, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    for i in range(len(x)):
        values = elbo_terms(exact, x[i].expand(len(eps), 3), eps).negative_elbo.detach()
        assert abs(values.mean() - true_nll[i]) <= 4 * values.std() / math.sqrt(len(values))

    # A wrong q: the −ELBO lies above −log p(x) by KL(q ‖ posterior), and K importance samples close most of the gap.
    wrong, _ = linear_gaussian_model(posterior_exact=False)
    neg_elbo = torch.stack([elbo_terms(wrong, x[i].expand(len(eps), 3), eps).negative_elbo.detach().mean()
                            for i in range(len(x))])
    iw = importance_weighted_nll(wrong, x, 5000, torch.Generator().manual_seed(2))
    assert (neg_elbo > true_nll + 0.05).all()
    assert (iw < neg_elbo).all()
    assert ((iw - true_nll).abs() < 0.1 * (neg_elbo - true_nll)).all(), (iw, true_nll, neg_elbo)


def test_elbo_terms_class_is_plain_arithmetic():
    terms = ElboTerms(reconstruction=torch.tensor([3.0, 5.0]), kl=torch.tensor([1.0, 2.0]))
    torch.testing.assert_close(terms.negative_elbo, torch.tensor([4.0, 7.0]))
    assert terms.loss(0.5).item() == pytest.approx((3.5 + 6.0) / 2)
