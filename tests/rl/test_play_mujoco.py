"""`dlc play` on a MuJoCo run (Walker2d-v5, as ppo-walker saves it): the GIF drawn off-screen through EGL or
OSMesa, chosen without a display; and one line, exit code 2, when no OpenGL backend can draw.

The policy is an untrained one saved the way the lab saves it (a second, not a training run): it falls
within a few dozen steps, which is enough frames to check the drawing."""

import os
import subprocess
import sys

import numpy as np
import pytest
import torch
from PIL import Image, ImageSequence

from dlconcepts.cli import main
from dlconcepts.nets.actor_critic import ActorCritic, ActorCriticSpec
from dlconcepts.rl import policy_io
from dlconcepts.rl.policy_io import play, policy_checkpoint

WALKER = "Walker2d-v5"
GL_VARIABLES = ("MUJOCO_GL", "PYOPENGL_PLATFORM")


@pytest.fixture(scope="module")
def walker_run(tmp_path_factory):
    torch.manual_seed(0)
    policy = ActorCritic(ActorCriticSpec(obs_dim=17, action_dim=6, continuous=True, hidden=(16, 16)))
    run_dir = tmp_path_factory.mktemp("walker") / "run"
    run_dir.mkdir()
    torch.save(policy_checkpoint(policy, WALKER, None, env_steps=0), run_dir / "model.pt")
    return run_dir


@pytest.fixture(scope="module")
def offscreen_gl():
    """The backend `dlc play` will draw with. None found: a failure in CI (CI=true, where .ci/run installs
    the library), a skip elsewhere whose reason names the package to install."""
    backend = os.environ.get("MUJOCO_GL") or policy_io.find_mujoco_gl()
    if backend is None:
        message = f"no OpenGL backend draws MuJoCo off-screen here; {policy_io.MUJOCO_GL_PACKAGES}"
        if os.environ.get("CI"):
            pytest.fail(f"{message} (.ci/run installs libosmesa6)")
        pytest.skip(message)
    return backend


@pytest.fixture
def gl_variables_restored():
    """`play` sets MUJOCO_GL (and MuJoCo's OpenGL import sets PYOPENGL_PLATFORM) in this process; put them back."""
    before = {name: os.environ.get(name) for name in GL_VARIABLES}
    yield
    for name, value in before.items():
        if value is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = value


def test_dlc_play_draws_a_walker_episode_into_an_animated_gif(walker_run, offscreen_gl, gl_variables_restored,
                                                              tmp_path, capsys):
    gif = tmp_path / "walker.gif"
    assert main(["play", str(walker_run), "--gif", str(gif)]) == 0
    out = capsys.readouterr().out
    assert "episode 1: return" in out and f"gif: {gif}" in out
    with Image.open(gif) as image:
        assert image.format == "GIF" and image.is_animated and image.size == (240, 240)  # 480×480 drawn, halved
        assert image.info["duration"] == 40  # 125 fps simulated, every 5th step drawn: 25 fps
        frames = [np.asarray(frame.convert("RGB"), dtype=np.int16) for frame in ImageSequence.Iterator(image)]
    assert len(frames) > 1
    assert all(frame.std() > 10 for frame in frames), "a blank frame: nothing was drawn"
    assert max(np.abs(frame - frames[0]).mean() for frame in frames[1:]) > 1, "every frame is the first: the walker never moved"
    # drawing does not change the episode: the same return and length as playing without a GIF
    drawn, plain = play(walker_run, gif=tmp_path / "again.gif"), play(walker_run)
    assert drawn.returns == plain.returns and drawn.lengths == plain.lengths
    assert drawn.frames == plain.lengths[0] // 5 + 1  # only the frames the GIF keeps are drawn


def test_dlc_play_without_gif_prints_the_returns(walker_run, capsys):
    assert main(["play", str(walker_run), "--episodes", "2", "--seed", "3"]) == 0
    out = capsys.readouterr().out
    assert "episode 1: return" in out and "episode 2: return" in out and "mean return over 2 episodes" in out
    assert "gif:" not in out


def test_no_offscreen_backend_is_one_line_naming_the_package(walker_run, tmp_path, capsys, monkeypatch):
    for name in ("MUJOCO_GL", "DISPLAY", "WAYLAND_DISPLAY"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(policy_io, "MUJOCO_GL_BACKENDS", ("no-such-backend",))  # every try fails, in its subprocess
    gif = tmp_path / "walker.gif"
    assert main(["play", str(walker_run), "--gif", str(gif)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err, err
    assert "apt-get install libosmesa6" in err and "MUJOCO_GL" in err
    assert not gif.exists()


def test_a_mujoco_gl_that_cannot_draw_off_screen_is_one_line(walker_run, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("MUJOCO_GL", "nonsense")
    assert main(["play", str(walker_run), "--gif", str(tmp_path / "walker.gif")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "MUJOCO_GL=nonsense cannot draw off-screen" in err and "egl or osmesa" in err


def test_a_mujoco_gl_that_mujoco_refuses_is_one_line_even_without_gif(walker_run):
    # In a fresh process: `import mujoco` itself refuses an unknown MUJOCO_GL, which this process is past.
    env = {**os.environ, "MUJOCO_GL": "nonsense"}
    done = subprocess.run([sys.executable, "-m", "dlconcepts", "play", str(walker_run)], env=env,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 2, done.stderr
    assert done.stderr.count("\n") == 1 and "Traceback" not in done.stderr
    assert "MUJOCO_GL" in done.stderr and "egl or osmesa" in done.stderr
