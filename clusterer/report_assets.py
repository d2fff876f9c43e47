"""The style and the script inlined into ``report.html`` (no library, no request).

The script draws the map's points on a canvas (``devicePixelRatio`` aware),
zooms around the cursor (wheel, buttons) and pans (drag); a uniform grid over
the points finds the one under the cursor for the hover text; search matches
the points' texts and the clusters' keywords, dims the rest, and lists the
matching clusters; a click on a point, a hit or a tree entry opens the
cluster (sizes, keywords, exemplars, its theme and topic) in the side panel
and zooms to it. ``window.reportMap`` exposes the same actions for tests.
"""

from __future__ import annotations

CSS = """
body{font-family:system-ui,sans-serif;max-width:1500px;margin:1.5em auto;padding:0 1em;color:#222;line-height:1.45}
table{border-collapse:collapse;width:100%}td,th{border-bottom:1px solid #ddd;padding:4px 8px;text-align:left}
td.n{text-align:right;font-variant-numeric:tabular-nums}
blockquote{margin:.5em 0;padding:.3em .8em;border-left:3px solid #9ab;background:#f6f8fa}
.src,.size,.note{color:#667;font-size:.85em}.kw{color:#245}.warn{background:#fff3cd;padding:.5em 1em}
#explorer{display:grid;grid-template-columns:minmax(0,1fr) 360px;gap:1em;margin:1em 0}
#mapbox{position:relative;height:640px;border:1px solid #ccd;background:#fcfcfd}
#map{width:100%;height:100%;display:block;cursor:crosshair}
#tip{position:absolute;max-width:360px;background:#fff;border:1px solid #889;padding:.4em .6em;font-size:.85em;
 pointer-events:none;box-shadow:0 2px 6px rgba(0,0,0,.15);white-space:normal}
.toolbar{display:flex;gap:.4em;align-items:center;margin-bottom:.4em}.spacer{flex:1}
#search{flex:0 1 360px;padding:.35em .5em;font-size:1em}#search-status{font-size:.85em;color:#445}
button{padding:.3em .7em}
#side{max-height:720px;overflow:auto;border-left:1px solid #dde;padding-left:1em}
#side h2{font-size:1.1em}#detail h3{margin:.2em 0}
.tree{list-style:none;padding-left:0}.tree ul{list-style:none;padding-left:1.1em}
.tree summary,.tree li.leaf{cursor:pointer;padding:1px 2px}
.tree .hit,.tree .sel{background:#ffe58f}#hits button{display:block;margin:.2em 0;text-align:left;width:100%}
"""

