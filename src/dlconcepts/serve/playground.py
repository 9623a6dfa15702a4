"""The Playground: an MLP learning a 2-D classification while you watch, driven from the browser.

One screen, as in TensorFlow Playground: the data (the course's two blobs, circles, XOR, a spiral),
the network's controls (hidden layers, width, activation, learning rate, batch size, L2, dropout) and
what to look at — the decision boundary and the train/test loss curves, several frames a second.

How it trains. The math is the package's own `Trainer` (cross-entropy on logits, Adam, shuffled
mini-batches, the divergence guard), not a loop written here. `Trainer.fit` is a blocking call for a
number of epochs, so a session keeps *one* `Trainer` for the life of a model and calls `fit` once per
chunk: the model, the optimizer's moments, the shuffling generator and the step count live on the
Trainer between calls, so many short fits are one long run (only `History` restarts at each fit; the
session keeps its own). A chunk is about `STEPS_PER_CHUNK` optimizer steps rounded to whole epochs
(one epoch at the default batch of 10 on 200 points, 20 epochs full batch), so the speed of learning
per frame does not depend much on the batch size. Controls that do not change the function's shape
are applied between chunks to the living Trainer: lr and L2 in the optimizer's param groups (L2 is
Adam's `weight_decay`: the gradient of l2/2·‖θ‖² added to every gradient), the batch size on the
Trainer, the dropout rate on the model's Dropout modules (built always, rate 0 when off, so the rate
can change without a new model). Dataset, noise, layers, width and activation need a new model: the
session starts again at step 0 from the same seeded initialisation (same settings, same start).

Frames. After every chunk the session evaluates the train and test loss (`Trainer.evaluate`, dropout
off) and renders the decision boundary server-side: P(class 1) on a GRID×GRID grid, coloured from
orange (class 0) through white (P = 0.5) to blue (class 1), scaled up, with the points (drawn once per
dataset) laid on top, as a PNG (Pillow, which matplotlib depends on). A PNG keeps the page a plain
`<img>` and costs ~2 ms on an idle core (grid, colouring, scaling, compositing, encoding at level 1;
~35 kB), a fraction of a frame; sending the grid for a canvas would save the encoding but move the
colouring and the points into the page. While playing, frames are paced to at most one per
`frame_interval` (0.1 s: 10 a second), measured from the start of one chunk to the start of the next.

Threads. Each session trains in its own daemon thread; the controls only set fields under a lock and
wake it, so a change is applied before the next chunk even when the thread is waiting for its next
frame time: the latency from a control to its first frame is about one chunk. Subscribers (the SSE
streams) are woken through their event loop's `call_soon_threadsafe`; a slow one skips to the newest
frame. The session threads run torch on one thread each (`_one_torch_thread`: a tiny net only waits
for a second thread; the thread serving requests is not changed). A session nobody has watched for
`idle_timeout` seconds stops itself; at most `max_sessions` exist (creating another first ends the
session nobody has watched for longest, if that is over `evict_after` seconds, else answers 429).

The routes (`playground_routes`) are the contract's: GET /playground, POST /api/playground/sessions,
POST /api/playground/{sid}/settings|play|pause|step|reset, GET /api/playground/{sid}/events (SSE,
event `frame`), plus GET /api/playground/{sid} (state and loss history) and DELETE (the page closes
its session when it is left).
"""

from __future__ import annotations

import asyncio
import base64
import html
import io
import json
import math
import secrets
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, fields, replace
from typing import Any

import numpy as np
import torch
from torch import nn

from dlconcepts.data import Standardizer, two_gaussian_blobs
from dlconcepts.errors import TrainingDiverged, UserError
from dlconcepts.nets import ACTIVATIONS, mlp
from dlconcepts.train import Trainer, accuracy

DATASETS = ("blobs", "circles", "xor", "spiral")
N_TRAIN = 200  # points in each split; the test split is drawn from the same distribution, never trained on
N_TEST = 200
DATA_SEED = 0  # the same points on every reset and in every session
MODEL_SEED = 0  # the same initial weights for the same settings
STEPS_PER_CHUNK = 20  # optimizer steps per frame, rounded to whole epochs (at least one)
GRID = 80  # the boundary is evaluated on GRID × GRID points ...
IMAGE_SIZE = 320  # ... and drawn as an IMAGE_SIZE² PNG
HISTORY_LIMIT = 5000  # loss-history rows kept per session (GET /api/playground/{sid})
CLASS_COLOURS = (np.array([245, 147, 34]), np.array([8, 119, 189]))  # class 0 orange, class 1 blue


class PlaygroundError(UserError):
    """A control value or request the Playground refuses; the message is one line that names the limits."""


class TooManySessions(PlaygroundError):
    """Every session slot is in use by a page that is watching it."""


# -- settings ----------------------------------------------------------------------------------------

