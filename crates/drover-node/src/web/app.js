"use strict";
// The page keeps the jobs it has loaded (200 at a time, newest first, narrowed on the node by
// state and queue) and draws the table from them: filtered by name, sorted, running jobs first.
// Every change arrives on the event stream (Server-Sent Events) and re-reads only the job it
// concerns: no polling.
const PAGE = 200;
const STATES = ["running", "starting", "queued", "blocked", "scheduled", "succeeded", "failed",
                "timed_out", "lost", "cancelled"];
const ENDED = ["succeeded", "failed", "timed_out", "lost", "cancelled"];
const RETRIABLE = ["failed", "timed_out", "lost", "cancelled"];
const DEAD = ["failed", "timed_out", "lost"];
const jobs = new Map();
const filter = { state: "", queue: "", name: "" };
let sort = { key: null, up: false };
let oldest = null;
let selected = null;
let follow = null;
let drawQueued = false;

const el = (tag, attrs = {}, text = "") => {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) e.setAttribute(k, v);
  if (text) e.textContent = text;
  return e;
};
const bytes = (n) => {
  if (n == null) return "-";
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  let i = 0;
  while (n >= 1024 && i < units.length - 1) { n /= 1024; i++; }
  return (i ? n.toFixed(1) : n) + " " + units[i];
};
const seconds = (job) => {
  if (!job.started_at) return -1;
  const last = job.attempts[job.attempts.length - 1];
  const end = last && last.finished_at ? new Date(last.finished_at) : new Date();
  return Math.max(0, (end - new Date(job.started_at)) / 1000);
};
// As the CLI writes them: 12.3s, 4m05s, 1h02m, 3d04h.
const runtime = (job) => {
  const s = seconds(job);
  if (s < 0) return "-";
  const two = (n) => String(Math.floor(n)).padStart(2, "0");
  if (s < 60) return s.toFixed(1) + "s";
  if (s < 3600) return Math.floor(s / 60) + "m" + two(s % 60) + "s";
  if (s < 86400) return Math.floor(s / 3600) + "h" + two((s % 3600) / 60) + "m";
  return Math.floor(s / 86400) + "d" + two((s % 86400) / 3600) + "h";
};
// Resource graphs, drawn as SVG from the usage series the node samples for each running
// attempt (`serve --sample-interval`): memory against the job's limit, CPU against its quota.
const SVG = "http://www.w3.org/2000/svg";
const svg = (tag, attrs = {}, text = "") => {
  const e = document.createElementNS(SVG, tag);
  for (const [k, v] of Object.entries(attrs)) e.setAttribute(k, v);
  if (text) e.textContent = text;
  return e;
};
const seriesOf = (job) => {
  const last = job.attempts[job.attempts.length - 1];
  return (last && last.usage_series && last.usage_series.points) || [];
};
const memoryLimitOf = (job) => {
  const last = job.attempts[job.attempts.length - 1];
  return (last && last.memory_limit_bytes) || null;
};
// A small line of the latest attempt's memory, for the table.
function sparkline(job) {
  const points = seriesOf(job).filter((p) => p.memory_bytes != null);
  if (points.length < 2) return null;
  const [w, h] = [56, 14];
  const top = Math.max(memoryLimitOf(job) || 0, ...points.map((p) => p.memory_bytes)) || 1;
  const end = points[points.length - 1].at_ms || 1;
  const line = points.map((p) => `${((p.at_ms / end) * w).toFixed(1)},${(h - (p.memory_bytes / top) * (h - 1) - 0.5).toFixed(1)}`);
  const s = svg("svg", { class: "spark", width: w, height: h, viewBox: `0 0 ${w} ${h}`, "aria-hidden": "true" });
  s.append(svg("polyline", { points: line.join(" ") }));
  return s;
}
// One plot: `value(point)` over the attempt's time, with its limit as a dashed line.
function plot(title, points, value, limit, format, running) {
  const shown = points.filter((p) => value(p) != null);
  const [w, h, left, bottom] = [420, 120, 64, 18];
  const box = el("figure", { class: "usage" });
  if (!shown.length) {
    box.append(el("figcaption", {}, `${title}: not measured on this node`));
    return box;
  }
  const top = Math.max(limit || 0, ...shown.map(value)) * 1.05 || 1;
  const end = Math.max(shown[shown.length - 1].at_ms, 1);
  const x = (p) => left + (p.at_ms / end) * (w - left - 4);
  const y = (v) => 4 + (1 - v / top) * (h - bottom - 4);
  const s = svg("svg", { class: "usage-plot", width: w, height: h, viewBox: `0 0 ${w} ${h}`, role: "img",
    "aria-label": `${title} over time` });
  s.append(svg("line", { class: "axis", x1: left, y1: h - bottom, x2: w - 4, y2: h - bottom }));
  s.append(svg("text", { class: "tick", x: left - 4, y: y(top / 1.05) + 4, "text-anchor": "end" }, format(top / 1.05)));
  s.append(svg("text", { class: "tick", x: left - 4, y: h - bottom, "text-anchor": "end" }, format(0)));
  s.append(svg("text", { class: "tick", x: w - 4, y: h - 4, "text-anchor": "end" }, `${(end / 1000).toFixed(0)}s`));
  if (limit) {
    s.append(svg("line", { class: "limit", x1: left, y1: y(limit), x2: w - 4, y2: y(limit) }));
    // Above its line, or below it when the line is at the top.
    const at = y(limit) < 16 ? y(limit) + 11 : y(limit) - 3;
    s.append(svg("text", { class: "tick limit-label", x: w - 6, y: at, "text-anchor": "end" }, `limit ${format(limit)}`));
  }
  s.append(svg("polyline", { class: "series", points: shown.map((p) => `${x(p).toFixed(1)},${y(value(p)).toFixed(1)}`).join(" ") }));
  for (const p of shown) {
    const c = svg("circle", { class: "point", cx: x(p).toFixed(1), cy: y(value(p)).toFixed(1), r: 2 });
    c.append(svg("title", {}, `${(p.at_ms / 1000).toFixed(1)}s: ${format(value(p))}`));
    s.append(c);
  }
  const latest = value(shown[shown.length - 1]);
  box.append(el("figcaption", {}, `${title}: ${format(latest)} ${running ? "now" : "at the last sample"}, highest ${format(Math.max(...shown.map(value)))}` +
    (limit ? ` of ${format(limit)}` : "")), s);
  return box;
}
function graphs(job) {
  const points = seriesOf(job);
  const wrap = el("div", { id: "usage" });
  if (!points.length) {
    wrap.append(el("p", { class: "empty" }, job.state === "running" ? "sampling memory and CPU…" : "no usage was sampled for this attempt"));
    return wrap;
  }
  const cpus = job.spec && job.spec.cpus ? Number(job.spec.cpus) : null;
  const running = job.state === "running";
  wrap.append(
    plot("memory", points, (p) => p.memory_bytes, memoryLimitOf(job), bytes, running),
    plot("CPU", points, (p) => p.cpus, cpus, (v) => `${v.toFixed(2)} CPU`, running),
  );
  return wrap;
}
const queueOf = (job) => (job.spec && job.spec.queue) || "default";
const reasonOf = (job) => job.reason || job.waiting_for || (job.state === "queued" ? "waiting for a free slot" : "-");
const post = (path, body) => fetch(path, {
  method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify(body),
});
// Running first, then waiting, then ended; newest first within each.
const phase = (job) => (["running", "starting"].includes(job.state) ? 0 : ENDED.includes(job.state) ? 2 : 1);
const keys = {
  number: (j) => j.number, name: (j) => j.name, state: (j) => j.state, queue: queueOf,
  node: (j) => j.node || "", runtime: seconds, memory: (j) => j.peak_memory_bytes || 0, reason: reasonOf,
};

