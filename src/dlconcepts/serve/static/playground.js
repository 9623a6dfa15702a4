// The Playground page: one training session on the server, driven by the controls, watched over SSE.
// Plain JS, no library: fetch() for the controls (JSON POSTs), EventSource for the frames, a canvas
// for the loss curves. The server owns the model; this page only shows what it sends.
"use strict";

(() => {
  const $ = (id) => document.getElementById(id);
  // setting name (the API's) → control id (the page's)
  const CONTROLS = {
    dataset: "dataset", noise: "noise", layers: "layers", width: "width", activation: "activation",
    lr: "lr", batch_size: "batch-size", l2: "l2", dropout: "dropout",
  };
  const FPS_WINDOW_MS = 2000;

  let sid = null;
  let source = null;
  let serverSettings = {};
  let restarts = 0;
  let lastFrame = null;
  let pending = null; // {version, since}: a settings change whose first frame has not arrived yet
  const arrivals = [];
  const curve = { epoch: [], train: [], test: [] };

  // -- talking to the server ---------------------------------------------------------------------
  async function post(path, body) {
    const init = { method: "POST", headers: { "Content-Type": "application/json" } };
    if (body !== undefined) init.body = JSON.stringify(body);
    const response = await fetch(path, init);
    let data = {};
    try {
      data = await response.json();
    } catch (_) {
      // an empty or non-JSON answer: the status says enough
    }
    if (!response.ok) throw new Error(data.error || `${response.status} ${response.statusText}`);
    return data;
  }

  function showError(message) {
    $("error").textContent = message || "";
  }

  function controlValue(name) {
    const element = $(CONTROLS[name]);
    if (element.tagName === "SELECT") return element.value;
    const text = element.value.trim();
    const number = Number(text);
    // an empty or malformed box goes as the text, so the server's message says what it got
    return text !== "" && Number.isFinite(number) ? number : text;
  }

  function readSettings() {
    const settings = {};
    for (const name of Object.keys(CONTROLS)) settings[name] = controlValue(name);
    return settings;
  }

  function writeSettings(settings) {
    serverSettings = { ...settings };
    for (const [name, id] of Object.entries(CONTROLS)) {
      if (name in settings) $(id).value = String(settings[name]);
    }
  }

  async function start() {
    let created;
    try {
      created = await post("/api/playground/sessions", readSettings());
    } catch (error) {
      showError(error.message);
      if (/^\S+ must be|^unknown setting/.test(error.message)) {
        // values the browser restored from an earlier visit were refused: start from the defaults
        try {
          created = await post("/api/playground/sessions", {});
        } catch (again) {
          showError(again.message);
          return;
        }
      } else {
        return;
      }
    }
    sid = created.id;
    writeSettings(created.settings);
    connect(created.events || `/api/playground/${sid}/events`);
  }

  function connect(url) {
    if (source) source.close();
    source = new EventSource(url);
    source.addEventListener("frame", (event) => {
      restarts = 0;
      onFrame(JSON.parse(event.data));
    });
    source.addEventListener("error", () => {
      // CLOSED: the session is gone (expired, or the server restarted); open a new one, a few times at most
      if (source.readyState === EventSource.CLOSED && restarts < 3) {
        restarts += 1;
        clearCurve();
        setTimeout(start, 1000 * restarts);
      }
    });
  }

  async function changeSetting(name) {
    if (!sid) return;
    const since = performance.now();
    try {
      const answer = await post(`/api/playground/${sid}/settings`, { [name]: controlValue(name) });
      serverSettings = { ...answer.settings };
      pending = { version: answer.settings_version, since };
      showError("");
    } catch (error) {
      showError(error.message);
      if (name in serverSettings) $(CONTROLS[name]).value = String(serverSettings[name]);
    }
  }

  async function act(action) {
    if (!sid) return;
    try {
      await post(`/api/playground/${sid}/${action}`);
      showError("");
    } catch (error) {
      showError(error.message);
    }
  }

  // -- frames ---------------------------------------------------------------------------------------
  function format(value, digits) {
    return value === null || value === undefined ? "–" : value.toFixed(digits);
  }

  function onFrame(frame) {
    const now = performance.now();
    if (lastFrame && (frame.step < lastFrame.step || frame.epoch < lastFrame.epoch)) clearCurve();
    lastFrame = frame;
    const n = curve.epoch.length;
    if (n && curve.epoch[n - 1] === frame.epoch) {
      curve.train[n - 1] = frame.train_loss; // the same model shown again (a change while paused)
      curve.test[n - 1] = frame.test_loss;
    } else {
      curve.epoch.push(frame.epoch);
      curve.train.push(frame.train_loss);
      curve.test.push(frame.test_loss);
    }
    $("boundary").src = `data:image/png;base64,${frame.boundary_png}`;
    $("test-loss").textContent = format(frame.test_loss, 4);
    $("train-loss").textContent = format(frame.train_loss, 4);
    $("test-accuracy").textContent = format(frame.test_accuracy, 3);
    $("epoch").textContent = String(frame.epoch);
    $("step-count").textContent = String(frame.step);
    document.body.classList.toggle("pg-playing", Boolean(frame.playing));
    if (frame.error) showError(frame.error);
    if (pending && frame.settings_version >= pending.version) {
      $("latency").textContent = `${Math.round(now - pending.since)} ms`;
      pending = null;
    }
    arrivals.push(now);
    updateFps();
    drawChart();
  }

  function updateFps() {
    const now = performance.now();
    while (arrivals.length && arrivals[0] < now - FPS_WINDOW_MS) arrivals.shift();
    $("fps").textContent = (arrivals.length / (FPS_WINDOW_MS / 1000)).toFixed(1);
  }

  function clearCurve() {
    curve.epoch.length = 0;
    curve.train.length = 0;
    curve.test.length = 0;
    lastFrame = null;
    drawChart();
  }

  // -- the loss chart, drawn by hand ------------------------------------------------------------------
  function niceStep(range, ticks) {
    const raw = range / ticks;
    const power = 10 ** Math.floor(Math.log10(raw));
    const unit = [1, 2, 5, 10].find((m) => m * power >= raw) || 10;
    return unit * power;
  }

  function drawChart() {
    const canvas = $("loss-chart");
    const ratio = window.devicePixelRatio || 1;
    const width = canvas.clientWidth || canvas.width;
    const height = canvas.clientHeight || canvas.height;
    if (canvas.width !== Math.round(width * ratio) || canvas.height !== Math.round(height * ratio)) {
      canvas.width = Math.round(width * ratio);
      canvas.height = Math.round(height * ratio);
    }
    const g = canvas.getContext("2d");
    g.setTransform(ratio, 0, 0, ratio, 0, 0);
    g.clearRect(0, 0, width, height);
    const left = 48, right = 12, top = 12, bottom = 30;
    const plotW = width - left - right, plotH = height - top - bottom;
    const values = curve.train.concat(curve.test).filter((v) => v !== null && Number.isFinite(v));
    const yMax = Math.max(0.1, ...values) * 1.05;
    const xMax = Math.max(1, curve.epoch.length ? curve.epoch[curve.epoch.length - 1] : 1);
    const x = (epoch) => left + (epoch / xMax) * plotW;
    const y = (loss) => top + plotH - (loss / yMax) * plotH;

    g.font = "11px system-ui, sans-serif";
    g.strokeStyle = "#d0d4da";
    g.fillStyle = "#555";
    g.lineWidth = 1;
    const yStep = niceStep(yMax, 4);
    g.textAlign = "right";
    g.textBaseline = "middle";
    for (let v = 0; v <= yMax + 1e-12; v += yStep) {
      g.beginPath();
      g.moveTo(left, y(v));
      g.lineTo(left + plotW, y(v));
      g.stroke();
      g.fillText(v.toFixed(yStep < 0.1 ? 2 : 1), left - 6, y(v));
    }
    const xStep = Math.max(1, niceStep(xMax, 5));
    g.textAlign = "center";
    g.textBaseline = "top";
    for (let e = 0; e <= xMax + 1e-9; e += xStep) g.fillText(String(Math.round(e)), x(e), top + plotH + 6);
    g.fillText("epoch", left + plotW / 2, top + plotH + 17);

    const series = [["train", "#8a94a6", [5, 4]], ["test", "#1b2a41", []]];
    const every = Math.max(1, Math.floor(curve.epoch.length / plotW));
    for (const [name, colour, dash] of series) {
      g.strokeStyle = colour;
      g.lineWidth = 2;
      g.setLineDash(dash);
      g.beginPath();
      let drawing = false;
      curve[name].forEach((loss, i) => {
        if (i % every && i !== curve.epoch.length - 1) return;
        if (loss === null || !Number.isFinite(loss)) {
          drawing = false;
          return;
        }
        if (drawing) g.lineTo(x(curve.epoch[i]), y(loss));
        else g.moveTo(x(curve.epoch[i]), y(loss));
        drawing = true;
      });
      g.stroke();
      g.setLineDash([]);
    }
    g.textAlign = "left";
    g.textBaseline = "middle";
    series.forEach(([name, colour, dash], i) => {
      const lx = left + plotW - 90, ly = top + 10 + 16 * i;
      g.strokeStyle = colour;
      g.setLineDash(dash);
      g.beginPath();
      g.moveTo(lx, ly);
      g.lineTo(lx + 24, ly);
      g.stroke();
      g.setLineDash([]);
      g.fillStyle = "#333";
      g.fillText(name, lx + 30, ly);
    });
  }

  // -- wiring -----------------------------------------------------------------------------------------
  for (const name of Object.keys(CONTROLS)) {
    $(CONTROLS[name]).addEventListener("change", () => changeSetting(name));
  }
  for (const action of ["play", "pause", "step", "reset"]) {
    $(action).addEventListener("click", () => act(action));
  }
  setInterval(updateFps, 500);
  window.addEventListener("pagehide", () => {
    if (source) source.close();
    // the session's thread stops now instead of after its idle timeout
    if (sid) fetch(`/api/playground/${sid}`, { method: "DELETE", keepalive: true }).catch(() => {});
  });
  window.addEventListener("pageshow", (event) => {
    if (event.persisted) {
      // back from the browser's page cache: the session was closed on pagehide, so start another
      sid = null;
      clearCurve();
      start();
    }
  });
  drawChart();
  start();
})();