SCRIPT = r"""
(function () {
"use strict";
const D = JSON.parse(document.getElementById("report-data").textContent);
const P = D.points;
if (!P) return;
const N = P.x.length;
const canvas = document.getElementById("map"), ctx = canvas.getContext("2d");
const tip = document.getElementById("tip"), box = document.getElementById("mapbox");
const search = document.getElementById("search"), status = document.getElementById("search-status");
const detail = document.getElementById("detail"), hits = document.getElementById("hits");
const clusters = new Map(D.clusters.map(c => [c.id, c]));
const nodes = new Map(D.nodes.map(n => [n.level + ":" + n.id, n]));
const PALETTE = ["#1f77b4","#ff7f0e","#2ca02c","#d62728","#9467bd","#8c564b","#e377c2","#7f7f7f","#bcbd22",
  "#17becf","#aec7e8","#ffbb78","#98df8a","#ff9896","#c5b0d5","#c49c94","#f7b6d2","#dbdb8d","#9edae5","#393b79"];
const colour = c => c < 0 ? "#c8c8c8" : PALETTE[c % PALETTE.length];
const state = {k: 1, tx: 0, ty: 0, hover: -1, selected: null, query: "", matches: null, matchClusters: new Set()};
window.reportState = state;

// Uniform grid over the [0, 1000] data square: the point under the cursor in O(1).
const CELL = 10, GRID = 100, grid = new Map();
for (let i = 0; i < N; i++) {
  const key = Math.min(GRID - 1, Math.floor(P.x[i] / CELL)) * GRID + Math.min(GRID - 1, Math.floor(P.y[i] / CELL));
  if (!grid.has(key)) grid.set(key, []);
  grid.get(key).push(i);
}
// Cluster centres and extents (data space), for labels and zooming to a cluster.
const extent = new Map();
for (let i = 0; i < N; i++) {
  const c = P.c[i];
  if (c < 0) continue;
  let e = extent.get(c);
  if (!e) { e = {sx: 0, sy: 0, n: 0, x0: 1e9, y0: 1e9, x1: -1e9, y1: -1e9}; extent.set(c, e); }
  e.sx += P.x[i]; e.sy += P.y[i]; e.n++;
  e.x0 = Math.min(e.x0, P.x[i]); e.x1 = Math.max(e.x1, P.x[i]);
  e.y0 = Math.min(e.y0, P.y[i]); e.y1 = Math.max(e.y1, P.y[i]);
}
let lower = null;  // lower-cased texts, built on the first search

function size() {
  const r = box.getBoundingClientRect(), dpr = window.devicePixelRatio || 1;
  canvas.width = Math.round(r.width * dpr); canvas.height = Math.round(r.height * dpr);
  ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
}
function view() { return {w: canvas.clientWidth, h: canvas.clientHeight}; }
function reset() {
  const v = view(), k = Math.min(v.w, v.h) / 1000 * 0.94;
  state.k = k; state.tx = (v.w - 1000 * k) / 2; state.ty = (v.h - 1000 * k) / 2;
}
const sx = x => x * state.k + state.tx;
const sy = y => (1000 - y) * state.k + state.ty;
function zoomAt(mx, my, f) {
  state.tx = mx - (mx - state.tx) * f; state.ty = my - (my - state.ty) * f; state.k *= f; draw();
}
function zoomTo(x0, y0, x1, y1) {
  const v = view(), pad = 40;
  const k = Math.min((v.w - 2 * pad) / Math.max(x1 - x0, 20), (v.h - 2 * pad) / Math.max(y1 - y0, 20));
  state.k = k; state.tx = v.w / 2 - (x0 + x1) / 2 * k; state.ty = v.h / 2 - (1000 - (y0 + y1) / 2) * k; draw();
}

function draw() {
  const v = view();
  ctx.clearRect(0, 0, v.w, v.h);
  const r = Math.max(1.2, Math.min(4, 2.2 * Math.sqrt(state.k / 0.6) * Math.sqrt(20000 / Math.max(N, 1000))));
  const focus = state.matches !== null || state.selected !== null;
  const lit = i => state.matches !== null ? state.matches.has(i) : P.c[i] === state.selected;
  for (let pass = 0; pass < 3; pass++) {
    for (let i = 0; i < N; i++) {
      const on = focus && lit(i);
      if (pass === 0 && !(P.c[i] < 0 && !on)) continue;
      if (pass === 1 && !(P.c[i] >= 0 && !on)) continue;
      if (pass === 2 && !on) continue;
      const x = sx(P.x[i]), y = sy(P.y[i]);
      if (x < -5 || y < -5 || x > v.w + 5 || y > v.h + 5) continue;
      ctx.globalAlpha = focus && !on ? 0.12 : (P.c[i] < 0 ? 0.45 : 0.8);
      ctx.fillStyle = colour(P.c[i]);
      const s = on ? r * 1.8 : r;
      ctx.fillRect(x - s / 2, y - s / 2, s, s);
      if (on && state.matches !== null) { ctx.strokeStyle = "#000"; ctx.strokeRect(x - s / 2, y - s / 2, s, s); }
    }
  }
  ctx.globalAlpha = 1;
  drawLabels(v);
  if (state.hover >= 0) {
    const i = state.hover;
    ctx.strokeStyle = "#000"; ctx.lineWidth = 1.5;
    ctx.beginPath(); ctx.arc(sx(P.x[i]), sy(P.y[i]), 5, 0, 2 * Math.PI); ctx.stroke(); ctx.lineWidth = 1;
  }
}

function drawLabels(v) {
  const placed = [];
  ctx.font = "12px system-ui, sans-serif"; ctx.textBaseline = "middle";
  const order = [...extent.keys()].sort((a, b) => (clusters.get(b)?.texts || 0) - (clusters.get(a)?.texts || 0));
  for (const c of order) {
    const e = extent.get(c), info = clusters.get(c);
    const text = c + ": " + ((info && info.keywords[0]) || "");
    const label = text.length > 32 ? text.slice(0, 31) + "…" : text;
    const w = ctx.measureText(label).width + 8, h = 16;
    const x = sx(e.sx / e.n) - w / 2, y = sy(e.sy / e.n) - h / 2;
    if (x < 0 || y < 0 || x + w > v.w || y + h > v.h) continue;
    if (placed.some(p => x < p[2] && p[0] < x + w && y < p[3] && p[1] < y + h)) continue;
    placed.push([x, y, x + w, y + h]);
    ctx.globalAlpha = state.selected === null || state.selected === c ? 0.9 : 0.4;
    ctx.fillStyle = "#fff"; ctx.fillRect(x, y, w, h);
    ctx.strokeStyle = colour(c); ctx.strokeRect(x, y, w, h);
    ctx.fillStyle = "#111"; ctx.fillText(label, x + 4, y + h / 2);
  }
  ctx.globalAlpha = 1;
  state.labels = placed.length;
}

function nearest(mx, my) {
  const dx = (mx - state.tx) / state.k, dy = 1000 - (my - state.ty) / state.k;
  const rad = 7 / state.k;
  let best = -1, bestD = rad * rad;
  const gx0 = Math.floor((dx - rad) / CELL), gx1 = Math.floor((dx + rad) / CELL);
  const gy0 = Math.floor((dy - rad) / CELL), gy1 = Math.floor((dy + rad) / CELL);
  for (let gx = Math.max(0, gx0); gx <= Math.min(GRID - 1, gx1); gx++) {
    for (let gy = Math.max(0, gy0); gy <= Math.min(GRID - 1, gy1); gy++) {
      for (const i of grid.get(gx * GRID + gy) || []) {
        const d = (P.x[i] - dx) ** 2 + (P.y[i] - dy) ** 2;
        if (d < bestD && (state.matches === null || state.matches.has(i))) { bestD = d; best = i; }
      }
    }
  }
  return best;
}

function showTip(i, mx, my) {
  state.hover = i;
  if (i < 0) { tip.hidden = true; draw(); return; }
  const c = P.c[i], info = clusters.get(c);
  tip.replaceChildren();
  const head = document.createElement("div");
  head.className = "size";
  const name = c < 0 ? "unclustered" : "cluster " + c + (info ? ": " + info.keywords.slice(0, 3).join(", ") : "");
  head.textContent = name + (P.m[i] > 1 ? " · " + P.m[i].toLocaleString() + " rows" : "");
  const body = document.createElement("div");
  body.textContent = P.t[i] || "(text unavailable)";
  tip.append(head, body);
  tip.hidden = false;
  const v = view();
  tip.style.left = Math.min(mx + 14, v.w - 370) + "px";
  tip.style.top = Math.min(my + 14, v.h - 80) + "px";
  draw();
}

function el(tag, text, cls) {
  const e = document.createElement(tag);
  if (text !== undefined) e.textContent = text;
  if (cls) e.className = cls;
  return e;
}

function select(c, zoom) {
  state.selected = c;
  document.querySelectorAll(".tree .sel").forEach(e => e.classList.remove("sel"));
  const info = clusters.get(c);
  detail.replaceChildren();
  if (!info) { draw(); return; }
  const leaf = document.querySelector('.tree li.leaf[data-cluster="' + c + '"]');
  if (leaf) {
    leaf.classList.add("sel");
    for (let d = leaf.closest("details"); d; d = d.parentElement.closest("details")) d.open = true;
  }
  detail.append(el("h3", "Cluster " + c));
  detail.append(el("p", info.rows.toLocaleString() + " rows (" + (100 * info.share).toFixed(2) + "%), "
    + info.texts.toLocaleString() + " distinct texts", "size"));
  const t1 = nodes.get("1:" + info.level1), t2 = nodes.get("2:" + info.level2);
  const path = el("p", "", "size");
  path.textContent = (t1 ? "Theme " + t1.id + " (" + t1.keywords.slice(0, 3).join(", ") + ")" : "")
    + (t2 ? " › Topic " + t2.id + " (" + t2.keywords.slice(0, 3).join(", ") + ")" : "");
  detail.append(path);
  detail.append(el("p", info.keywords.join(", "), "kw"));
  for (const x of info.exemplars) {
    const q = el("blockquote", x.text);
    if (x.rows > 1) q.append(el("div", x.rows.toLocaleString() + " rows", "src"));
    detail.append(q);
  }
  const e = extent.get(c);
  if (zoom && e) zoomTo(e.x0, e.y0, e.x1, e.y1); else draw();
}

function runSearch(raw) {
  const q = raw.trim().toLowerCase();
  state.query = q;
  hits.replaceChildren();
  document.querySelectorAll(".tree .hit").forEach(e => e.classList.remove("hit"));
  if (q.length < 2) {
    state.matches = null; state.matchClusters = new Set(); status.textContent = ""; draw(); return;
  }
  if (lower === null) lower = P.t.map(t => (t || "").toLowerCase());
  const found = new Set(), per = new Map();
  for (let i = 0; i < N; i++) {
    if (lower[i].includes(q)) { found.add(i); per.set(P.c[i], (per.get(P.c[i]) || 0) + 1); }
  }
  for (const c of D.clusters) {
    if (c.keywords.some(w => w.toLowerCase().includes(q)) && !per.has(c.id)) per.set(c.id, 0);
  }
  state.matches = found;
  state.matchClusters = new Set([...per.keys()].filter(c => c >= 0));
  const nc = state.matchClusters.size;
  status.textContent = found.size.toLocaleString() + " texts in " + nc + (nc === 1 ? " cluster" : " clusters");
  const order = [...state.matchClusters].sort((a, b) => per.get(b) - per.get(a));
  for (const c of order.slice(0, 30)) {
    const info = clusters.get(c);
    const words = info ? info.keywords.slice(0, 3).join(", ") : "";
    const b = el("button", "Cluster " + c + ": " + per.get(c) + " texts · " + words);
    b.className = "hit"; b.dataset.cluster = c;
    b.addEventListener("click", () => select(c, true));
    hits.append(b);
    const leaf = document.querySelector('.tree li.leaf[data-cluster="' + c + '"]');
    if (leaf) leaf.classList.add("hit");
  }
  draw();
}

let drag = null;
canvas.addEventListener("mousedown", ev => { drag = {x: ev.offsetX, y: ev.offsetY, moved: false}; });
window.addEventListener("mouseup", ev => {
  if (drag && !drag.moved && ev.target === canvas) {
    const i = nearest(ev.offsetX, ev.offsetY);
    if (i >= 0 && P.c[i] >= 0) select(P.c[i], false);
  }
  drag = null;
});
canvas.addEventListener("mousemove", ev => {
  if (drag && (Math.abs(ev.offsetX - drag.x) + Math.abs(ev.offsetY - drag.y) > 3 || drag.moved)) {
    state.tx += ev.offsetX - drag.x; state.ty += ev.offsetY - drag.y;
    drag.x = ev.offsetX; drag.y = ev.offsetY; drag.moved = true; tip.hidden = true; draw(); return;
  }
  showTip(nearest(ev.offsetX, ev.offsetY), ev.offsetX, ev.offsetY);
});
canvas.addEventListener("mouseleave", () => { tip.hidden = true; state.hover = -1; draw(); });
canvas.addEventListener("wheel", ev => {
  ev.preventDefault(); zoomAt(ev.offsetX, ev.offsetY, ev.deltaY < 0 ? 1.25 : 0.8);
}, {passive: false});
const zoomCentre = f => () => { const v = view(); zoomAt(v.w / 2, v.h / 2, f); };
document.getElementById("zoom-in").addEventListener("click", zoomCentre(1.5));
document.getElementById("zoom-out").addEventListener("click", zoomCentre(1 / 1.5));
document.getElementById("zoom-reset").addEventListener("click", () => { reset(); select(null, false); });
let pending = null;
search.addEventListener("input", () => {
  clearTimeout(pending); pending = setTimeout(() => runSearch(search.value), 150);
});
document.querySelectorAll(".tree li.leaf").forEach(li => li.addEventListener("click", ev => {
  ev.preventDefault(); select(Number(li.dataset.cluster), true);
}));
window.addEventListener("resize", () => { size(); reset(); draw(); });

window.reportMap = {
  screenOf: i => [sx(P.x[i]), sy(P.y[i])],
  find: text => P.t.findIndex(t => t === text),
  search: q => { search.value = q; runSearch(q); return state.matchClusters.size; },
  select: c => select(c, true),
  points: N,
};
size(); reset(); draw();
document.body.dataset.mapReady = "1";
})();
"""
