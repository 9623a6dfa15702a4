"""Lab `regularization`: the overfitting task under six settings, side by side, over many seeds.

The task is the `overfitting` lab's: the noisy line y = 3x + U(0,1)·100 at 40 values of x, half of
them held out as the test, and an MLP 1→100→50→1 with over 5,000 weights trained long with Adam
on the other 20. Alone, it learns the noise. The course's notebooks try five cures:

* dropout — p = 0.5 after the first hidden layer, 0.2 after the second, switched off (`eval()`)
  for every prediction;
* early stopping — a validation part carved out of each seed's training rows (never its test
  rows); training stops after `patience` epochs without a better validation loss and the best
  weights come back. The price: those rows are not trained on;
* L1 — λ·Σ|w| over the weights added to the loss;
* L2 — weight decay, the optimizer's wd·w added to every gradient;
* small initial weights — every weight and bias drawn from N(0, 0.002²).

One train/test split and one initialization say little about 20 points, so every setting is
trained for R seeds at once (`train_many`): seed r has its own random split, its own standardization
fitted on its own training rows, and its own initial weights — the same split and the same initial
weights under every setting (small init aside, whose weights are redrawn), so the settings can be
compared seed by seed. A setting "helped" when its test MSE beat no regularization on clearly
more seeds than it lost, by an exact sign test.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from dlconcepts.checkpoints import Checkpoints
from dlconcepts.config import param
from dlconcepts.data.course import NOISY_LINE_NOISE_STD, noisy_line_mean
from dlconcepts.data import Dataset, noisy_line, train_valid_test_split
from dlconcepts.data.scaling import PerModelStandardizer
from dlconcepts.errors import ConfigError, UserError
from dlconcepts.labs.base import Lab, LabContext, Result
from dlconcepts.nets import ACTIVATIONS
from dlconcepts.report import figures  # noqa: F401  (sets matplotlib's Agg backend before pyplot)
from dlconcepts.train.many_models import ManyResult, ManySettings, StackedMLP, seeded_models, train_many

# The noise U(0,1)·100 has variance 100²/12: the expected test MSE of the true mean line 3x + 50,
# the best any model can do under squared error (the `overfitting` lab's NOISE_STD, squared).
NOISE_VARIANCE = NOISY_LINE_NOISE_STD**2
N_POINTS = len(range(-100, 100, 5))  # `noisy_line`'s default x grid
SIGNIFICANCE = 0.05  # a setting helped or hurt when the sign test's p-value is below this


mean_line = noisy_line_mean


@dataclass(frozen=True)
class Config:
    seeds: int = param(40, "random splits and initializations per setting, trained at once (the issue asks for >= 30)",
                       minimum=2)
    hidden: tuple[int, ...] = param((100, 50), "hidden layer widths of the MLP 1→…→1", positive=True)
    activation: str = param("relu", "activation after each hidden layer", choices=tuple(ACTIVATIONS))
    lr: float = param(0.001, "Adam's learning rate", positive=True)
    epochs: int = param(2000, "full-batch epochs (one step each); long enough that without regularization the "
                              "networks learn the noise (the `overfitting` lab trains one network 5000)", positive=True)
    test_fraction: float = param(0.5, "share of the 40 points held out as each seed's test", minimum=0.05, maximum=0.8)
    valid_fraction: float = param(0.25, "early stopping: share of each seed's training rows held out for validation",
                                  minimum=0.05, maximum=0.5)
    patience: int = param(100, "early stopping: epochs without a lower validation loss before a model stops",
                          positive=True)
    dropout: tuple[float, ...] = param((0.5, 0.2), "dropout probability after each hidden layer, in order",
                                       minimum=0.0, maximum=0.95)
    # Defaults from a sweep on validation rows only (each seed's 5 held-out training rows, 40 seeds, base
    # seeds 1 and 2, never the test rows): λ from 1e-3 to 3e-2 and weight decay from 3e-3 to 1e-2 scored
    # alike; 1e-4 and 0.1 or more were clearly worse. The middle of each plateau is the default.
    l1: float = param(0.003, "L1: λ in λ·Σ|w| over the weights, added to the loss (standardized units)", positive=True)
    weight_decay: float = param(0.01, "L2: the optimizer's weight decay (Adam adds wd·w to each gradient)",
                                positive=True)
    init_std: float = param(0.002, "small initial weights: std of N(0, std²) for every weight and bias", positive=True)
    memory_budget_mb: float = param(1024.0, "memory for models trained at once; more seeds than fit are trained in "
                                            "chunks", positive=True)

    def check(self) -> None:
        """Refuse, before any run directory exists, what the fields' own limits cannot see."""
        if len(self.dropout) != len(self.hidden):
            raise ConfigError(f"dropout={','.join(f'{p:g}' for p in self.dropout)} needs one probability per "
                              f"hidden layer ({len(self.hidden)} for hidden={','.join(map(str, self.hidden))}); e.g. "
                              f"--set dropout={','.join(['0.2'] * len(self.hidden))}")
        n_train = N_POINTS - int(round(N_POINTS * self.test_fraction))
        n_valid = int(round(n_train * self.valid_fraction))
        if not 1 <= n_valid < n_train:
            raise ConfigError(f"valid_fraction={self.valid_fraction:g} of the {n_train} training rows left by "
                              f"test_fraction={self.test_fraction:g} gives {n_valid} validation rows; raise "
                              "valid_fraction or lower test_fraction")