function compare(a, b) {
  if (sort.key) {
    const [x, y] = [keys[sort.key](a), keys[sort.key](b)];
    const c = x < y ? -1 : x > y ? 1 : 0;
    if (c) return sort.up ? c : -c;
  }
  return phase(a) - phase(b) || b.number - a.number;
}

// The node filters by state and queue; the name filter is the page's own.
function shown(job) {
  return (!filter.state || job.state === filter.state) && (!filter.queue || queueOf(job) === filter.queue)
    && (!filter.name || job.name.toLowerCase().includes(filter.name.toLowerCase()));
}

function row(job) {
  const tr = el("tr", { "data-id": job.id, "data-state": job.state });
  if (job.id === selected) tr.className = "selected";
  tr.addEventListener("click", () => select(job.id));
  const reason = reasonOf(job);
  tr.append(
    el("td", { class: "mono", title: job.id }, String(job.number)),
    el("td", { class: "clip", title: job.name }, job.name),
    el("td", { class: "state state-" + job.state }, job.attempt > 1 ? `${job.state} #${job.attempt}` : job.state),
    el("td", {}, queueOf(job)),
    el("td", {}, job.node || "-"),
    el("td", {}, runtime(job)),
    memoryCell(job),
    el("td", { class: "reason", title: reason }, reason),
  );
  const cell = el("td", { class: "actions" });
  const action = (label, attr, go) => {
    const b = el("button", { [attr]: job.id }, label);
    b.addEventListener("click", async (e) => { e.stopPropagation(); await go(); refresh(job.id); });
    cell.append(b);
  };
  if (!ENDED.includes(job.state)) action("cancel", "data-cancel", () => post(`/v1/jobs/${job.id}/cancel`, {}));
  if (RETRIABLE.includes(job.state)) action("retry", "data-retry", () => post("/v1/retry", { ids: [job.id] }));
  if (DEAD.includes(job.state)) action("dismiss", "data-dismiss", () => post("/v1/dlq/dismiss", { ids: [job.id] }));
  tr.append(cell);
  return tr;
}

