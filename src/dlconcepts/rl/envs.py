"""Gymnasium environments, vectorized, and what the actor-critic needs to know about their spaces.

PPO collects experience from N copies of an environment at once (`gymnasium.vector`): one batched
forward pass of the policy serves all N, so the per-step Python overhead is paid once, not N times.
`SyncVectorEnv` steps the copies one after another in this process (fastest for cheap classic-control
physics); `AsyncVectorEnv` puts each copy in its own process (worth it only when one step is costly).

Auto-reset: when a copy's episode ends, the vector env resets it by itself. We use Gymnasium's
SAME_STEP mode: `step` returns the first observation of the NEW episode, and the last observation of
the old one — the state s_{t+1} that the bootstrapped value V(s_{t+1}) of a truncated episode needs —
in `info["final_obs"]`. (The default NEXT_STEP mode instead spends one extra step, with no reward and
the action ignored, on the reset; a collector that does not know it learns from fake transitions.)

Checkpoints: `env_state` / `set_env_state` save and put back everything the next step of the
environments depends on — each copy's physics state, its random generator (it draws the start of every
new episode), its time limit's step counter — as tensors and numbers (`torch.load(weights_only=True)`),
never a pickled environment. Only the environments listed in `SAVED_FIELDS` are known; anything else is
refused, because a field left out would make a resumed run drift silently.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import gymnasium as gym
import numpy as np
import torch
from gymnasium.envs.classic_control import AcrobotEnv, CartPoleEnv, Continuous_MountainCarEnv, MountainCarEnv, PendulumEnv
from gymnasium.vector import AsyncVectorEnv, AutoresetMode, SyncVectorEnv, VectorEnv
from gymnasium.wrappers import OrderEnforcing, TimeLimit

from dlconcepts.errors import UserError

EnvSource = str | Callable[[], gym.Env]
"""An environment id such as "CartPole-v1", or a function that builds one environment."""


def make_env(source: EnvSource, render_mode: str | None = None) -> gym.Env:
    """One environment from an id (offline, classic control needs nothing downloaded) or a factory."""
    if callable(source):
        return source()
    try:
        # The passive checker re-validates every step; it is for developing a new env, not for training.
        return gym.make(source, render_mode=render_mode, disable_env_checker=True)
    except gym.error.Error as exc:
        raise UserError(f"cannot make environment {source!r}: {exc}; use a Gymnasium id such as CartPole-v1") from None


def make_vector_env(source: EnvSource, num_envs: int, asynchronous: bool = False) -> VectorEnv:
    """`num_envs` copies behind one batched step, auto-resetting in SAME_STEP mode (see module docstring)."""
    if num_envs < 1:
        raise UserError(f"num_envs={num_envs} is impossible; use 1 or more environments")
    factories = [lambda: make_env(source) for _ in range(num_envs)]
    if asynchronous:
        return AsyncVectorEnv(factories, autoreset_mode=AutoresetMode.SAME_STEP)
    return SyncVectorEnv(factories, autoreset_mode=AutoresetMode.SAME_STEP)


@dataclass(frozen=True)
class SpaceInfo:
    """The observation and action spaces, reduced to what the actor-critic is built from."""

    obs_dim: int
    action_dim: int  # number of actions (discrete) or of action coordinates (continuous)
    continuous: bool
    action_low: np.ndarray | None  # bounds of a continuous action, to clip to when stepping the env
    action_high: np.ndarray | None


def space_info(observation_space: gym.Space, action_space: gym.Space) -> SpaceInfo:
    """Vector observations and Discrete or Box actions; anything else is refused with the reason."""
    if not isinstance(observation_space, gym.spaces.Box) or len(observation_space.shape) != 1:
        raise UserError(f"observation space {observation_space} is not a flat Box; the MLP actor-critic needs a vector observation")
    obs_dim = int(observation_space.shape[0])
    if isinstance(action_space, gym.spaces.Discrete):
        return SpaceInfo(obs_dim, int(action_space.n), False, None, None)
    if isinstance(action_space, gym.spaces.Box) and len(action_space.shape) == 1:
        low, high = action_space.low.astype(np.float32), action_space.high.astype(np.float32)
        return SpaceInfo(obs_dim, int(action_space.shape[0]), True, low, high)
    raise UserError(f"action space {action_space} is not supported; use Discrete or a flat Box")


# ==== the environments' state, for checkpoints ======================================================

SAVED_FIELDS: dict[type, tuple[str, ...]] = {
    # What each layer keeps from one step to the next (read from Gymnasium 1.x's source), besides the
    # random generator `np_random`, which every environment has and which draws each reset's start state.
    CartPoleEnv: ("state", "steps_beyond_terminated"),
    PendulumEnv: ("state", "last_u"),  # last_u: the last torque, only drawn, kept so the copy is whole
    AcrobotEnv: ("state",),
    MountainCarEnv: ("state",),
    Continuous_MountainCarEnv: ("state",),
    TimeLimit: ("_elapsed_steps",),  # how far into the episode: when the time limit truncates it
    OrderEnforcing: ("_has_reset",),
}
"""Fields are read and written by name through the wrapper chain (`get_wrapper_attr`), the way a vector
env reaches its copies, in this process (SyncVectorEnv) or in their own (AsyncVectorEnv); the names are
unique along each known chain, so every name reaches the one layer that owns it."""

MUJOCO_ENVS = {"walker2d_v5": "Walker2dEnv", "hopper_v5": "HopperEnv", "half_cheetah_v5": "HalfCheetahEnv",
               "swimmer_v5": "SwimmerEnv", "inverted_pendulum_v5": "InvertedPendulumEnv",
               "inverted_double_pendulum_v5": "InvertedDoublePendulumEnv", "reacher_v5": "ReacherEnv"}
"""MuJoCo environments (gymnasium.envs.mujoco, v5) whose whole state between steps is the simulator's `data`
(read from their source: everything else they hold is set once at construction). `data` is saved as
MuJoCo's own integration state (`mj_getState`, mjSTATE_INTEGRATION: time, positions, velocities, actuator
activations, controls, and the constraint solver's warm start, without which the next step differs in the
last bits). Imported lazily: MuJoCo is needed only to run these environments."""


def _add_mujoco_envs() -> None:
    for module, name in MUJOCO_ENVS.items():
        try:
            cls = getattr(importlib.import_module(f"gymnasium.envs.mujoco.{module}"), name)
        except (ImportError, AttributeError):  # mujoco not installed: those environments cannot be made either
            return
        SAVED_FIELDS.setdefault(cls, ("data",))


def _mujoco_state(data: Any) -> dict[str, Any]:
    import mujoco

    spec = mujoco.mjtState.mjSTATE_INTEGRATION
    state = np.empty(mujoco.mj_stateSize(data.model, spec))
    mujoco.mj_getState(data.model, data, state, spec)
    return {"mujoco_state": torch.from_numpy(state)}


def _set_mujoco_state(data: Any, saved: dict[str, Any]) -> Any:
    import mujoco

    spec = mujoco.mjtState.mjSTATE_INTEGRATION
    state = saved["mujoco_state"].numpy()
    if state.shape != (mujoco.mj_stateSize(data.model, spec),):
        raise UserError("the checkpoint's MuJoCo state does not fit this environment's model; start the run again")
    mujoco.mj_setState(data.model, data, state, spec)
    return data


def _layers(env: gym.Env) -> list[gym.Env]:
    """The wrapper chain of one environment, outermost first, down to the unwrapped one."""
    chain = [env]
    while isinstance(chain[-1], gym.Wrapper):
        chain.append(chain[-1].env)
    return chain


def _single_envs(envs: VectorEnv) -> list[gym.Env]:
    """The copies of a sync vector env; for an async one, a new copy from each factory (the copies
    themselves live in other processes), to read their wrapper chains from."""
    if isinstance(envs, SyncVectorEnv):
        return list(envs.envs)
    copies = [make() for make in envs.env_fns]
    for copy in copies:
        copy.close()
    return copies


def saved_field_names(envs: VectorEnv) -> tuple[str, ...]:
    """The fields `env_state` saves for `envs`; refuses (one line) environments it cannot save whole."""
    _add_mujoco_envs()
    if type(envs) not in (SyncVectorEnv, AsyncVectorEnv):
        raise UserError(f"cannot checkpoint a {type(envs).__name__}; resumable runs use gymnasium's SyncVectorEnv or AsyncVectorEnv")
    if envs.autoreset_mode != AutoresetMode.SAME_STEP:
        # NEXT_STEP remembers which copies reset on the next call, in a worker's local variable for async envs.
        raise UserError(f"cannot checkpoint vector envs in {envs.autoreset_mode.name} auto-reset mode; make them with "
                        "make_vector_env (SAME_STEP)")
    chains = {tuple(type(layer) for layer in _layers(env)) for env in _single_envs(envs)}
    if len(chains) != 1:
        raise UserError("cannot checkpoint vector envs whose copies differ in their wrappers; make every copy alike")
    (chain,) = chains
    unknown = [cls.__name__ for cls in chain if cls not in SAVED_FIELDS]
    if unknown:
        raise UserError(f"cannot checkpoint environment {' → '.join(cls.__name__ for cls in chain)}: what "
                        f"{', '.join(unknown)} keep{'s' if len(unknown) == 1 else ''} between steps is not known "
                        "(dlconcepts.rl.envs.SAVED_FIELDS); run it without checkpoints")
    return tuple(name for cls in chain for name in SAVED_FIELDS[cls])


def why_not_checkpointable(source: EnvSource) -> str | None:
    """Why runs on `source` cannot be checkpointed (what `saved_field_names` refuses), or None when they can."""
    envs = make_vector_env(source, 1)
    try:
        saved_field_names(envs)
        return None
    except UserError as exc:
        return str(exc)
    finally:
        envs.close()


def env_state(envs: VectorEnv) -> dict[str, Any]:
    """What the next step of every copy depends on, as tensors, numbers and generator states.

    The vector env itself keeps nothing that SAME_STEP mode reads again: `_observations`, `_rewards`,
    `_terminations`, `_truncations` and `_env_obs` are overwritten by each step before they are read, and
    `_autoreset_envs` is read only in NEXT_STEP mode (refused above)."""
    names = saved_field_names(envs)
    return {
        "num_envs": envs.num_envs,
        "fields": {name: [_to_saved(value) for value in envs.get_attr(name)] for name in names},
        "np_random": [generator.bit_generator.state for generator in envs.get_attr("np_random")],
    }


def set_env_state(envs: VectorEnv, state: dict[str, Any]) -> None:
    """Put back what `env_state` saved, into vector envs made the same way (after their first reset).

    The generators are replaced by new ones in the saved state, so Gymnasium reports their seed
    (`np_random_seed`) as -1, "unknown": a label only, nothing draws from it."""
    names = saved_field_names(envs)
    if state["num_envs"] != envs.num_envs or set(state["fields"]) != set(names):
        raise UserError(f"the checkpoint holds {state['num_envs']} environments with fields {sorted(state['fields'])}; "
                        f"these are {envs.num_envs} with {sorted(names)}: the run's config changed; start it again")
    for name in names:
        if name == "data":  # MuJoCo: the simulator's state goes into the copies' own data (a copy of it, async)
            values = [_set_mujoco_state(data, saved) for data, saved in zip(envs.get_attr("data"), state["fields"][name])]
        else:
            values = [_from_saved(value) for value in state["fields"][name]]
        envs.set_attr(name, values)
    envs.set_attr("np_random", [_generator(saved) for saved in state["np_random"]])


def _to_saved(value: Any) -> Any:
    """A field's value in a form `torch.load(weights_only=True)` accepts; NumPy values keep their dtype."""
    if isinstance(value, np.ndarray):
        return {"ndarray": torch.from_numpy(value.copy())}
    if isinstance(value, np.generic):  # e.g. Pendulum's last torque, a np.float32
        return {"numpy_scalar": torch.from_numpy(np.asarray(value).copy())}
    if value is None or isinstance(value, (bool, int, float)):
        return value
    if isinstance(value, tuple):  # e.g. MountainCar's state, (position, velocity) as NumPy scalars
        return {"tuple": [_to_saved(item) for item in value]}
    if type(value).__name__ == "MjData":
        return _mujoco_state(value)
    raise UserError(f"cannot checkpoint an environment field of type {type(value).__name__}")


def _from_saved(value: Any) -> Any:
    if isinstance(value, dict) and "ndarray" in value:
        return value["ndarray"].numpy().copy()
    if isinstance(value, dict) and "numpy_scalar" in value:
        return value["numpy_scalar"].numpy()[()]
    if isinstance(value, dict) and "tuple" in value:
        return tuple(_from_saved(item) for item in value["tuple"])
    return value


BIT_GENERATORS = {cls.__name__: cls for cls in (np.random.PCG64, np.random.PCG64DXSM, np.random.MT19937,
                                                 np.random.Philox, np.random.SFC64)}


def _generator(saved: dict[str, Any]) -> np.random.Generator:
    """A NumPy Generator in a saved `bit_generator.state` (a dict of strings and Python ints)."""
    if saved.get("bit_generator") not in BIT_GENERATORS:
        raise UserError(f"the checkpoint's environment generator {saved.get('bit_generator')!r} is not a NumPy bit generator")
    bit_generator = BIT_GENERATORS[saved["bit_generator"]]()
    bit_generator.state = saved
    return np.random.Generator(bit_generator)