# -- the six settings ------------------------------------------------------------------------------

@dataclass(frozen=True)
class Setting:
    """One way of training the same networks: the name in the table and what differs from 'none'."""

    name: str
    what: str
    many: ManySettings
    init_std: float | None = None
    dropouts: tuple[float, ...] | None = None
    early_stopping: bool = False  # trains on each seed's training rows minus its validation rows


def six_settings(cfg: Config) -> list[Setting]:
    base = {"epochs": cfg.epochs, "optimizer": "adam", "lr": cfg.lr, "memory_budget_mb": cfg.memory_budget_mb}
    p = ", ".join(f"{q:g}" for q in cfg.dropout)
    return [
        Setting("none", "no regularization", ManySettings(**base)),
        Setting("dropout", f"p = {p} after the hidden layers, off at test time", ManySettings(**base),
                dropouts=tuple(cfg.dropout)),
        Setting("early stopping", f"patience {cfg.patience} on {100 * cfg.valid_fraction:g}% of the training "
                                  "rows held out, best weights restored", ManySettings(**base, patience=cfg.patience),
                early_stopping=True),
        Setting("L1", f"λ = {cfg.l1:g}", ManySettings(**base, l1=cfg.l1)),
        Setting("L2", f"weight decay {cfg.weight_decay:g}", ManySettings(**base, weight_decay=cfg.weight_decay)),
        Setting("small init", f"weights and biases ~ N(0, {cfg.init_std:g}²)", ManySettings(**base),
                init_std=cfg.init_std),
    ]


# -- per-seed data: each seed its own split and its own scaling -------------------------------------

@dataclass(frozen=True)
class SeedRows:
    """Row indices per seed, each of shape (R, rows): `fit` + `valid` = `train`; `test` is disjoint."""

    train: np.ndarray
    fit: np.ndarray
    valid: np.ndarray
    test: np.ndarray


def seed_rows(n: int, seed: int, n_seeds: int, test_fraction: float, valid_fraction: float) -> SeedRows:
    """Seed r's split comes from `default_rng([seed, r])`: a train/test split, then validation rows
    drawn from the training rows only, so early stopping never sees a test row."""
    parts: dict[str, list[np.ndarray]] = {"train": [], "fit": [], "valid": [], "test": []}
    for r in range(n_seeds):
        rng = np.random.default_rng([seed, r])
        split = train_valid_test_split(n, rng, valid_fraction=0.0, test_fraction=test_fraction)
        shuffled = rng.permutation(split.train)
        n_valid = int(round(len(shuffled) * valid_fraction))
        if not 1 <= n_valid < len(shuffled):
            raise UserError(f"valid_fraction={valid_fraction} of {len(shuffled)} training rows leaves no validation "
                            "or no fitting rows; use a valid_fraction between 0.05 and 0.5")
        parts["train"].append(split.train)
        parts["fit"].append(np.sort(shuffled[n_valid:]))
        parts["valid"].append(np.sort(shuffled[:n_valid]))
        parts["test"].append(split.test)
    return SeedRows(**{k: np.stack(v) for k, v in parts.items()})


