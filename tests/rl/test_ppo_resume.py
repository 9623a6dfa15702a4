"""PPO resumes to the last bit: a run stopped after some updates and continued from its checkpoint (in a
fresh setup, its global RNGs scrambled) ends with the weights, statistics, episodes and evaluations of a
run that never stopped; and the environments' own state survives a save and a load.

The stop is the one a SIGTERM makes: `Checkpoints.request_stop` inside an update's callback; the stage
then saves that update and raises `RunInterrupted`. Real processes killed with SIGKILL: tests/test_resume.py.
"""

from __future__ import annotations

import random
import signal

import numpy as np
import pytest
import torch
from gymnasium.vector import AutoresetMode, SyncVectorEnv

from dlconcepts.checkpoints import Checkpoints, RunInterrupted, load_file
from dlconcepts.errors import UserError
from dlconcepts.nets.actor_critic import ActorCritic, ActorCriticSpec
from dlconcepts.rl import envs as envs_module
from dlconcepts.rl import rollout as rollout_module
from dlconcepts.rl.envs import env_state, make_vector_env, set_env_state
from dlconcepts.rl.experiment import Experiment, ExperimentResult, run_experiment
from dlconcepts.rl.ppo import PPOConfig, train_ppo
from dlconcepts.runtime import seed_everything

from .toy_envs import constant_reward_env

# Six updates each, evaluated every two; small enough for seconds, long enough that episodes end (and the
# environments reset, drawing from their generators) on both sides of the stop.
CARTPOLE = Experiment(env_id="CartPole-v1", n_envs=4, total_steps=6 * 4 * 32, seed=3,
                      ppo=PPOConfig(n_steps=32, n_epochs=2, minibatch_size=64, lr=1e-3, anneal_clip=True),
                      eval_every=256, eval_episodes=3)
# Pendulum: 64 steps per env per update, so the 200-step time limit truncates every episode after the stop
# at update 3 (192 steps); observation normalization and reward scaling carry statistics across it.
PENDULUM = Experiment(env_id="Pendulum-v1", n_envs=2, total_steps=6 * 2 * 64, seed=5,
                      ppo=PPOConfig(n_steps=64, n_epochs=2, minibatch_size=64, lr=1e-3, gamma=0.9),
                      normalize_obs=True, scale_rewards=True, eval_every=256, eval_episodes=2)
# Walker2d: MuJoCo's simulator state (with its solver's warm start) and falls (terminations) on both sides of the stop.
WALKER = Experiment(env_id="Walker2d-v5", n_envs=2, total_steps=6 * 2 * 64, seed=7,
                    ppo=PPOConfig(n_steps=64, n_epochs=2, minibatch_size=64, lr=1e-3),
                    normalize_obs=True, scale_rewards=True, eval_every=256, eval_episodes=2)
EXPERIMENTS = {"CartPole-v1": CARTPOLE, "Pendulum-v1": PENDULUM, "Walker2d-v5": WALKER}


def train(exp: Experiment, checkpoints: Checkpoints | None = None, stop_after: int | None = None):
    """Run `exp` as a lab does (global seed first); with `stop_after`, stop after that update as a SIGTERM
    would. Returns the result and the updates this call trained."""
    seed_everything(exp.seed)
    trained = []

    def on_update(stats, episodes):
        trained.append(stats.update)
        if stats.update == stop_after:
            checkpoints.request_stop(signal.SIGTERM)

    return run_experiment(exp, on_update, checkpoints=checkpoints), trained


def scramble_global_rngs() -> None:
    """A resumed process starts with other RNG streams; everything it needs must come from the checkpoint."""
    random.seed(987)
    np.random.seed(987)
    torch.manual_seed(987)


def stopped_and_resumed(exp: Experiment, stops: tuple[int, ...], path) -> tuple[ExperimentResult, list[int]]:
    """Stop after each update in `stops` in turn, resuming each time from the file; then run to the end.
    Returns the result and the updates the last process trained."""
    saved = None
    for stop in stops:
        checkpoints = Checkpoints(path, every_epochs=1, saved=saved)
        with pytest.raises(RunInterrupted):
            train(exp, checkpoints, stop_after=stop)
        saved = load_file(path)  # torch.load(weights_only=True)
        assert saved["stages"][-1]["epoch"] == stop and not saved["stages"][-1]["finished"]
        scramble_global_rngs()
    result, trained = train(exp, Checkpoints(path, every_epochs=1, saved=saved))
    return result, trained


def comparable(result: ExperimentResult) -> dict:
    """Everything a run produced except clock times. Floats are compared by repr, which is exact and,
    unlike ==, equal for two NaNs (explained variance, or a mean over no episodes, can be NaN)."""
    history = [{k: v for k, v in record.as_dict().items() if k != "seconds"} for record in result.train.history]
    episodes = result.train.episodes
    return {
        "history": repr(history),
        "episodes": repr((episodes.returns, episodes.lengths, episodes.steps)),
        "evaluations": repr([(step, ev.returns.tolist(), ev.lengths.tolist()) for step, ev in result.evaluations]),
        "env_steps": result.train.env_steps,
        "stopped_early": result.train.stopped_early,
    }


