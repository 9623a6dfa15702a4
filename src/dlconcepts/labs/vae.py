"""Lab `vae`: a variational autoencoder — a code you can sample from, and a loss with two honest parts.

An autoencoder's codes land wherever training puts them, so a random code decodes to nonsense. The
VAE (Kingma & Welling 2014) asks instead for a *distribution* of codes: its encoder outputs a Gaussian
q(z|x) = N(μ(x), diag σ²(x)), a code is drawn from it as z = μ + σ·ε (the reparameterization trick),
and the loss — the negative evidence lower bound, a bound on −log p(x) — has two parts:

    −ELBO(x) = −log p(x|z)                  reconstruction: how well the code describes the image
               + KL(q(z|x) ‖ N(0, I))       how far the codes stray from the prior we will sample from

Both are nats per image: the first summed over pixels, the second over latent dimensions (closed form,
Kingma & Welling appendix B), then averaged over images. The KL term packs the codes around 0 with
unit spread, so decoding z ~ N(0, I) gives digit-like images and walking through the code space
morphs one digit into another.

The decoder here is Bernoulli by default: p(x|z) = Π_i p_i^x_i (1 − p_i)^(1 − x_i). The digits are
grey levels in [0, 1], not black-or-white; binary cross-entropy with such targets is still the usual
choice (it trains well and keeps pixels in (0, 1)), but then −log p(x|z) is a cross-entropy whose
minimum is the images' own entropy Σ_i H(x_i), not 0 — the lab reports that floor beside it. The
alternative, `--set likelihood=gaussian`, is a proper density for grey levels, N(x; mean, σ² I) with a
fixed σ; its numbers depend on σ and are not comparable with the Bernoulli ones.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from dlconcepts.config import param
from dlconcepts.data.digits import DIGIT_CLASSES, check_mnist_folder, load_digit_images, split_images
from dlconcepts.labs.base import Lab, LabContext, Result
from dlconcepts.losses import bernoulli_entropy
from dlconcepts.nets import ACTIVATIONS
from dlconcepts.nets.autoencoder import ARCHITECTURES, LIKELIHOODS, make_vae, prior_quantile_grid
from dlconcepts.report import figures
from dlconcepts.train import OPTIMIZERS, ProgressBar
from dlconcepts.train.self_supervised import (
    LR_SCHEDULES,
    VAETrainer,
    autoencoder_mse,
    decode_codes,
    encode_images,
    fit_pca,
    importance_weighted_nll,
)


@dataclass(frozen=True)
class Config:
    mnist: str = param("", "folder holding MNIST's four IDX files; empty = scikit-learn's bundled 8×8 digits")
    arch: str = param("mlp", "encoder and decoder: MLPs, or stride-2 convolutions (for MNIST-size images)", choices=ARCHITECTURES)
    latent: int = param(2, "dimensions of the code z (2: the traversal is a full grid and the means can be drawn)", positive=True)
    hidden: tuple[int, ...] = param((256, 128), "MLP encoder widths; the decoder mirrors them", positive=True)
    channels: tuple[int, ...] = param((16, 32), "conv encoder channels, each convolution halving H and W", positive=True)
    activation: str = param("elu", "activation after each hidden layer", choices=tuple(ACTIVATIONS))
    likelihood: str = param("bernoulli", "decoder p(x|z): Bernoulli (binary cross-entropy) or Gaussian with fixed sigma",
                            choices=LIKELIHOODS)
    sigma: float = param(0.1, "the Gaussian decoder's standard deviation per pixel (unused for Bernoulli)", positive=True)
    optimizer: str = param("adam", "the minimizer", choices=OPTIMIZERS)
    lr: float = param(0.001, "starting learning rate", positive=True)
    lr_schedule: str = param("cosine", "cosine: lr annealed to 0 over the epochs; constant: lr throughout", choices=LR_SCHEDULES)
    batch_size: int = param(64, "mini-batch size", positive=True)
    epochs: int = param(300, "epochs on the bundled digits", positive=True)
    mnist_epochs: int = param(20, "epochs on MNIST (each is ~55× the digits' epoch)", positive=True)
    warmup_epochs: int = param(0, "KL warm-up: its weight rises linearly to 1 over this many epochs (0 = off)", minimum=0)
    valid_fraction: float = param(0.2, "share of the (training) images held out for validation", minimum=0.02, maximum=0.5)
    test_fraction: float = param(0.2, "share of the bundled digits for the test (MNIST has its own 10,000)",
                                 minimum=0.05, maximum=0.5)
    train_limit: int = param(0, "use at most this many training images (0 = all); for a quick look at MNIST on a CPU",
                             minimum=0)
    elbo_samples: int = param(20, "ε draws per test image for the test −ELBO (only its reconstruction part is random)",
                              positive=True)
    iw_samples: int = param(500, "K for the importance-weighted estimate of −log p(x) on the test images (0 = skip)",
                            minimum=0)
    iw_images: int = param(1000, "test images for the importance-weighted estimate (a seeded subset; 0 = all): "
                                 "it decodes images × K codes", minimum=0)
    prior_samples: int = param(100, "codes drawn from N(0, I) and decoded for the samples grid", positive=True)
    traversal_steps: int = param(15, "codes per latent dimension in the traversal grid", minimum=2)

    def check(self) -> None:
        if self.mnist:
            check_mnist_folder(self.mnist)  # before the run directory exists


def run(cfg: Config, ctx: LabContext) -> Result:
    seed, device = ctx.runtime.seed, ctx.runtime.device
    data = load_digit_images(cfg.mnist)
    split = split_images(data, np.random.default_rng(seed), cfg.valid_fraction, cfg.test_fraction, cfg.train_limit)
    epochs = cfg.mnist_epochs if cfg.mnist else cfg.epochs
    X = data.images
    ctx.log(f"  data: {data.description}; {len(split.train)} train / {len(split.valid)} valid / {len(split.test)} test"
            f"{' (MNIST’s own test set)' if data.predefined_test is not None else ' (stratified)'}")

    torch.manual_seed(seed)
    model = make_vae(cfg.arch, data.image_shape, cfg.latent, cfg.hidden, cfg.channels, cfg.activation,
                     cfg.likelihood, cfg.sigma)
    trainer = VAETrainer(model, cfg.optimizer, lr=cfg.lr, batch_size=cfg.batch_size, warmup_epochs=cfg.warmup_epochs,
                         lr_schedule=cfg.lr_schedule, device=device, seed=seed, checkpoints=ctx.checkpoints,
                         callbacks=[ProgressBar(epochs, desc="vae", enabled=ctx.progress)])
    history = trainer.fit(X[split.train], epochs, X[split.valid])

    # The test split, once, at the end.
    test = trainer.evaluate(X[split.test], samples=cfg.elbo_samples, seed=seed + 2)
    train = trainer.evaluate(X[split.train], samples=1, seed=seed + 3)
    x_test = trainer.as_tensor(X[split.test])
    iw_nll = iw_elbo = None
    iw_rows = np.arange(len(split.test))
    if cfg.iw_samples:
        if 0 < cfg.iw_images < len(iw_rows):
            iw_rows = np.sort(np.random.default_rng([seed, 4]).choice(iw_rows, cfg.iw_images, replace=False))
        iw_nll = importance_weighted_nll(model, x_test[torch.as_tensor(iw_rows, device=x_test.device)], cfg.iw_samples,
                                         torch.Generator().manual_seed(seed + 4)).mean().item()
        # The −ELBO of the same images, for the gap between the two bounds.
        iw_elbo = (test["neg_elbo"] if len(iw_rows) == len(split.test) else
                   trainer.evaluate(X[split.test[iw_rows]], samples=cfg.elbo_samples, seed=seed + 2)["neg_elbo"])
    entropy_floor = bernoulli_entropy(x_test).item() if cfg.likelihood == "bernoulli" else None
    test_mse = autoencoder_mse(model, X[split.test], device)
    mu_test = encode_images(model, X[split.test], device)
    # A latent dimension is "active" when its mean moves with the image (Burda et al. 2016, §5.2: Var_x E_q[z_j] > 0.01).
    mean_variance = mu_test.var(axis=0)
    active = int(np.sum(mean_variance > 0.01))
    ctx.log(f"  test −ELBO {test['neg_elbo']:.2f} nats/image = reconstruction {test['reconstruction']:.2f} + KL {test['kl']:.2f}"
            + (f"; importance-weighted −log p(x) (K={cfg.iw_samples}) {iw_nll:.2f}" if iw_nll is not None else ""))

    _save_figures(ctx, cfg, data, split, model, history, mu_test, seed)
    ctx.run.save_model({"model": model.state_dict(), "arch": cfg.arch, "image_shape": list(data.image_shape),
                        "latent": cfg.latent, "hidden": list(cfg.hidden), "channels": list(cfg.channels),
                        "activation": cfg.activation, "likelihood": cfg.likelihood, "sigma": cfg.sigma})

    unit = "nats per image"
    rows = [
        ("measure", "train", "test", "note"),
        ("−ELBO (minimized)", f"{train['neg_elbo']:.2f}", f"{test['neg_elbo']:.2f}",
         f"{unit}; test averaged over {cfg.elbo_samples} ε draws per image"),
        ("  reconstruction −log p(x|z)", f"{train['reconstruction']:.2f}", f"{test['reconstruction']:.2f}",
         f"summed over {int(np.prod(data.image_shape))} pixels"),
        ("  KL(q(z|x) ‖ N(0, I))", f"{train['kl']:.2f}", f"{test['kl']:.2f}", f"summed over {cfg.latent} latent dimensions"),
    ]
    if iw_nll is not None:
        on = "" if len(iw_rows) == len(split.test) else f"; on {len(iw_rows)} of the test images (−ELBO there {iw_elbo:.2f})"
        rows.append((f"−log p(x), importance-weighted, K={cfg.iw_samples}", "", f"{iw_nll:.2f}",
                     f"a tighter bound than the −ELBO (Burda et al. 2016){on}"))
    if entropy_floor is not None:
        rows.append(("Σ H(x_i): the reconstruction floor", "", f"{entropy_floor:.2f}",
                     "binary cross-entropy cannot go below the grey levels' own entropy"))
    rows.append(("reconstruction MSE per pixel (z = μ)", "", f"{test_mse:.4f}", "comparable with lab autoencoder"))

    findings = [
        f"On the test digits the negative ELBO is {test['neg_elbo']:.2f} nats per image: {test['reconstruction']:.2f} "
        f"to reconstruct ({100 * test['reconstruction'] / test['neg_elbo']:.0f}%) and {test['kl']:.2f} of KL "
        f"({100 * test['kl'] / test['neg_elbo']:.0f}%), the price of codes the prior can generate.",
        f"Train vs test −ELBO: {train['neg_elbo']:.2f} vs {test['neg_elbo']:.2f} nats per image "
        f"({100 * (test['neg_elbo'] / train['neg_elbo'] - 1):+.1f}% on unseen digits).",
        f"{active} of {cfg.latent} latent dimensions are active (their mean varies over the test digits by more than 0.01); "
        "an inactive one has collapsed to the prior and carries no information.",
    ]
    if iw_nll is not None:
        findings.append(
            f"With K={cfg.iw_samples} importance samples the bound on −log p(x) tightens to {iw_nll:.2f} "
            f"({iw_elbo - iw_nll:.2f} nats below the −ELBO of the same images): that gap is the ELBO's looseness, "
            "E_q[log q(z|x) − log p(z|x)] — how far the Gaussian q(z|x) is from the true posterior.")
    if entropy_floor is not None:
        findings.append(
            f"The reconstruction term cannot go below {entropy_floor:.2f} nats per image, the test digits' own "
            f"entropy as Bernoulli probabilities; {test['reconstruction'] - entropy_floor:.2f} of its "
            f"{test['reconstruction']:.2f} nats is lost information.")
    if cfg.warmup_epochs:
        findings.append(f"The KL weight rose from {history.epochs[0]['kl_weight']:.3f} to 1 over the first "
                        f"{min(cfg.warmup_epochs, len(history))} epochs (warm-up); the curves show −ELBO at weight 1 throughout.")
    return Result(
        metrics={
            "test_neg_elbo": test["neg_elbo"], "test_reconstruction": test["reconstruction"], "test_kl": test["kl"],
            "train_neg_elbo": train["neg_elbo"], "train_reconstruction": train["reconstruction"], "train_kl": train["kl"],
            "test_iw_nll": iw_nll, "iw_samples": cfg.iw_samples, "iw_images": len(iw_rows) if iw_nll is not None else 0,
            "iw_images_neg_elbo": iw_elbo, "test_entropy_floor": entropy_floor,
            "test_mse": test_mse, "active_units": active, "latent_mean_variance": mean_variance,
            "epochs_run": len(history), "history": history.as_dict(), "likelihood": cfg.likelihood,
            "n_train": len(split.train), "n_valid": len(split.valid), "n_test": len(split.test), "data": data.name,
        },
        table=rows,
        findings=findings,
        headline=f"test −ELBO {test['neg_elbo']:.2f} nats/image (reconstruction {test['reconstruction']:.2f} + "
                 f"KL {test['kl']:.2f})",
    )


def _save_figures(ctx, cfg, data, split, model, history, mu_test, seed) -> None:
    device = ctx.runtime.device
    col = history.column
    ctx.run.save_figure(
        figures.curves({
            "reconstruction −log p(x|z)": {"train": col("train_reconstruction"), "validation": col("valid_reconstruction")},
            "KL(q(z|x) ‖ N(0, I))": {"train": col("train_kl"), "validation": col("valid_kl")},
            "−ELBO = reconstruction + KL": {"train": col("train_neg_elbo"), "validation": col("valid_neg_elbo")},
        }, ylabels=["nats per image"] * 3),
        "elbo_curves",
        "The two parts of the negative ELBO and their sum per epoch, on the training images (one ε draw each, "
        "during the epoch) and the validation images (fixed ε, after the epoch)"
        + (f"; the KL weight warmed up over {cfg.warmup_epochs} epochs." if cfg.warmup_epochs else "."),
    )
    z = torch.randn(cfg.prior_samples, cfg.latent, generator=torch.Generator().manual_seed(seed + 5))
    ncols = math.ceil(math.sqrt(cfg.prior_samples))
    ctx.run.save_figure(
        figures.image_mosaic(decode_codes(model, z, device), ncols, title="decoded samples z ~ N(0, I)"),
        "prior_samples",
        f"{cfg.prior_samples} codes drawn from the prior N(0, I), each decoded to the mean image of p(x|z) "
        f"({'Bernoulli probabilities' if cfg.likelihood == 'bernoulli' else 'Gaussian means'}).",
    )
    codes, values = prior_quantile_grid(cfg.latent, cfg.traversal_steps)
    images = decode_codes(model, codes, device)
    if cfg.latent == 2:
        fig = figures.image_mosaic(images, cfg.traversal_steps, title="latent traversal: a grid over the prior's quantiles",
                                   col_values=values.tolist(), row_values=values.flip(0).tolist(), xlabel="z1", ylabel="z2")
        caption = (f"Codes on a {cfg.traversal_steps}×{cfg.traversal_steps} grid at the prior's quantiles 5%…95% "
                   "in each dimension, decoded: neighbouring codes give similar digits.")
    else:
        fig = figures.image_mosaic(images, cfg.traversal_steps, title="latent traversal: one dimension at a time",
                                   col_values=values.tolist(), row_values=list(range(1, cfg.latent + 1)),
                                   xlabel="value of the varied dimension (prior quantiles 5%…95%)", ylabel="dimension varied")
        caption = ("Row j varies latent dimension j over the prior's quantiles 5%…95%, the others held at 0; "
                   "a row that does not change is an inactive dimension.")
    ctx.run.save_figure(fig, "latent_traversal", caption)
    labels = data.labels[split.test]
    if cfg.latent == 2:
        shown, axis = mu_test, ("μ1", "μ2")
    else:
        shown, axis = fit_pca(mu_test, 2).transform(mu_test.astype(np.float64)), ("PC 1 of μ", "PC 2 of μ")
    ctx.run.save_figure(
        figures.latent_scatter({"encoder means μ(x) of the test digits": shown}, labels, DIGIT_CLASSES, axis),
        "latent_means",
        "The mean of q(z|x) for every test digit, coloured by its class (labels never used in training)"
        + ("." if cfg.latent == 2 else f"; the {cfg.latent}-D means shown by their first two principal directions."),
    )


LAB = Lab(
    id="vae",
    title="A variational autoencoder: ELBO = reconstruction + KL, samples from the prior, a latent traversal",
    function="VAE ({arch}): Gaussian encoder (μ, log σ²) → z = μ + σ·ε ({latent}-D) → {likelihood} decoder, {activation}",
    loss="−ELBO = reconstruction ({likelihood} negative log-likelihood, summed over pixels) + closed-form KL to N(0, I), per image",
    minimizer="{optimizer}, mini-batches of {batch_size}, {lr_schedule} learning rate from {lr}, KL warm-up {warmup_epochs} epochs",
    data="scikit-learn's 1,797 bundled 8×8 digits (MNIST with --set mnist=DIR), stratified 60/20/20",
    typical_time="~20 s (quick ~3 s)",
    config=Config,
    run=run,
    quick={"epochs": 3, "mnist_epochs": 1, "elbo_samples": 2, "iw_samples": 8, "prior_samples": 16, "traversal_steps": 4},
    prefers_cpu="the digits' VAE is too small to gain from a GPU (MNIST with arch=conv may: pass --device cuda)",
    path_options=("mnist",),
    multiprocess=True,
)
