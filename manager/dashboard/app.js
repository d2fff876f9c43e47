// embedfleet dashboard: no build step, no dependencies. State arrives as
// `snapshot` server-sent events from /api/v1/stream; buttons POST actions.
// Every value from the server is written with textContent (never innerHTML):
// worker ids and failure reasons come from the fleet and are untrusted.
"use strict";

const $ = (id) => document.getElementById(id);
const COLORS = ["#2563eb", "#16a34a", "#dc2626", "#9333ea", "#ea580c", "#0891b2", "#ca8a04", "#db2777",
  "#4b5563", "#65a30d"];
const colorOf = (() => {
  const seen = new Map();
  return (name) => {
    if (!seen.has(name)) seen.set(name, COLORS[seen.size % COLORS.length]);
    return seen.get(name);
  };
})();

function fmtInt(n) { return (n ?? 0).toLocaleString("en-US"); }
function fmtRate(n) { return (n ?? 0) >= 100 ? Math.round(n).toLocaleString("en-US") : (n ?? 0).toFixed(1); }
function fmtDuration(s) {
  if (s === null || s === undefined) return "—";
  s = Math.round(s);
  const h = Math.floor(s / 3600), m = Math.floor((s % 3600) / 60), sec = s % 60;
  return h ? `${h}h ${m}m` : m ? `${m}m ${sec}s` : `${sec}s`;
}
function fmtTime(ms) { return ms ? new Date(ms).toLocaleTimeString() : "—"; }
// A long path keeps its start and its file name: "chains/2024-01/…/part-0042.parquet".
function middleEllipsis(text, width) {
  if (!text || text.length <= width) return text || "";
  const head = Math.floor((width - 1) / 2);
  return `${text.slice(0, head)}…${text.slice(text.length - (width - 1 - head))}`;
}

function cell(row, text, cls) {
  const td = document.createElement("td");
  td.textContent = text;
  if (cls) td.className = cls;
  row.appendChild(td);
  return td;
}

function fillTable(id, items, build) {
  const body = $(id).querySelector("tbody");
  const rows = items.map((item) => {
    const tr = document.createElement("tr");
    build(tr, item);
    return tr;
  });
  body.replaceChildren(...rows);
}

function renderRun(run) {
  $("run-id").textContent = run ? `run ${run.run_id}` : "no run";
  const stage = run ? run.stage : "idle";
  $("stage").textContent = stage;
  $("stage").className = `badge ${stage}`;
  const jobs = (run && run.jobs) || {};
  const planned = jobs.planned || 0;
  const resolved = (jobs.done || 0) + (jobs.failed || 0);
  const pct = run ? Math.round((run.progress || 0) * 1000) / 10 : 0;
  $("progress-bar").style.width = `${pct}%`;
  $("progress-text").textContent = `${fmtInt(resolved)} / ${fmtInt(planned)} jobs (${pct}%)`;
  $("eta").textContent = run && run.final ? "finished" : fmtDuration(run ? run.eta_s : null);
  $("rows").textContent = fmtInt(run ? run.rows : 0);
  $("rows-per-s").textContent = fmtRate(run ? run.rows_per_s : 0);
  $("model-calls").textContent = fmtInt(run ? run.model_calls : 0);
  $("rows-reused").textContent = fmtInt(run ? run.rows_reused : 0);
  $("n-done").textContent = fmtInt(jobs.done);
  $("n-skipped").textContent = fmtInt(jobs.skipped);
  $("n-pending").textContent = fmtInt((jobs.pending || 0) + (jobs.lost || 0));
  $("n-failed").textContent = fmtInt(jobs.failed);
  $("n-scan-errors").textContent = fmtInt(jobs.scan_errors);
  $("btn-cluster-now").disabled = !(run && run.cluster_available && run.stage === "embedding");
  renderEnded(run);
}

// When the run is over the page says so, and keeps the final state once the
// manager has exited (the event stream then ends: no "reconnecting").
let runEnded = false;
function renderEnded(run) {
  const box = $("ended");
  runEnded = Boolean(run && run.final);
  if (!runEnded) { box.classList.add("hidden"); return; }
  const when = run.ended_ms ? ` at ${fmtTime(run.ended_ms)}` : "";
  box.textContent = `The run ended${when}: ${run.stage}. This page shows its final state; `
    + "it stays here after the manager exits.";
  box.className = `ended ${run.stage}`;
}

