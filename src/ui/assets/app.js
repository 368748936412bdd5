// asdo ui: the tasks view and the task view. Vanilla JS, no build step; every value
// from the cluster goes into the page as text (textContent), never as HTML.
"use strict";

const STATES = ["Running", "Queued", "Pending", "Succeeded", "Failed", "Unknown"];
const COLORS = { Running: "#2563eb", Queued: "#7c3aed", Pending: "#d97706", Succeeded: "#16a34a", Failed: "#dc2626", Unknown: "#6b7280" };
const $ = (s) => document.querySelector(s);
const rows = new Map();
// Timings the browser test and the benchmark read.
window.asdoStats = { snapshots: 0, rendered: 0, lastRender: 0, updates: 0 };

function el(tag, cls, text) {
  const e = document.createElement(tag);
  if (cls) e.className = cls;
  if (text !== undefined && text !== null) e.textContent = text;
  return e;
}

function dur(s) {
  if (s === null || s === undefined) return "–";
  if (s < 60) return s + "s";
  const m = Math.floor(s / 60), h = Math.floor(m / 60);
  if (h) return h + "h" + String(m % 60).padStart(2, "0") + "m";
  return m + "m" + String(s % 60).padStart(2, "0") + "s";
}
function elapsed(r) {
  if (r.phase === "Running" && r.started) return Math.max(0, Math.round((Date.now() - Date.parse(r.started)) / 1000));
  return r.duration_seconds;
}
function tokens(r) {
  if (r.tokens_in === null || r.tokens_in === undefined) return "–";
  const k = (n) => (n >= 10000 ? (n / 1000).toFixed(0) + "k" : n >= 1000 ? (n / 1000).toFixed(1) + "k" : String(n));
  return k(r.tokens_in) + " / " + k(r.tokens_out);
}
function cost(r) { return r.cost === null || r.cost === undefined ? "–" : "$" + r.cost.toFixed(r.cost < 1 ? 4 : 2); }
function taskHref(r) { return "/task/" + encodeURIComponent(r.namespace) + "/" + encodeURIComponent(r.pod); }
function prLabel(url) { const m = /\/(\d+)\/?$/.exec(url); return m ? "#" + m[1] : "PR"; }

function setConn(state, text) { const c = $("#conn"); c.dataset.state = state; c.textContent = text; }
function banner(text) { const b = $("#banner"); b.hidden = !text; b.textContent = text || ""; }

// ---- the tasks view -------------------------------------------------------------------

const trs = new Map();
let stateFilter = null;

function cell(tr, cls, text) { const td = el("td", cls, text); tr.appendChild(td); return td; }

function fillRow(tr, r) {
  tr.textContent = "";
  tr.dataset.key = r.key;
  tr.dataset.state = r.phase;
  tr.dataset.status = r.status;
  const t = cell(tr, "task");
  const a = el("a", null, r.id); a.href = taskHref(r); t.appendChild(a);
  if (showNs) t.appendChild(el("span", "ns", r.namespace));
  const s = cell(tr, "status");
  const b = el("span", "badge s-" + r.phase); b.appendChild(el("span", "dot s-" + r.phase)); b.appendChild(document.createTextNode(r.status));
  s.appendChild(b);
  if (r.message) s.appendChild(el("span", "msg", r.message));
  const st = cell(tr, "step", r.last_step || (r.phase === "Pending" || r.phase === "Queued" ? "" : "–"));
  if (r.last_step) st.title = r.last_step;
  cell(tr, "num dur", dur(elapsed(r)));
  cell(tr, "num", tokens(r));
  cell(tr, "num", cost(r));
  cell(tr, "branch", r.branch || "–");
  const pr = cell(tr, "pr");
  if (r.pr_url) { const l = el("a", null, prLabel(r.pr_url)); l.href = r.pr_url; l.target = "_blank"; l.rel = "noopener noreferrer"; pr.appendChild(l); }
  else pr.textContent = "–";
  tr.hidden = !matches(r);
}

function matches(r) {
  if (stateFilter && r.phase !== stateFilter) return false;
  const q = $("#filter").value.trim().toLowerCase();
  if (!q) return true;
  return [r.id, r.pod, r.namespace, r.status, r.branch, r.last_step, r.message].some((v) => v && v.toLowerCase().includes(q));
}

function sorted() {
  return [...rows.values()].sort((a, b) => (a.created || "").localeCompare(b.created || "") || a.key.localeCompare(b.key));
}