@dataclass(frozen=True)
class PlaygroundSettings:
    """What the page's controls set. `validated()` checks every field against the limits below."""

    dataset: str = "blobs"
    """the data: blobs (the course's two Gaussians, standardized), circles, xor, spiral"""
    layers: int = 2
    """hidden layers, 0 (logistic regression) to 6"""
    width: int = 8
    """units in each hidden layer, 1 to 64"""
    activation: str = "tanh"
    """after each hidden layer: one of nets.ACTIVATIONS"""
    lr: float = 0.01
    """Adam's learning rate, 1e-5 to 1"""
    batch_size: int = 10
    """mini-batch size, 1 to 200 (200 = the whole training split, one step per epoch)"""
    l2: float = 0.0
    """L2 penalty (Adam's weight_decay), 0 to 1"""
    dropout: float = 0.0
    """dropout rate after each hidden layer while training, 0 to 0.9"""
    noise: float = 0.05
    """Gaussian noise (standard deviation) added to circles, xor and spiral, 0 to 0.5; blobs keep the course's spreads"""

    def validated(self) -> "PlaygroundSettings":
        """These settings if every value is within its limits; a `PlaygroundError` naming the first that is not."""
        if self.dataset not in DATASETS:
            raise PlaygroundError(f"dataset must be one of {', '.join(DATASETS)}; got {self.dataset!r}")
        if self.activation not in ACTIVATIONS:
            raise PlaygroundError(f"activation must be one of {', '.join(ACTIVATIONS)}; got {self.activation!r}")
        for name, low, high in INT_LIMITS:
            value = getattr(self, name)
            if not (isinstance(value, int) and not isinstance(value, bool)) or not low <= value <= high:
                raise PlaygroundError(f"{name} must be a whole number from {low} to {high}; got {value!r}")
        for name, low, high in FLOAT_LIMITS:
            value = getattr(self, name)
            if (not isinstance(value, (int, float)) or isinstance(value, bool) or not math.isfinite(value)
                    or not low <= value <= high):
                raise PlaygroundError(f"{name} must be a number from {low:g} to {high:g}; got {value!r}")
        return self

    def updated(self, changes: Mapping[str, Any]) -> "PlaygroundSettings":
        """A copy with `changes` (a JSON object's fields) applied and validated; unknown fields are refused."""
        if not isinstance(changes, Mapping):
            raise PlaygroundError("the settings must be a JSON object, e.g. {\"lr\": 0.01}")
        unknown = sorted(set(changes) - set(SETTING_NAMES))
        if unknown:
            raise PlaygroundError(f"unknown setting {unknown[0]!r}; the settings are {', '.join(SETTING_NAMES)}")
        values = dict(changes)
        for name in ("lr", "l2", "dropout", "noise"):  # JSON has one number type: 1 is a fine learning rate
            if isinstance(values.get(name), int) and not isinstance(values.get(name), bool):
                values[name] = float(values[name])
        for name in ("layers", "width", "batch_size"):  # 2.0 from a number input is 2; 2.5 is refused below
            if isinstance(values.get(name), float) and values[name].is_integer():
                values[name] = int(values[name])
        return replace(self, **values).validated()

    def needs_new_model(self, other: "PlaygroundSettings") -> bool:
        """Whether going from these settings to `other` changes the data or the function's shape."""
        return any(getattr(self, name) != getattr(other, name) for name in STRUCTURAL)


SETTING_NAMES = tuple(f.name for f in fields(PlaygroundSettings))
INT_LIMITS = (("layers", 0, 6), ("width", 1, 64), ("batch_size", 1, N_TRAIN))
FLOAT_LIMITS = (("lr", 1e-5, 1.0), ("l2", 0.0, 1.0), ("dropout", 0.0, 0.9), ("noise", 0.0, 0.5))
STRUCTURAL = ("dataset", "noise", "layers", "width", "activation")  # a change starts a new model at step 0


# -- data ----------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class PlaneData:
    """A 2-D classification: train and test points (float32 tensors), labels 0/1, and the square shown."""

    X_train: torch.Tensor
    y_train: torch.Tensor
    X_test: torch.Tensor
    y_test: torch.Tensor
    view: tuple[float, float, float, float]  # x_min, x_max, y_min, y_max: a square around all points


def _circles(rng: np.random.Generator, n: int, noise: float) -> tuple[np.ndarray, np.ndarray]:
    # class 0 inside radius 0.5, class 1 on the ring from 0.7 to 1: separable by a circle, not by a line
    y = np.arange(n) % 2
    radius = np.where(y == 0, rng.uniform(0, 0.5, n), rng.uniform(0.7, 1.0, n))
    angle = rng.uniform(0, 2 * np.pi, n)
    return np.column_stack([radius * np.cos(angle), radius * np.sin(angle)]), y


