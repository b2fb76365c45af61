"use strict";
// The page keeps one row per job. It loads recent jobs once, then every change arrives on the
// event stream (Server-Sent Events) and re-reads only the job it concerns: no polling.
const rows = new Map();
const jobs = new Map();
let selected = null;
let follow = null;

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
const runtime = (job) => {
  if (!job.started_at) return "-";
  const last = job.attempts[job.attempts.length - 1];
  const end = last && last.finished_at ? new Date(last.finished_at) : new Date();
  const s = Math.max(0, (end - new Date(job.started_at)) / 1000);
  return s < 60 ? s.toFixed(1) + "s" : Math.floor(s / 60) + "m" + Math.round(s % 60) + "s";
};
const terminal = (s) => ["succeeded", "failed", "timed_out", "lost", "cancelled"].includes(s);

function render(job) {
  jobs.set(job.id, job);
  let tr = rows.get(job.id);
  if (!tr) {
    tr = el("tr");
    tr.addEventListener("click", () => select(job.id));
    rows.set(job.id, tr);
    const body = document.getElementById("jobs");
    body.insertBefore(tr, body.firstChild);
  }
  tr.dataset.id = job.id;
  tr.dataset.state = job.state;
  tr.className = job.id === selected ? "selected" : "";
  tr.replaceChildren(
    el("td", { class: "mono", title: job.id }, job.id.slice(-12)),
    el("td", {}, job.name),
    el("td", { class: "state state-" + job.state }, job.state),
    el("td", {}, (job.spec && job.spec.queue) || "default"),
    el("td", {}, job.node || "-"),
    el("td", {}, runtime(job)),
    el("td", {}, bytes(job.peak_memory_bytes)),
    el("td", {}, job.reason || job.waiting_for || "-"),
  );
  const cell = el("td");
  if (!terminal(job.state)) {
    const b = el("button", { "data-cancel": job.id }, "cancel");
    b.addEventListener("click", async (e) => {
      e.stopPropagation();
      await fetch(`/v1/jobs/${job.id}/cancel`, {
        method: "POST", headers: { "content-type": "application/json" }, body: "{}",
      });
    });
    cell.append(b);
  }
  tr.append(cell);
  if (job.id === selected) detail(job);
}

async function refresh(id) {
  const r = await fetch(`/v1/jobs/${id}`);
  if (r.ok) render(await r.json());
}

function detail(job) {
  const box = document.getElementById("detail");
  const attempts = el("table");
  attempts.append(el("tr", {}, ""));
  attempts.firstChild.replaceChildren(...["#", "state", "node", "reason", "peak memory", "cpu"].map((h) => el("th", {}, h)));
  for (const a of job.attempts) {
    const tr = el("tr");
    tr.replaceChildren(
      el("td", {}, String(a.attempt)), el("td", { class: "state state-" + a.state }, a.state), el("td", {}, a.node),
      el("td", {}, a.reason || "-"), el("td", {}, bytes(a.peak_memory_bytes)),
      el("td", {}, a.cpu_time_ms == null ? "-" : (a.cpu_time_ms / 1000).toFixed(2) + "s"));
    attempts.append(tr);
  }
  const log = box.querySelector("pre") || el("pre", { id: "log" });
  box.replaceChildren(el("h2", {}, `${job.name} — ${job.state}`), attempts, log);
}

async function select(id) {
  selected = id;
  for (const [k, tr] of rows) tr.className = k === id ? "selected" : "";
  if (follow) follow.abort();
  follow = new AbortController();
  document.getElementById("detail").replaceChildren(el("h2", {}, "…"), el("pre", { id: "log" }));
  await refresh(id);
  // Follow stdout as it is written; the request ends when the job does.
  try {
    const r = await fetch(`/v1/jobs/${id}/logs?follow=true`, { signal: follow.signal });
    const reader = r.body.getReader();
    const text = new TextDecoder();
    for (;;) {
      const { done, value } = await reader.read();
      if (done) break;
      const pre = document.getElementById("log");
      if (pre) { pre.textContent += text.decode(value, { stream: true }); pre.scrollTop = pre.scrollHeight; }
    }
  } catch (_) { /* switched to another job */ }
}

async function queues() {
  const r = await fetch("/v1/queues");
  if (!r.ok) return;
  const body = document.getElementById("queues");
  body.replaceChildren(...(await r.json()).map((q) => {
    const tr = el("tr");
    tr.replaceChildren(el("td", {}, q.name), el("td", {}, q.paused ? "paused" : "active"),
      el("td", {}, q.concurrency == null ? "-" : String(q.concurrency)), el("td", {}, String(q.queued)),
      el("td", {}, String(q.deferred)), el("td", {}, String(q.running)));
    return tr;
  }));
}

async function node() {
  const r = await fetch("/v1/node");
  if (!r.ok) return;
  const n = await r.json();
  const mem = n.host_memory ? `, machine ${bytes(n.host_memory.available_bytes)} of ${bytes(n.host_memory.total_bytes)} free` : "";
  document.getElementById("node").textContent =
    `${n.node} · ${n.containment.backend} · ${bytes(n.capacity.memory_bytes)}, ${n.capacity.cpus} CPUs, ${n.capacity.slots} slots${mem}`;
}

let queueTimer = null;
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
    clearTimeout(queueTimer);
    queueTimer = setTimeout(() => { queues(); node(); }, 250);
  };
  for (const kind of ["submitted", "claimed", "started", "finished", "requeued", "cancel_requested", "cancelled",
                      "retried", "scheduled", "due", "reprioritized", "dismissed", "unblocked"]) {
    events.addEventListener(kind, onEvent);
  }
  fetch("/v1/jobs?limit=200").then((r) => r.json()).then((jobs) => jobs.reverse().forEach(render));
  queues();
  node();
  // Runtimes of running jobs tick on the page itself, from what it already has (no request).
  setInterval(() => {
    for (const job of jobs.values()) if (job.state === "running") render(job);
  }, 1000);
}
start();
