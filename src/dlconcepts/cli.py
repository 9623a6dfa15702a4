"""The `dlc` command. Thin: it parses, finds a lab through the registry, and calls the runner.

    dlc labs                       the labs, with their three steps
    dlc run LAB|all [options]      run a lab (or the whole course) into a run directory
    dlc rl --env ENV_ID [options]  PPO on any Gymnasium environment (the lab ppo-gym)
    dlc explain matrix [options]   an MLP as matrix operations, by hand vs PyTorch (--excel: the workbook)
    dlc explain conv --model NAME  a CNN's output shape, parameters and multiply-adds, layer by layer
    dlc train --data F --target C  cross-validate and fit an MLP on your own table (.csv, .xlsx)
    dlc predict --model RUN --data F   apply a model from dlc train to new rows
    dlc play RUN_DIR [--gif F.gif]  watch a trained PPO policy (a PPO lab's or dlc rl's run) act
    dlc serve [--runs DIR] [--port 8000] [--host 127.0.0.1]   the course in a browser: runs, live labs, Playground

Every mistake a user can make ends in one line on stderr and exit code 2, never a traceback.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from collections.abc import Sequence
from typing import Any

from dlconcepts import __version__
from dlconcepts.errors import ConfigError, UserError, did_you_mean


class _Parser(argparse.ArgumentParser):
    """argparse, but its errors are one line (no usage block) and exit code 2."""

    def error(self, message: str) -> None:  # type: ignore[override]
        raise UserError(f"{message} (see '{self.prog} --help')")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="dlc",
        description="Deep Learning – Concepts and PyTorch Development: every concept of the course as a runnable lab.",
    )
    parser.add_argument("--version", action="version", version=f"dlc {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)

    sub.add_parser("labs", help="list the labs with their three steps (function, loss, minimizer)")

    run = sub.add_parser(
        "run",
        help="run a lab, or 'all' for the whole course",
        description="Run a lab into <out>/<yyyymmdd-hhmmss>-<lab>/ (config.json, metrics.json, figures/, "
        "model.pt, log.txt, report.md). 'dlc run all' runs every lab into one folder with a course index.",
    )
    run.add_argument("lab", nargs="?", help="lab id (see 'dlc labs') or 'all'")
    _add_run_options(run)
    run.add_argument("--weights", metavar="FILE", help="a weight file already on disk (conv: torchvision AlexNet or "
                     "ResNet-18); the same as --set weights=FILE")
    run.add_argument("--mnist", metavar="DIR", help="a folder with MNIST's four IDX files (cnn-digits, autoencoder, "
                     "vae, gan); the same as --set mnist=DIR")
    run.add_argument("--nproc", type=int, default=1, metavar="N",
                     help="train in N processes on this machine (torch.distributed.run; gloo on the CPU, NCCL on "
                     "GPUs): each a share of every batch, or of a study's models; the same as "
                     "torchrun --nproc-per-node N -m dlconcepts run ...")
    run.add_argument("--resume", metavar="RUN_DIR", help="continue an interrupted run from its checkpoint, with its "
                     "own lab, config and seed (no lab id or --set then)")
    run.add_argument("--max-restarts", type=int, default=0, metavar="K",
                     help="with --nproc: restart the processes up to K times after a failure, each time resuming "
                     "from the last checkpoint (torchrun's elastic restarts)")
    _add_rl(sub)

    show = sub.add_parser("config", help="show a lab's config keys, their defaults, limits and meaning")
    show.add_argument("lab", help="lab id")

    explain = sub.add_parser("explain", help="make the math visible: 'dlc explain matrix' walks an MLP through by hand")
    topics = explain.add_subparsers(dest="topic", metavar="TOPIC", parser_class=_Parser, required=True)
    matrix = topics.add_parser(
        "matrix",
        help="an MLP as matrix operations: parameters with the course's names, each layer by hand vs PyTorch",
        description="Print the course's nn.Sequential(Linear(2,3), Linear(3,2), Linear(2,1)) with the slides' "
        "weights (or a seeded random MLP): every parameter with the course's name (w13 ... b_y), each layer "
        "recomputed as X·Wᵀ + b next to the module's own output, and their largest difference.",
    )
    matrix.add_argument("--excel", metavar="FILE.xlsx", help="also write the 'use Excel to verify' workbook (live formulas)")
    matrix.add_argument("--layers", metavar="2,3,2,1", help="layer sizes of a seeded random MLP instead of the course's network")
    matrix.add_argument("--activation", default="identity", metavar="{identity,relu,sigmoid,tanh}",
                        help="activation after each hidden layer (default identity, as in the slides)")
    matrix.add_argument("--seed", type=int, default=None, help="use a random MLP drawn from this seed")
    _add_explain_conv(topics)
    _add_train_and_predict(sub)
    _add_play(sub)
    _add_serve(sub)
    return parser


def _add_run_options(parser: argparse.ArgumentParser) -> None:
    """The options of a lab's run, shared by `dlc run` and `dlc rl` (which is `dlc run ppo-gym`)."""
    parser.add_argument("--quick", action="store_true", help="a seconds-long run with the same code paths")
    parser.add_argument("--set", dest="set_pairs", action="append", default=[], metavar="KEY=VALUE",
                        help="override a config key (repeatable); 'dlc config LAB' lists the keys")
    parser.add_argument("--config", metavar="FILE.toml", help="config overrides from a TOML file")
    parser.add_argument("--device", default="auto", metavar="{auto,cpu,cuda,mps}",
                        help="where to compute (default auto: cuda, then mps, then cpu)")
    parser.add_argument("--seed", type=int, default=None, help="seed for python, numpy and torch (default 0)")
    parser.add_argument("--threads", type=int, default=None, help="CPU threads for torch (default: torch's choice)")
    parser.add_argument("--deterministic", action="store_true", help="use deterministic algorithms only")
    parser.add_argument("--out", default="runs", help="parent folder of run directories (default runs/)")
    parser.add_argument("--quiet", action="store_true", help="no progress bars and no log on the terminal")
    parser.add_argument("--checkpoint-every", metavar="N|Ss|off", help="save a checkpoint every N epochs (PPO: "
                        "updates), or every S seconds as in 30s, or off (default: as often as 2%% of the run's time "
                        "allows); always at the end of each training loop and on SIGTERM / Ctrl-C")