def _xor(rng: np.random.Generator, n: int, noise: float) -> tuple[np.ndarray, np.ndarray]:
    # the four quadrants of [-1, 1]², 0.05 off the axes: class 0 where x1 and x2 share a sign, class 1 where
    # they do not (the label is x1·x2 < 0), half the points each
    y = np.arange(n) % 2
    magnitude = rng.uniform(0.05, 1.0, (n, 2))
    first = rng.choice([-1.0, 1.0], n)
    second = np.where(y == 0, first, -first)
    return magnitude * np.column_stack([first, second]), y


def _spiral(rng: np.random.Generator, n: int, noise: float) -> tuple[np.ndarray, np.ndarray]:
    # two arms, r = t and angle = 3.5πt (+π for class 1), t uniform on [0.05, 1]: 1.75 turns each
    y = np.arange(n) % 2
    t = rng.uniform(0.05, 1.0, n)
    angle = 3.5 * np.pi * t + np.pi * y
    return np.column_stack([t * np.cos(angle), t * np.sin(angle)]), y


_GENERATORS = {"circles": _circles, "xor": _xor, "spiral": _spiral}


def make_data(dataset: str, noise: float = 0.05, seed: int = DATA_SEED) -> PlaneData:
    """The named dataset's train and test splits (N_TRAIN and N_TEST points, classes balanced), seeded.

    blobs are the course's two Gaussians (`data.two_gaussian_blobs`), standardized on the training
    split; the others lie in [-1, 1]² with Gaussian `noise` added to the coordinates after labelling.
    """
    rng = np.random.default_rng([seed, DATASETS.index(dataset)])
    n = N_TRAIN + N_TEST
    if dataset == "blobs":
        data = two_gaussian_blobs(rng, n // 2)
        X, y = data.X, data.y
    else:
        X, y = _GENERATORS[dataset](rng, n, noise)
        X = X + rng.normal(0.0, noise, X.shape)
    order = rng.permutation(n)
    X, y = X[order], y[order]
    if dataset == "blobs":
        X = Standardizer().fit(X[:N_TRAIN]).transform(X)
    low, high = X.min(axis=0), X.max(axis=0)
    centre, half = (low + high) / 2, 1.08 * float(np.max(high - low)) / 2
    as_x = lambda a: torch.as_tensor(a, dtype=torch.float32)  # noqa: E731
    as_y = lambda a: torch.as_tensor(a, dtype=torch.long)  # noqa: E731
    return PlaneData(as_x(X[:N_TRAIN]), as_y(y[:N_TRAIN]), as_x(X[N_TRAIN:]), as_y(y[N_TRAIN:]),
                     (centre[0] - half, centre[0] + half, centre[1] - half, centre[1] + half))


# -- the model and its Trainer ------------------------------------------------------------------------

def make_model(settings: PlaygroundSettings, seed: int = MODEL_SEED) -> nn.Sequential:
    """`nets.mlp` 2 → width×layers → 2 with the activation, Dropout after each hidden layer (rate
    `settings.dropout`, changeable later), initialised from its own generator.

    The initialisation is PyTorch's default for Linear (weights and biases uniform on ±1/√fan_in),
    drawn from a private `torch.Generator`: seeding torch's global generator instead would race with the
    other sessions' threads, which draw their dropout masks from it.
    """
    sizes = (2, *([settings.width] * settings.layers), 2)
    model = mlp(sizes, settings.activation, dropout=1.0)  # rate 1 only to get the modules; set just below
    for module in model.modules():
        if isinstance(module, nn.Dropout):
            module.p = settings.dropout
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, nn.Linear):
                bound = 1 / math.sqrt(module.in_features)
                module.weight.uniform_(-bound, bound, generator=generator)
                module.bias.uniform_(-bound, bound, generator=generator)
    return model


def epochs_per_chunk(batch_size: int, n: int = N_TRAIN) -> int:
    """Whole epochs closest to STEPS_PER_CHUNK optimizer steps (at least one)."""
    steps_per_epoch = math.ceil(n / min(batch_size, n))
    return max(1, round(STEPS_PER_CHUNK / steps_per_epoch))


def points_overlay(data: PlaneData, size: int = IMAGE_SIZE):
    """The points as a transparent size×size layer, drawn once per dataset: training points filled with
    their class's colour, test points white inside a ring of it."""
    from PIL import Image, ImageDraw

    layer = Image.new("RGBA", (size, size), (0, 0, 0, 0))
    draw = ImageDraw.Draw(layer)
    x_min, x_max, y_min, y_max = data.view
    scale_x, scale_y = size / (x_max - x_min), size / (y_max - y_min)
    for X, y, test in ((data.X_train, data.y_train, False), (data.X_test, data.y_test, True)):
        px = (X[:, 0].numpy() - x_min) * scale_x
        py = (y_max - X[:, 1].numpy()) * scale_y  # image rows grow downwards, x2 upwards
        for u, v, label in zip(px.tolist(), py.tolist(), y.tolist()):
            fill = (*(int(c) for c in CLASS_COLOURS[label]), 255)
            if test:  # white inside a ring of the class's colour, readable on either class's background
                draw.ellipse((u - 3.5, v - 3.5, u + 3.5, v + 3.5), fill=(255, 255, 255, 255), outline=fill, width=2)
            else:
                draw.ellipse((u - 3, v - 3, u + 3, v + 3), fill=fill, outline=(255, 255, 255, 255))
    return layer