def assert_same_tensors(a: dict, b: dict) -> None:
    assert a.keys() == b.keys() and a
    for name in a:
        assert torch.equal(a[name], b[name]), f"{name} differs"


def assert_same_run(resumed: ExperimentResult, uninterrupted: ExperimentResult) -> None:
    assert_same_tensors(resumed.policy.state_dict(), uninterrupted.policy.state_dict())
    if uninterrupted.obs_normalizer is not None:
        assert_same_tensors({k: v for k, v in resumed.obs_normalizer.state().items() if torch.is_tensor(v)},
                            {k: v for k, v in uninterrupted.obs_normalizer.state().items() if torch.is_tensor(v)})
        assert resumed.obs_normalizer.rms.count == uninterrupted.obs_normalizer.rms.count
    assert comparable(resumed) == comparable(uninterrupted)


# ---- a stopped and resumed run equals one never stopped ----------------------------------------

@pytest.mark.parametrize("env_id, stops", [("CartPole-v1", (3,)), ("Pendulum-v1", (3,)), ("CartPole-v1", (1, 4)),
                                           ("Walker2d-v5", (3,))])
def test_a_run_stopped_and_resumed_ends_bit_identical_to_one_never_stopped(env_id, stops, tmp_path):
    exp = EXPERIMENTS[env_id]
    uninterrupted, trained = train(exp)  # no checkpoints at all: saving must not change the run either
    assert trained == [1, 2, 3, 4, 5, 6] and len(uninterrupted.evaluations) == 3

    resumed, trained = stopped_and_resumed(exp, stops, tmp_path / "checkpoint.pt")
    assert trained == list(range(stops[-1] + 1, 7)), "the last process did not continue from the checkpoint"
    assert_same_run(resumed, uninterrupted)


def test_a_finished_stage_is_put_back_without_training_again(tmp_path):
    """Killed after training finished but before the run completed: the resumed run trains nothing."""
    path = tmp_path / "checkpoint.pt"
    uninterrupted, _ = train(CARTPOLE, Checkpoints(path, every_epochs=1))
    saved = load_file(path)
    assert saved["stages"][-1]["finished"] and saved["stages"][-1]["epoch"] == 6
    scramble_global_rngs()
    resumed, trained = train(CARTPOLE, Checkpoints(path, saved=saved))
    assert trained == []
    assert_same_run(resumed, uninterrupted)


def without(name: str):
    """`set_env_state` that leaves out one saved piece: to show the comparison above would catch its loss."""
    def partial_set_env_state(envs, state):
        for field, values in state["fields"].items():
            if field != name:
                envs.set_attr(field, [envs_module._from_saved(v) for v in values])
        if name != "np_random":
            envs.set_attr("np_random", [envs_module._generator(s) for s in state["np_random"]])
    return partial_set_env_state


@pytest.mark.parametrize("env_id, omitted", [("CartPole-v1", "np_random"), ("CartPole-v1", "state"),
                                             ("Pendulum-v1", "_elapsed_steps"), ("Walker2d-v5", "data")])
def test_leaving_out_one_piece_of_the_environments_state_is_caught(env_id, omitted, tmp_path, monkeypatch):
    exp = EXPERIMENTS[env_id]
    uninterrupted, _ = train(exp)
    monkeypatch.setattr(rollout_module, "set_env_state", without(omitted))
    resumed, trained = stopped_and_resumed(exp, (3,), tmp_path / "checkpoint.pt")
    assert trained == [4, 5, 6]
    with pytest.raises(AssertionError):
        assert_same_run(resumed, uninterrupted)


def test_the_checkpoint_loads_with_weights_only_and_holds_plain_state(tmp_path):
    path = tmp_path / "checkpoint.pt"
    with pytest.raises(RunInterrupted):
        train(PENDULUM, Checkpoints(path, every_epochs=2), stop_after=3)
    saved = torch.load(path, weights_only=True)
    (stage,) = saved["stages"]
    assert stage["kind"] == "ppo" and stage["epoch"] == 3 and not stage["finished"]
    state = stage["state"]
    assert state["updates"] == 3 and len(state["history"]) == 3
    collector = state["collector"]
    assert collector["global_step"] == 3 * 2 * 64
    assert collector["obs_normalizer"]["count"] > 3 * 2 * 64 and collector["reward_scaler"]["returns"].shape == (2,)
    assert collector["envs"]["fields"]["_elapsed_steps"] == [192, 192]
    assert [e["step"] for e in state["callback"]["evaluations"]] == [256] and state["callback"]["next_eval"] == 512


# ---- the environments' own state -----------------------------------------------------------------