def _add_rl(sub: Any) -> None:
    rl = sub.add_parser(
        "rl",
        help="train PPO on any Gymnasium environment: dlc rl --env ENV_ID (the lab ppo-gym)",
        description="Train the PPO actor-critic on a Gymnasium environment with vector observations and Discrete or "
        "Box actions; PPO's defaults follow the kind of action space ('dlc config ppo-gym' lists both). The same as "
        "'dlc run ppo-gym --set env=ENV_ID [--set total_steps=N]': the same run directory, report, figures and "
        "model.pt ('dlc play RUN_DIR' replays it; 'dlc run --resume RUN_DIR' continues an interrupted run).",
    )
    rl.add_argument("--env", required=True, metavar="ENV_ID", help="a Gymnasium id, e.g. Acrobot-v1, "
                    "MountainCarContinuous-v0, Hopper-v5 (with gymnasium[mujoco])")
    rl.add_argument("--steps", type=int, metavar="N", help="environment steps of training (the same as "
                    "--set total_steps=N; default: 'dlc config ppo-gym')")
    _add_run_options(rl)
    # What `dlc run` has and `dlc rl` does not ask for: the run goes through `_run` as `dlc run ppo-gym`.
    rl.set_defaults(lab="ppo-gym", weights=None, mnist=None, nproc=1, resume=None, max_restarts=0)