def render_boundary(probabilities: np.ndarray, overlay) -> bytes:
    """A PNG: P(class 1) on the grid (row 0 = the top, the largest x2) coloured orange → white → blue,
    scaled up to the overlay's size, with the overlay (`points_overlay`) on top."""
    from PIL import Image

    strength = np.abs(2 * probabilities - 1)[..., None] * 0.6  # 0 at P = 0.5: the boundary is white
    colour = np.where((probabilities >= 0.5)[..., None], CLASS_COLOURS[1], CLASS_COLOURS[0])
    rgba = np.empty((*probabilities.shape, 4), dtype=np.uint8)
    rgba[..., :3] = 255 * (1 - strength) + colour * strength
    rgba[..., 3] = 255
    image = Image.fromarray(rgba, "RGBA").resize(overlay.size, Image.Resampling.BILINEAR)
    image = Image.alpha_composite(image, overlay).convert("RGB")
    out = io.BytesIO()
    image.save(out, "PNG", compress_level=1)  # level 1: ~half the default's time for a few kB more
    return out.getvalue()


def _grid(view: tuple[float, float, float, float], n: int = GRID) -> torch.Tensor:
    """Cell centres of an n×n grid over the view, row-major from the top row (largest x2) down."""
    x_min, x_max, y_min, y_max = view
    xs = x_min + (np.arange(n) + 0.5) * (x_max - x_min) / n
    ys = y_max - (np.arange(n) + 0.5) * (y_max - y_min) / n
    gx, gy = np.meshgrid(xs, ys)
    return torch.as_tensor(np.column_stack([gx.ravel(), gy.ravel()]), dtype=torch.float32)


def _finite(value: float) -> float | None:
    return value if math.isfinite(value) else None  # JSON has no NaN; the page shows "–"


_threads_lock = threading.Lock()
_threads_users = 0
_threads_default = 1


def _one_torch_thread(enter: bool) -> None:
    """Train on one torch thread while any session runs.

    Why: on 2 busy cores a tiny MLP's epoch took 25–280 ms with torch's default two threads and 4 ms
    with one (measured with a test run beside it): its operations are too small to split, and waiting for
    the second thread is all the second thread adds. `torch.set_num_threads` is per thread under
    OpenMP (torch's backend here) and also sets the default of threads that start torch later; so the
    thread that serves requests is never changed, and the default is put back when the last session ends.
    """
    global _threads_users, _threads_default
    with _threads_lock:
        if enter:
            if _threads_users == 0:
                _threads_default = torch.get_num_threads()  # a new thread starts at the process's default
            _threads_users += 1
            torch.set_num_threads(1)
        else:
            _threads_users -= 1
            if _threads_users == 0:
                torch.set_num_threads(_threads_default)


# -- a session -----------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Frame:
    """One published picture of training; `json` is the SSE payload, encoded once for every subscriber."""

    seq: int
    data: dict[str, Any]
    json: str