function memoryCell(job) {
  const running = ["running", "starting"].includes(job.state);
  const points = seriesOf(job).filter((p) => p.memory_bytes != null);
  const td = el("td", { class: "memory", title: running && points.length ? "memory now" : "peak memory" });
  // While it runs: the memory now; after: the peak.
  td.append(document.createTextNode(running && points.length ? bytes(points[points.length - 1].memory_bytes) : bytes(job.peak_memory_bytes)));
  const spark = sparkline(job);
  if (spark) td.append(spark);
  return td;
}

function draw() {
  drawQueued = false;
  const list = [...jobs.values()].filter(shown).sort(compare);
  document.getElementById("jobs").replaceChildren(...list.map(row));
  document.getElementById("shown").textContent = `${list.length} of ${jobs.size} loaded jobs shown`;
  for (const th of document.querySelectorAll("th[data-sort]")) {
    th.classList.toggle("sorted", th.dataset.sort === sort.key);
    th.classList.toggle("up", th.dataset.sort === sort.key && sort.up);
  }
  const job = jobs.get(selected);
  if (job) detail(job);
}
const redraw = () => { if (!drawQueued) { drawQueued = true; requestAnimationFrame(draw); } };

async function load(more = false) {
  const q = new URLSearchParams({ limit: PAGE });
  if (filter.state) q.set("state", filter.state);
  if (filter.queue) q.set("queue", filter.queue);
  if (more && oldest) q.set("before", oldest);
  const r = await fetch(`/v1/jobs?${q}`);
  if (!r.ok) return;
  const page = await r.json();
  if (!more) jobs.clear();
  for (const job of page) jobs.set(job.id, job);
  if (page.length) oldest = page[page.length - 1].id;
  document.getElementById("more").hidden = page.length < PAGE;
  redraw();
}

async function refresh(id) {
  const r = await fetch(`/v1/jobs/${id}`);
  if (!r.ok) return;
  const job = await r.json();
  const fits = (!filter.state || job.state === filter.state) && (!filter.queue || queueOf(job) === filter.queue);
  if (fits || id === selected) jobs.set(id, job); else jobs.delete(id);
  redraw();
}