def _rl(args: argparse.Namespace, argv: Sequence[str]) -> int:
    """`dlc rl --env ENV_ID [--steps N] ...` is `dlc run ppo-gym --set env=ENV_ID [--set total_steps=N] ...`;
    an explicit --set comes later and wins."""
    front = [f"env={args.env}"] + ([f"total_steps={args.steps}"] if args.steps is not None else [])
    args.set_pairs = front + list(args.set_pairs)
    return _run(args, argv)


def _add_serve(sub: Any) -> None:
    serve = sub.add_parser(
        "serve",
        help="the course in a browser: runs and reports, labs started and watched live, the MLP Playground",
        description="A local web app: every lab with its config form (validated as 'dlc run' validates), its log, "
        "progress and numbers live while it trains, then its report; every run in the runs folder; the "
        "Playground. Listens on 127.0.0.1 (this machine only) until Ctrl-C, which also stops the runs it started.",
    )
    serve.add_argument("--runs", default="runs", metavar="DIR",
                       help="the runs folder to show, and where started labs write (default runs/)")
    serve.add_argument("--port", type=int, default=8000, help="the port (default 8000; 0: any free port)")
    serve.add_argument("--host", default="127.0.0.1", help="the address to listen on (default 127.0.0.1: this "
                       "machine only; another, such as 0.0.0.0, lets anyone who can reach it start labs here)")


def _add_play(sub: Any) -> None:
    play = sub.add_parser(
        "play",
        help="run a trained PPO policy for a few episodes; --gif draws the first one",
        description="Load the policy saved in RUN_DIR/model.pt by a PPO lab (ppo-cartpole, ppo-pendulum, ppo-walker, "
        "ppo-gym / 'dlc rl'), "
        "run deterministic episodes (the most likely action) and print each return; with --gif, draw the first "
        "episode with Gymnasium's rgb_array rendering into an animated GIF.",
    )
    play.add_argument("run_dir", metavar="RUN_DIR", help="a run directory of a PPO lab or of 'dlc rl'")
    play.add_argument("--episodes", type=int, default=1, help="episodes to play (default 1)")
    play.add_argument("--gif", metavar="OUT.gif", help="draw the first episode into this GIF")
    play.add_argument("--seed", type=int, default=0, help="seed of the first episode; the next ones use seed+1, ... (default 0)")


def _play(args: argparse.Namespace) -> int:
    from dlconcepts.rl.policy_io import play

    result = play(args.run_dir, args.episodes, args.gif, args.seed)
    for i, (ret, length) in enumerate(zip(result.returns, result.lengths)):
        print(f"episode {i + 1}: return {ret:.1f} in {length} steps")
    if len(result.returns) > 1:
        print(f"mean return over {len(result.returns)} episodes: {sum(result.returns) / len(result.returns):.1f}")
    if result.gif is not None:
        print(f"gif: {result.gif} ({result.frames} frames of episode 1)")
    return 0


def _add_explain_conv(topics: Any) -> None:
    conv = topics.add_parser(
        "conv",
        help="a CNN layer by layer: output shape, parameters, multiply-adds (⌊(W+2P−K)/S⌋+1)",
        description="Work out every layer's output shape of a CNN from the formula ⌊(W + 2P − D·(K−1) − 1)/S⌋ + 1, "
        "with its parameters and multiply-adds, then check every shape against a real forward pass.",
    )
    conv.add_argument("--model", required=True, metavar="NAME",
                      help="course-cnn, lenet5, alexnet, vgg11 or resnet18")
    conv.add_argument("--input", metavar="CxHxW", help="one image's shape, e.g. 3x224x224 (default: the model's own)")
    conv.add_argument("--summary", action="store_true", help="also print torchinfo's summary (an independent count)")
    conv.add_argument("--device", default="cpu", metavar="{auto,cpu,cuda,mps}",
                      help="where the checking forward pass runs (default cpu)")


