"""The saved policy, and `dlc play`: watch it act, as a GIF.

model.pt is a plain dict of a state_dict and primitives — the network's spec, the environment id,
the observation-normalization statistics (a policy trained on normalized inputs is meaningless on
raw ones) — so `torch.load(path, weights_only=True)` rebuilds it without unpickling any code.

Drawing needs no display. Classic control draws with pygame (SDL's dummy video driver); MuJoCo draws
with OpenGL, off-screen through EGL or OSMesa, chosen by the variable MUJOCO_GL. When it is not set,
`play` tries each backend in a short subprocess and keeps the first that draws: which one OpenGL
library a process may use is decided once, by PyOpenGL's first import, so a failed try in this process
would spoil the next one. Only the frames the GIF keeps are drawn (software OpenGL takes ~50 ms a frame).
"""

from __future__ import annotations

import functools
import importlib.util
import io
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import torch

from dlconcepts.errors import UserError
from dlconcepts.nets.actor_critic import ActorCritic, ActorCriticSpec
from dlconcepts.rl.envs import make_env, space_info
from dlconcepts.rl.evaluate import policy_action
from dlconcepts.rl.normalization import ObservationNormalizer
from dlconcepts.runs import atomic_write_bytes

POLICY_KEYS = ("model", "spec", "env_id", "obs_normalizer")
PPO_RUNS = "a PPO lab's run (dlc run ppo-cartpole, ppo-pendulum, ppo-walker) or one of 'dlc rl --env ENV_ID'"


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
        raise UserError(f"run directory '{run_dir}' does not exist; pass {PPO_RUNS}")
    path = run_dir / "model.pt"
    if not path.is_file():
        raise UserError(f"'{run_dir}' has no model.pt; pass a finished run: {PPO_RUNS}")
    try:
        state = torch.load(path, weights_only=True, map_location="cpu")
    except Exception as exc:  # a truncated or foreign file: say so in one line
        raise UserError(f"cannot read '{path}' as a saved policy ({type(exc).__name__}); rerun the lab to write it again") from None
    if not isinstance(state, dict) or any(key not in state for key in POLICY_KEYS):
        raise UserError(f"'{path}' is not a policy saved by a PPO lab (it lacks {', '.join(POLICY_KEYS)}); pass {PPO_RUNS}")
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
    fps, stride = 30.0, 1
    for i in range(episodes):
        record = gif_path is not None and i == 0
        env = _render_env(loaded.env_id) if record else _make(loaded.env_id)
        try:
            space = space_info(env.observation_space, env.action_space)
            obs, _ = env.reset(seed=seed + i)
            if record:
                fps = float(env.metadata.get("render_fps") or 30)
                stride = gif_stride(fps)  # draw only the frames the GIF keeps
                frames.append(_first_frame(env, loaded.env_id))
            total, steps, done = 0.0, 0, False
            while not done:
                action = policy_action(loaded.policy, obs[None], loaded.obs_normalizer, space.action_low, space.action_high)[0]
                obs, reward, terminated, truncated, _ = env.step(action)
                total += float(reward)
                steps += 1
                done = terminated or truncated
                if record and steps % stride == 0:
                    frames.append(env.render())
        finally:
            env.close()  # MuJoCo frees its OpenGL context here (left to the garbage collector, it complains)
        returns.append(total)
        lengths.append(steps)
    if gif_path is not None:
        write_gif(frames, gif_path, fps / stride)
    return PlayResult(loaded.env_id, returns, lengths, gif_path, len(frames))


def gif_stride(fps: float, max_fps: int = 25) -> int:
    """Keep every `stride`-th frame, so that the GIF shows at most `max_fps` frames a second."""
    return max(1, int(np.ceil(fps / max_fps - 1e-9)))


def _make(env_id: str, render_mode: str | None = None):
    try:
        return make_env(env_id, render_mode=render_mode)
    except RuntimeError as exc:  # `import mujoco` refuses a MUJOCO_GL it does not know
        if "MUJOCO_GL" not in str(exc):
            raise
        raise UserError(f"{exc}; set MUJOCO_GL to {' or '.join(MUJOCO_GL_BACKENDS)}, or unset it") from None


def _render_env(env_id: str):
    """The environment drawing rgb_array frames off-screen: no window, no display needed (servers, CI)."""
    if not is_mujoco(env_id):
        os.environ.setdefault("SDL_VIDEODRIVER", "dummy")
        os.environ.setdefault("PYGAME_HIDE_SUPPORT_PROMPT", "1")
        if importlib.util.find_spec("pygame") is None:  # Gymnasium's classic-control renderer
            raise UserError("drawing the GIF needs pygame; install it with: pip install 'gymnasium[classic-control]'")
        return _make(env_id, render_mode="rgb_array")
    use_mujoco_gl()
    env = _make(env_id, render_mode="rgb_array")
    follow_with_track_camera(env)
    return env


def _first_frame(env, env_id: str) -> np.ndarray:
    """The first frame; MuJoCo makes its OpenGL context here, where a missing library shows."""
    if not is_mujoco(env_id):
        return env.render()
    try:
        return env.render()
    except Exception as exc:  # ImportError, OSError, RuntimeError, mujoco.FatalError, ...: the backend cannot draw
        reason = (str(exc).strip().splitlines() or [""])[0][:200]
        raise UserError(f"MUJOCO_GL={os.environ.get('MUJOCO_GL')} cannot draw {env_id} ({type(exc).__name__}: {reason}); "
                        f"{_mujoco_gl_fix()}") from None


# ==== MuJoCo's off-screen OpenGL ===================================================================