function renderAll() {
  const tbody = $("#tasks tbody");
  const frag = document.createDocumentFragment();
  trs.clear();
  for (const r of sorted()) { const tr = el("tr"); fillRow(tr, r); trs.set(r.key, tr); frag.appendChild(tr); }
  tbody.textContent = "";
  tbody.appendChild(frag);
  renderSummary();
}

function upsert(r) {
  const old = rows.get(r.key);
  rows.set(r.key, r);
  let tr = trs.get(r.key);
  if (tr && old && old.created === r.created) { fillRow(tr, r); }
  else {
    if (tr) tr.remove();
    tr = el("tr"); fillRow(tr, r); trs.set(r.key, tr);
    // In creation order: a new task goes before the first row created after it.
    const next = sorted().find((x) => (x.created || "") > (r.created || "") && trs.get(x.key) && x.key !== r.key);
    $("#tasks tbody").insertBefore(tr, next ? trs.get(next.key) : null);
  }
  scheduleSummary();
}

function removeRow(key) {
  rows.delete(key);
  const tr = trs.get(key); if (tr) tr.remove(); trs.delete(key);
  scheduleSummary();
}

let summaryQueued = false;
function scheduleSummary() {
  if (summaryQueued) return;
  summaryQueued = true;
  requestAnimationFrame(() => { summaryQueued = false; renderSummary(); });
}

function renderSummary() {
  const all = [...rows.values()];
  const counts = $("#counts");
  counts.textContent = "";
  const chip = (label, state, n) => {
    const c = el("button", "chip" + (state ? " s-" + state : ""));
    c.type = "button";
    c.dataset.state = state || "all";
    c.setAttribute("aria-pressed", String(stateFilter === state));
    if (state) c.appendChild(el("span", "dot"));
    c.appendChild(document.createTextNode(label + " "));
    c.appendChild(el("b", null, String(n)));
    c.onclick = () => { stateFilter = stateFilter === state ? null : state; applyFilter(); renderSummary(); };
    counts.appendChild(c);
  };
  chip("All", null, all.length);
  for (const s of STATES) { const n = all.filter((r) => r.phase === s).length; if (n || (s !== "Unknown" && s !== "Queued")) chip(s, s, n); }
  $("#empty").hidden = all.length > 0;
  renderTimeline(all);
  window.asdoStats.rendered = all.length;
  window.asdoStats.lastRender = performance.now();
}

function applyFilter() { for (const [k, tr] of trs) { const r = rows.get(k); if (r) tr.hidden = !matches(r); } }

function renderTimeline(all) {
  const svg = $("#timeline");
  const NS = "http://www.w3.org/2000/svg";
  svg.textContent = "";
  const items = all.filter((r) => r.started || r.created).sort((a, b) => (a.started || a.created).localeCompare(b.started || b.created));
  const legend = $("#legend");
  if (!legend.childElementCount) for (const s of STATES.slice(0, 4)) { const i = el("span"); i.appendChild(el("span", "dot s-" + s)); i.appendChild(document.createTextNode(s)); legend.appendChild(i); }
  // Measured before the rows exist (and on resize): reading it after 500 rows were added
  // would force a layout of the whole table inside the render.
  const width = Math.max(320, timelineWidth - 28 || 900);
  if (!items.length) { svg.setAttribute("height", "30"); const t = document.createElementNS(NS, "text"); t.setAttribute("x", "0"); t.setAttribute("y", "20"); t.setAttribute("fill", "#6b7280"); t.textContent = "No tasks yet"; svg.appendChild(t); return; }
  const now = Date.now();
  const start = (r) => Date.parse(r.started || r.created);
  const end = (r) => (r.finished ? Date.parse(r.finished) : now);
  const t0 = Math.min(...items.map(start)), t1 = Math.max(t0 + 1000, ...items.map(end));
  const label = items.length <= 40 ? 90 : 0;
  const bar = Math.max(2, Math.min(16, Math.floor(320 / items.length)));
  const gap = bar >= 10 ? 5 : 1;
  const axis = 22;
  const h = items.length * (bar + gap) + axis;
  svg.setAttribute("height", String(h));
  svg.setAttribute("viewBox", "0 0 " + width + " " + h);
  const x = (t) => label + ((t - t0) / (t1 - t0)) * (width - label - 8);
  for (let i = 0; i <= 4; i++) {
    const t = t0 + ((t1 - t0) * i) / 4, xx = x(t);
    const line = document.createElementNS(NS, "line");
    line.setAttribute("x1", xx); line.setAttribute("x2", xx); line.setAttribute("y1", 0); line.setAttribute("y2", h - axis + 4);
    line.setAttribute("stroke", "#eef0f3"); svg.appendChild(line);
    const tx = document.createElementNS(NS, "text");
    tx.setAttribute("x", xx); tx.setAttribute("y", h - 6); tx.setAttribute("font-size", "11"); tx.setAttribute("fill", "#6b7280");
    tx.setAttribute("text-anchor", i === 0 ? "start" : i === 4 ? "end" : "middle");
    tx.textContent = new Date(t).toLocaleTimeString([], { hour: "2-digit", minute: "2-digit", second: "2-digit" });
    svg.appendChild(tx);
  }
  items.forEach((r, i) => {
    const y = i * (bar + gap);
    const a = document.createElementNS(NS, "a");
    a.setAttribute("href", taskHref(r));
    const rect = document.createElementNS(NS, "rect");
    rect.setAttribute("x", x(start(r))); rect.setAttribute("y", y);
    rect.setAttribute("width", Math.max(3, x(end(r)) - x(start(r)))); rect.setAttribute("height", bar);
    rect.setAttribute("rx", Math.min(4, bar / 2)); rect.setAttribute("fill", COLORS[r.phase] || COLORS.Unknown);
    if (r.phase === "Running") rect.setAttribute("fill-opacity", "0.75");
    const title = document.createElementNS(NS, "title");
    title.textContent = r.id + " — " + r.status + " — " + dur(elapsed(r));
    rect.appendChild(title); a.appendChild(rect);
    if (label) {
      const t = document.createElementNS(NS, "text");
      t.setAttribute("x", 0); t.setAttribute("y", y + bar - 3); t.setAttribute("font-size", "11.5"); t.setAttribute("fill", "#374151");
      t.textContent = r.id; a.appendChild(t);
    }
    svg.appendChild(a);
  });
}