function renderBus(bus) {
  const banner = $("banner");
  if (!bus.reachable) {
    banner.textContent = `Redis is unreachable: ${bus.error || "no answer"}`;
    banner.classList.remove("hidden");
    return;
  }
  banner.classList.add("hidden");
  const c = bus.controls || {};
  const badge = $("controls");
  badge.textContent = c.drain ? "draining" : c.paused ? "paused" : "";
  badge.className = `badge ${c.drain ? "draining" : c.paused ? "paused" : "hidden"}`;
  fillTable("lanes", bus.lanes || [], (tr, l) => {
    cell(tr, l.lane); cell(tr, fmtInt(l.waiting), "num"); cell(tr, fmtInt(l.in_flight), "num");
    cell(tr, fmtInt(l.delayed), "num");
  });
}

function renderWorkers(all) {
  // Stopped workers (said so, or silent for 5 min) are counted, not listed.
  const workers = all.filter((w) => w.status !== "stopped");
  const stopped = all.filter((w) => w.status === "stopped");
  const healthy = workers.filter((w) => w.healthy).length;
  $("workers-count").textContent = `${healthy} healthy of ${workers.length}`;
  $("workers-empty").classList.toggle("hidden", workers.length > 0);
  $("workers-empty").textContent = all.length ? "No worker is running." : "No worker has registered yet.";
  $("workers-stopped").classList.toggle("hidden", stopped.length === 0);
  $("workers-stopped").textContent = `${stopped.length} stopped worker${stopped.length === 1 ? "" : "s"} not shown: `
    + stopped.map((w) => w.worker_id).slice(0, 10).join(", ") + (stopped.length > 10 ? ", …" : "");
  fillTable("workers", workers, (tr, w) => {
    tr.className = w.healthy ? "healthy" : "unhealthy";
    tr.dataset.worker = w.worker_id;
    const dot = document.createElement("span");
    dot.className = `dot ${w.healthy ? "healthy" : "unhealthy"}`;
    dot.title = w.healthy ? "healthy" : "no recent heartbeat";
    cell(tr, "").appendChild(dot);
    cell(tr, w.worker_id); cell(tr, w.host); cell(tr, w.kind); cell(tr, w.device); cell(tr, w.version);
    cell(tr, w.state);
    const job = cell(tr, w.current_job ? middleEllipsis(w.current_job, 64) : "—", "path");
    if (w.current_job) job.title = w.current_job;
    cell(tr, fmtInt(w.jobs_done), "num");
    cell(tr, fmtRate(w.rows_per_s_observed || w.rows_per_s), "num");
    cell(tr, w.heartbeat_age_s === null ? "never" : `${w.heartbeat_age_s.toFixed(1)} s ago`, "num");
  });
}

// Dead letters (from the bus) and the run's scan errors (inputs it could not read).
function renderFailed(failed, total, scanErrors) {
  const parts = [];
  if (total) parts.push(`${total} dead-lettered`);
  if (scanErrors.length) parts.push(`${scanErrors.length} scan error${scanErrors.length === 1 ? "" : "s"}`);
  $("failed-count").textContent = parts.join(", ");
  const rows = [...failed, ...scanErrors.map((e) => ({ ...e, scan: true }))];
  $("failed-empty").classList.toggle("hidden", rows.length > 0);
  fillTable("failed", rows, (tr, f) => {
    cell(tr, f.scan ? "scan" : fmtTime(f.ts_ms)); cell(tr, f.path || f.job_id || "?"); cell(tr, f.reason, "reason");
    cell(tr, f.scan ? "—" : String(f.attempts), "num"); cell(tr, f.scan ? "scanner" : f.worker);
  });
}

// A small line chart: one line per series, y from 0 to the max, x = time.
// Leading buckets where nothing ran yet are cut, keeping at least `keep`.
function trimLeading(t, series, keep) {
  if (!t || !t.length) return [t || [], series || {}];
  let first = t.length;
  for (const values of Object.values(series || {})) {
    const i = values.findIndex((v) => v > 0);
    if (i >= 0) first = Math.min(first, i);
  }
  const start = Math.max(0, Math.min(first - 1, t.length - keep));
  const cut = {};
  for (const [name, values] of Object.entries(series || {})) cut[name] = values.slice(start);
  return [t.slice(start), cut];
}