MUJOCO_GL_BACKENDS = ("egl", "osmesa")
"""Tried in this order when MUJOCO_GL is not set: EGL draws on the GPU when there is one (and with Mesa's
software renderer when there is not), OSMesa always on the CPU. With a display, glfw is tried last."""

MUJOCO_GL_PACKAGES = "apt-get install libosmesa6 (OSMesa, any machine) or libegl1 (EGL)"

_PROBE = """
import mujoco  # its GLContext is the one MUJOCO_GL names
context = mujoco.GLContext(64, 64)
context.make_current()
mujoco.MjrContext(mujoco.MjModel.from_xml_string("<mujoco/>"), mujoco.mjtFontScale.mjFONTSCALE_100)
context.free()
"""


def follow_with_track_camera(env) -> None:
    """Draw from the model's camera named "track" (Walker2d, Hopper, HalfCheetah, Ant, Humanoid, Swimmer
    have one), which follows the body's centre of mass. Gymnasium 1.x draws rgb_array frames from a free
    camera that stays where the episode began, so a walker that walks leaves the picture within a second."""
    import mujoco

    unwrapped = env.unwrapped
    renderer = getattr(unwrapped, "mujoco_renderer", None)
    if renderer is None or getattr(renderer, "camera_id", None) != -1:  # a camera chosen at gym.make stays
        return
    track = mujoco.mj_name2id(unwrapped.model, mujoco.mjtObj.mjOBJ_CAMERA, "track")
    if track != -1:
        renderer.camera_id = track


def is_mujoco(env_id: str) -> bool:
    """Whether Gymnasium's registry builds `env_id` on MuJoCo (gymnasium.envs.mujoco, gymnasium-robotics, ...)."""
    try:
        entry_point = gym.spec(env_id).entry_point
    except gym.error.Error:
        return False
    return isinstance(entry_point, str) and "mujoco" in entry_point.lower()


def why_mujoco_gl_cannot_draw(backend: str) -> str | None:
    """None if MuJoCo makes an OpenGL context and draws with MUJOCO_GL=`backend`, else the reason (one line).
    Tried in a subprocess (about a second), so that a failure leaves this process's OpenGL untouched."""
    return _try_mujoco_gl(backend, os.environ.get("PYOPENGL_PLATFORM"))


@functools.lru_cache(maxsize=None)
def _try_mujoco_gl(backend: str, pyopengl_platform: str | None) -> str | None:
    # pyopengl_platform is part of the cache's key only: the subprocess inherits it, and MuJoCo refuses a
    # backend that PYOPENGL_PLATFORM contradicts (MuJoCo's first drawing in this process sets it).
    env = {**os.environ, "MUJOCO_GL": backend}
    try:
        done = subprocess.run([sys.executable, "-c", _PROBE], env=env, stdin=subprocess.DEVNULL,
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, timeout=120)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"{type(exc).__name__}: {exc}"
    if done.returncode == 0:
        return None
    lines = [line.strip() for line in done.stderr.splitlines() if line.strip()]
    reason = lines[-1] if lines else f"exit code {done.returncode}"
    return reason if len(reason) <= 200 else reason[:199] + "…"


def find_mujoco_gl() -> str | None:
    """The first backend that draws here: MUJOCO_GL_BACKENDS, then glfw when there is a display."""
    candidates = MUJOCO_GL_BACKENDS
    if os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"):
        candidates += ("glfw",)
    return next((backend for backend in candidates if why_mujoco_gl_cannot_draw(backend) is None), None)


def use_mujoco_gl() -> str:
    """Set MUJOCO_GL, before MuJoCo's first drawing, to the first backend that draws here; or check the
    user's own choice. Either way a backend that cannot draw is refused in one line naming the fix."""
    chosen = os.environ.get("MUJOCO_GL", "").strip()
    if chosen:
        if chosen.lower() not in MUJOCO_GL_BACKENDS + ("glfw",):
            raise UserError(f"MUJOCO_GL={chosen} cannot draw off-screen; set MUJOCO_GL to "
                            f"{' or '.join(MUJOCO_GL_BACKENDS)}, or unset it to let dlc play choose")
        reason = why_mujoco_gl_cannot_draw(chosen)
        if reason is not None:
            raise UserError(f"MUJOCO_GL={chosen} cannot draw here ({reason}); {_mujoco_gl_fix()}")
        return chosen
    found = find_mujoco_gl()
    if found is None:
        raise UserError(f"no OpenGL backend can draw MuJoCo off-screen here (tried MUJOCO_GL="
                        f"{', '.join(MUJOCO_GL_BACKENDS)}); {_mujoco_gl_fix()}")
    os.environ["MUJOCO_GL"] = found  # read by Gymnasium when it makes its first renderer
    return found


def _mujoco_gl_fix() -> str:
    fix = (f"install an off-screen OpenGL library — on Debian/Ubuntu: {MUJOCO_GL_PACKAGES} — or set MUJOCO_GL "
           f"to a backend that works here ({', '.join(MUJOCO_GL_BACKENDS)})")
    platform = os.environ.get("PYOPENGL_PLATFORM")
    if platform:
        fix += f"; PYOPENGL_PLATFORM={platform} is set too: unset it, or make it name the same backend"
    return fix


def write_gif(frames: list[np.ndarray], path: Path, fps: float, max_fps: int = 25, scale: float = 0.5) -> Path:
    """RGB frames -> an animated GIF (Pillow), at most `max_fps` frames a second, shrunk by `scale`.

    GIF players round frame delays to 10 ms and many treat delays under 20 ms as 100 ms, so a 50 fps
    episode keeps every other frame, each shown twice as long: the same speed as the real thing."""
    from PIL import Image

    stride = gif_stride(fps, max_fps)
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