let timelineWidth = 0;
function tasksView() {
  $("#tasks-view").hidden = false;
  timelineWidth = $("#timeline").clientWidth;
  window.addEventListener("resize", () => { timelineWidth = $("#timeline").clientWidth; renderTimeline([...rows.values()]); });
  $("#filter").addEventListener("input", applyFilter);
  connectEvents({
    snapshot(s) { rows.clear(); for (const r of s.rows) rows.set(r.key, r); const t = performance.now(); renderAll(); window.asdoStats.snapshots++; window.asdoStats.snapshotRenderMs = performance.now() - t; banner(s.error); },
    row(r) { upsert(r); window.asdoStats.updates++; },
    remove(k) { removeRow(k); },
  });
  // Durations of running tasks tick here, in the page: no request for that.
  setInterval(() => { for (const [k, tr] of trs) { const r = rows.get(k); if (r && r.phase === "Running") tr.querySelector(".dur").textContent = dur(elapsed(r)); } renderTimeline([...rows.values()]); }, 5000);
}

let showNs = false;
// What the server serves (its snapshot says): the runtime words texts and commands.
const served = { runtime: "kubernetes", serving: "" };
const isLocal = () => served.runtime === "local";
// An asdo command line as the user would type it for these tasks.
function command(verb, ns) { return isLocal() ? "asdo --runtime local " + verb : "asdo " + verb + " -n " + ns; }
function takeScope(s) {
  if (s.runtime) served.runtime = s.runtime;
  if (s.serving !== undefined) served.serving = s.serving;
  $("#scope").textContent = served.serving;
  if (isLocal()) {
    $("#empty").textContent = "No local tasks here yet. Spawn one with asdo --runtime local spawn; it appears at once.";
    $("#delete").textContent = "Delete task…";
    $("#confirm-what").textContent = "task";
    $("#confirm-text").textContent = "A task that runs or waits is asked to stop (a running agent pushes its work in progress and ends); delete it again once it has ended to remove its directory: its clone, HOME and log (keep the log first with asdo --runtime local cleanup --save-logs).";
  }
}

function connectEvents(on) {
  const es = new EventSource("/api/events");
  es.onopen = () => setConn("live", "live");
  es.onerror = () => setConn("down", "reconnecting…");
  es.addEventListener("snapshot", (e) => { const s = JSON.parse(e.data); takeScope(s); showNs = new Set(s.rows.map((r) => r.namespace)).size > 1; on.snapshot(s); });
  es.addEventListener("row", (e) => on.row(JSON.parse(e.data)));
  es.addEventListener("remove", (e) => on.remove(JSON.parse(e.data)));
  es.addEventListener("failure", (e) => banner(JSON.parse(e.data)));
  return es;
}

// ---- the task view --------------------------------------------------------------------