function drawChart(canvasId, legendId, fullT, fullSeries) {
  const [t, series] = trimLeading(fullT, fullSeries, 12);
  const canvas = $(canvasId);
  const ratio = window.devicePixelRatio || 1;
  const width = canvas.clientWidth, height = canvas.clientHeight || 220;
  canvas.width = width * ratio; canvas.height = height * ratio;
  const g = canvas.getContext("2d");
  g.scale(ratio, ratio);
  g.clearRect(0, 0, width, height);
  const names = Object.keys(series || {}).sort();
  const n = t ? t.length - 1 : 0;  // the last bucket is still filling: leave it out
  const pad = { l: 48, r: 8, t: 8, b: 22 };
  const w = width - pad.l - pad.r, h = height - pad.t - pad.b;
  let max = 0;
  for (const name of names) for (const v of series[name].slice(0, n)) max = Math.max(max, v);
  max = max > 0 ? max * 1.1 : 1;
  g.strokeStyle = "#e3e6ec"; g.fillStyle = "#6b7280"; g.font = "11px system-ui"; g.lineWidth = 1;
  for (let i = 0; i <= 4; i++) {
    const y = pad.t + h - (h * i) / 4;
    g.beginPath(); g.moveTo(pad.l, y); g.lineTo(pad.l + w, y); g.stroke();
    g.fillText(fmtRate((max * i) / 4), 4, y + 4);
  }
  if (n > 1) {
    g.fillText(new Date(t[0] * 1000).toLocaleTimeString(), pad.l, height - 6);
    const last = new Date(t[n - 1] * 1000).toLocaleTimeString();
    g.fillText(last, pad.l + w - g.measureText(last).width, height - 6);
  }
  if (!names.length || n < 2) {
    g.fillText("waiting for finished jobs…", pad.l + 10, pad.t + h / 2);
  }
  for (const name of names) {
    g.strokeStyle = colorOf(name); g.lineWidth = 2; g.beginPath();
    series[name].slice(0, n).forEach((v, i) => {
      const x = pad.l + (w * i) / Math.max(1, n - 1), y = pad.t + h - (h * v) / max;
      if (i === 0) g.moveTo(x, y); else g.lineTo(x, y);
    });
    g.stroke();
  }
  const items = names.map((name) => {
    const li = document.createElement("li");
    li.style.setProperty("--c", colorOf(name));
    li.textContent = name;
    return li;
  });
  $(legendId).replaceChildren(...items);
}

let lastSnapshot = null;
function render(snap) {
  lastSnapshot = snap;
  const status = snap.status || {};
  renderRun(status.run);
  renderBus(status.bus || {});
  renderWorkers(snap.workers || []);
  renderFailed(snap.failed || [], (status.bus || {}).failed || 0, (status.run && status.run.scan_errors) || []);
  const tp = snap.throughput || {};
  drawChart("chart-workers", "legend-workers", tp.t, tp.workers);
  drawChart("chart-classes", "legend-classes", tp.t, tp.classes);
  document.body.dataset.updated = String(Date.now());
}

function toast(text, bad) {
  const el = $("toast");
  el.textContent = text;
  el.className = `toast${bad ? " bad" : ""}`;
  clearTimeout(toast.timer);
  toast.timer = setTimeout(() => el.classList.add("hidden"), 4000);
}

async function act(button) {
  const name = button.dataset.action;
  if (button.dataset.confirm && !window.confirm(button.dataset.confirm)) return;
  button.disabled = true;
  try {
    const res = await fetch(`/api/v1/actions/${name}`, {
      method: "POST", credentials: "same-origin", headers: { "X-Embedfleet-Action": "1" },
    });
    const body = await res.json().catch(() => ({}));
    toast(res.ok ? body.detail : `${name}: ${body.detail || body.error || res.status}`, !res.ok);
  } catch (e) {
    toast(`${name}: ${e}`, true);
  } finally {
    button.disabled = false;
  }
}

function connect() {
  const source = new EventSource("/api/v1/stream");
  source.addEventListener("open", () => { $("conn").textContent = "live"; $("conn").className = "conn on"; });
  source.addEventListener("snapshot", (e) => render(JSON.parse(e.data)));
  source.addEventListener("bus_unavailable", (e) => renderBus({ reachable: false, error: JSON.parse(e.data).error }));
  source.addEventListener("error", () => {
    if (runEnded) {  // the manager exited after the run: keep the final state, stop retrying
      source.close();
      $("conn").textContent = "manager exited · final state";
      $("conn").className = "conn off";
      return;
    }
    $("conn").textContent = "reconnecting…"; $("conn").className = "conn off";
  });
}

document.querySelectorAll("#actions button").forEach((b) => b.addEventListener("click", () => act(b)));
window.addEventListener("resize", () => lastSnapshot && render(lastSnapshot));
connect();