class PerSeedScaling:
    """A `Standardizer` for x and one for y per seed, each fitted on that seed's own training rows."""

    def __init__(self, data: Dataset, rows: np.ndarray):
        self.x = PerModelStandardizer().fit(data.X, rows)
        self.y = PerModelStandardizer().fit(data.y, rows)

    def inputs(self, data: Dataset, rows: np.ndarray) -> np.ndarray:
        """(R, len(rows[r]), 1): seed r's rows of x in seed r's units."""
        return self.x.transform(data.X, rows)

    def targets(self, data: Dataset, rows: np.ndarray) -> np.ndarray:
        return self.y.transform(data.y, rows)

    def to_original(self, predictions: np.ndarray) -> np.ndarray:
        """Each seed's predictions back in the target's units."""
        return self.y.inverse_transform(predictions)

    def mse_factor(self) -> np.ndarray:
        """(R,): an MSE in seed r's standardized units times this is the MSE in original units."""
        return np.array([float(s.scale_[0]) ** 2 for s in self.y])


# -- training and measuring one setting -------------------------------------------------------------

@dataclass
class Outcome:
    """One setting over R seeds; MSEs in original units, one number per seed."""

    setting: Setting
    result: ManyResult
    train_mse: np.ndarray  # on the rows each model took its gradient steps on
    test_mse: np.ndarray
    scaling: PerSeedScaling


def init_seeds(seed: int, n_seeds: int) -> list[int]:
    """Model r's initialization seed: the same under every setting, different for every r and base seed."""
    return [seed * 100_000 + r for r in range(n_seeds)]


def initial_stack(cfg: Config, setting: Setting, seeds: Sequence[int]) -> StackedMLP:
    models = seeded_models((1, *cfg.hidden, 1), seeds, cfg.activation, init_std=setting.init_std)
    return StackedMLP.from_models(models, cfg.activation, dropout=setting.dropouts or 0.0)


def train_setting(cfg: Config, setting: Setting, data: Dataset, rows: SeedRows, seed: int, device,
                  progress: bool = False, checkpoints: Checkpoints | None = None) -> Outcome:
    """Train the R models of one setting at once and measure each on its own training and test rows."""
    fit_rows = rows.fit if setting.early_stopping else rows.train
    scaling = PerSeedScaling(data, fit_rows)  # each setting's scaling sees only the rows it trains on
    X, y = scaling.inputs(data, fit_rows), scaling.targets(data, fit_rows)
    valid = (scaling.inputs(data, rows.valid), scaling.targets(data, rows.valid)) if setting.early_stopping else None
    stack = initial_stack(cfg, setting, init_seeds(seed, len(fit_rows)))
    result = train_many(stack, X, y, setting.many, valid=valid, device=device, progress=progress, checkpoints=checkpoints)

    def mse(part: np.ndarray) -> np.ndarray:
        predicted = scaling.to_original(result.predict(scaling.inputs(data, part)).double().numpy())
        errors = np.mean((predicted - data.y[part]) ** 2, axis=(1, 2))
        return np.where(np.isfinite(errors), errors, np.inf)  # a diverged model loses every comparison

    return Outcome(setting, result, train_mse=mse(fit_rows), test_mse=mse(rows.test), scaling=scaling)


# -- comparing settings ---------------------------------------------------------------------------

def sign_test_p_value(wins: int, losses: int) -> float:
    """Exact two-sided sign test: P(a split at least this uneven | wins and losses equally likely).

    Ties are left out, as the test prescribes. p = min(1, 2·Σ_{i ≤ min(wins, losses)} C(n, i) / 2ⁿ).
    """
    n = wins + losses
    if n == 0:
        return 1.0
    tail = sum(math.comb(n, i) for i in range(min(wins, losses) + 1))
    return min(1.0, 2 * tail / 2**n)


def quartiles(values: np.ndarray) -> dict[str, float]:
    q25, q50, q75 = np.percentile(values, [25, 50, 75])
    return {"median": float(q50), "q25": float(q25), "q75": float(q75), "iqr": float(q75 - q25)}