function fact(dl, k, v, href) {
  dl.appendChild(el("dt", null, k));
  const dd = el("dd");
  if (href) { const a = el("a", null, v); a.href = href; a.target = "_blank"; a.rel = "noopener noreferrer"; dd.appendChild(a); }
  else dd.textContent = v === null || v === undefined || v === "" ? "–" : String(v);
  dl.appendChild(dd);
}

function taskView(ns, pod) {
  $("#task-view").hidden = false;
  const key = ns + "/" + pod;
  let row = null, diffAsked = false, gone = false;
  $("#t-title").textContent = pod;
  const show = (r) => {
    row = r;
    document.title = r.id + " · " + r.status + " · asdo";
    $("#t-title").textContent = r.id;
    const b = $("#t-status"); b.className = "badge s-" + r.phase; b.textContent = r.status;
    const why = $("#t-why"); why.hidden = !r.message; why.textContent = r.message || "";
    const f = $("#t-facts"); f.textContent = "";
    fact(f, "Pod", r.pod); fact(f, "Namespace", r.namespace);
    fact(f, "Branch", r.branch); fact(f, "Repository", r.repo);
    fact(f, "Started", r.started ? new Date(r.started).toLocaleString() : null);
    fact(f, "Duration", dur(elapsed(r)));
    fact(f, "Exit code", r.exit_code); fact(f, "Last step", r.last_step);
    const s = $("#t-summary"); s.textContent = "";
    fact(s, "Outcome", r.last_marker); fact(s, "Commit", r.commit); fact(s, "Files", r.files);
    fact(s, "Tokens", tokens(r)); fact(s, "Cost", cost(r));
    if (r.pr_url) fact(s, "Pull request", r.pr_url, r.pr_url); else fact(s, "Pull request", null);
    $("#attach-cmd").textContent = command("attach " + r.id, r.namespace);
    $("#confirm-pod").textContent = isLocal() ? r.id : r.pod;
    $("#replace-cmd").textContent = isLocal()
      ? command("cleanup " + r.id, r.namespace) + "; " + command("spawn --task-id " + r.id + " --branch " + (r.branch || "…") + " --repo " + (r.repo || "…") + " --prompt-file …", r.namespace)
      : command("spawn --task-id " + r.id + " --branch " + (r.branch || "…") + " --repo " + (r.repo || "…") + " --prompt-file … --replace", r.namespace);
    // A follow-up in flight owns the button and its note: a row update (each step line
    // makes one) must not re-enable Send or wipe what the send is saying.
    sendAllowed = r.phase === "Running";
    if (!sendBusy) {
      $("#send").disabled = !sendAllowed;
      $("#send-note").textContent = sendAllowed ? "" : "Follow-ups reach running tasks only.";
    }
    if (!diffAsked && (r.phase === "Succeeded" || r.phase === "Failed")) { diffAsked = true; loadDiff(); }
  };
  const loadDiff = () => {
    fetch("/api/tasks/" + encodeURIComponent(ns) + "/" + encodeURIComponent(pod) + "/diff")
      .then((r) => r.json())
      .then((d) => { $("#diff").textContent = d.stat !== undefined ? (d.stat.trim() || "(no changes)") : d.error; })
      .catch((e) => { $("#diff").textContent = String(e); });
  };
  $("#diff").textContent = "Shown when the task has finished.";
  connectEvents({
    snapshot(s) { const r = s.rows.find((x) => x.key === key); if (r) show(r); else if (s.synced) notFound(); },
    row(r) { if (r.key === key) show(r); },
    remove(k) { if (k === key) { gone = true; banner(isLocal() ? "Task " + (row ? row.id : pod) + " was removed." : "Pod " + pod + " was deleted."); $("#t-status").textContent = "Deleted"; $("#delete").disabled = true; sendAllowed = false; $("#send").disabled = true; } },
  });
  const notFound = () => { if (!gone) banner(isLocal() ? "No local task " + pod + "." : "No task pod " + pod + " in namespace " + ns + "."); };
  followLog(ns, pod);
  $("#copy").onclick = () => {
    const text = $("#attach-cmd").textContent;
    (navigator.clipboard ? navigator.clipboard.writeText(text) : Promise.reject()).then(
      () => { $("#copy").textContent = "Copied"; setTimeout(() => ($("#copy").textContent = "Copy"), 1500); },
      () => { const r = document.createRange(); r.selectNodeContents($("#attach-cmd")); getSelection().removeAllRanges(); getSelection().addRange(r); });
  };
  const dlg = $("#confirm");
  $("#delete").onclick = () => dlg.showModal();
  dlg.addEventListener("close", () => {
    if (dlg.returnValue !== "delete" || !row) return;
    fetch("/api/tasks/" + encodeURIComponent(ns) + "/" + encodeURIComponent(pod) + "?uid=" + encodeURIComponent(row.uid), { method: "DELETE" })
      .then((r) => r.json())
      .then((d) => banner(d.error ? "Not deleted: " + d.error : d.message || "Pod " + pod + " deleted."));
  });
  $("#send-form").onsubmit = (e) => { e.preventDefault(); send(ns, pod); };
}

