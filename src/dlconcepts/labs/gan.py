"""Lab `gan`: a generator learns to draw digits by fooling a discriminator — and a classifier grades it.

Goodfellow et al. 2014: G turns noise z into an image, D tells real images from G's; D maximizes
V(D, G) = E[log D(x)] + E[log(1 − D(G(z)))], G minimizes it (here with the non-saturating loss
−E[log D(G(z))], whose gradient does not vanish while D wins easily). No labels are used to train.

Pictures alone cannot say whether a GAN works, so a digit classifier, trained in the same run on the
same training images (or the model of a `cnn-digits` run, given with `classifier=`), grades it:
- mode coverage: the share of each class among `n_generated` generated digits (a GAN that has
  "collapsed" draws a few digits only);
- confidence: the classifier's mean top-class probability on generated digits, beside the same on
  held-out real ones;
- the Fréchet distance (the "FID" of Heusel et al. 2017, here in this classifier's penultimate-layer
  features) between generated and held-out real digits, beside the distance between *training* digits
  and the held-out ones — the floor, what two finite samples of real digits already differ by. Both
  are computed on as many rows as the held-out part has, averaged over `fd_draws` draws.

The recipe on the 8×8 digits, chosen by the Fréchet distance to the validation split: MLP G and D, Adam (β1 = 0.5) at
1e-3, one-sided label smoothing (0.9), dropout in D, an R1 penalty on D's slope at the data
(Mescheder et al. 2018) and an exponential moving average of G's weights (Yazıcı et al. 2019) — the
last two turn the circling of the plain game into convergence. On MNIST the DCGAN is the default.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from torch import nn

from dlconcepts.config import param
from dlconcepts.data.digits import DIGIT_CLASSES, ImageSet, check_mnist_folder, load_digit_images, split_images
from dlconcepts.errors import UserError
from dlconcepts.labs.base import Lab, LabContext, Result
from dlconcepts.losses import GENERATOR_LOSSES, gan_equilibrium
from dlconcepts.nets.gan import make_gan
from dlconcepts.nets.mlp import mlp
from dlconcepts.report import figures
from dlconcepts.train import EarlyStopping, ProgressBar, Trainer, accuracy
from dlconcepts.train.gan import generate, sample_noise, snapshot_schedule, train_gan
from dlconcepts.train.metrics import frechet_distance

ARCHS = ("auto", "mlp", "dcgan")


@dataclass(frozen=True)
class Config:
    mnist: str = param("", "folder holding MNIST's four IDX files; empty = scikit-learn's bundled 8×8 digits")
    arch: str = param("auto", "the GAN: auto = MLP for the 8×8 digits, DCGAN for larger images (MNIST)", choices=ARCHS)
    latent_dim: int = param(32, "size of the noise z fed to the generator", positive=True)
    generator_hidden: tuple[int, ...] = param((512, 512), "MLP generator: hidden widths", positive=True)
    discriminator_hidden: tuple[int, ...] = param((256, 256), "MLP discriminator: hidden widths", positive=True)
    dropout: float = param(0.3, "MLP discriminator: dropout after each hidden layer", minimum=0.0, maximum=0.9)
    dcgan_width: int = param(64, "DCGAN: channels of the first convolution (the second has twice as many)", positive=True)
    generator_loss: str = param("non-saturating", "the generator's loss", choices=GENERATOR_LOSSES)
    lr: float = param(0.001, "Adam's learning rate, both players, for the MLP GAN", positive=True)
    dcgan_lr: float = param(0.0002, "Adam's learning rate, both players, for the DCGAN (Radford et al.'s)", positive=True)
    beta1: float = param(0.5, "Adam's β1 (DCGAN: 0.5; the default 0.9 makes the game oscillate)", minimum=0.0, maximum=0.999)
    batch_size: int = param(64, "real images per step", positive=True)
    epochs: int = param(250, "passes over the training images on the bundled digits", minimum=0)
    mnist_epochs: int = param(10, "passes over the training images on MNIST (each is ~45× the digits')", minimum=0)
    real_target: float = param(0.9, "D's target on real images: < 1 is one-sided label smoothing", minimum=0.55, maximum=1.0)
    r1_weight: float = param(1.0, "γ of the R1 penalty (γ/2)·E‖∇ₓD‖² on real images (0 = off)", minimum=0.0)
    average_decay: float = param(0.99, "β of the moving average of G's weights used for sampling (0 = the live G)",
                                 minimum=0.0, maximum=0.9999)
    classifier: str = param("", "model.pt of a cnn-digits run to grade the samples; empty = train an MLP judge here")
    classifier_hidden: tuple[int, ...] = param((128, 64), "the judge MLP's hidden widths (its last one gives the features)",
                                               positive=True)
    classifier_epochs: int = param(200, "the judge's epochs at most (early stopping on validation loss)", positive=True)
    n_generated: int = param(1000, "generated digits whose classes are counted", minimum=10)
    fd_draws: int = param(5, "draws (of as many rows as the held-out part) averaged per Fréchet distance", positive=True)
    fd_checks: int = param(10, "Fréchet distances against the validation part measured during training (0 = none)",
                           minimum=0)
    snapshots: int = param(6, "sample grids of the fixed noise kept over training", minimum=2)
    valid_fraction: float = param(0.2, "share of the (training) images held out for validation", minimum=0.02, maximum=0.5)
    test_fraction: float = param(0.2, "share of the bundled digits held out for the test (MNIST has its own 10,000)",
                                 minimum=0.05, maximum=0.5)
    train_limit: int = param(0, "use at most this many training images (0 = all); for a quick look at MNIST on a CPU",
                             minimum=0)

    def check(self) -> None:
        if self.mnist:
            check_mnist_folder(self.mnist)  # before the run directory exists


# -- the judge: a digit classifier whose penultimate layer gives the features ----------------------


@dataclass
class Judge:
    """A trained digit classifier: class probabilities and penultimate-layer features of images [n, 1, H, W]."""

    name: str
    model: nn.Module
    features_of: Callable[[torch.Tensor], torch.Tensor]
    logits_of: Callable[[torch.Tensor], torch.Tensor]
    device: torch.device

    @torch.no_grad()
    def _apply(self, fn: Callable[[torch.Tensor], torch.Tensor], images: np.ndarray, batch: int = 4096) -> np.ndarray:
        self.model.eval()
        out = [fn(torch.as_tensor(images[i : i + batch], dtype=torch.float32, device=self.device)).cpu()
               for i in range(0, len(images), batch)]
        return torch.cat(out).double().numpy()

    def features(self, images: np.ndarray) -> np.ndarray:
        return self._apply(self.features_of, images)

    def probabilities(self, images: np.ndarray) -> np.ndarray:
        return self._apply(lambda x: self.logits_of(x).softmax(dim=1), images)


def train_mlp_judge(cfg: Config, ctx: LabContext, data: ImageSet, split) -> Judge:
    """An MLP H·W → hidden → 10 on the training images, early-stopped on the validation images."""
    flat = data.flat
    model = mlp((flat.shape[1], *cfg.classifier_hidden, 10), "relu", dropout=0.2)
    trainer = Trainer(
        model, nn.CrossEntropyLoss(), "adam", lr=1e-3, batch_size=64, metrics={"accuracy": accuracy},
        callbacks=[ProgressBar(cfg.classifier_epochs, desc="judge", enabled=ctx.progress), EarlyStopping(20)],
        device=ctx.runtime.device, seed=ctx.runtime.seed, checkpoints=ctx.checkpoints,
    )
    trainer.fit(flat[split.train], data.labels[split.train], cfg.classifier_epochs,
                valid=(flat[split.valid], data.labels[split.valid]))
    hidden_part = model[:-1]  # every layer but the output: the penultimate features (dropout is off in eval)
    return Judge(f"MLP {flat.shape[1]}→{'→'.join(map(str, cfg.classifier_hidden))}→10, trained here",
                 model, lambda x: hidden_part(x.flatten(1)), lambda x: model(x.flatten(1)), trainer.device)


def load_cnn_digits_judge(path: str, data: ImageSet, device: torch.device) -> Judge:
    """The CNN saved by a `cnn-digits` run; its features are the pooled maps that feed its Linear layer."""
    from dlconcepts.nets.cnn import DigitsCNN

    file = Path(path)
    if not file.is_file():
        raise UserError(f"classifier={path!r} does not exist; give the model.pt of a `dlc run cnn-digits` run, or leave it empty")
    try:
        state = torch.load(file, map_location="cpu", weights_only=True)
        model = DigitsCNN(tuple(state["cnn_channels"]), dropout=float(state["dropout"]),
                          pooled_size=int(state["cnn_pooled_size"]))
        model.load_state_dict(state["model"])
    except Exception as exc:  # a wrong or damaged file: one line, not a traceback
        raise UserError(f"classifier={path!r} is not a cnn-digits model.pt ({type(exc).__name__}: {exc})") from None
    if tuple(state.get("image_shape", ())) != tuple(data.image_shape):
        raise UserError(f"classifier={path!r} was trained on images {state.get('image_shape')}, these are "
                        f"{list(data.image_shape)}; use a cnn-digits run on the same data")
    model.to(device)

    def features(x: torch.Tensor) -> torch.Tensor:
        return torch.flatten(model.pool(model.features(x)), 1)

    return Judge(f"cnn-digits CNN from {file}", model, features, model, device)


# -- the lab ---------------------------------------------------------------------------------------


def run(cfg: Config, ctx: LabContext) -> Result:
    seed, device = ctx.runtime.seed, ctx.runtime.device
    data = load_digit_images(cfg.mnist)
    rng = np.random.default_rng(seed)
    split = split_images(data, rng, cfg.valid_fraction, cfg.test_fraction, cfg.train_limit)
    arch = cfg.arch if cfg.arch != "auto" else ("mlp" if max(data.image_shape[1:]) <= 16 else "dcgan")
    epochs = cfg.mnist_epochs if cfg.mnist else cfg.epochs
    lr = cfg.dcgan_lr if arch == "dcgan" else cfg.lr
    ctx.log(f"  data: {data.description}; {len(split.train)} train / {len(split.valid)} valid / {len(split.test)} test; "
            f"GAN: {arch}, {epochs} epochs, lr {lr:g}")

    # The judge first, so it can follow the GAN's progress; the test part is used only at the end.
    judge = load_cnn_digits_judge(cfg.classifier, data, device) if cfg.classifier else train_mlp_judge(cfg, ctx, data, split)
    test_images, test_labels = data.images[split.test], data.labels[split.test]
    test_probabilities = judge.probabilities(test_images)
    judge_accuracy = float(np.mean(test_probabilities.argmax(axis=1) == test_labels))
    ctx.log(f"  judge: {judge.name}; test accuracy {judge_accuracy:.4f}")

    # Real-vs-real floors: n training digits against the n held-out ones (valid for monitoring, test at the end).
    valid_features, test_features = judge.features(data.images[split.valid]), judge.features(test_images)

    def draw_training(n: int) -> np.ndarray:
        return data.images[rng.choice(split.train, n, replace=len(split.train) < n)]

    floor_valid = float(np.mean([frechet_distance(judge.features(draw_training(len(split.valid))), valid_features)
                                 for _ in range(cfg.fd_draws)]))

    # Steps 1–3: the two players and their game.
    torch.manual_seed(seed)
    try:
        generator, discriminator = make_gan(arch, data.image_shape, cfg.latent_dim, cfg.generator_hidden,
                                            cfg.discriminator_hidden, cfg.dcgan_width, cfg.dropout)
    except ValueError as exc:
        raise UserError(f"arch={arch}: {exc}") from None
    monitor_noise = torch.Generator().manual_seed(seed + 1)
    check_epochs = set(np.round(np.linspace(epochs / cfg.fd_checks, epochs, cfg.fd_checks)).astype(int)) if cfg.fd_checks and epochs else set()

    def monitor(epoch: int, g: nn.Module, d: nn.Module) -> dict[str, float]:
        if epoch not in check_epochs:
            return {}
        fake = generate(g, sample_noise(len(split.valid), cfg.latent_dim, monitor_noise, device)).numpy()
        return {"fd_valid": frechet_distance(judge.features(fake), valid_features)}

    snapshot_epochs = snapshot_schedule(epochs, cfg.snapshots)
    history = train_gan(
        generator, discriminator, data.images[split.train], latent_dim=cfg.latent_dim, epochs=epochs,
        batch_size=cfg.batch_size, lr_d=lr, lr_g=lr, betas=(cfg.beta1, 0.999), generator_loss=cfg.generator_loss,
        real_target=cfg.real_target, r1_weight=cfg.r1_weight, average_decay=cfg.average_decay,
        fixed_noise_size=100, snapshot_epochs=snapshot_epochs, on_epoch_end=monitor,
        callbacks=[ProgressBar(epochs, desc="GAN", enabled=ctx.progress)], device=device, seed=seed,
        checkpoints=ctx.checkpoints, hook_generators=[monitor_noise],
    )
    sampler = history.final_generator(generator)

    # The grades, on fresh noise: class shares and confidence, then Fréchet distances against the test part.
    report_noise = torch.Generator().manual_seed(seed + 2)
    generated = generate(sampler, sample_noise(cfg.n_generated, cfg.latent_dim, report_noise, device)).numpy()
    probabilities = judge.probabilities(generated)
    predicted = probabilities.argmax(axis=1)
    shares = np.bincount(predicted, minlength=10) / len(predicted)
    top_generated, top_real = float(probabilities.max(axis=1).mean()), float(test_probabilities.max(axis=1).mean())
    n_fd = len(split.test)
    fd_generated = [frechet_distance(judge.features(generate(sampler, sample_noise(n_fd, cfg.latent_dim, report_noise, device)).numpy()),
                                     test_features) for _ in range(cfg.fd_draws)]
    fd_floor = [frechet_distance(judge.features(draw_training(n_fd)), test_features) for _ in range(cfg.fd_draws)]
    fd_mean, floor_mean = float(np.mean(fd_generated)), float(np.mean(fd_floor))
    ratio = fd_mean / floor_mean if floor_mean > 0 else math.inf
    ctx.log(f"  classes among {len(predicted)} generated: {shares.min():.1%}–{shares.max():.1%}; "
            f"Fréchet {fd_mean:.3f} vs floor {floor_mean:.3f} (×{ratio:.2f})")

    last = history.epochs[-1] if history.epochs else {}
    equilibrium = gan_equilibrium(cfg.real_target, cfg.generator_loss)
    _save_figures(ctx, cfg, history, snapshot_epochs, generated, predicted, shares,
                  np.bincount(test_labels, minlength=10) / len(test_labels), floor_valid, equilibrium)
    ctx.run.save_model({
        "model": _on_cpu(sampler), "discriminator": _on_cpu(discriminator), "arch": arch,  # model = the generator
        "latent_dim": cfg.latent_dim, "image_shape": list(data.image_shape), "generator_hidden": list(cfg.generator_hidden),
        "discriminator_hidden": list(cfg.discriminator_hidden), "dcgan_width": cfg.dcgan_width,
        "judge": _on_cpu(judge.model), "judge_name": judge.name,
    })

    present = int(np.sum(shares > 0))
    low, high = int(shares.argmin()), int(shares.argmax())
    sd = lambda v: float(np.std(v, ddof=1)) if len(v) > 1 else 0.0  # noqa: E731
    rows = [
        ("measure", "value", "on"),
        ("judge's test accuracy", f"{judge_accuracy:.4f}", f"{n_fd} held-out real digits; {judge.name}"),
        ("classes present", f"{present} of 10", f"{len(predicted)} generated digits, by the judge"),
        ("smallest / largest class share", f"{shares[low]:.1%} (digit {low}) / {shares[high]:.1%} (digit {high})",
         "10% each would be even"),
        ("mean top-class probability", f"{top_generated:.3f} generated vs {top_real:.3f} real", "the judge's softmax"),
        ("Fréchet distance, generated vs held-out", f"{fd_mean:.3f} ± {sd(fd_generated):.3f}",
         f"{n_fd} vs {n_fd} digits, mean ± sd of {cfg.fd_draws} draws"),
        ("Fréchet distance, training vs held-out (floor)", f"{floor_mean:.3f} ± {sd(fd_floor):.3f}",
         f"{n_fd} vs {n_fd} digits, mean ± sd of {cfg.fd_draws} draws"),
        ("ratio to the floor", f"{ratio:.2f}", "1 = as close as real digits are to each other"),
    ]
    at_equilibrium = f"at the equilibrium p_g = p_data (real target t = {cfg.real_target:g})"
    if last:
        rows += [
            ("D(x), D(G(z)) in the last epoch", f"{last['d_real']:.3f}, {last['d_fake']:.3f}",
             f"t/2 = {equilibrium['d_output']:.3f} for both {at_equilibrium}"),
            ("V(D, G) in the last epoch", f"{last['value']:.3f}",
             f"log(t/2) + log(1 − t/2) = {equilibrium['value']:.3f} {at_equilibrium}; −log 4 when t = 1"),
        ]
    findings = [
        (f"All 10 digit classes appear among the {len(predicted)} generated digits" if present == 10
         else f"Only {present} of the 10 classes appear among the {len(predicted)} generated digits (mode collapse)")
        + f"; shares run from {shares[low]:.1%} (digit {low}) to {shares[high]:.1%} (digit {high}) against 10% for an even spread.",
        f"The Fréchet distance between generated and held-out digits is {fd_mean:.2f}, {ratio:.2f}× the {floor_mean:.2f} that "
        f"separates {n_fd} training digits from the {n_fd} held-out ones — the floor any generator, even a perfect copy "
        f"of the data, would meet with samples this small.",
        f"The judge is {top_generated / top_real:.0%} as confident on generated digits as on real ones "
        f"(mean top-class probability {top_generated:.3f} vs {top_real:.3f}).",
    ]
    if judge_accuracy < 0.95:
        findings.append(f"The judge's test accuracy is {judge_accuracy:.1%}, below 95 %: its class shares and features "
                        "are not trustworthy in this run (train it longer, or give classifier=).")
    if cfg.classifier:
        findings.append("The judge comes from a cnn-digits run with its own split: some of these held-out digits may "
                        "have been in its training set, so its accuracy here may be optimistic.")
    if last:
        gap = max(abs(last["d_real"] - equilibrium["d_output"]), abs(last["d_fake"] - equilibrium["d_output"]))
        findings.append(
            f"In the last epoch D gave real digits {last['d_real']:.3f} and generated ones {last['d_fake']:.3f} on average "
            f"({'within' if gap <= 0.02 else 'more than'} 0.02 of the equilibrium's {equilibrium['d_output']:.3f}), and V(D, G) "
            f"was {last['value']:.3f} (equilibrium: {equilibrium['value']:.3f}). At p_g = p_data the best D says "
            + ("½ everywhere and V = −log 4" if cfg.real_target == 1.0 else
               f"t/2 = {equilibrium['d_output']:.3f} everywhere: with one-sided label smoothing (t = {cfg.real_target:g}) "
               "D* = t·p_data / (p_data + p_g), ½·t where the two densities agree")
            + ". D at its equilibrium output only says that D can no longer tell the two apart; the Fréchet distance "
              "above is the independent check of how close p_g is to p_data.")
    return Result(
        metrics={
            "judge_test_accuracy": judge_accuracy, "judge": judge.name, "class_shares": shares,
            "classes_present": present, "share_min": float(shares.min()), "share_max": float(shares.max()),
            "mean_top_probability_generated": top_generated, "mean_top_probability_real": top_real,
            "frechet_generated": fd_mean, "frechet_generated_draws": fd_generated,
            "frechet_floor": floor_mean, "frechet_floor_draws": fd_floor, "frechet_ratio": ratio,
            "frechet_samples": n_fd, "frechet_floor_valid": floor_valid,
            "arch": arch, "epochs": epochs, "lr": lr, "steps": history.steps, "history": history.epochs,
            "n_train": len(split.train), "n_valid": len(split.valid), "n_test": len(split.test), "data": data.name,
        },
        table=rows,
        findings=findings,
        headline=f"{present}/10 classes ({shares.min():.0%}–{shares.max():.0%}); Fréchet {fd_mean:.2f} = {ratio:.1f}× the real-vs-real floor",
    )


def _on_cpu(module: nn.Module) -> dict:
    """A state_dict with its tensors on the CPU, so the file loads on a machine without the training GPU."""
    return {k: v.detach().cpu() for k, v in module.state_dict().items()}


def _save_figures(ctx: LabContext, cfg: Config, history, snapshot_epochs, generated, predicted, shares, real_shares,
                  floor_valid: float, equilibrium: dict[str, float]) -> None:
    import matplotlib.pyplot as plt

    snaps = {f"epoch {e}": history.snapshots[e][:12] for e in snapshot_epochs if e in history.snapshots}
    ctx.run.save_figure(figures.image_rows_mosaic(snaps, 12, title="the same 12 noise vectors z through G, over training"),
                        "samples_over_training",
                        "G(z) for one fixed batch of noise at several epochs (epoch 0: the untrained generator).")

    by_class = {f"{k}  ({shares[k]:.0%})": generated[predicted == k][:12] for k in range(10)}
    ctx.run.save_figure(figures.image_rows_mosaic(by_class, 12, title="generated digits, sorted by the judge's class"),
                        "samples_by_class",
                        "The first 12 generated digits the judge puts in each class, with the class's share of all generated digits.")

    if history.epochs:
        n = len(history.epochs)
        ctx.run.save_figure(
            figures.curves({
                "losses": {f"D: −V, real target {cfg.real_target:g}": history.column("d_loss"),
                           f"G: {cfg.generator_loss} loss": history.column("g_loss"),
                           f"D at equilibrium ({equilibrium['d_loss']:.3f})": [equilibrium["d_loss"]] * n,
                           f"G at equilibrium ({equilibrium['g_loss']:.3f})": [equilibrium["g_loss"]] * n},
                "discriminator outputs": {"D(x), real": history.column("d_real"), "D(G(z)), generated": history.column("d_fake"),
                                          f"equilibrium: t/2 = {equilibrium['d_output']:.3f}": [equilibrium["d_output"]] * n},
            }),
            "losses", "Per epoch, means over its steps: D's and G's losses (left), D's mean output on real and generated digits "
                      "(right), with the values each settles at when p_g = p_data and D is optimal (t: D's target on real digits).")

    checks = [(row["epoch"], row["fd_valid"]) for row in history.epochs if "fd_valid" in row]
    if checks:
        epochs, distances = zip(*checks)
        fig = figures.curve_with_references(
            epochs, distances, "generated vs validation digits",
            [(floor_valid, f"floor: training vs validation ({floor_valid:.2f})", "k", "--")],
            "epoch", "Fréchet distance (judge's features)", "Fréchet distance over training", marker="o",
        )
        ctx.run.save_figure(fig, "frechet_over_training",
                            "Fréchet distance between generated and validation digits during training, and the real-vs-real floor.")

    fig, ax = plt.subplots(figsize=(6.0, 3.6))
    ax.bar(np.arange(10), 100 * shares, color="C0", label=f"{len(predicted)} generated digits")
    ax.plot(np.arange(10), 100 * real_shares, "k_", ms=18, mew=2, label="held-out real digits")
    ax.axhline(25, color="C3", ls="--", lw=1, label="25 % (the issue's limit)")
    ax.set_xticks(range(10), DIGIT_CLASSES)
    ax.set_xlabel("class given by the judge")
    ax.set_ylabel("share (%)")
    ax.set_ylim(0, max(30, 100 * shares.max() + 5))
    ax.legend(fontsize=8, loc="upper right")
    ax.set_title("mode coverage: classes among generated digits", fontsize=10)
    fig.tight_layout()
    ctx.run.save_figure(fig, "class_shares", "Share of each class among the generated digits (bars) and among the held-out real digits (black marks).")


LAB = Lab(
    id="gan",
    title="A GAN draws digits; a classifier grades them (mode coverage, confidence, Fréchet distance)",
    function="generator z({latent_dim}) → image and discriminator image → logit, arch={arch} (MLP on 8×8, DCGAN on 28×28)",
    loss="the minimax game: D minimizes −V(D, G) (real target {real_target}, R1 γ={r1_weight}); G: {generator_loss} loss",
    minimizer="alternating Adam steps (β1 = {beta1}) for D and G, mini-batches of {batch_size}; G sampled from its weight average (β = {average_decay})",
    data="scikit-learn's 1,797 digits of 8×8 (stratified split), or MNIST with mnist=DIR",
    typical_time="~35 s on 2 cores (quick ~3 s)",
    config=Config,
    run=run,
    quick={"epochs": 3, "mnist_epochs": 1, "classifier_epochs": 5, "n_generated": 200, "fd_draws": 2, "fd_checks": 2,
           "snapshots": 3, "dcgan_width": 8},
    prefers_cpu="an MLP GAN on 8×8 digits is too small to gain from a GPU",
    path_options=("mnist",),
)