class PlaygroundSession:
    """One model training on one dataset in its own thread, with play/pause/step/reset and live settings.

    The worker thread alone touches the model and its Trainer; the control methods only record what
    was asked and wake it. Every frame goes to `subscribe`d callbacks and to `wait_for_frame` callers.
    """

    def __init__(self, settings: PlaygroundSettings | None = None, *, sid: str | None = None,
                 frame_interval: float = 0.1, idle_timeout: float = 120.0,
                 on_stop: Callable[["PlaygroundSession"], None] | None = None):
        self.id = sid or secrets.token_hex(8)
        self.frame_interval = frame_interval
        self.idle_timeout = idle_timeout
        self._on_stop = on_stop
        self._lock = threading.Condition()  # guards the fields below; the worker waits on it
        self._settings = (settings or PlaygroundSettings()).validated()
        self._version = 0
        self._playing = False
        self._steps_asked = 0
        self._reset_asked = False
        self._changed = False
        self._stopping = False
        self._subscribers: dict[int, Callable[[], None]] = {}
        self._next_subscriber = 0
        self._unwatched_since = time.monotonic()
        self._frames = threading.Condition()  # guards _latest; notified on every frame
        self._latest: Frame | None = None
        self._history: list[tuple[int, float | None, float | None]] = []
        self.stopped = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"playground-{self.id}", daemon=True)
        self._thread.start()

    # -- controls (any thread) ----------------------------------------------------------------------
    @property
    def settings(self) -> PlaygroundSettings:
        with self._lock:
            return self._settings

    @property
    def playing(self) -> bool:
        with self._lock:
            return self._playing

    def update(self, changes: Mapping[str, Any]) -> tuple[PlaygroundSettings, int]:
        """Apply a settings change before the next chunk; returns the settings and their version number."""
        with self._lock:
            settings = self._settings.updated(changes)
            self._settings = settings
            self._version += 1
            self._changed = True
            self._lock.notify_all()
            return settings, self._version

    def play(self) -> None:
        self._control(playing=True)

    def pause(self) -> None:
        self._control(playing=False)

    def step(self) -> None:
        """Pause, then train exactly one chunk and publish its frame."""
        self._control(playing=False, steps=1)

    def reset(self) -> None:
        """Pause and start the model again at step 0 (the same initial weights for the same settings)."""
        self._control(playing=False, reset=True)

    def _control(self, playing: bool, steps: int = 0, reset: bool = False) -> None:
        with self._lock:
            self._playing = playing
            self._steps_asked += steps
            self._reset_asked |= reset
            if reset:
                self._steps_asked = 0
            self._lock.notify_all()

    def close(self, wait: bool = True, timeout: float = 10.0) -> None:
        """Stop the worker thread (it finishes the chunk it is training) and, with `wait`, wait for it."""
        with self._lock:
            self._stopping = True
            self._lock.notify_all()
        if wait and threading.current_thread() is not self._thread:
            self._thread.join(timeout)

    # -- frames --------------------------------------------------------------------------------------
    def latest_frame(self) -> Frame | None:
        with self._frames:
            return self._latest

    def wait_for_frame(self, predicate: Callable[[Frame], bool] = lambda f: True, after: int = -1,
                       timeout: float = 10.0) -> Frame | None:
        """A frame with seq > `after` for which `predicate` holds, or None after `timeout` seconds. It sees the
        latest frame each time it wakes, so frames published in quick succession may go unseen."""
        deadline = time.monotonic() + timeout
        with self._frames:
            while True:
                frame = self._latest
                if frame is not None and frame.seq > after:
                    if predicate(frame):
                        return frame
                    after = frame.seq
                left = deadline - time.monotonic()
                if left <= 0 or self.stopped.is_set():
                    return None
                self._frames.wait(left)

    def subscribe(self, wake: Callable[[], None]) -> Callable[[], None]:
        """Call `wake()` (from the worker thread; keep it short) after each new frame; returns the unsubscriber.
        A session with a subscriber never expires."""
        with self._lock:
            key = self._next_subscriber
            self._next_subscriber += 1
            self._subscribers[key] = wake

        def unsubscribe() -> None:
            with self._lock:
                if self._subscribers.pop(key, None) is not None and not self._subscribers:
                    self._unwatched_since = time.monotonic()
                    self._lock.notify_all()
        return unsubscribe

    def unwatched_for(self) -> float:
        """Seconds since the last subscriber left (or the session began); 0 while someone watches."""
        with self._lock:
            return 0.0 if self._subscribers else time.monotonic() - self._unwatched_since

    def state(self) -> dict[str, Any]:
        """The session as JSON: id, settings, version, playing, the latest frame's numbers and the loss history."""
        frame = self.latest_frame()
        with self._lock:
            out = {"id": self.id, "settings": asdict(self._settings), "settings_version": self._version,
                   "playing": self._playing, "history": [list(row) for row in self._history]}
        if frame is not None:
            out.update({k: v for k, v in frame.data.items() if k not in ("boundary_png", "playing")})
        return out

    # -- the worker ----------------------------------------------------------------------------------
    def _run(self) -> None:
        _one_torch_thread(True)
        try:
            self._work()
        finally:
            _one_torch_thread(False)
            self.stopped.set()
            with self._frames:
                self._frames.notify_all()
            with self._lock:
                subscribers = list(self._subscribers.values())
            for wake in subscribers:  # their streams see `stopped` and end
                wake()
            if self._on_stop is not None:
                self._on_stop(self)

    def _work(self) -> None:
        with self._lock:
            settings, version = self._settings, self._version
        self._build(settings)
        self._publish(settings, version, error=None)
        last_start = time.monotonic()  # frames are paced from the start of one chunk to the start of the next
        while True:
            with self._lock:
                while True:
                    now = time.monotonic()
                    if self._stopping:
                        return
                    idle_left = math.inf if self._subscribers else self._unwatched_since + self.idle_timeout - now
                    if idle_left < 0:
                        return  # nobody has watched for idle_timeout seconds: expire
                    if self._reset_asked or self._changed or self._steps_asked:
                        break
                    due = last_start + self.frame_interval
                    if self._playing and now >= due:
                        break
                    self._lock.wait(min(1.0, idle_left + 0.01, due - now if self._playing else 1.0))
                new, version = self._settings, self._version
                reset, changed, train = self._reset_asked, self._changed, self._playing or self._steps_asked > 0
                self._steps_asked = max(0, self._steps_asked - 1)
                self._reset_asked = self._changed = False
            last_start = time.monotonic()
            if reset or settings.needs_new_model(new):
                self._build(new)
                train = False  # show the new model at step 0 first; if playing, the next chunk follows
            elif changed:
                self._apply(new)
            settings = new
            error = None
            if train:
                try:
                    self._chunk()
                except TrainingDiverged as diverged:  # weights of the last finite step are back; stop and say why
                    error = str(diverged)
                    with self._lock:
                        self._playing, self._steps_asked = False, 0
            self._publish(settings, version, error)

    def _build(self, settings: PlaygroundSettings) -> None:
        """A new model at step 0 on (possibly new) data, with its Trainer."""
        self._data = make_data(settings.dataset, settings.noise)
        self._grid = _grid(self._data.view)
        self._overlay = points_overlay(self._data)
        self._model = make_model(settings)
        self._trainer = Trainer(self._model, nn.CrossEntropyLoss(), "adam", lr=settings.lr, weight_decay=settings.l2,
                                batch_size=settings.batch_size, metrics={"accuracy": accuracy}, seed=MODEL_SEED)
        self._epoch = 0
        self._history = []

    def _apply(self, settings: PlaygroundSettings) -> None:
        """The controls that keep the model: lr and L2 in the optimizer, batch size, dropout rate."""
        for group in self._trainer.optimizer.param_groups:
            group["lr"], group["weight_decay"] = settings.lr, settings.l2
        self._trainer.batch_size = settings.batch_size
        for module in self._model.modules():
            if isinstance(module, nn.Dropout):
                module.p = settings.dropout

    def _chunk(self) -> None:
        """Train one chunk with the Trainer (its optimizer state carries over from the last chunk)."""
        epochs = epochs_per_chunk(self._trainer.batch_size or N_TRAIN)
        try:
            self._trainer.fit(self._data.X_train, self._data.y_train, epochs)
        finally:
            self._epoch += len(self._trainer.history)

    def _publish(self, settings: PlaygroundSettings, version: int, error: str | None) -> None:
        trainer, data = self._trainer, self._data
        train = trainer.evaluate(data.X_train, data.y_train)
        test = trainer.evaluate(data.X_test, data.y_test)
        probabilities = torch.softmax(trainer.predict(self._grid), dim=1)[:, 1].numpy().reshape(GRID, GRID)
        png = render_boundary(probabilities, self._overlay)
        self._history.append((self._epoch, _finite(train["loss"]), _finite(test["loss"])))
        del self._history[:-HISTORY_LIMIT]
        with self._lock:
            playing = self._playing
            subscribers = list(self._subscribers.values())
        seq = self._latest.seq + 1 if self._latest is not None else 0
        payload = {
            "seq": seq, "step": trainer.steps, "epoch": self._epoch,
            "train_loss": _finite(train["loss"]), "test_loss": _finite(test["loss"]),
            "train_accuracy": train["accuracy"], "test_accuracy": test["accuracy"],
            "boundary_png": base64.b64encode(png).decode("ascii"), "t": time.time(),
            "settings_version": version, "playing": playing, "error": error,
        }
        frame = Frame(seq, payload, json.dumps(payload, separators=(",", ":")))
        with self._frames:
            self._latest = frame
            self._frames.notify_all()
        for wake in subscribers:
            wake()