def compare_to_none(test_mse: np.ndarray, none_test_mse: np.ndarray) -> dict:
    """Seed by seed (same split, same initial weights): how often a setting's test MSE beat 'none'."""
    wins = int(np.sum(test_mse < none_test_mse))
    losses = int(np.sum(test_mse > none_test_mse))
    p = sign_test_p_value(wins, losses)
    if p < SIGNIFICANCE:
        verdict = "helped" if wins > losses else "hurt"
    else:
        verdict = "no clear difference"
    return {"wins": wins, "losses": losses, "ties": len(test_mse) - wins - losses, "sign_test_p": p,
            "median_ratio_to_none": float(np.median(test_mse / none_test_mse)), "verdict": verdict}


def _num(value: float) -> str:
    """Three significant digits, without exponents for the hundreds and thousands MSEs take here."""
    return f"{float(f'{value:.3g}'):.0f}" if abs(value) >= 100 else f"{value:.3g}"


def _fmt(q: dict[str, float], integer: bool = False) -> str:
    show = (lambda v: f"{v:.0f}") if integer else _num
    return f"{show(q['median'])} [{show(q['q25'])}–{show(q['q75'])}]"


# -- the lab --------------------------------------------------------------------------------------

def run(cfg: Config, ctx: LabContext) -> Result:
    cfg.check()  # also when called from Python, not through the CLI
    seed = ctx.runtime.seed
    data = noisy_line(np.random.default_rng(seed))  # the `overfitting` lab's 40 points for the same seed
    rows = seed_rows(len(data), seed, cfg.seeds, cfg.test_fraction, cfg.valid_fraction)
    ctx.log(f"  data: {data.description}; per seed {rows.train.shape[1]} train ({rows.fit.shape[1]} + "
            f"{rows.valid.shape[1]} validation under early stopping) / {rows.test.shape[1]} test; {cfg.seeds} seeds")

    outcomes: dict[str, Outcome] = {}
    for setting in six_settings(cfg):
        outcomes[setting.name] = out = train_setting(cfg, setting, data, rows, seed, ctx.runtime.device, ctx.progress,
                                                           ctx.checkpoints)
        ctx.log(f"  {setting.name:>14}: test MSE median {np.median(out.test_mse):.4g}, train {np.median(out.train_mse):.4g}"
                f", epochs {np.median(out.result.epochs_used):.0f}"
                + (f", {int(out.result.diverged.sum())} diverged" if out.result.diverged.any() else ""))

    reference = {
        "train": np.array([np.mean((mean_line(data.X[r]) - data.y[r]) ** 2) for r in rows.train]),
        "test": np.array([np.mean((mean_line(data.X[r]) - data.y[r]) ** 2) for r in rows.test]),
    }
    metrics = _metrics(cfg, outcomes, reference, rows)
    table = _table(metrics)
    ctx.run.save_figure(_mse_figure(outcomes), "mse_by_setting",
                        f"Each point is one of {cfg.seeds} seeds (its own split and initial weights); boxes span the "
                        "IQR, whiskers 1.5 IQR. Left and middle: train and test MSE in the target's units (log "
                        "scale), with the noise variance 100²/12, the test MSE of the true mean line in expectation. "
                        "Right: each seed's test MSE divided by its test MSE without regularization — below 1, the "
                        "setting helped on that split.")
    ctx.run.save_model(_checkpoint(cfg, outcomes))
    return Result(metrics=metrics, table=table, findings=_findings(cfg, metrics),
                  headline=_headline(metrics))


def _metrics(cfg: Config, outcomes: dict[str, Outcome], reference: dict, rows: SeedRows) -> dict:
    none_test = outcomes["none"].test_mse
    per_setting = {}
    for name, out in outcomes.items():
        r = out.result
        entry = {
            "what": out.setting.what,
            "train_mse": quartiles(out.train_mse),
            "test_mse": quartiles(out.test_mse),
            "epochs_used": quartiles(r.epochs_used.astype(float)),
            "train_rows": int((rows.fit if out.setting.early_stopping else rows.train).shape[1]),
            "diverged": int(r.diverged.sum()),
            "test_mse_per_seed": out.test_mse.tolist(),
        }
        if r.best_epoch is not None:
            entry["best_epoch"] = quartiles(r.best_epoch.astype(float))
            entry["stopped_early"] = int(np.sum(r.epochs_used < cfg.epochs))
        if name != "none":
            entry["vs_none"] = compare_to_none(out.test_mse, none_test)
        per_setting[name] = entry
    return {
        "settings": per_setting,
        "mean_line": {"train_mse": quartiles(reference["train"]), "test_mse": quartiles(reference["test"])},
        "noise_variance": NOISE_VARIANCE,
        "seeds": cfg.seeds,
        "epochs": cfg.epochs,
        "n_train": int(rows.train.shape[1]),
        "n_valid": int(rows.valid.shape[1]),
        "n_test": int(rows.test.shape[1]),
    }