function followLog(ns, pod) {
  const box = $("#log");
  const state = $("#log-state");
  let n = 0, pending = [], queued = false;
  const flush = () => {
    queued = false;
    const frag = document.createDocumentFragment();
    for (const [id, text] of pending) {
      const s = el("span", "ln", text);
      s.dataset.n = id;
      if (text.startsWith("asdo: done")) s.classList.add("done");
      else if (text.startsWith("asdo: failed")) s.classList.add("failed");
      else if (text.startsWith("asdo: summary") || text.startsWith("asdo: so far")) s.classList.add("summary");
      else if (text.startsWith("asdo: ")) s.classList.add("marker");
      else if (text.startsWith("· ")) s.classList.add("step");
      frag.appendChild(s);
    }
    pending = [];
    box.appendChild(frag);
    box.dataset.lines = String(n);
    if ($("#autoscroll").checked) box.scrollTop = box.scrollHeight;
  };
  const es = new EventSource("/api/tasks/" + encodeURIComponent(ns) + "/" + encodeURIComponent(pod) + "/log");
  es.onopen = () => (state.textContent = "following");
  es.onerror = () => (state.textContent = "reconnecting… (resumes where it was)");
  es.addEventListener("line", (e) => {
    const id = Number(e.lastEventId);
    if (id && id <= n) return; // never a line twice, whatever a reconnect replays
    n = id || n + 1;
    pending.push([n, JSON.parse(e.data)]);
    if (!queued) { queued = true; requestAnimationFrame(flush); }
  });
  const finish = (text) => { es.close(); flush(); state.textContent = text; box.dataset.ended = "true"; };
  es.addEventListener("end", (e) => finish("ended: " + JSON.parse(e.data)));
  es.addEventListener("failure", (e) => finish("stopped: " + JSON.parse(e.data)));
}

// Whether the task can take a follow-up (it runs), and whether one is in flight.
let sendAllowed = false, sendBusy = false;

async function send(ns, pod) {
  const text = $("#send-text").value;
  if (!text.trim()) return;
  const reply = $("#reply");
  reply.hidden = false;
  reply.textContent = "";
  reply.dataset.state = "sending";
  sendBusy = true;
  $("#send").disabled = true;
  $("#send-note").textContent = "sending…";
  try {
    const resp = await fetch("/api/tasks/" + encodeURIComponent(ns) + "/" + encodeURIComponent(pod) + "/send", {
      method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify({ message: text }),
    });
    // A refusal (bad message, no such task, the guard) is one JSON or text body, not lines.
    if (!resp.ok) {
      const body = (await resp.text()).trim();
      let why = body;
      try { why = JSON.parse(body).error || body; } catch (_) { /* plain text */ }
      throw new Error(why || "HTTP " + resp.status);
    }
    const reader = resp.body.getReader();
    const dec = new TextDecoder();
    let buf = "";
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      buf += dec.decode(value, { stream: true });
      let i;
      while ((i = buf.indexOf("\n")) >= 0) {
        const line = buf.slice(0, i); buf = buf.slice(i + 1);
        if (!line) continue;
        const m = JSON.parse(line);
        if (m.sent) { $("#send-note").textContent = "sent (session " + m.sent + "); the reply streams in"; reply.dataset.state = "sent"; }
        if (m.text) reply.textContent += m.text;
        if (m.done) { $("#send-note").textContent = m.done; reply.dataset.state = "done"; }
        if (m.error) { $("#send-note").textContent = m.error; reply.dataset.state = "error"; }
      }
    }
    // Never a silent end: a stream cut before its last line says so.
    if (reply.dataset.state !== "done" && reply.dataset.state !== "error") {
      throw new Error("the reply stream ended before the answer; see the log");
    }
  } catch (e) {
    $("#send-note").textContent = e instanceof Error ? e.message : String(e);
    reply.dataset.state = "error";
  } finally {
    sendBusy = false;
    $("#send").disabled = !sendAllowed;
  }
}

document.addEventListener("DOMContentLoaded", () => {
  const m = /^\/task\/([^/]+)\/([^/]+)$/.exec(location.pathname);
  if (m) taskView(decodeURIComponent(m[1]), decodeURIComponent(m[2]));
  else tasksView();
});
