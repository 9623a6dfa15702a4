// dlc serve: the lab page's form and its live view. Plain ES2020, no libraries.
//
// Start: POST /api/labs/LAB/runs with the values the student changed (an unchanged field keeps its default,
// or its quick value in quick mode, as on the command line), then follow /api/jobs/JOB/events (server-sent
// events): `log` lines go to #log, `progress` (a tqdm bar) to #progress, `metrics` and the bar's numbers to
// #live-metrics, and on `done` the run's report is loaded into #report. A refusal (the CLI's one line) is
// shown in #error. Reloading the page while a run of the lab is going re-attaches to it (the server replays).
"use strict";

(() => {
  const form = document.getElementById("lab-form");
  if (!form) return;

  const $ = (id) => document.getElementById(id);
  const errorBox = $("error");
  const log = $("log");
  const progress = $("progress");
  const progressText = $("progress-text");
  const liveMetrics = $("live-metrics");
  const report = $("report");
  const startButton = $("start");
  const stopButton = $("stop");
  const jobStatus = $("job-status");
  const lab = form.dataset.lab;
  let source = null;
  let currentJob = null;
  const metricValues = new Map();

  function showError(message) {
    errorBox.textContent = message;
  }

  function setStatus(status) {
    jobStatus.textContent = status;
    jobStatus.dataset.status = status;
    jobStatus.className = `status status-${status}`;
    form.dataset.state = status;
    const running = status === "running" || status === "starting";
    startButton.disabled = running;
    stopButton.disabled = status !== "running";
  }

  function changedValues() {
    const values = {};
    for (const input of form.querySelectorAll("input[data-field]")) {
      if (input.value !== input.defaultValue) values[input.name] = input.value;
    }
    return values;
  }

  function appendLog(line) {
    const atBottom = log.scrollTop + log.clientHeight >= log.scrollHeight - 4;
    log.append(line + "\n");
    if (atBottom) log.scrollTop = log.scrollHeight;
  }

  function collect(values, prefix) {
    for (const [key, value] of Object.entries(values)) {
      const name = prefix ? `${prefix}.${key}` : key;
      if (value === null || Array.isArray(value)) continue;  // lists and tables of numbers stay in the report
      if (typeof value === "object") collect(value, name);
      else metricValues.set(name, typeof value === "number" && !Number.isInteger(value) ? value.toPrecision(4) : String(value));
    }
  }

  function showMetrics(values) {
    collect(values, "");
    const list = document.createElement("dl");
    for (const [key, value] of metricValues) {
      const dt = document.createElement("dt");
      dt.textContent = key;
      const dd = document.createElement("dd");
      dd.textContent = value;
      list.append(dt, dd);
    }
    liveMetrics.replaceChildren(list);
  }

  function showProgress(bar) {
    progress.max = Math.max(bar.total, 1);
    progress.value = Math.min(bar.n, progress.max);
    const rest = bar.remaining ? `, ${bar.remaining} left` : "";
    progressText.textContent = `${bar.desc ? bar.desc + ": " : ""}${bar.n} / ${bar.total} (${bar.percent}%${rest})`;
    if (bar.postfix && Object.keys(bar.postfix).length) showMetrics(bar.postfix);
  }

  async function loadReport(run) {
    const response = await fetch(`/api/runs/${run.split("/").map(encodeURIComponent).join("/")}`);
    if (!response.ok) return;
    const detail = await response.json();
    // Server-rendered from the run's report.md with raw HTML escaped (markdown-it, html: false).
    report.innerHTML = detail.report_html;
  }

  function finish(done) {
    if (source) source.close();
    source = null;
    setStatus(done.status);
    if (done.status === "completed") progress.value = progress.max;
    if (progressText.textContent) progressText.textContent = done.status;
    if (done.error && done.status !== "completed") showError(done.error);
    if (done.run) {
      loadReport(done.run).catch((err) => showError(`could not load the report: ${err}`));
      listRun(done.run, done.status);
    }
  }

  // The finished run goes to the top of "Runs of this lab" (the list was rendered before it existed).
  function listRun(name, status) {
    const section = $("lab-runs");
    if (!section || section.querySelector(`a[href="/runs/${CSS.escape(name)}"]`)) return;
    let list = section.querySelector("ul.runs-list");
    if (!list) {
      section.querySelector("p.muted")?.remove();
      list = document.createElement("ul");
      list.className = "runs-list";
      section.append(list);
    }
    const item = document.createElement("li");
    const link = document.createElement("a");
    link.href = `/runs/${name}`;
    link.textContent = name;
    item.append(link, ` (${status})`);
    list.prepend(item);
  }

  function watch(job, url, fresh) {
    currentJob = job;
    if (fresh) {
      log.textContent = "";
      report.replaceChildren();
      liveMetrics.replaceChildren();
      metricValues.clear();
      progress.value = 0;
      progressText.textContent = "";
    }
    setStatus("running");
    if (source) source.close();
    source = new EventSource(url);
    source.addEventListener("log", (e) => appendLog(e.data));
    source.addEventListener("progress", (e) => showProgress(JSON.parse(e.data)));
    source.addEventListener("metrics", (e) => showMetrics(JSON.parse(e.data)));
    source.addEventListener("status", (e) => {
      const status = JSON.parse(e.data);
      if (status.status === "running") setStatus("running");
    });
    source.addEventListener("done", (e) => finish(JSON.parse(e.data)));
  }

  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    showError("");
    const seed = form.elements.seed.value.trim();
    const body = { quick: form.elements.quick.checked, seed: seed === "" ? null : seed, values: changedValues() };
    startButton.disabled = true;
    let response;
    let answer;
    try {
      response = await fetch(`/api/labs/${encodeURIComponent(lab)}/runs`, {
        method: "POST",
        headers: { "Content-Type": "application/json" },
        body: JSON.stringify(body),
      });
      answer = await response.json();
    } catch (err) {
      showError(`the server did not answer (${err}); is dlc serve still running?`);
      startButton.disabled = false;
      return;
    }
    if (response.status !== 201) {
      showError(answer.error || `refused (HTTP ${response.status})`);
      startButton.disabled = false;
      return;
    }
    watch(answer.job, answer.events, true);
  });

  stopButton.addEventListener("click", async () => {
    if (!currentJob) return;
    stopButton.disabled = true;
    const response = await fetch(`/api/jobs/${encodeURIComponent(currentJob)}/stop`, { method: "POST" });
    if (!response.ok) {
      const answer = await response.json().catch(() => ({}));
      showError(answer.error || `could not stop the run (HTTP ${response.status})`);
    }
  });

  if (form.dataset.job) watch(form.dataset.job, `/api/jobs/${encodeURIComponent(form.dataset.job)}/events`, true);
})();