# -- the sessions of one server ----------------------------------------------------------------------

class PlaygroundManager:
    """The live sessions: at most `max_sessions`, each stopped after `idle_timeout` s without a viewer."""

    def __init__(self, max_sessions: int = 8, idle_timeout: float = 120.0, frame_interval: float = 0.1,
                 evict_after: float = 10.0):
        self.max_sessions = max_sessions
        self.idle_timeout = idle_timeout
        self.frame_interval = frame_interval
        self.evict_after = evict_after  # an unwatched session this old may give its slot to a new one
        self._sessions: dict[str, PlaygroundSession] = {}
        self._lock = threading.Lock()

    def create(self, changes: Mapping[str, Any] | None = None) -> PlaygroundSession:
        settings = PlaygroundSettings().updated(changes or {})
        evicted = None
        with self._lock:
            if len(self._sessions) >= self.max_sessions:
                idle = [(s.unwatched_for(), s) for s in self._sessions.values()]
                idle = [pair for pair in idle if pair[0] > self.evict_after]
                if not idle:
                    raise TooManySessions(
                        f"all {self.max_sessions} playground sessions are in use; close a Playground tab "
                        f"or wait {self.idle_timeout:g} s for an unwatched one to expire")
                evicted = max(idle, key=lambda pair: pair[0])[1]
                self._sessions.pop(evicted.id, None)
            session = PlaygroundSession(settings, frame_interval=self.frame_interval, idle_timeout=self.idle_timeout,
                                        on_stop=self._forget)
            self._sessions[session.id] = session
        if evicted is not None:
            evicted.close(wait=False)  # called from the event loop: do not wait out its chunk
        return session

    def get(self, sid: str) -> PlaygroundSession | None:
        with self._lock:
            return self._sessions.get(sid)

    def close(self, sid: str, wait: bool = True) -> bool:
        """End the session `sid` (False: there is none); `wait` for its thread to finish its chunk."""
        with self._lock:
            session = self._sessions.pop(sid, None)
        if session is not None:
            session.close(wait=wait)
        return session is not None

    def shutdown(self) -> None:
        """Stop every session's thread (call it when the app shuts down)."""
        with self._lock:
            sessions = list(self._sessions.values())
            self._sessions.clear()
        for session in sessions:
            session.close()

    def __len__(self) -> int:
        with self._lock:
            return len(self._sessions)

    def _forget(self, session: PlaygroundSession) -> None:
        with self._lock:
            if self._sessions.get(session.id) is session:
                del self._sessions[session.id]