def _explain_conv(args: argparse.Namespace) -> int:
    from dlconcepts.explain.conv import disagreements, explain_model, forward_shapes, torchinfo_summary
    from dlconcepts.runtime import choose_device

    device, _ = choose_device(args.device)
    model, table = explain_model(args.model, args.input)
    model.to(device)
    print(table.text(), end="")
    problems = disagreements(table, forward_shapes(model, table.input_shape))
    if problems:
        print(f"the formula and a forward pass disagree on {len(problems)} layers: " + "; ".join(problems[:3]))
        return 1
    calls = sum(layer.is_module for layer in table.layers)
    print(f"checked: all {calls} layer output shapes equal those of a real forward pass on {device.type} (forward hooks)")
    if args.summary:
        print()
        print(torchinfo_summary(model, table.input_shape))
    return 0


def _add_train_and_predict(sub: Any) -> None:
    train = sub.add_parser(
        "train",
        help="cross-validate an MLP against linear and constant baselines on your own table (.csv, .xlsx)",
        description="Check the table, report how each column is handled, and cross-validate three models on the same "
        "folds (every fold's preprocessing fitted on its training rows only): an MLP whose width and weight decay are "
        "chosen by an inner cross-validation, ridge/logistic regression, and the constant model. The report opens "
        "with which model is best out of fold and by how much, with a paired bootstrap interval. Then the model "
        "asked for by --model is fitted on all rows. Writes <out>/<yyyymmdd-hhmmss>-train/ (config.json, "
        "metrics.json, figures/, model.pt, log.txt, report.md).",
    )
    train.add_argument("--data", required=True, metavar="FILE", help="the table: .csv or .xlsx (only read, never changed)")
    train.add_argument("--target", required=True, metavar="COLUMN", help="the column to predict")
    train.add_argument("--features", metavar="A,B,C", help="feature columns (default: every other column)")
    train.add_argument("--task", default="auto", metavar="{auto,regression,classification}",
                       help="default auto: text or few whole-number values are classes, other numbers are regressed")
    train.add_argument("--model", default="mlp", metavar="{mlp,linear,best}",
                       help="the model to save: mlp (default), linear, or best (the out-of-fold winner)")
    train.add_argument("--hidden", default="auto", metavar="auto|64,32",
                       help="hidden layer widths; default auto: 32 or 64,32, chosen inside each training fold")
    train.add_argument("--epochs", type=int, default=1000, help="most full-batch Adam steps per network; early "
                       "stopping ends most fits sooner (default 1000)")
    train.add_argument("--lr", type=float, default=1e-2, help="Adam's learning rate (default 1e-2)")
    train.add_argument("--cv", default="auto", metavar="auto|K|loo",
                       help="outer cross-validation: K folds, leave-one-out, or auto (default): leave-one-out below "
                       "30 rows, 5-fold × 5 repeats below 200, else 5-fold")
    train.add_argument("--seed", type=int, default=0, help="seed of the folds and of every fit (default 0)")
    train.add_argument("--threads", type=int, help="CPU threads (default: 1 below 1,000 rows, else all cores)")
    train.add_argument("--sheet", metavar="NAME", help="the Excel sheet (default: the first)")
    train.add_argument("--out", default="runs", help="parent folder of the run directory (default runs/)")
    train.add_argument("--quiet", action="store_true", help="no progress on the terminal")

    predict = sub.add_parser(
        "predict",
        help="apply a model from 'dlc train' to new rows",
        description="Apply a trained model and its saved preprocessing to every row of a table. The table needs "
        "the model's feature columns (others are ignored). Writes a CSV with a 'prediction' column "
        "(and 'probability_<class>' for classifiers) to --out, or to the terminal.",
    )
    predict.add_argument("--model", required=True, metavar="RUN_DIR", help="a run directory written by dlc train")
    predict.add_argument("--data", required=True, metavar="FILE", help="the new rows: .csv or .xlsx (only read)")
    predict.add_argument("--sheet", metavar="NAME", help="the Excel sheet (default: the first)")
    predict.add_argument("--out", metavar="FILE.csv", help="where to write the predictions (default: print them)")