def _table(m: dict) -> list[tuple[str, ...]]:
    rows = [("setting", "what", "train MSE median [IQR]", "test MSE median [IQR]", "epochs used median [IQR]",
             "seeds better than none", "sign test p", "on this data")]
    for name, s in m["settings"].items():
        epochs = _fmt(s["epochs_used"], integer=True)
        if "best_epoch" in s:
            epochs += f"; best weights from epoch {s['best_epoch']['median']:.0f}"
        vs = s.get("vs_none")
        rows.append((name, s["what"], _fmt(s["train_mse"]), _fmt(s["test_mse"]), epochs,
                     f"{vs['wins']} of {m['seeds']}" if vs else "—",
                     f"{vs['sign_test_p']:.2g}" if vs else "—",
                     vs["verdict"] if vs else "the reference"))
    ref = m["mean_line"]
    rows.append(("true mean line 3x + 50", "the best possible, for scale", _fmt(ref["train_mse"]), _fmt(ref["test_mse"]),
                 "—", "—", "—", "—"))
    return rows


def _findings(cfg: Config, m: dict) -> list[str]:
    s = m["settings"]
    none = s["none"]
    findings = [
        f"MSEs are in the target's units, median [25th–75th percentile] over {m['seeds']} seeds; train MSE is "
        "measured on the rows each model was trained on, with dropout off. The noise alone has variance "
        f"100²/12 = {NOISE_VARIANCE:.0f}; the true mean line scores a median {_num(m['mean_line']['test_mse']['median'])} "
        "on the same test rows.",
        f"Without regularization the median train MSE is {_num(none['train_mse']['median'])}, "
        f"{none['train_mse']['median'] / NOISE_VARIANCE:.2g}× the noise variance, and the median test MSE "
        f"{_num(none['test_mse']['median'])}: " + (
            "the networks reproduce the noise of their training rows, which no test row shares."
            if none["train_mse"]["median"] < NOISE_VARIANCE else "they have not fitted the noise at this length.")
        + " Median train MSE under each setting: "
        + ", ".join(f"{n} {_num(e['train_mse']['median'])}" for n, e in s.items()) + ".",
    ]
    for verdict, title in (("helped", "Helped on this data"), ("hurt", "Hurt on this data"),
                           ("no clear difference", "No clear difference on this data")):
        names = [n for n, e in s.items() if e.get("vs_none", {}).get("verdict") == verdict]
        if not names:
            continue
        parts = []
        for n in names:
            e, vs = s[n], s[n]["vs_none"]
            change = 100 * (e["test_mse"]["median"] / none["test_mse"]["median"] - 1)
            parts.append(f"{n}: median test MSE {_num(e['test_mse']['median'])} ({change:+.0f}%), lower than without "
                         f"regularization on {vs['wins']} of {m['seeds']} seeds (p = {vs['sign_test_p']:.2g})")
        rule = (f"two-sided sign test over the paired seeds, p < {SIGNIFICANCE:g}" if verdict != "no clear difference"
                else f"sign test p ≥ {SIGNIFICANCE:g}")
        findings.append(f"{title} ({rule}): " + "; ".join(parts) + ".")
    best = min((n for n in s if n != "none"), key=lambda n: s[n]["test_mse"]["median"])
    findings.append(f"Lowest median test MSE: {best}, {_num(s[best]['test_mse']['median'])} "
                    f"({s[best]['test_mse']['median'] / m['mean_line']['test_mse']['median']:.2f}× the true mean line's "
                    "on the same rows).")
    es = s["early stopping"]
    findings.append(
        f"Early stopping stopped {es['stopped_early']} of {m['seeds']} models before epoch {m['epochs']} (median stop "
        f"{es['epochs_used']['median']:.0f}, best weights from epoch {es['best_epoch']['median']:.0f}), trained on "
        f"{es['train_rows']} rows instead of {m['n_train']}: {m['n_valid']} went to validation."
    )
    diverged = {n: e["diverged"] for n, e in s.items() if e["diverged"]}
    if diverged:
        findings.append("Diverged models (non-finite training loss): "
                        + ", ".join(f"{n}: {k}" for n, k in diverged.items()) + ".")
    if m["seeds"] < 30:
        findings.append(f"Only {m['seeds']} seeds were trained (the issue asks for at least 30): the verdicts above "
                        "rest on too few splits to mean much.")
    return findings