# -- routes ------------------------------------------------------------------------------------------

KEEPALIVE_S = 5.0  # an SSE comment this often while paused: a closed tab is noticed on the next write


def playground_routes(manager: PlaygroundManager | None = None) -> list:
    """The Playground's Starlette routes (the page and its JSON/SSE API), all sharing `manager`.

    The app that mounts them should call `manager.shutdown()` on shutdown (the threads are daemons, so
    a process that exits without it does not hang).
    """
    from starlette.requests import Request
    from starlette.responses import HTMLResponse, JSONResponse, Response, StreamingResponse
    from starlette.routing import Route

    manager = manager if manager is not None else PlaygroundManager()

    def refused(message: str, status: int = 400) -> JSONResponse:
        return JSONResponse({"error": message}, status_code=status)

    def missing(sid: str) -> JSONResponse:
        return refused(f"no playground session {sid!r} (sessions end {manager.idle_timeout:g} s after their last "
                       "viewer leaves); reload the page", 404)

    async def body_of(request: Request, optional: bool = False) -> Any:
        raw = await request.body()
        if not raw.strip() and optional:
            return {}
        try:
            return json.loads(raw)
        except ValueError:
            raise PlaygroundError("the body must be a JSON object of settings, e.g. {\"lr\": 0.01}") from None

    async def page(request: Request) -> HTMLResponse:
        return HTMLResponse(playground_page())

    async def create(request: Request) -> JSONResponse:
        try:
            session = manager.create(await body_of(request, optional=True))
        except TooManySessions as error:
            return refused(str(error), 429)
        except PlaygroundError as error:
            return refused(str(error))
        return JSONResponse({"id": session.id, "settings": asdict(session.settings),
                             "events": f"/api/playground/{session.id}/events"}, status_code=201)

    async def show(request: Request) -> Response:
        sid = request.path_params["sid"]
        session = manager.get(sid)
        if session is None:
            return missing(sid)
        if request.method == "DELETE":
            manager.close(sid, wait=False)  # the thread ends after its chunk; the event loop does not wait
            return Response(status_code=204)
        return JSONResponse(session.state())

    async def settings(request: Request) -> JSONResponse:
        sid = request.path_params["sid"]
        session = manager.get(sid)
        if session is None:
            return missing(sid)
        try:
            new, version = session.update(await body_of(request))
        except PlaygroundError as error:
            return refused(str(error))
        return JSONResponse({"settings": asdict(new), "settings_version": version})

    async def events(request: Request) -> Response:
        sid = request.path_params["sid"]
        session = manager.get(sid)
        if session is None:
            return missing(sid)
        loop = asyncio.get_running_loop()
        woken = asyncio.Event()

        def wake() -> None:  # called from the session's thread
            try:
                loop.call_soon_threadsafe(woken.set)
            except RuntimeError:  # the loop is closed: the stream is gone
                pass

        unsubscribe = session.subscribe(wake)

        async def stream():
            try:
                yield "retry: 2000\n\n"
                last = -1
                while not session.stopped.is_set():
                    woken.clear()
                    frame = session.latest_frame()
                    if frame is not None and frame.seq != last:
                        last = frame.seq
                        yield f"event: frame\nid: {frame.seq}\ndata: {frame.json}\n\n"
                    try:
                        await asyncio.wait_for(woken.wait(), KEEPALIVE_S)
                    except asyncio.TimeoutError:
                        yield ": keepalive\n\n"
            finally:
                unsubscribe()

        return StreamingResponse(stream(), media_type="text/event-stream",
                                 headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"})

    def control_of(action: str):
        async def control(request: Request) -> JSONResponse:
            sid = request.path_params["sid"]
            session = manager.get(sid)
            if session is None:
                return missing(sid)
            getattr(session, action)()
            return JSONResponse({"id": sid, "action": action, "playing": session.playing})
        return control

    return [
        Route("/playground", page, methods=["GET"]),
        Route("/api/playground/sessions", create, methods=["POST"]),
        Route("/api/playground/{sid}", show, methods=["GET", "DELETE"]),
        Route("/api/playground/{sid}/settings", settings, methods=["POST"]),
        *(Route(f"/api/playground/{{sid}}/{action}", control_of(action), methods=["POST"]) for action in ACTIONS),
        Route("/api/playground/{sid}/events", events, methods=["GET"]),
    ]


ACTIONS = ("play", "pause", "step", "reset")


# -- the page ----------------------------------------------------------------------------------------

def playground_page() -> str:
    """The Playground's HTML: the contract's control ids, defaults from PlaygroundSettings."""
    d = PlaygroundSettings()
    esc = html.escape

    def options(choices, chosen) -> str:
        return "".join(f'<option value="{esc(c)}"{" selected" if c == chosen else ""}>{esc(c)}</option>' for c in choices)

    def number(name: str, ident: str, value, low, high, step, help_text: str) -> str:
        return (f'<label for="{ident}" title="{esc(help_text)}">{esc(name)} '
                f'<input id="{ident}" name="{ident}" type="number" value="{value}" min="{low}" max="{high}" '
                f'step="{step}" title="{esc(help_text)}"></label>')

    return PAGE.format(
        datasets=options(DATASETS, d.dataset),
        activations=options(ACTIVATIONS, d.activation),
        layers=number("hidden layers", "layers", d.layers, 0, 6, 1, "hidden layers, 0 to 6 (0: logistic regression)"),
        width=number("width", "width", d.width, 1, 64, 1, "units per hidden layer, 1 to 64"),
        lr=number("learning rate", "lr", d.lr, 1e-5, 1, "any", "Adam's learning rate, 1e-5 to 1"),
        batch=number("batch size", "batch-size", d.batch_size, 1, N_TRAIN, 1,
                     f"mini-batch size, 1 to {N_TRAIN} ({N_TRAIN} = full batch)"),
        l2=number("L2", "l2", d.l2, 0, 1, "any", "L2 penalty (Adam's weight decay), 0 to 1"),
        dropout=number("dropout", "dropout", d.dropout, 0, 0.9, 0.05, "dropout rate after each hidden layer, 0 to 0.9"),
        noise=number("noise", "noise", d.noise, 0, 0.5, 0.01,
                     "Gaussian noise on circles, xor and spiral, 0 to 0.5 (blobs keep the course's spreads)"),
        n_train=N_TRAIN, n_test=N_TEST, size=IMAGE_SIZE,
    )


PAGE = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Playground · dlconcepts</title>
<link rel="stylesheet" href="/static/app.css">
<link rel="stylesheet" href="/static/playground.css">
</head>
<body class="playground">
<header class="pg-header"><a href="/">← dlconcepts</a> <h1>Playground</h1>
<span class="pg-sub">an MLP learning a 2-D classification, trained by the package's Trainer on the server</span></header>
<main class="pg-main">
<section class="pg-controls" aria-label="controls">
  <h2>Data</h2>
  <label for="dataset">dataset <select id="dataset" name="dataset">{datasets}</select></label>
  {noise}
  <h2>Network</h2>
  {layers}
  {width}
  <label for="activation">activation <select id="activation" name="activation">{activations}</select></label>
  <h2>Training</h2>
  {lr}
  {batch}
  {l2}
  {dropout}
  <div class="pg-buttons">
    <button id="play" type="button">▶ play</button>
    <button id="pause" type="button">❚❚ pause</button>
    <button id="step" type="button">step</button>
    <button id="reset" type="button">reset</button>
  </div>
  <p id="error" role="alert"></p>
</section>
<section class="pg-output" aria-label="decision boundary">
  <h2>Decision boundary</h2>
  <img id="boundary" width="{size}" height="{size}" alt="the model's probability of class 1 over the plane, with the points">
  <p class="pg-legend"><span class="sw c0"></span>class 0 <span class="sw c1"></span>class 1 ·
  filled: {n_train} training points, rings: {n_test} test points; white is P = 0.5, the boundary</p>
</section>
<section class="pg-curves" aria-label="loss">
  <h2>Loss (cross-entropy)</h2>
  <canvas id="loss-chart" width="420" height="260"></canvas>
  <dl class="pg-stats">
    <dt>test loss</dt><dd><span id="test-loss">–</span></dd>
    <dt>train loss</dt><dd><span id="train-loss">–</span></dd>
    <dt>test accuracy</dt><dd><span id="test-accuracy">–</span></dd>
    <dt>epoch</dt><dd><span id="epoch">0</span></dd>
    <dt>step</dt><dd><span id="step-count">0</span></dd>
    <dt>frames / s</dt><dd><span id="fps">0</span></dd>
    <dt>control → frame</dt><dd><span id="latency">–</span></dd>
  </dl>
</section>
</main>
<script src="/static/playground.js"></script>
</body>
</html>
"""