function detail(job) {
  const box = document.getElementById("detail");
  const s = job.spec || {};
  const limits = [
    s.memory && `memory ${s.memory}`, s.memory_max && `grows to ${s.memory_max}`, s.cpus && `cpus ${s.cpus}`,
    s.pids && `pids ${s.pids}`, s.nofile && `nofile ${s.nofile}`, s.stall && `stall ${s.stall}`,
  ].filter(Boolean).join(", ") || "none";
  const facts = el("dl");
  const fact = (k, v) => facts.append(el("dt", {}, k), el("dd", {}, v));
  fact("job", `${job.number} · ${job.id}`);
  fact("state", job.state + (job.cancel_requested ? " (cancel requested)" : ""));
  fact("queue", queueOf(job));
  fact("argv", job.argv.map((a) => (/^[\w@%+=:,./-]+$/.test(a) ? a : `'${a.replace(/'/g, "'\\''")}'`)).join(" "));
  fact("cwd", s.cwd || "(the node's)");
  fact("timeout", `${s.timeout} (grace ${s.grace})`);
  fact("limits", limits);
  const budget = (s.retries || 0) + 1;
  fact("attempt", job.attempt > budget ? String(job.attempt) : `${job.attempt} of ${budget}`);
  if (job.reason) fact("reason", job.reason);
  if (!ENDED.includes(job.state) && job.state !== "running") fact("waiting", reasonOf(job));
  const attempts = el("table");
  const head = el("tr");
  head.append(...["#", "state", "node", "reason", "peak mem", "cpu"].map((h) => el("th", {}, h)));
  attempts.append(head);
  for (const a of job.attempts) {
    const tr = el("tr");
    tr.append(el("td", {}, String(a.attempt)), el("td", { class: "state state-" + a.state }, a.state),
      el("td", { class: "clip", title: a.node }, a.node), el("td", { class: "reason", title: a.reason || "" }, a.reason || "-"),
      el("td", {}, bytes(a.peak_memory_bytes)),
      el("td", {}, a.cpu_time_ms == null ? "-" : (a.cpu_time_ms / 1000).toFixed(2) + "s"));
    attempts.append(tr);
  }
  const out = box.querySelector("#log") || el("pre", { id: "log" });
  const err = box.querySelector("#errlog") || el("pre", { id: "errlog", class: "stderr" });
  box.replaceChildren(el("h2", {}, `${job.number} ${job.name} — ${job.state}`), facts, attempts,
    el("h3", {}, "memory and CPU"), graphs(job), el("h3", {}, "stdout"), out, el("h3", {}, "stderr"), err);
}

// Follows one stream of the selected job as it is written; the request ends when the job does.
async function stream(id, name, target, signal) {
  try {
    const r = await fetch(`/v1/jobs/${id}/logs?stream=${name}&follow=true`, { signal });
    const reader = r.body.getReader();
    const text = new TextDecoder();
    for (;;) {
      const { done, value } = await reader.read();
      if (done) break;
      const pre = document.getElementById(target);
      if (pre) { pre.textContent += text.decode(value, { stream: true }); pre.scrollTop = pre.scrollHeight; }
    }
  } catch (_) { /* switched to another job */ }
}

async function select(id) {
  selected = id;
  if (follow) follow.abort();
  follow = new AbortController();
  document.getElementById("detail").replaceChildren(el("h2", {}, "…"));
  await refresh(id);
  draw();
  stream(id, "stdout", "log", follow.signal);
  stream(id, "stderr", "errlog", follow.signal);
}

async function counts() {
  const r = await fetch("/v1/counts");
  if (!r.ok) return;
  const { states } = await r.json();
  const total = Object.values(states).reduce((a, b) => a + b, 0);
  const chip = (state, label) => {
    const b = el("button", { "data-state": state, class: filter.state === state ? "on" : "" }, label);
    b.addEventListener("click", () => { filter.state = filter.state === state ? "" : state; load(); counts(); });
    return b;
  };
  document.getElementById("counts").replaceChildren(chip("", `all ${total}`),
    ...STATES.filter((s) => states[s]).map((s) => chip(s, `${s.replace("_", " ")} ${states[s]}`)));
}

async function queues() {
  const r = await fetch("/v1/queues");
  if (!r.ok) return;
  const list = await r.json();
  const body = document.getElementById("queues");
  if (!list.length) {
    const tr = el("tr");
    tr.append(el("td", { colspan: "6", class: "none" }, "no queue has jobs waiting or running, or settings"));
    body.replaceChildren(tr);
  } else body.replaceChildren(...list.map((q) => {
    const tr = el("tr");
    tr.replaceChildren(el("td", {}, q.name), el("td", {}, q.paused ? "paused" : "active"),
      el("td", {}, q.concurrency == null ? "-" : String(q.concurrency)), el("td", {}, String(q.queued)),
      el("td", {}, String(q.deferred)), el("td", {}, String(q.running)));
    return tr;
  }));
  const select = document.getElementById("queue-filter");
  const options = [el("option", { value: "" }, "all"), ...list.map((q) => el("option", { value: q.name }, q.name))];
  select.replaceChildren(...options);
  select.value = filter.queue;
}