def step_all(envs, actions) -> list:
    """Every output of every step, final observations included."""
    out = []
    for action in actions:
        obs, reward, terminated, truncated, info = envs.step(action)
        finals = [None if o is None else np.asarray(o) for o in info.get("final_obs", [None] * envs.num_envs)]
        out.append((obs, reward, terminated, truncated, finals))
    return out


def same_steps(a: list, b: list) -> bool:
    return len(a) == len(b) and all(
        all(np.array_equal(x, y) for x, y in zip(sa[:4], sb[:4]))
        and all((f is None and g is None) or np.array_equal(f, g) for f, g in zip(sa[4], sb[4]))
        for sa, sb in zip(a, b))


def random_actions(env_id: str, steps: int, num_envs: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    space = envs_module.make_env(env_id).action_space
    if hasattr(space, "n"):
        return rng.integers(0, space.n, size=(steps, num_envs))
    return rng.uniform(1.5 * space.low, 1.5 * space.high, size=(steps, num_envs, *space.shape)).astype(np.float32)


@pytest.mark.parametrize("asynchronous", [False, True])
@pytest.mark.parametrize("env_id", ["CartPole-v1", "Pendulum-v1", "Walker2d-v5", "Acrobot-v1", "MountainCar-v0",
                                    "MountainCarContinuous-v0"])
def test_env_state_round_trip_continues_every_copy_exactly(env_id, asynchronous, tmp_path):
    # Enough steps after the save that resets (drawing from each copy's generator) follow it: CartPole's
    # and Walker2d's random-action episodes end every ~20 steps; Pendulum's and MountainCar's time limits
    # cut each copy at step 200, Acrobot's at 500, MountainCarContinuous's at 999.
    after_steps = {"Acrobot-v1": 450, "MountainCarContinuous-v0": 900}.get(env_id, 250)
    before, after = random_actions(env_id, 120, 3, 0), random_actions(env_id, after_steps, 3, 1)
    envs = make_vector_env(env_id, 3, asynchronous=asynchronous)
    try:
        envs.reset(seed=11)
        step_all(envs, before)
        torch.save(env_state(envs), tmp_path / "envs.pt")
        expected = step_all(envs, after)
    finally:
        envs.close()
    fresh = make_vector_env(env_id, 3, asynchronous=asynchronous)  # another env, reset from another seed
    try:
        fresh.reset(seed=99)
        set_env_state(fresh, torch.load(tmp_path / "envs.pt", weights_only=True))
        continued = step_all(fresh, after)
    finally:
        fresh.close()
    assert any(terminated.any() or truncated.any() for _, _, terminated, truncated, _ in expected)
    assert same_steps(continued, expected)


def test_a_lost_generator_state_changes_what_follows():
    """The round trip above can fail: without the generators, the episodes after a reset start elsewhere."""
    actions = random_actions("CartPole-v1", 200, 2, 2)
    envs = make_vector_env("CartPole-v1", 2)
    try:
        envs.reset(seed=1)
        state = env_state(envs)
        expected = step_all(envs, actions)
        envs.reset(seed=2)
        without("np_random")(envs, state)
        assert not same_steps(step_all(envs, actions), expected)
    finally:
        envs.close()


def test_environments_it_cannot_save_are_refused_in_one_line():
    toy = make_vector_env(constant_reward_env(10), 2)
    try:
        with pytest.raises(UserError, match="ConstantRewardEnv.*not known"):
            env_state(toy)
        policy = ActorCritic(ActorCriticSpec(1, 2, False, (8,), "tanh", False, 0.0))
        with pytest.raises(UserError, match="ConstantRewardEnv"):  # before training, not at the first save
            train_ppo(toy, policy, PPOConfig(n_steps=8, minibatch_size=8), 16, 0, checkpoints=Checkpoints(None))
    finally:
        toy.close()

    next_step = SyncVectorEnv([lambda: envs_module.make_env("CartPole-v1")], autoreset_mode=AutoresetMode.NEXT_STEP)
    try:
        with pytest.raises(UserError, match="NEXT_STEP"):
            env_state(next_step)
    finally:
        next_step.close()


def test_evaluating_draws_from_no_global_rng():
    """What EvaluationSchedule's docstring relies on: an evaluation leaves the global streams where they were,
    so the final evaluation a resumed run redoes (it comes after the stage's last save) draws nothing."""
    from dlconcepts.checkpoints import rng_state
    from dlconcepts.rl.evaluate import evaluate

    policy = ActorCritic(ActorCriticSpec(4, 2, False, (8,), "tanh", False, 0.0))
    before = rng_state()
    evaluate(policy, "CartPole-v1", episodes=2, seed=0)
    after = rng_state()
    assert before["python"] == after["python"] and torch.equal(before["torch"], after["torch"])
    assert torch.equal(before["numpy"]["key"], after["numpy"]["key"]) and before["numpy"]["pos"] == after["numpy"]["pos"]
