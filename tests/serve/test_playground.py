"""The Playground: its settings, data and model, a training session's controls and frames, and its HTTP API.

Engine tests drive a `PlaygroundSession` directly (frame_interval=0: a frame per chunk, as fast as it
trains); API tests go through Starlette's TestClient on an app made only of `playground_routes()`.
Every test must leave no thread behind (the `no_thread_left` fixture).
"""

from __future__ import annotations

import base64
import io
import json
import threading
import time
import warnings

import numpy as np
import pytest
import torch
from torch import nn

from dlconcepts.errors import TrainingDiverged
from dlconcepts.nets import ACTIVATIONS
from dlconcepts.serve import playground as pg
from dlconcepts.serve.playground import (
    DATASETS,
    N_TEST,
    N_TRAIN,
    PlaygroundError,
    PlaygroundManager,
    PlaygroundSession,
    PlaygroundSettings,
    TooManySessions,
    epochs_per_chunk,
    make_data,
    make_model,
)

# XOR, two hidden layers of 8 tanh units, the defaults otherwise (Adam lr 0.01, batches of 10, noise 0.05):
# the test loss first falls below 0.1 at epoch 12 (measured; deterministic: seeded data, initialisation and
# shuffling). The bound leaves room for a different torch's rounding.
XOR_TEST_LOSS = 0.1
XOR_EPOCHS = 30


@pytest.fixture(autouse=True)
def no_thread_left():
    """Every thread a test starts (sessions, TestClient's portal) has ended when it returns, and torch's
    thread count in this thread is what it was."""
    before, torch_threads = threading.active_count(), torch.get_num_threads()
    yield
    deadline = time.monotonic() + 10
    while threading.active_count() > before and time.monotonic() < deadline:
        time.sleep(0.02)
    assert threading.active_count() == before, [t.name for t in threading.enumerate()]
    assert torch.get_num_threads() == torch_threads


@pytest.fixture
def session_factory():
    sessions = []

    def make(settings=None, **kwargs):
        kwargs.setdefault("frame_interval", 0.0)
        session = PlaygroundSession(settings, **kwargs)
        sessions.append(session)
        return session

    yield make
    for session in sessions:
        session.close()


def png_size(frame) -> tuple[int, int]:
    from PIL import Image

    with Image.open(io.BytesIO(base64.b64decode(frame.data["boundary_png"]))) as image:
        image.load()
        return image.size


# -- settings ---------------------------------------------------------------------------------------

def test_default_settings_are_valid_and_every_limit_is_named():
    assert PlaygroundSettings().validated() == PlaygroundSettings()
    cases = {
        "dataset": ("moons", "dataset must be one of blobs, circles, xor, spiral; got 'moons'"),
        "activation": ("gelu", f"activation must be one of {', '.join(ACTIVATIONS)}; got 'gelu'"),
        "layers": (7, "layers must be a whole number from 0 to 6; got 7"),
        "width": (0, "width must be a whole number from 1 to 64; got 0"),
        "batch_size": (201, f"batch_size must be a whole number from 1 to {N_TRAIN}; got 201"),
        "lr": (0.0, "lr must be a number from 1e-05 to 1; got 0.0"),
        "l2": (-0.1, "l2 must be a number from 0 to 1; got -0.1"),
        "dropout": (0.95, "dropout must be a number from 0 to 0.9; got 0.95"),
        "noise": (0.6, "noise must be a number from 0 to 0.5; got 0.6"),
    }
    for name, (value, message) in cases.items():
        with pytest.raises(PlaygroundError) as caught:
            PlaygroundSettings().updated({name: value})
        assert str(caught.value) == message
        assert "\n" not in str(caught.value)


def test_settings_from_json_values():
    s = PlaygroundSettings().updated({"lr": 1, "layers": 3.0, "dropout": 0})
    assert (s.lr, s.layers, s.dropout) == (1.0, 3, 0.0)
    assert isinstance(s.lr, float) and isinstance(s.layers, int)
    for bad in ({"layers": 2.5}, {"layers": True}, {"lr": "0.1"}, {"lr": float("nan")}, {"dataset": 3}):
        with pytest.raises(PlaygroundError):
            PlaygroundSettings().updated(bad)
    with pytest.raises(PlaygroundError, match="unknown setting 'momentum'; the settings are dataset, layers"):
        PlaygroundSettings().updated({"momentum": 0.9})
    with pytest.raises(PlaygroundError, match="must be a JSON object"):
        PlaygroundSettings().updated([1, 2])