def _labs_table() -> str:
    from dlconcepts.labs import all_labs
    from dlconcepts.report.markdown import plain_table

    rows: list[tuple[str, ...]] = [("lab", "1. function", "2. loss", "3. minimizer", "data", "typical time")]
    for lab in all_labs().values():
        steps = [text for _, text in lab.three_steps()]
        rows.append((lab.id, *steps, lab.data, lab.typical_time))
    return plain_table(rows) + "\nRun one with: dlc run LAB [--quick]; its keys: dlc config LAB\n"


def _config_help(lab_id: str) -> str:
    from dlconcepts.config import fields_of
    from dlconcepts.labs import get_lab
    from dlconcepts.report.markdown import plain_table

    lab = get_lab(lab_id)
    rows: list[tuple[str, ...]] = [("key", "default", "quick", "accepted", "meaning")]
    for f in fields_of(lab.config):
        # A default that depends on the config (Lab.defaults_for) is shown per case: "8 (Discrete actions), 1 (Box actions)".
        variants = [(case, values[f.name]) for case, values in lab.variant_defaults.items() if f.name in values]
        default = ", ".join(f"{_shown(v)} ({case})" for case, v in variants) if variants else _shown(f.default)
        rows.append((f.name, default, str(lab.quick.get(f.name, "")), f.accepted(), f.help))
    note = ""
    if lab.variant_defaults:
        note = (f"\nA default shown per case, ({') or ('.join(lab.variant_defaults)}), is the one used in that case; "
                "--quick, --config and --set override it.\n")
    return f"{lab.id}: {lab.title}\n\n" + plain_table(rows) + note


def _shown(value: Any) -> str:
    if isinstance(value, tuple):
        return ",".join(map(str, value))
    return "none" if value is None else str(value).lower() if isinstance(value, bool) else str(value)


def _file_values(path: str | None, lab_id: str, lab_ids: Sequence[str]) -> dict[str, Any]:
    from dlconcepts.config import load_toml

    if path is None:
        return {}
    values = load_toml(path)
    if lab_id == "all":
        for key, value in values.items():
            if key not in lab_ids or not isinstance(value, dict):
                raise ConfigError(
                    f"{path}: for 'dlc run all' put each lab's keys under its own table, e.g. [mlp-regression]; "
                    f"'{key}' is not a lab{did_you_mean(key, lab_ids)}"
                )
        return values
    section = values.get(lab_id)
    return section if isinstance(section, dict) else values


def _run(args: argparse.Namespace, argv: Sequence[str]) -> int:
    from dlconcepts import distributed
    from dlconcepts.checkpoints import parse_every
    from dlconcepts.config import parse_set_pairs
    from dlconcepts.labs import all_labs, get_lab
    from dlconcepts.labs.runner import RunSettings, resolve_config, run_all, run_lab

    if args.resume is not None:
        return _resume(args, argv)
    if args.lab is None:
        raise UserError("give a lab id (see 'dlc labs'), 'all', or --resume RUN_DIR")
    parse_every(args.checkpoint_every)  # refused here, before anything starts
    settings = RunSettings(
        quick=args.quick, device=args.device, seed=0 if args.seed is None else args.seed, threads=args.threads,
        deterministic=args.deterministic, quiet=args.quiet, out=args.out,
        checkpoint_every=args.checkpoint_every, handle_signals=True,
    )
    pairs = _shorthand_pairs(args) + parse_set_pairs(args.set_pairs)  # an explicit --set comes later and wins
    if args.lab == "all":
        values = _file_values(args.config, "all", list(all_labs()))
        root, entries = run_all(settings, values, pairs)
        failed = [e["id"] for e in entries if e["status"] != "ok"]
        print(f"course report: {root / 'report.md'}" + (f" ({len(failed)} failed: {', '.join(failed)})" if failed else ""))
        return 1 if failed else 0
    lab = get_lab(args.lab)
    config = resolve_config(lab, args.quick, _file_values(args.config, lab.id, []), pairs)
    if args.nproc != 1:
        return _launch_processes(args, lab, argv)
    run, _ = run_lab(lab, config, settings)
    if distributed.rank_from_environment() == 0:  # under torchrun the other ranks wrote nothing to point at
        print(f"report: {run.path / 'report.md'}")
    return 0


