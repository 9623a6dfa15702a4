"""The saved policy, and `dlc play`: watch it act, as a GIF.

model.pt is a plain dict of a state_dict and primitives — the network's spec, the environment id,
the observation-normalization statistics (a policy trained on normalized inputs is meaningless on
raw ones) — so `torch.load(path, weights_only=True)` rebuilds it without unpickling any code.
"""

from __future__ import annotations

import importlib.util
import io
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from dlconcepts.errors import UserError
from dlconcepts.nets.actor_critic import ActorCritic, ActorCriticSpec
from dlconcepts.rl.envs import make_env, space_info
from dlconcepts.rl.evaluate import policy_action
from dlconcepts.rl.normalization import ObservationNormalizer
from dlconcepts.runs import atomic_write_bytes

POLICY_KEYS = ("model", "spec", "env_id", "obs_normalizer")


def policy_checkpoint(policy: ActorCritic, env_id: str, obs_normalizer: ObservationNormalizer | None,
                      **extra: Any) -> dict[str, Any]:
    """The dict written to model.pt; `extra` adds primitives (env steps, the PPO settings, ...)."""
    return {
        "model": policy.state_dict(),
        "spec": policy.spec.as_dict(),
        "env_id": env_id,
        "obs_normalizer": obs_normalizer.state() if obs_normalizer is not None else None,
        **extra,
    }


@dataclass
class LoadedPolicy:
    policy: ActorCritic
    env_id: str
    obs_normalizer: ObservationNormalizer | None


def load_policy(run_dir: str | Path) -> LoadedPolicy:
    """Rebuild the policy saved in RUN_DIR/model.pt by a PPO lab."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise UserError(f"run directory '{run_dir}' does not exist; pass a directory written by 'dlc run ppo-cartpole' or 'dlc run ppo-pendulum'")
    path = run_dir / "model.pt"
    if not path.is_file():
        raise UserError(f"'{run_dir}' has no model.pt; pass a finished run of 'dlc run ppo-cartpole' or 'dlc run ppo-pendulum'")
    try:
        state = torch.load(path, weights_only=True, map_location="cpu")
    except Exception as exc:  # a truncated or foreign file: say so in one line
        raise UserError(f"cannot read '{path}' as a saved policy ({type(exc).__name__}); rerun the lab to write it again") from None
    if not isinstance(state, dict) or any(key not in state for key in POLICY_KEYS):
        raise UserError(f"'{path}' is not a policy saved by a PPO lab (it lacks {', '.join(POLICY_KEYS)}); "
                        "pass a run of 'dlc run ppo-cartpole' or 'dlc run ppo-pendulum'")
    policy = ActorCritic(ActorCriticSpec.from_dict(state["spec"]))
    policy.load_state_dict(state["model"])
    policy.eval()
    normalizer = ObservationNormalizer.from_state(state["obs_normalizer"]) if state["obs_normalizer"] is not None else None
    return LoadedPolicy(policy, str(state["env_id"]), normalizer)


@dataclass
class PlayResult:
    env_id: str
    returns: list[float]
    lengths: list[int]
    gif: Path | None
    frames: int


def play(run_dir: str | Path, episodes: int = 1, gif: str | Path | None = None, seed: int = 0) -> PlayResult:
    """Run `episodes` deterministic episodes (seeds seed, seed+1, ...); the first one is drawn to `gif`."""
    if episodes < 1:
        raise UserError(f"--episodes {episodes} is impossible; play at least 1 episode")
    gif_path = Path(gif) if gif is not None else None
    if gif_path is not None:
        if gif_path.suffix.lower() != ".gif":
            raise UserError(f"--gif '{gif_path}' does not end in .gif; name the file like episode.gif")
        if not gif_path.parent.is_dir():
            raise UserError(f"--gif '{gif_path}': folder '{gif_path.parent}' does not exist; create it or choose another path")
    loaded = load_policy(run_dir)
    returns, lengths, frames = [], [], []
    fps = 30
    for i in range(episodes):
        record = gif_path is not None and i == 0
        env = _render_env(loaded.env_id) if record else make_env(loaded.env_id)
        try:
            space = space_info(env.observation_space, env.action_space)
            obs, _ = env.reset(seed=seed + i)
            if record:
                fps = int(env.metadata.get("render_fps", 30))
                frames.append(env.render())
            total, steps, done = 0.0, 0, False
            while not done:
                action = policy_action(loaded.policy, obs[None], loaded.obs_normalizer, space.action_low, space.action_high)[0]
                obs, reward, terminated, truncated, _ = env.step(action)
                total += float(reward)
                steps += 1
                done = terminated or truncated
                if record:
                    frames.append(env.render())
        finally:
            env.close()
        returns.append(total)
        lengths.append(steps)
    if gif_path is not None:
        write_gif(frames, gif_path, fps)
    return PlayResult(loaded.env_id, returns, lengths, gif_path, len(frames))


def _render_env(env_id: str):
    # Off-screen drawing: no window, and no display needed (servers, CI).
    os.environ.setdefault("SDL_VIDEODRIVER", "dummy")
    os.environ.setdefault("PYGAME_HIDE_SUPPORT_PROMPT", "1")
    if importlib.util.find_spec("pygame") is None:  # Gymnasium's classic-control renderer
        raise UserError("drawing the GIF needs pygame; install it with: pip install 'gymnasium[classic-control]'")
    return make_env(env_id, render_mode="rgb_array")


def write_gif(frames: list[np.ndarray], path: Path, fps: int, max_fps: int = 25, scale: float = 0.5) -> Path:
    """RGB frames -> an animated GIF (Pillow), at most `max_fps` frames a second, shrunk by `scale`.

    GIF players round frame delays to 10 ms and many treat delays under 20 ms as 100 ms, so a 50 fps
    episode keeps every other frame, each shown twice as long: the same speed as the real thing."""
    from PIL import Image

    stride = max(1, int(np.ceil(fps / max_fps)))
    delay_ms = int(round(1000 * stride / fps))
    images = []
    for frame in frames[::stride]:
        image = Image.fromarray(np.asarray(frame, dtype=np.uint8))
        if scale != 1:
            image = image.resize((max(1, int(image.width * scale)), max(1, int(image.height * scale))), Image.BILINEAR)
        images.append(image.convert("P", palette=Image.ADAPTIVE, colors=64))
    buffer = io.BytesIO()
    images[0].save(buffer, format="GIF", save_all=True, append_images=images[1:], duration=delay_ms, loop=0)
    return atomic_write_bytes(path, buffer.getvalue())