def test_which_changes_need_a_new_model():
    base = PlaygroundSettings()
    for live in ({"lr": 0.1}, {"batch_size": 50}, {"l2": 0.01}, {"dropout": 0.3}):
        assert not base.needs_new_model(base.updated(live)), live
    for structural in ({"dataset": "xor"}, {"noise": 0.1}, {"layers": 3}, {"width": 4}, {"activation": "relu"}):
        assert base.needs_new_model(base.updated(structural)), structural


# -- data and model ------------------------------------------------------------------------------------

@pytest.mark.parametrize("dataset", DATASETS)
def test_datasets_are_seeded_balanced_and_inside_the_view(dataset):
    data = make_data(dataset, 0.05)
    again = make_data(dataset, 0.05)
    assert torch.equal(data.X_train, again.X_train) and torch.equal(data.y_test, again.y_test)
    assert data.X_train.shape == (N_TRAIN, 2) and data.X_test.shape == (N_TEST, 2)
    assert data.X_train.dtype == torch.float32 and data.y_train.dtype == torch.long
    y = torch.cat([data.y_train, data.y_test])
    assert set(y.tolist()) == {0, 1} and int(y.sum()) == (N_TRAIN + N_TEST) // 2  # balanced overall
    assert 0.35 < data.y_train.float().mean() < 0.65  # and roughly so in each split
    x_min, x_max, y_min, y_max = data.view
    X = torch.cat([data.X_train, data.X_test])
    assert x_min < X[:, 0].min() and X[:, 0].max() < x_max and y_min < X[:, 1].min() and X[:, 1].max() < y_max
    assert x_max - x_min == pytest.approx(y_max - y_min)  # square: no distortion of the plane


def test_xor_labels_are_the_sign_of_the_product_without_noise():
    data = make_data("xor", 0.0)
    X, y = data.X_train, data.y_train
    assert torch.equal(y, (X[:, 0] * X[:, 1] < 0).long())
    assert X.abs().min() >= 0.05 - 1e-6  # kept off the axes


def test_blobs_are_the_course_blobs_standardized_on_the_training_split():
    data = make_data("blobs")
    assert data.X_train.mean(0).abs().max() < 1e-5
    assert torch.allclose(data.X_train.std(0, unbiased=False), torch.ones(2), atol=1e-5)
    assert make_data("blobs", 0.0).X_train.equal(data.X_train)  # noise leaves the course's blobs alone


def test_model_is_nets_mlp_seeded_privately_with_dropout_that_can_change():
    settings = PlaygroundSettings(layers=2, width=8, dropout=0.2)
    model = make_model(settings)
    linears = [m for m in model if isinstance(m, nn.Linear)]
    assert [(m.in_features, m.out_features) for m in linears] == [(2, 8), (8, 8), (8, 2)]
    assert [m.p for m in model if isinstance(m, nn.Dropout)] == [0.2, 0.2]
    state = torch.random.get_rng_state()
    again = make_model(settings)
    torch.random.set_rng_state(state)
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), again.state_dict().values()))
    for m in linears:  # PyTorch's default range for Linear
        assert m.weight.abs().max() <= 1 / m.in_features**0.5
    logistic = make_model(PlaygroundSettings(layers=0))
    assert [type(m) for m in logistic] == [nn.Linear]


def test_a_chunk_is_about_twenty_steps_in_whole_epochs():
    assert epochs_per_chunk(10) == 1  # 20 steps
    assert epochs_per_chunk(N_TRAIN) == 20  # full batch: 20 steps
    assert epochs_per_chunk(100) == 10
    assert epochs_per_chunk(1) == 1  # 200 steps: never less than an epoch


# -- a session ----------------------------------------------------------------------------------------