def _headline(m: dict) -> str:
    s = m["settings"]
    helped = [n for n, e in s.items() if e.get("vs_none", {}).get("verdict") == "helped"]
    return (f"median test MSE {_num(s['none']['test_mse']['median'])} unregularized; "
            + (f"helped: {', '.join(helped)}" if helped else "none clearly helped") + f" ({m['seeds']} seeds)")


def _checkpoint(cfg: Config, outcomes: dict[str, Outcome]) -> dict:
    """Seed 0's model under every setting; `model` is the unregularized one."""

    def seed0(out: Outcome) -> dict:
        return out.result.model.model(0).state_dict()

    none = outcomes["none"]
    return {
        "model": seed0(none),
        "x_scaler": none.scaling.x[0].state(),
        "y_scaler": none.scaling.y[0].state(),
        "settings": {name: seed0(out) for name, out in outcomes.items()},
        "layer_sizes": [1, *cfg.hidden, 1],
        "activation": cfg.activation,
        "dropout": list(cfg.dropout),
    }


def _mse_figure(outcomes: dict[str, Outcome]):
    import matplotlib.pyplot as plt

    names = list(outcomes)
    none_test = outcomes["none"].test_mse
    panels = [
        ("train MSE (rows trained on)", [outcomes[n].train_mse for n in names], True),
        ("test MSE", [outcomes[n].test_mse for n in names], True),
        ("test MSE ÷ 'none' on the same seed", [outcomes[n].test_mse / none_test for n in names[1:]], False),
    ]
    fig, axes = plt.subplots(1, 3, figsize=(15.5, 4.6))
    jitter = np.random.default_rng(0)  # only spreads the dots sideways; no result depends on it
    for ax, (title, values, absolute) in zip(axes, panels):
        labels = names if absolute else names[1:]
        ax.boxplot(values, tick_labels=labels, showfliers=False, widths=0.55, medianprops={"color": "black"})
        for i, (label, v) in enumerate(zip(labels, values), start=1):
            color = f"C{names.index(label)}"  # one color per setting in every panel
            ax.scatter(i + jitter.uniform(-0.18, 0.18, len(v)), v, s=9, alpha=0.55, color=color, zorder=3)
        ax.set_yscale("log")
        if absolute:
            ax.axhline(NOISE_VARIANCE, color="0.35", ls="--", lw=1, label=f"noise variance {NOISE_VARIANCE:.0f}")
            ax.set_ylabel("MSE (target units²)")
        else:
            ax.axhline(1.0, color="0.35", ls="--", lw=1, label="as without regularization")
            ax.set_ylabel("ratio")
        ax.set_title(title)
        ax.tick_params(axis="x", rotation=25)
        ax.grid(alpha=0.3, axis="y")
        ax.legend(fontsize=8, loc="upper right")
    fig.tight_layout()
    return fig


LAB = Lab(
    id="regularization",
    title="Regularization: six ways to train the overfitting network, over many seeds",
    function="MLP 1→{hidden}→1, {activation}; {seeds} copies per setting, one per seed",
    loss="MSE on standardized targets (+ λ·Σ|w| for L1)",
    minimizer="Adam lr {lr}, full batch, {epochs} epochs; all seeds of a setting trained at once",
    data="y = 3x + U(0,1)·100, x in range(-100, 100, 5): 40 points (seeded); a random train/test split per seed",
    typical_time="~20 s on 2 cores (quick ~2 s)",
    config=Config,
    run=run,
    quick={"seeds": 4, "epochs": 40, "patience": 10},
    prefers_cpu="",
    multiprocess=True,
)
