"""`dlc rl --env ENV_ID`: a thin front for `dlc run ppo-gym`, with the same options, the same path and the
same one-line refusals, all made before any run directory exists."""

import importlib.util

import pytest

from dlconcepts import cli
from dlconcepts.cli import main


@pytest.fixture
def captured_runs(monkeypatch):
    """What `dlc run` would run, without running it: (lab id, resolved config, run settings) per call."""
    from dlconcepts.labs import runner

    calls = []

    def fake_run_lab(lab, config, settings, run_dir=None, resume=None):
        calls.append((lab.id, config, settings))
        raise SystemExit(0)

    monkeypatch.setattr(runner, "run_lab", fake_run_lab)
    return calls


def test_rl_is_dlc_run_ppo_gym_with_the_env_and_steps_as_set_pairs(captured_runs, tmp_path):
    for args in (["rl", "--env", "MountainCarContinuous-v0", "--steps", "5000", "--set", "gamma=0.999"],
                 ["run", "ppo-gym", "--set", "env=MountainCarContinuous-v0", "--set", "total_steps=5000",
                  "--set", "gamma=0.999"]):
        with pytest.raises(SystemExit):
            main([*args, "--seed", "4", "--threads", "1", "--quiet", "--out", str(tmp_path), "--checkpoint-every", "3"])
    (rl_lab, rl_config, rl_settings), (run_lab, run_config, run_settings) = captured_runs
    assert rl_lab == run_lab == "ppo-gym"
    assert rl_config == run_config and rl_settings == run_settings
    assert (rl_config.env, rl_config.total_steps, rl_config.gamma, rl_config.n_envs) == ("MountainCarContinuous-v0", 5000, 0.999, 1)
    assert (rl_settings.seed, rl_settings.threads, rl_settings.checkpoint_every, rl_settings.out) == (4, 1, "3", str(tmp_path))


def test_an_explicit_set_wins_over_steps_and_quick(captured_runs):
    with pytest.raises(SystemExit):
        main(["rl", "--env", "Acrobot-v1", "--quick", "--steps", "4096", "--set", "total_steps=2048", "--set", "n_envs=2",
              "--set", "minibatch_size=64"])
    ((_, config, settings),) = captured_runs
    assert (config.total_steps, config.n_envs, settings.quick) == (2048, 2, True)


def test_rl_and_run_share_their_run_options():
    parser = cli.build_parser()
    subparsers = next(a for a in parser._actions if a.dest == "command").choices

    def options(name):
        return {s for a in subparsers[name]._actions for s in a.option_strings}

    assert options("rl") - options("run") == {"--env", "--steps"}
    assert {"--quick", "--set", "--config", "--seed", "--threads", "--out", "--quiet", "--checkpoint-every"} <= options("rl")


def test_dlc_config_ppo_gym_shows_each_default_per_kind_of_action_space(capsys):
    assert main(["config", "ppo-gym"]) == 0
    out = capsys.readouterr().out
    (n_envs,) = [line for line in out.splitlines() if line.startswith("n_envs ")]
    assert "8 (Discrete actions), 1 (Box actions)" in n_envs
    (target,) = [line for line in out.splitlines() if line.startswith("target ")]
    assert "none" in target and "reward_threshold" in target
    assert "A default shown per case, (Discrete actions) or (Box actions), is the one used in that case" in out


REFUSALS = [
    (["--env", "Acrobat-v1"], "unknown Gymnasium environment 'Acrobat-v1' (did you mean 'Acrobot-v1'?)"),
    (["--env", "mountaincarcontinuous"], "(did you mean 'MountainCarContinuous-v0'?)"),
    (["--env", "FrozenLake-v1"], "FrozenLake-v1: observation space Discrete(16) is not a flat Box"),
    (["--env", "Blackjack-v1"], "Blackjack-v1: observation space Tuple("),
    (["--env", "Acrobot-v1", "--set", "lrr=0.1"], "unknown config key 'lrr' for lab 'ppo-gym' (did you mean 'lr'?)"),
    (["--env", "Acrobot-v1", "--set", "n_envs=0"], "n_envs=0 is impossible: it must be > 0"),
    (["--env", "Acrobot-v1", "--steps", "100"], "total_steps=100 is less than one rollout (128 steps × 8 envs = 1024)"),
    (["--env", "MountainCarContinuous-v0", "--set", "minibatch_size=100"], "minibatch_size=100 does not divide the rollout (2048 steps × 1 envs"),
    (["--env", "Acrobot-v1", "--set", "target=high"], "target='high' is not a number or none"),
    (["--env", "Acrobot-v1", "--steps", "ten"], "argument --steps: invalid int value: 'ten'"),
    (["--steps", "1000"], "the following arguments are required: --env"),
    (["--env", "Acrobot-v1", "--resume", "somewhere"], "unrecognized arguments: --resume somewhere"),
]
if importlib.util.find_spec("Box2D") is None:
    REFUSALS.append((["--env", "LunarLander-v3"], "Gymnasium environment 'LunarLander-v3' needs a package that is not "
                                                  "installed: Box2D is not installed"))


@pytest.mark.parametrize("args, message", REFUSALS, ids=[" ".join(a) for a, _ in REFUSALS])
def test_refusals_are_one_line_with_exit_code_2_and_leave_no_run_directory(args, message, tmp_path, capsys):
    out = tmp_path / "runs"
    assert main(["rl", *args, "--out", str(out), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("dlc: error: ") and err.count("\n") == 1
    assert message in err
    assert not out.exists()


def test_the_environment_is_checked_by_dlc_run_and_by_the_notebook_api_alike(tmp_path, capsys):
    import dlconcepts
    from dlconcepts.errors import UserError

    assert main(["run", "ppo-gym", "--set", "env=Acrobat-v1", "--out", str(tmp_path)]) == 2
    cli_message = capsys.readouterr().err.strip().removeprefix("dlc: error: ")
    with pytest.raises(UserError) as caught:
        dlconcepts.run_lab("ppo-gym", out=tmp_path, env="Acrobat-v1")
    assert str(caught.value) == cli_message
    assert not any(tmp_path.iterdir())