def test_xor_with_two_hidden_layers_learns(session_factory):
    session = session_factory(PlaygroundSettings(dataset="xor", layers=2, width=8, activation="tanh"))
    first = session.wait_for_frame()
    assert first.data["step"] == 0 and first.data["test_loss"] > 0.6  # ~log 2 before training
    start = time.monotonic()
    session.play()
    frame = session.wait_for_frame(lambda f: f.data["test_loss"] < XOR_TEST_LOSS or f.data["epoch"] >= XOR_EPOCHS,
                                   timeout=60)
    took = time.monotonic() - start
    assert frame is not None
    assert frame.data["test_loss"] < XOR_TEST_LOSS, frame.data
    assert frame.data["test_accuracy"] > 0.95
    assert frame.data["step"] == frame.data["epoch"] * (N_TRAIN // 10)  # batches of 10: 20 steps an epoch
    assert png_size(frame) == (pg.IMAGE_SIZE, pg.IMAGE_SIZE)
    assert frame.data["boundary_png"] != first.data["boundary_png"]
    print(f"XOR 2×8 tanh: test loss {frame.data['test_loss']:.3f} at epoch {frame.data['epoch']}, {took:.2f} s")


def test_pause_stops_frames_and_play_resumes(session_factory):
    session = session_factory(PlaygroundSettings(dataset="circles"))
    session.wait_for_frame()
    session.play()
    playing = session.wait_for_frame(lambda f: f.data["epoch"] >= 3)
    assert playing is not None and playing.data["playing"]
    session.pause()
    time.sleep(0.3)  # the chunk already training publishes its frame
    seq = session.latest_frame().seq
    assert session.wait_for_frame(after=seq, timeout=0.7) is None  # nothing for 0.7 s while paused
    session.play()
    assert session.wait_for_frame(after=seq, timeout=10) is not None


def test_frames_are_paced_while_playing(session_factory):
    session = session_factory(frame_interval=0.1)
    first = session.wait_for_frame()
    session.play()
    time.sleep(1.0)
    session.pause()
    frames = session.latest_frame().seq - first.seq
    assert 3 <= frames <= 12  # at most ~10 a second, and several


def test_step_trains_exactly_one_chunk_and_reset_goes_back_to_step_zero(session_factory):
    session = session_factory(PlaygroundSettings(dataset="spiral", batch_size=10))
    first = session.wait_for_frame()
    session.step()
    one = session.wait_for_frame(after=first.seq)
    assert (one.data["epoch"], one.data["step"], one.data["playing"]) == (1, 20, False)
    session.step()
    two = session.wait_for_frame(after=one.seq)
    assert (two.data["epoch"], two.data["step"]) == (2, 40)
    assert session.wait_for_frame(after=two.seq, timeout=0.5) is None  # a step does not start playing
    session.update({"batch_size": N_TRAIN})  # full batch: a chunk is 20 epochs of one step
    shown = session.wait_for_frame(after=two.seq)  # a change while paused is shown at once, untrained
    assert (shown.data["epoch"], shown.data["step"], shown.data["settings_version"]) == (2, 40, 1)
    session.step()
    three = session.wait_for_frame(after=shown.seq)
    assert (three.data["epoch"], three.data["step"]) == (22, 60)
    session.play()
    session.wait_for_frame(lambda f: f.data["epoch"] > 50)
    session.reset()
    zero = session.wait_for_frame(lambda f: f.data["step"] == 0)
    assert zero.data["epoch"] == 0 and not zero.data["playing"] and not session.playing
    assert zero.data["test_loss"] == pytest.approx(first.data["test_loss"], abs=1e-6)  # the same start
    assert zero.data["boundary_png"] == first.data["boundary_png"]
    assert session.state()["history"] == [[0, zero.data["train_loss"], zero.data["test_loss"]]]


def test_live_settings_keep_the_model_and_structural_ones_start_again(session_factory):
    session = session_factory(PlaygroundSettings(dataset="blobs"), frame_interval=0.05)  # no frame goes unseen
    session.wait_for_frame()
    session.play()
    before = session.wait_for_frame(lambda f: f.data["epoch"] >= 5)
    settings, version = session.update({"lr": 0.05, "l2": 0.001, "dropout": 0.3, "batch_size": 20})
    assert version == 1 and settings.dropout == 0.3
    after = session.wait_for_frame(lambda f: f.data["settings_version"] == 1)
    assert after.data["epoch"] > before.data["epoch"]  # the same model trained on
    assert session._trainer.optimizer.param_groups[0]["lr"] == 0.05
    assert session._trainer.optimizer.param_groups[0]["weight_decay"] == 0.001
    assert session._trainer.batch_size == 20
    assert [m.p for m in session._model if isinstance(m, nn.Dropout)] == [0.3, 0.3]
    session.update({"dataset": "xor", "width": 4})
    restarted = session.wait_for_frame(lambda f: f.data["settings_version"] == 2)
    assert restarted.data["step"] == 0 and restarted.data["playing"]  # a new model, and it plays on
    assert session.wait_for_frame(lambda f: f.data["settings_version"] == 2 and f.data["epoch"] >= 2) is not None
    assert session._model[0].out_features == 4


def test_divergence_pauses_and_says_why(session_factory, monkeypatch):
    session = session_factory()
    first = session.wait_for_frame()

    def diverge(self):
        raise TrainingDiverged("the loss became nan at epoch 1 (step 1); try 10× smaller", epoch=1)

    monkeypatch.setattr(PlaygroundSession, "_chunk", diverge)
    session.play()
    frame = session.wait_for_frame(lambda f: f.data["error"] is not None, after=first.seq)
    assert frame.data["error"].startswith("the loss became nan") and not frame.data["playing"]
    assert not session.playing
    json.loads(frame.json)  # finite numbers only: the page's JSON.parse refuses NaN


def test_a_session_nobody_watches_expires_and_one_watched_does_not(session_factory):
    gone = threading.Event()
    session = session_factory(idle_timeout=0.3, on_stop=lambda s: gone.set())
    watched = session_factory(idle_timeout=0.3)
    unsubscribe = watched.subscribe(lambda: None)
    assert gone.wait(5) and session.stopped.is_set()
    time.sleep(0.5)
    assert not watched.stopped.is_set()
    unsubscribe()
    assert watched.stopped.wait(5)


def test_subscribers_are_woken_by_every_frame(session_factory):
    session = session_factory()
    woken = threading.Semaphore(0)
    unsubscribe = session.subscribe(woken.release)
    session.wait_for_frame()
    for _ in range(3):
        session.step()
        assert woken.acquire(timeout=10)
    unsubscribe()


def test_the_manager_caps_sessions_and_gives_unwatched_slots_away():
    manager = PlaygroundManager(max_sessions=2, evict_after=60)
    try:
        first, second = manager.create(), manager.create({"dataset": "xor"})
        assert second.settings.dataset == "xor" and len(manager) == 2
        with pytest.raises(TooManySessions, match="all 2 playground sessions are in use"):
            manager.create()
        with pytest.raises(PlaygroundError, match="width must be"):
            manager.create({"width": 100})
        manager.evict_after = 0.0  # now both count as abandoned: the oldest unwatched one goes
        unsubscribe = first.subscribe(lambda: None)
        third = manager.create()
        assert manager.get(second.id) is None and second.stopped.wait(10)
        assert manager.get(first.id) is first and manager.get(third.id) is third
        unsubscribe()
        assert manager.close(third.id) and not manager.close(third.id)
    finally:
        manager.shutdown()
    assert len(manager) == 0 and first.stopped.is_set()


# -- the HTTP API -------------------------------------------------------------------------------------

@pytest.fixture
def client():
    pytest.importorskip("httpx")
    from starlette.applications import Starlette

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # Starlette's note that httpx will give way to httpx2
        from starlette.testclient import TestClient

    manager = PlaygroundManager(max_sessions=3, frame_interval=0.05)
    app = Starlette(routes=pg.playground_routes(manager))
    with TestClient(app) as test_client:
        test_client.manager = manager
        yield test_client
    manager.shutdown()


def read_frames(response, count: int, timeout: float = 20.0) -> list[dict]:
    """The first `count` frames of an SSE response (a keepalive comment arrives every few seconds, so the
    deadline is checked even while paused)."""
    frames, event, deadline = [], None, time.monotonic() + timeout
    for line in response.iter_lines():
        if line.startswith("event: "):
            event = line[len("event: "):]
        elif line.startswith("data: ") and event == "frame":
            frames.append(json.loads(line[len("data: "):]))
            if len(frames) == count:
                return frames
        elif line == "":
            event = None
        assert time.monotonic() < deadline, f"{len(frames)} of {count} frames in {timeout} s"
    raise AssertionError(f"the stream ended after {len(frames)} frames")


def test_api_session_settings_controls_and_frames(client):
    created = client.post("/api/playground/sessions", json={"dataset": "xor", "layers": 2})
    assert created.status_code == 201
    sid = created.json()["id"]
    assert created.json()["settings"] == {**vars(PlaygroundSettings(dataset="xor", layers=2))}
    assert created.json()["events"] == f"/api/playground/{sid}/events"

    changed = client.post(f"/api/playground/{sid}/settings", json={"lr": 0.02, "width": 6})
    assert changed.status_code == 200
    assert changed.json()["settings"]["width"] == 6 and changed.json()["settings_version"] == 1
    assert client.post(f"/api/playground/{sid}/play").json() == {"id": sid, "action": "play", "playing": True}
    with client.stream("GET", f"/api/playground/{sid}/events") as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        frames = read_frames(response, 3)
    assert set(frames[0]) >= {"step", "epoch", "train_loss", "test_loss", "boundary_png", "t", "settings_version"}
    versions = [f["settings_version"] for f in frames]  # the first may be the frame from before the change
    assert versions == sorted(versions) and versions[-1] == 1
    assert frames[-1]["epoch"] > frames[0]["epoch"]  # trained between them
    assert base64.b64decode(frames[-1]["boundary_png"]).startswith(b"\x89PNG")

    assert client.post(f"/api/playground/{sid}/pause").json()["playing"] is False
    assert client.post(f"/api/playground/{sid}/step").status_code == 200
    assert client.post(f"/api/playground/{sid}/reset").status_code == 200
    session = client.manager.get(sid)
    assert session.wait_for_frame(lambda f: f.data["step"] == 0) is not None
    state = client.get(f"/api/playground/{sid}").json()
    assert state["id"] == sid and state["step"] == 0 and state["playing"] is False
    assert state["settings"]["width"] == 6 and "boundary_png" not in state
    assert client.delete(f"/api/playground/{sid}").status_code == 204
    assert client.get(f"/api/playground/{sid}").status_code == 404
    assert session.stopped.wait(10)


def test_api_refuses_bad_requests_with_one_line(client):
    def error(response, status):
        assert response.status_code == status, response.text
        message = response.json()["error"]
        assert message and "\n" not in message
        return message

    assert error(client.post("/api/playground/sessions", json={"layers": 9}), 400) == \
        "layers must be a whole number from 0 to 6; got 9"
    assert "unknown setting 'optimizer'" in error(client.post("/api/playground/sessions", json={"optimizer": "sgd"}), 400)
    assert "JSON object" in error(client.post("/api/playground/sessions", content=b"{not json"), 400)
    assert client.post("/api/playground/sessions").status_code == 201  # no body: the defaults
    sid = client.post("/api/playground/sessions", content=b"").json()["id"]
    assert "activation must be one of" in error(
        client.post(f"/api/playground/{sid}/settings", json={"activation": "swish"}), 400)
    assert "JSON object" in error(client.post(f"/api/playground/{sid}/settings", content=b""), 400)
    assert "no playground session 'nope'" in error(client.post("/api/playground/nope/play"), 404)
    assert error(client.get("/api/playground/nope/events"), 404)
    assert client.post(f"/api/playground/{sid}/explode").status_code in (404, 405)
    assert client.get(f"/api/playground/{sid}/play").status_code == 405
    # the third session fills the cap of 3 (all just made, so none counts as abandoned): the next is refused
    client.post("/api/playground/sessions")
    assert "all 3 playground sessions are in use" in error(client.post("/api/playground/sessions"), 429)


def test_the_page_has_the_contract_controls(client):
    page = client.get("/playground")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    text = page.text
    for element in ('select id="dataset"', 'input id="layers"', 'input id="width"', 'select id="activation"',
                    'input id="lr"', 'input id="batch-size"', 'input id="l2"', 'input id="dropout"',
                    'button id="play"', 'button id="pause"', 'button id="step"', 'button id="reset"',
                    'img id="boundary"', 'canvas id="loss-chart"', 'span id="test-loss"', 'span id="train-loss"',
                    'span id="epoch"', 'span id="fps"'):
        assert f"<{element}" in text, element
    for dataset in DATASETS:
        assert f'<option value="{dataset}"' in text
    assert '<script src="/static/playground.js"></script>' in text and 'href="/"' in text
    assert "http://" not in text and "https://" not in text  # nothing from elsewhere


def test_the_script_ships_with_the_package_and_uses_only_the_api():
    from importlib.resources import files

    script = files("dlconcepts.serve").joinpath("static/playground.js").read_text()
    for used in ("/api/playground/sessions", "EventSource", '"frame"', "batch-size", "loss-chart", "boundary_png"):
        assert used in script, used
    assert "http://" not in script and "https://" not in script and "import " not in script
    assert files("dlconcepts.serve").joinpath("static/playground.css").is_file()


def test_rendered_boundary_follows_the_probabilities():
    from PIL import Image

    data = make_data("xor", 0.0)
    overlay = pg.points_overlay(data, size=64)
    left_blue = np.tile(np.linspace(1.0, 0.0, 8), (8, 1))  # P(class 1) high on the left
    with Image.open(io.BytesIO(pg.render_boundary(left_blue, Image.new("RGBA", (64, 64), (0, 0, 0, 0))))) as image:
        rgb = np.asarray(image.convert("RGB"), dtype=int)
    assert rgb[32, 2, 2] > rgb[32, 2, 0]  # blue side
    assert rgb[32, 61, 0] > rgb[32, 61, 2]  # orange side
    assert rgb[32, 30:34].min() > 200  # white where P = 0.5
    assert np.asarray(overlay)[..., 3].any()  # the points are drawn