# What a resumed run takes from its own directory, never from the command line.
_FIXED_BY_THE_RUN = ("quick", "set_pairs", "config", "seed", "weights", "mnist", "threads", "deterministic")


def _resume(args: argparse.Namespace, argv: Sequence[str]) -> int:
    """`dlc run --resume RUN_DIR [--nproc N] [--checkpoint-every ...] [--quiet]`."""
    import dataclasses

    from dlconcepts import distributed
    from dlconcepts.checkpoints import parse_every
    from dlconcepts.labs.runner import resume_request, run_lab

    given = [name for name in _FIXED_BY_THE_RUN if getattr(args, name) is not None  # `--seed 0` counts: no `in`,
             and getattr(args, name) is not False and getattr(args, name) != []]     # since 0 == False
    if args.lab is not None or given:
        what = "a lab id" if args.lab is not None else "--" + given[0].replace("_pairs", "").replace("_", "-")
        raise UserError(f"--resume continues a run with its own lab, config and seed; leave out {what}")
    parse_every(args.checkpoint_every)
    # Under torchrun only rank 0 checks that the run is not running: by the time a peer looks, rank 0 may be.
    lab, config, settings = resume_request(args.resume, check_status=distributed.rank_from_environment() == 0)
    if args.nproc != 1:
        return _launch_processes(args, lab, argv)
    settings = dataclasses.replace(settings, quiet=args.quiet, checkpoint_every=args.checkpoint_every,
                                   handle_signals=True, device=args.device if args.device != "auto" else settings.device)
    run, _ = run_lab(lab, config, settings, resume=Path(args.resume))
    if distributed.rank_from_environment() == 0:
        print(f"report: {run.path / 'report.md'}")
    return 0


def _launch_processes(args: argparse.Namespace, lab: Any, argv: Sequence[str]) -> int:
    """`dlc run LAB --nproc N`: everything was checked here, once; now N processes run the same command."""
    from dlconcepts import distributed
    from dlconcepts.labs import all_labs

    if args.nproc < 1:
        raise UserError(f"--nproc {args.nproc} is impossible; give 1 or more processes")
    if not lab.multiprocess:
        takers = [i for i, other in all_labs().items() if other.multiprocess]
        raise UserError(f"lab '{lab.id}' does not train in several processes yet; run it without --nproc "
                        f"(the labs that do: {', '.join(takers)})")
    if distributed.launched_by_torchrun():
        raise UserError("--nproc inside a torchrun job: give the processes to torchrun (--nproc-per-node) only")
    if args.max_restarts < 0:
        raise UserError(f"--max-restarts {args.max_restarts} is impossible; give 0 or more")
    try:
        failure = distributed.launch(args.nproc, _argv_without_nproc(argv), max_restarts=args.max_restarts)
    except distributed.LauncherStopped as exc:
        return 128 + exc.signum  # rank 0 has said, on this terminal, where the run stopped and how to resume
    if failure is not None:
        raise UserError(failure)
    return 0


def _argv_without_nproc(argv: Sequence[str]) -> list[str]:
    """The command each process runs: the launcher's own options (--nproc, --max-restarts) left out."""
    launcher_options = ("--nproc", "--max-restarts")
    out, skip = [], False
    for token in argv:
        if skip:
            skip = False
        elif token in launcher_options:
            skip = True
        elif not token.startswith(tuple(f"{option}=" for option in launcher_options)):
            out.append(token)
    return out