async function node() {
  const r = await fetch("/v1/node");
  if (!r.ok) return;
  const n = await r.json();
  const mem = n.host_memory ? `, machine ${bytes(n.host_memory.available_bytes)} of ${bytes(n.host_memory.total_bytes)} free` : "";
  document.getElementById("node").textContent =
    `${n.node} · ${n.containment.backend} · ${bytes(n.capacity.memory_bytes)}, ${n.capacity.cpus} CPUs, ${n.capacity.slots} slots${mem}`;
}

let summaryTimer = null;
// Every request of the page carries the node's cookie, which the login link (`drover web`)
// set; without it the node answers 401 and the page shows how to log in instead.
async function start() {
  const probe = await fetch("/v1/health");
  if (probe.status === 401) {
    document.querySelector("main").hidden = true;
    document.getElementById("login").hidden = false;
    document.getElementById("node").textContent = "not logged in";
    return;
  }
  // Open the stream first, then load: a change in between is applied twice, never missed.
  const events = new EventSource("/v1/events");
  const live = document.getElementById("live");
  events.onopen = () => { live.textContent = "● live"; };
  events.onerror = () => { live.textContent = "○ reconnecting"; };
  const onEvent = (e) => {
    const ev = JSON.parse(e.data);
    refresh(ev.job_id);
    clearTimeout(summaryTimer);
    summaryTimer = setTimeout(() => { queues(); node(); counts(); }, 250);
  };
  for (const kind of ["submitted", "claimed", "started", "finished", "requeued", "cancel_requested", "cancelled",
                      "retried", "scheduled", "due", "reprioritized", "dismissed", "unblocked", "edited"]) {
    events.addEventListener(kind, onEvent);
  }
  document.getElementById("queue-filter").addEventListener("change", (e) => { filter.queue = e.target.value; load(); });
  document.getElementById("name-filter").addEventListener("input", (e) => { filter.name = e.target.value; redraw(); });
  document.getElementById("more").addEventListener("click", () => load(true));
  for (const th of document.querySelectorAll("th[data-sort]")) {
    th.addEventListener("click", () => {
      const key = th.dataset.sort;
      sort = sort.key === key ? (sort.up ? { key: null, up: false } : { key, up: true }) : { key, up: false };
      redraw();
    });
  }
  load();
  counts();
  queues();
  node();
  // Runtimes of running jobs tick on the page itself, from what it already has (no request).
  // Only the cells change, so a button is never redrawn under the pointer.
  setInterval(() => {
    for (const job of jobs.values()) {
      if (job.state !== "running") continue;
      const cell = document.querySelector(`tr[data-id="${job.id}"] td:nth-child(6)`);
      if (cell) cell.textContent = runtime(job);
    }
  }, 1000);
  setInterval(updateUsage, USAGE_EVERY);
}

// Memory and CPU change without an event. While jobs run, their rows' memory cells and the
// selected job's graphs are re-read every few seconds (one request for the table) and changed
// in place, so a button is never redrawn under the pointer.
const USAGE_EVERY = 3000;
async function updateUsage() {
  if (![...jobs.values()].some((j) => j.state === "running")) return;
  const r = await fetch(`/v1/jobs?state=running&limit=${PAGE}`);
  if (!r.ok) return;
  for (const job of await r.json()) {
    if (!jobs.has(job.id) || job.id === selected) continue;
    jobs.set(job.id, job);
    const cell = document.querySelector(`tr[data-id="${job.id}"] td.memory`);
    if (cell) cell.replaceWith(memoryCell(job));
  }
  const chosen = jobs.get(selected);
  if (chosen && chosen.state === "running") {
    const one = await fetch(`/v1/jobs/${selected}`);
    if (!one.ok) return;
    const job = await one.json();
    jobs.set(job.id, job);
    const cell = document.querySelector(`tr[data-id="${job.id}"] td.memory`);
    if (cell) cell.replaceWith(memoryCell(job));
    if (job.id === selected) detail(job);
  }
}
start();