def _shorthand_pairs(args: argparse.Namespace) -> list[tuple[str, str]]:
    """--weights FILE and --mnist DIR as the --set pairs they stand for: `lab.key` for each lab that takes a path
    under that key (with 'all': every such lab), refused by a lab that takes none."""
    from dlconcepts.labs import all_labs

    labs = all_labs()
    pairs = []
    for key, value in (("weights", args.weights), ("mnist", args.mnist)):
        if value is None:
            continue
        takers = [lab.id for lab in labs.values() if key in lab.path_options]
        if args.lab == "all":
            pairs += [(f"{lab_id}.{key}", value) for lab_id in takers]
        elif args.lab in takers or args.lab not in labs:  # an unknown lab is named by get_lab, with a suggestion
            pairs.append((key, value))
        else:
            raise UserError(f"--{key}: lab '{args.lab}' has no {key} setting; the labs that take it: {', '.join(takers)}")
    return pairs


def _explain_matrix(args: argparse.Namespace) -> int:
    from dlconcepts.explain.matrix import choose_network, parse_layer_sizes, walk_through
    from dlconcepts.explain.spreadsheet import write_workbook

    sizes = parse_layer_sizes(args.layers) if args.layers is not None else None
    net, X, description = choose_network(sizes, args.activation, args.seed)
    walk = walk_through(net, X)
    written = write_workbook(walk, args.excel) if args.excel else None
    print(f"{description}\n\n{walk.text()}", end="")
    if written:
        print(f"workbook: {written} (open it in Excel or LibreOffice; every layer is a live formula)")
    return 0


def _train(args: argparse.Namespace) -> int:
    from dlconcepts import tabular

    options = tabular.TrainOptions(
        data=args.data, target=args.target, features=tabular.parse_features(args.features), task=args.task,
        hidden=tabular.parse_hidden(args.hidden), epochs=args.epochs, lr=args.lr, cv=tabular.parse_cv(args.cv),
        model=args.model, seed=args.seed, threads=args.threads, sheet=args.sheet, out=args.out, quiet=args.quiet,
    )
    outcome = tabular.train(options)
    print(f"report: {outcome.run.path / 'report.md'}")
    return 0


def _predict(args: argparse.Namespace) -> int:
    from pathlib import Path

    from dlconcepts import tabular

    if args.out is not None and Path(args.out).resolve() == Path(args.data).resolve():
        raise UserError(f"--out '{args.out}' is the input table; write the predictions to another file")
    text = tabular.write_predictions(tabular.predict_table(args.model, args.data, args.sheet), args.out)
    if args.out is None:
        print(text, end="")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
        if args.command == "labs":
            print(_labs_table(), end="")
            return 0
        if args.command == "config":
            print(_config_help(args.lab), end="")
            return 0
        if args.command == "run":
            return _run(args, list(sys.argv[1:] if argv is None else argv))
        if args.command == "rl":
            return _rl(args, list(sys.argv[1:] if argv is None else argv))
        if args.command == "explain":
            return _explain_conv(args) if args.topic == "conv" else _explain_matrix(args)
        if args.command == "train":
            return _train(args)
        if args.command == "predict":
            return _predict(args)
        if args.command == "play":
            return _play(args)
        if args.command == "serve":
            from dlconcepts.serve import serve

            return serve(args.runs, host=args.host, port=args.port)
        parser.print_help()
        return 0
    except UserError as exc:
        from dlconcepts import distributed
        from dlconcepts.checkpoints import RunInterrupted

        if isinstance(exc, RunInterrupted):  # not a mistake: the conventional 128 + signal number
            if distributed.rank_from_environment() == 0:
                print(f"dlc: interrupted: {exc}", file=sys.stderr)
            return 128 + exc.signum
        if not distributed.report_error_for_launcher(str(exc)):  # under --nproc the launcher says it once
            print(f"dlc: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("dlc: interrupted; files already written are complete (writes are atomic)", file=sys.stderr)
        return 130
