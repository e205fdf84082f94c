// Ember's web UI: plain JS, SVG and CSS, no build step and nothing fetched from elsewhere.
// State lives in the query string (shareable, restored on reload; times are ISO 8601 or
// relative, like `now-15m`). Everything on screen comes from the agent's /api/v1: the
// CPU chart from /cpu, the flame graph from /flame (a call tree the page draws itself),
// the tables from /top and /flame, the label explorer from /explore. Times are shown in
// local wall-clock time (UTC on hover), CPU as CPU seconds and cores (samples on hover).
"use strict";
(function () {
  const $ = (id) => document.getElementById(id);
  const PRESETS = ["now-5m", "now-15m", "now-1h", "now-6h", "now-24h"];
  const DEFAULTS = { mode: "overview", from: "now-15m", to: "now", filter: "", type: "cpu", group: "process", sort: "self",
    colour: "binary", focus: "", bfrom: "", bto: "", bfilter: "", refresh: "0" };
  // Labels in the explorer, in this order, with what people call them.
  const LABELS = [["comm", "Process"], ["pid", "PID"], ["container_id", "Container"], ["pod_uid", "Pod"], ["thread", "Thread"],
    ["tid", "Thread ID"], ["runtime", "Runtime"], ["qos", "QoS class"], ["cgroup", "cgroup"], ["exe", "Executable"]];
  const labelTitle = (n) => (LABELS.find(([k]) => k === n) || [n, n])[1];

  // ---- state <-> URL ------------------------------------------------------------------
  function readState() {
    const q = new URLSearchParams(location.search);
    const s = Object.assign({}, DEFAULTS);
    for (const k of Object.keys(DEFAULTS)) if (q.get(k)) s[k] = q.get(k);
    if (!["overview", "compare"].includes(s.mode)) s.mode = "overview";
    if (!["process", "binary", "function"].includes(s.group)) s.group = "process";
    if (!["self", "total"].includes(s.sort)) s.sort = "self";
    if (!["binary", "process"].includes(s.colour)) s.colour = "binary";
    return s;
  }
  let state = readState();
  function writeState(push) {
    const q = new URLSearchParams();
    for (const k of Object.keys(DEFAULTS)) if (state[k] && state[k] !== DEFAULTS[k]) q.set(k, state[k]);
    const qs = q.toString();
    const url = location.pathname + (qs ? "?" + qs : "");
    if (push) history.pushState(null, "", url); else history.replaceState(null, "", url);
  }

  // ---- fetching -------------------------------------------------------------------------
  class ApiError extends Error {}
  function apiUrl(path, params) {
    const q = new URLSearchParams();
    for (const k of Object.keys(params)) if (params[k] !== "" && params[k] != null) q.set(k, params[k]);
    const qs = q.toString();
    return path + (qs ? "?" + qs : "");
  }
  async function api(path, params) {
    let res;
    try {
      res = await fetch(apiUrl(path, Object.assign({ type: state.type }, params)));
    } catch (e) {
      throw new ApiError("Cannot reach the agent at " + location.origin + " (" + e.message + "). Is `ember agent` still running?");
    }
    if (!res.ok) {
      let msg = res.status + " " + res.statusText;
      try { msg = (await res.json()).error || msg; } catch (_) { /* not JSON */ }
      throw new ApiError("The API refused the request: " + msg);
    }
    return res.json();
  }

  function say(text, kind) {
    const m = $("message");
    m.hidden = !text;
    m.textContent = text || "";
    m.classList.toggle("error", kind === "error");
  }

  // ---- units and times ------------------------------------------------------------------
  const pad = (n) => String(n).padStart(2, "0");
  const sameDay = (a, b) => a.toDateString() === b.toDateString();
  // 12:30:05, with the date when it is not today.
  function fmtTime(ms, withDate) {
    const d = new Date(ms);
    const t = pad(d.getHours()) + ":" + pad(d.getMinutes()) + ":" + pad(d.getSeconds());
    if (withDate || !sameDay(d, new Date())) return d.toLocaleDateString([], { weekday: "short", day: "numeric", month: "short" }) + " " + t;
    return t;
  }
  const utc = (ms) => new Date(ms).toISOString().replace("T", " ").replace(/\.\d+Z$/, " UTC");
  function fmtRange(a, b) {
    const da = new Date(a), db = new Date(b);
    const end = sameDay(da, db) ? fmtTime(b, false).replace(/^.* /, "") : fmtTime(b, true);
    return fmtTime(a, !sameDay(da, new Date())) + " – " + end + " (" + fmtDur(b - a) + ")";
  }
  function trim1(x) { const t = x.toFixed(1); return t.endsWith(".0") ? t.slice(0, -2) : t; }
  function fmtDur(ms) {
    const s = ms / 1000;
    if (s < 1) return Math.round(ms) + " ms";
    if (s < 120) return trim1(s) + " s";
    if (s < 7200) return trim1(s / 60) + " min";
    if (s < 172800) return trim1(s / 3600) + " h";
    return trim1(s / 86400) + " d";
  }
  function fmtNum(x, digits) { return x.toLocaleString([], { maximumFractionDigits: digits, minimumFractionDigits: digits }); }
  // The profile shown: CPU samples, or off-CPU time (counts are microseconds waited).
  const offCpu = () => state.type === "off-cpu";
  // CPU seconds from samples at hz: "4.12 CPU s", "312 CPU s"; off CPU, seconds waited.
  function cpuSeconds(samples, hz) { return offCpu() ? samples / 1e6 : hz ? samples / hz : null; }
  function fmtCpu(samples, hz) {
    const s = cpuSeconds(samples, hz);
    if (s == null) return samples.toLocaleString() + " samples";
    if (offCpu()) return s < 1 ? fmtNum(s * 1e3, s < 0.01 ? 2 : 0) + " ms off CPU" : fmtNum(s, s < 10 ? 2 : s < 100 ? 1 : 0) + " s off CPU";
    return fmtNum(s, s < 10 ? 2 : s < 100 ? 1 : 0) + " CPU s";
  }
  // Seconds alone, for table cells whose header says CPU (or off-CPU) time.
  function fmtSecs(samples, hz) {
    const s = cpuSeconds(samples, hz);
    if (s == null) return samples.toLocaleString();
    return fmtNum(s, s < 10 ? 2 : s < 100 ? 1 : 0) + " s";
  }
  // Per second of range: cores in use, or off CPU the threads waiting on average.
  function fmtCores(c) {
    const t = c === 0 ? "0" : c < 0.095 ? c.toPrecision(2) : fmtNum(c, c < 10 ? 2 : 1);
    if (offCpu()) return t + (Math.abs(c - 1) < 0.005 ? " thread waiting" : " threads waiting");
    return t + (Math.abs(c - 1) < 0.005 ? " core" : " cores");
  }
  // A chart point's height: cores, or threads waiting.
  const rate = (p) => (offCpu() ? p.threads_waiting : p.cores);
  const fmtPct = (x) => (100 * x).toFixed(x >= 0.1 ? 1 : 2) + " %";
  const samplesTitle = (n) => n.toLocaleString() + (offCpu() ? " µs off CPU" : n === 1 ? " sample" : " samples");
  // ISO 8601 in local time with its offset: what the URL keeps for absolute times.
  function isoLocal(ms) {
    const d = new Date(ms);
    const off = -d.getTimezoneOffset();
    const sign = off >= 0 ? "+" : "-";
    return d.getFullYear() + "-" + pad(d.getMonth() + 1) + "-" + pad(d.getDate()) + "T" + pad(d.getHours()) + ":" + pad(d.getMinutes()) + ":" +
      pad(d.getSeconds()) + sign + pad(Math.floor(Math.abs(off) / 60)) + ":" + pad(Math.abs(off) % 60);
  }
  // The value of a datetime-local input for ms, and back.
  const inputValue = (ms) => isoLocal(ms).slice(0, 19);
  const fromInput = (v) => { const t = new Date(v).getTime(); return Number.isFinite(t) ? isoLocal(t) : ""; };
  // What the API takes: RFC 3339 in UTC, to the millisecond.
  const apiTime = (ms) => new Date(ms).toISOString();
  // `now`, `now-15m`, `-1.5h` or an ISO time, in ms; null when the page cannot tell (the
  // API then says why).
  function resolveTime(s, now) {
    s = (s || "").trim();
    if (s === "now") return now;
    const m = /^(?:now)?-(\d+(?:\.\d+)?)(ms|s|m|h|d)$/.exec(s);
    if (m) return now - Number(m[1]) * { ms: 1, s: 1e3, m: 6e4, h: 36e5, d: 864e5 }[m[2]];
    if (/^\d{4}-\d\d-\d\dT/.test(s)) { const t = Date.parse(s); return Number.isFinite(t) ? t : null; }
    return null;
  }

  // ---- filters --------------------------------------------------------------------------
  const parseFilter = (f) => (f || "").split(",").map((p) => p.trim()).filter(Boolean).map((p) => {
    const i = p.indexOf("=");
    return [p.slice(0, i), p.slice(i + 1)];
  });
  const joinFilter = (pairs) => pairs.map(([k, v]) => k + "=" + v).join(",");
  function setFilter(pairs) { state.filter = joinFilter(pairs); writeState(true); load(); }
  function addFilter(name, value) {
    const pairs = parseFilter(state.filter);
    if (!pairs.some(([k, v]) => k === name && v === value)) pairs.push([name, value]);
    setFilter(pairs);
  }
  let hints = {}; // "name=value" → what the value is (a pid's process), from the explorer
  function renderActiveFilters() {
    const ul = $("active-filters");
    ul.replaceChildren();
    const pairs = parseFilter(state.filter);
    if (!pairs.length) {
      const li = document.createElement("li");
      li.className = "none";
      li.textContent = "none: every process on the node";
      ul.append(li);
    }
    pairs.forEach(([k, v], i) => {
      const li = document.createElement("li");
      const b = document.createElement("button");
      b.type = "button";
      b.dataset.filter = k + "=" + v;
      const hint = hints[k + "=" + v];
      b.textContent = labelTitle(k) + ": " + v + (hint ? " (" + hint + ")" : "") + "  ✕";
      b.setAttribute("aria-label", "Remove filter " + k + "=" + v);
      b.addEventListener("click", () => setFilter(pairs.filter((_, j) => j !== i)));
      li.append(b);
      ul.append(li);
    });
    const chip = $("focus-chip");
    chip.hidden = !state.focus || state.mode !== "overview";
    chip.replaceChildren();
    if (state.focus) {
      const b = document.createElement("button");
      b.type = "button";
      b.id = "focus-clear";
      b.textContent = "Focused on " + state.focus + "  ✕";
      b.setAttribute("aria-label", "Clear the focus on " + state.focus);
      b.addEventListener("click", () => { state.focus = ""; writeState(true); load(); });
      chip.append(b);
    }
  }

  // ---- label explorer -------------------------------------------------------------------
  let explored = null; // the last /explore answer
  function renderExplorer() {
    const sel = $("ex-label");
    const labels = explored ? explored.labels : [];
    const names = LABELS.map(([n]) => n).filter((n) => labels.some((l) => l.name === n));
    const current = sel.value;
    sel.replaceChildren(...names.map((n) => new Option(labelTitle(n), n)));
    sel.value = names.includes(current) ? current : names[0] || "";
    const label = labels.find((l) => l.name === sel.value);
    const ul = $("ex-values");
    ul.replaceChildren();
    if (!label) { $("ex-total").textContent = ""; return; }
    const hz = explored.frequency_hz;
    const un = label.unlabelled_samples || 0;
    $("ex-total").textContent = "of " + fmtCpu(label.total_samples, hz) + (label.more ? ", " + label.more + " more not shown" : "") +
      (un ? "; " + fmtCpu(un, hz) + " without a " + labelTitle(label.name).toLowerCase() : "");
    $("ex-total").title = samplesTitle(label.total_samples) + (un ? ", " + samplesTitle(un) + " without this label" : "");
    $("ex-total").dataset.unlabelled = String(un);
    const term = $("ex-search").value.trim().toLowerCase();
    const active = parseFilter(state.filter);
    for (const v of label.values) {
      if (term && !(v.value.toLowerCase().includes(term) || (v.hint || "").toLowerCase().includes(term))) continue;
      const li = document.createElement("li");
      const b = document.createElement("button");
      b.type = "button";
      b.dataset.value = v.value;
      b.dataset.samples = String(v.samples);
      b.dataset.share = String(v.share);
      b.title = "Filter on " + label.name + "=" + v.value + " (" + samplesTitle(v.samples) + ")";
      const name = document.createElement("span");
      name.className = "v";
      name.textContent = v.value;
      if (v.hint && v.hint !== v.value) { const h = document.createElement("span"); h.className = "hint"; h.textContent = v.hint; name.append(h); }
      const cpu = document.createElement("span"); cpu.className = "n"; cpu.textContent = fmtCpu(v.samples, hz);
      const pct = document.createElement("span"); pct.className = "n share-pct"; pct.textContent = fmtPct(v.share);
      const bar = document.createElement("span"); const inner = document.createElement("span");
      inner.className = "sharebar"; inner.style.width = Math.max(1, Math.round(100 * v.share)) + "%"; bar.append(inner);
      b.append(name, cpu, pct, bar);
      if (active.some(([k, x]) => k === label.name && x === v.value)) b.disabled = true;
      b.addEventListener("click", () => { $("explorer").hidden = true; $("explore-btn").setAttribute("aria-expanded", "false"); addFilter(label.name, v.value); });
      li.append(b);
      ul.append(li);
    }
  }
  function noteHints() {
    hints = {};
    for (const l of (explored ? explored.labels : [])) for (const v of l.values) if (v.hint) hints[l.name + "=" + v.value] = v.hint;
    const dl = $("filter-hints");
    dl.replaceChildren();
    for (const l of (explored ? explored.labels : [])) {
      if (l.name !== "comm" && l.name !== "container_id" && l.name !== "pod_uid") continue;
      for (const v of l.values.slice(0, 30)) dl.append(new Option(l.name + "=" + v.value + (v.hint ? " (" + v.hint + ")" : ""), l.name + "=" + v.value));
    }
  }

  function renderTopProcs(total, hz, seconds) {
    const ul = $("top-procs");
    ul.replaceChildren();
    const comm = explored && explored.labels.find((l) => l.name === "comm");
    if (!comm || !comm.values.length) {
      const li = document.createElement("li"); li.className = "muted small"; li.textContent = "No process used CPU in this range."; ul.append(li);
      return;
    }
    const active = parseFilter(state.filter).filter(([k]) => k === "comm").map(([, v]) => v);
    for (const v of comm.values.slice(0, 7)) {
      const li = document.createElement("li");
      li.dataset.comm = v.value;
      if (active.includes(v.value)) li.className = "active";
      const b = document.createElement("button");
      b.type = "button";
      const name = document.createElement("span"); name.className = "pname"; name.textContent = v.value;
      const cpu = document.createElement("span"); cpu.className = "cpu";
      const secs = cpuSeconds(v.samples, hz);
      const cores = secs != null && seconds > 0 ? secs / seconds : null;
      cpu.textContent = fmtCpu(v.samples, hz) + (cores != null ? " · " + fmtCores(cores) : "") + " · " + fmtPct(v.share);
      cpu.title = samplesTitle(v.samples) + ", " + fmtPct(v.share) + (offCpu() ? " of the time off CPU" : " of the CPU in use");
      const bar = document.createElement("span"); bar.className = "sharebar"; bar.style.width = Math.max(1, Math.round(100 * v.share)) + "%";
      b.append(name, cpu, bar);
      b.title = "Show only " + v.value;
      b.addEventListener("click", () => addFilter("comm", v.value));
      li.append(b);
      ul.append(li);
    }
  }

  // ---- the CPU chart --------------------------------------------------------------------
  const SVGNS = "http://www.w3.org/2000/svg";
  function el(name, attrs, text) {
    const e = document.createElementNS(SVGNS, name);
    for (const k of Object.keys(attrs || {})) e.setAttribute(k, attrs[k]);
    if (text != null) e.textContent = text;
    return e;
  }
  function niceStep(max, n) {
    const raw = max / n, p = Math.pow(10, Math.floor(Math.log10(raw)));
    for (const m of [1, 2, 2.5, 5, 10]) if (m * p >= raw) return m * p;
    return 10 * p;
  }
  const TIME_STEPS = [1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 10800, 21600, 43200, 86400].map((s) => s * 1000);
  // Draws cores over [from, to) (ms) with the selections `marks` ([{from, to, cls, label}]);
  // `onBrush(fromMs, toMs)` gets a dragged range.
  function drawChart(cpu, from, to, marks, onBrush) {
    const box = $("chart");
    const W = Math.max(320, Math.round(box.clientWidth || 800)), H = 150, L = 46, R = 8, T = 8, B = 22;
    const svg = el("svg", { viewBox: "0 0 " + W + " " + H, "aria-hidden": "true" });
    const span = to - from, pw = W - L - R, ph = H - T - B;
    const x = (ms) => L + Math.max(0, Math.min(1, (ms - from) / span)) * pw;
    const pts = cpu.points.filter((p) => rate(p) != null);
    const maxC = Math.max(0.01, ...pts.map(rate));
    const step = niceStep(maxC, 3), top = Math.ceil(maxC / step) * step;
    const y = (c) => T + ph - c / top * ph;
    for (let c = 0; c <= top + 1e-9; c += step) {
      svg.append(el("line", { class: "grid", x1: L, x2: W - R, y1: y(c), y2: y(c) }));
      svg.append(el("text", { class: "tick", x: L - 5, y: y(c) + 4, "text-anchor": "end" }, fmtNum(c, step < 0.1 ? 2 : step < 1 ? 1 : 0)));
    }
    svg.append(el("text", { class: "tick", x: 11, y: T + ph / 2, "text-anchor": "middle", transform: "rotate(-90 11 " + (T + ph / 2) + ")" }, offCpu() ? "threads waiting" : "cores"));
    const tstep = TIME_STEPS.find((s) => span / s <= Math.max(2, Math.floor(pw / 90))) || 86400e3;
    const offset = new Date(from).getTimezoneOffset() * 6e4;
    for (let t = Math.ceil((from - offset) / tstep) * tstep + offset; t <= to; t += tstep) {
      svg.append(el("line", { class: "grid", x1: x(t), x2: x(t), y1: T + ph, y2: T + ph + 4 }));
      if (x(t) + 26 > W || x(t) - 26 < L - 20) continue; // a label cut by the edge
      const lab = el("text", { class: "tick", x: x(t), y: H - 5, "text-anchor": "middle" }, fmtTime(t, false).replace(/^.* /, ""));
      lab.append(el("title", {}, utc(t)));
      svg.append(lab);
    }
    // Steps: one flat segment per stored window.
    let d = "";
    for (const p of pts) {
      const a = x(p.start_unix_ns / 1e6), b = x(p.end_unix_ns / 1e6);
      d += "M" + a.toFixed(1) + "," + y(0).toFixed(1) + "V" + y(rate(p)).toFixed(1) + "H" + b.toFixed(1) + "V" + y(0).toFixed(1) + "Z";
    }
    svg.append(el("path", { class: "area", d: d || "M0,0" }));
    for (const p of pts) {
      const r = el("rect", { x: x(p.start_unix_ns / 1e6), y: T, width: Math.max(1, x(p.end_unix_ns / 1e6) - x(p.start_unix_ns / 1e6)), height: ph, fill: "transparent" });
      r.append(el("title", {}, fmtTime(p.start_unix_ns / 1e6, false) + " – " + fmtTime(p.end_unix_ns / 1e6, false) + ": " + fmtCores(rate(p)) + " (" +
        samplesTitle(p.samples) + "; " + utc(p.start_unix_ns / 1e6) + ")"));
      svg.append(r);
    }
    for (const m of marks) {
      const a = x(m.from), b = x(m.to);
      const g = el("g", { class: "mark", "data-side": m.side || "" });
      g.append(el("rect", { class: m.cls, x: a, y: T, width: Math.max(2, b - a), height: ph, "pointer-events": "none" }));
      if (m.label) g.append(el("text", { class: "lab", x: a + 3, y: T + 12, fill: m.side === "a" ? "var(--a)" : "var(--b)" }, m.label));
      svg.append(g);
    }
    svg.append(el("line", { class: "grid", x1: L, x2: W - R, y1: y(0), y2: y(0) }));
    const brush = el("rect", { class: "brush", x: 0, y: T, width: 0, height: ph, visibility: "hidden" });
    svg.append(brush);
    let x0 = null;
    const xOf = (e) => { const r = svg.getBoundingClientRect(); return Math.min(W - R, Math.max(L, (e.clientX - r.left) / r.width * W)); };
    const msOf = (px) => from + (px - L) / pw * span;
    svg.addEventListener("pointerdown", (e) => { x0 = xOf(e); svg.setPointerCapture(e.pointerId); brush.setAttribute("visibility", "visible"); brush.setAttribute("x", x0); brush.setAttribute("width", 0); });
    svg.addEventListener("pointermove", (e) => { if (x0 == null) return; const v = xOf(e); brush.setAttribute("x", Math.min(v, x0)); brush.setAttribute("width", Math.abs(v - x0)); });
    svg.addEventListener("pointerup", (e) => {
      if (x0 == null) return;
      const x1 = xOf(e), a = Math.min(x0, x1), b = Math.max(x0, x1);
      x0 = null;
      brush.setAttribute("visibility", "hidden");
      if (b - a >= 4) onBrush(Math.round(msOf(a) / 1000) * 1000, Math.round(msOf(b) / 1000) * 1000);
    });
    box.replaceChildren(svg);
  }

  // ---- the flame graph ------------------------------------------------------------------
  // The call tree as parallel arrays: depth, name, binary, total, self (and base_total,
  // base_self when comparing), x (fraction of the root), w (fraction), parent, top (the
  // depth-1 ancestor: the process).
  let tree = null;
  let zoom = 0;     // the node the graph is zoomed into (0: the root)
  const ROW = 18;
  function buildTree(body) {
    const n = body.nodes.length, cmp = !!body.base;
    const t = { body, n, cmp, depth: new Int32Array(n), name: new Int32Array(n), bin: new Int32Array(n), total: new Float64Array(n), self: new Float64Array(n),
      btotal: new Float64Array(n), bself: new Float64Array(n), x: new Float64Array(n), w: new Float64Array(n), parent: new Int32Array(n), proc: new Int32Array(n), maxDepth: 0 };
    const nt = Math.max(1, body.total_samples), bt = cmp ? Math.max(1, body.base.total_samples) : 1;
    const hasNew = body.total_samples > 0, hasBase = cmp && body.base.total_samples > 0;
    const stack = []; // [node, next child x]
    for (let i = 0; i < n; i++) {
      const r = body.nodes[i];
      t.depth[i] = r[0]; t.name[i] = r[1]; t.bin[i] = r[2]; t.total[i] = r[3]; t.self[i] = r[4];
      if (cmp) { t.btotal[i] = r[5]; t.bself[i] = r[6]; }
      // Width: the share of its profile, averaged over both sides when comparing (a side
      // with no samples does not count).
      const parts = [];
      if (!cmp || hasNew) parts.push(t.total[i] / nt);
      if (hasBase) parts.push(t.btotal[i] / bt);
      t.w[i] = parts.length ? parts.reduce((a, b) => a + b, 0) / parts.length : 0;
      while (stack.length && t.depth[stack[stack.length - 1][0]] >= r[0]) stack.pop();
      if (stack.length) {
        const top = stack[stack.length - 1];
        t.parent[i] = top[0]; t.x[i] = top[1]; top[1] += t.w[i];
        t.proc[i] = r[0] === 1 ? i : t.proc[top[0]];
      } else { t.parent[i] = -1; t.x[i] = 0; t.w[i] = 1; t.proc[i] = 0; }
      stack.push([i, t.x[i]]);
      if (r[0] > t.maxDepth) t.maxDepth = r[0];
    }
    return t;
  }
  function hash(s) { let h = 2166136261; for (let i = 0; i < s.length; i++) { h ^= s.charCodeAt(i); h = Math.imul(h, 16777619); } return h >>> 0; }
  const dark = () => window.matchMedia && window.matchMedia("(prefers-color-scheme: dark)").matches;
  function colourKey(t, i) {
    if (t.depth[i] === 0) return "";
    if (state.colour === "process") return t.body.names[t.name[t.proc[i]]];
    if (t.depth[i] === 1) return "[process]";
    return t.body.binaries[t.bin[i]] || "[unknown binary]";
  }
  function colourOf(key) {
    const l = dark() ? 52 : 68;
    if (key === "") return dark() ? "hsl(220,8%,40%)" : "hsl(220,8%,82%)";
    if (key === "[process]") return dark() ? "hsl(210,20%,45%)" : "hsl(210,25%,78%)";
    if (key === "[kernel]") return "hsl(28,85%," + l + "%)";
    if (key === "[python]") return "hsl(130,55%," + l + "%)";
    if (key === "[unknown binary]") return dark() ? "hsl(0,0%,45%)" : "hsl(0,0%,72%)";
    const h = hash(key);
    return "hsl(" + (h % 360) + "," + (45 + (h >> 9) % 25) + "%," + l + "%)";
  }
  function diffColour(t, i) {
    const nt = Math.max(1, t.body.total_samples), bt = Math.max(1, t.body.base.total_samples);
    const a = t.btotal[i] / bt, b = t.total[i] / nt;
    const d = b - a, rel = Math.min(1, Math.abs(d) / Math.max(0.02, Math.max(a, b)));
    if (Math.abs(d) < 0.0005 || !t.body.base.total_samples || !t.body.total_samples) return dark() ? "hsl(0,0%,42%)" : "hsl(0,0%,85%)";
    const l = dark() ? 58 - 18 * rel : 88 - 30 * rel;
    return d > 0 ? "hsl(2,80%," + l + "%)" : "hsl(214,80%," + l + "%)";
  }
  const esc = (s) => String(s).replace(/[&<>"]/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;" })[c]);
  let searchRe = null;
  // Draws the tree zoomed into `zoom`, as SVG rectangles (icicle: the root at the top).
  function drawFlame() {
    const box = $("flame");
    if (!tree) { box.replaceChildren(); return; }
    const t = tree, W = Math.max(200, Math.round(box.clientWidth || 900));
    const x0 = t.x[zoom], span = t.w[zoom] || 1;
    const out = [];
    const legend = new Map();
    let matched = 0, matchedBase = 0;
    const matchedAt = new Int8Array(t.n);
    const textColour = dark() ? "#f2f2f2" : "#111";
    for (let i = 0; i < t.n; i++) {
      const left = (t.x[i] - x0) / span * W, width = t.w[i] / span * W;
      const isMatch = searchRe && t.depth[i] > 0 && searchRe.test(t.body.names[t.name[i]]);
      const p = t.parent[i];
      matchedAt[i] = isMatch ? 1 : p >= 0 ? matchedAt[p] : 0;
      if (isMatch && !(p >= 0 && matchedAt[p])) { matched += t.total[i]; matchedBase += t.btotal[i]; }
      if (left + width < 0 || left > W || width < 0.4) continue;
      const l = Math.max(0, left), w = Math.min(W, left + width) - l;
      const key = colourKey(t, i);
      const fill = t.cmp && t.depth[i] > 0 ? diffColour(t, i) : colourOf(key);
      if (!t.cmp && t.depth[i] > 1) legend.set(key, (legend.get(key) || 0) + t.self[i]);
      const y = t.depth[i] * ROW;
      const name = t.body.names[t.name[i]];
      out.push('<rect data-i="' + i + '" data-name="' + esc(name) + '" x="' + l.toFixed(1) + '" y="' + y + '" width="' + Math.max(0.5, w).toFixed(1) + '" height="' + (ROW - 1) +
        '" fill="' + fill + '"' + (isMatch ? ' class="match"' : "") + "></rect>");
      if (w > 28) {
        const chars = Math.floor((w - 6) / 6.7);
        const label = name.length > chars ? name.slice(0, Math.max(1, chars - 1)) + "…" : name;
        out.push('<text x="' + (l + 3).toFixed(1) + '" y="' + (y + 12.5) + '" fill="' + (t.cmp ? "#111" : textColour) + '">' + esc(label) + "</text>");
      }
    }
    const H = (t.maxDepth + 1) * ROW;
    box.innerHTML = '<svg xmlns="http://www.w3.org/2000/svg" id="flame-svg" viewBox="0 0 ' + W + " " + H + '" width="' + W + '" height="' + H + '">' + out.join("") + "</svg>";
    box.classList.toggle("searching", !!searchRe);
    $("reset-zoom").disabled = zoom === 0;
    // The search's result: the share of CPU under matching frames (each sample once).
    const res = $("search-result");
    if (!searchRe) res.textContent = "";
    else if (!matched && !matchedBase) res.textContent = "No match";
    else {
      const hz = t.body.frequency_hz;
      res.textContent = "Matched: " + fmtPct(matched / Math.max(1, t.body.total_samples)) + " (" + fmtCpu(matched, hz) + ")" +
        (t.cmp ? ", A: " + fmtPct(matchedBase / Math.max(1, t.body.base.total_samples)) : "");
      res.dataset.share = String(matched / Math.max(1, t.body.total_samples));
    }
    // The legend: the binaries (or processes) that take the most self time.
    const lg = $("legend");
    lg.replaceChildren();
    if (t.cmp) {
      lg.innerHTML = '<span><i style="background:hsl(2,80%,62%)"></i>grew from A to B (by share)</span><span><i style="background:hsl(214,80%,62%)"></i>shrank</span>' +
        '<span><i style="background:hsl(0,0%,80%)"></i>about the same</span><span class="muted">Width: the mean of both sides\' shares.</span>';
      return;
    }
    const keys = [...legend.entries()].filter(([k]) => k !== "[process]").sort((a, b) => b[1] - a[1]).slice(0, 10);
    for (const [k] of keys) {
      const s = document.createElement("span");
      const i = document.createElement("i");
      i.style.background = colourOf(k);
      s.append(i, document.createTextNode(k));
      s.dataset.key = k;
      lg.append(s);
    }
  }
  function tooltipHtml(i) {
    const t = tree, hz = t.body.frequency_hz;
    const name = t.body.names[t.name[i]], bin = t.body.binaries[t.bin[i]];
    const nt = Math.max(1, t.body.total_samples);
    let rows = "";
    const row = (k, v, title) => { rows += "<tr><td>" + k + "</td><td" + (title ? ' title="' + esc(title) + '"' : "") + ">" + v + "</td></tr>"; };
    if (t.depth[i] === 1) row("Process", esc(name));
    else if (t.depth[i] > 1) { row("Binary", esc(bin || "unknown")); row("Process", esc(t.body.names[t.name[t.proc[i]]])); }
    const lines = t.body.lines && t.body.lines[i];
    if (lines && t.total[i] > 0) row("Lines", lines.map(([l, c]) => esc(String(l)) + " (" + fmtPct(c / t.total[i]) + ")").join(", "));
    if (!t.cmp) {
      row("Total", fmtCpu(t.total[i], hz) + " · " + fmtPct(t.total[i] / nt), samplesTitle(t.total[i]));
      row("Self", fmtCpu(t.self[i], hz) + " · " + fmtPct(t.self[i] / nt), samplesTitle(t.self[i]));
      row("Samples", t.total[i].toLocaleString() + " total, " + t.self[i].toLocaleString() + " self");
    } else {
      const bt = Math.max(1, t.body.base.total_samples);
      const a = t.btotal[i] / bt, b = t.total[i] / nt;
      row("A (baseline)", fmtCpu(t.btotal[i], hz) + " · " + fmtPct(a), samplesTitle(t.btotal[i]));
      row("B", fmtCpu(t.total[i], hz) + " · " + fmtPct(b), samplesTitle(t.total[i]));
      const d = b - a, dc = cpuSeconds(t.total[i] - t.btotal[i], hz);
      row("Change", '<span class="' + (d >= 0 ? "grew" : "shrank") + '">' + (d >= 0 ? "+" : "−") + (100 * Math.abs(d)).toFixed(2) + " points</span>" +
        (dc != null ? " (" + (dc >= 0 ? "+" : "−") + fmtNum(Math.abs(dc), 2) + " CPU s)" : ""));
    }
    return '<div class="fn">' + esc(name) + "</div><table>" + rows + "</table>" + (t.depth[i] > 0 ? '<div class="muted small">Click to zoom</div>' : "");
  }
  function wireFlame() {
    const box = $("flame"), tip = $("tooltip");
    box.addEventListener("pointermove", (e) => {
      const r = e.target.closest && e.target.closest("rect[data-i]");
      if (!r || !tree) { tip.hidden = true; return; }
      const i = Number(r.dataset.i);
      if (tip.dataset.i !== String(i)) { tip.innerHTML = tooltipHtml(i); tip.dataset.i = String(i); }
      tip.hidden = false;
      // Next to the pointer, kept inside the window.
      const w = tip.offsetWidth, h = tip.offsetHeight;
      let x = e.clientX + 14, y = e.clientY + 16;
      if (x + w > window.innerWidth - 4) x = Math.max(4, e.clientX - w - 14);
      if (y + h > window.innerHeight - 4) y = Math.max(4, e.clientY - h - 12);
      tip.style.left = x + "px"; tip.style.top = y + "px";
    });
    box.addEventListener("pointerleave", () => { tip.hidden = true; });
    box.addEventListener("click", (e) => {
      const r = e.target.closest && e.target.closest("rect[data-i]");
      if (!r) return;
      zoom = Number(r.dataset.i) === zoom ? (tree.parent[zoom] >= 0 ? tree.parent[zoom] : 0) : Number(r.dataset.i);
      tip.hidden = true;
      drawFlame();
    });
  }
  function setSearch(term) {
    searchRe = null;
    if (term) {
      try { searchRe = new RegExp(term); } catch (e) { $("search-result").textContent = "Not a regular expression: " + e.message; return; }
    }
    drawFlame();
    for (const tr of $("top-table").querySelectorAll("tbody tr")) tr.classList.toggle("picked", !!searchRe && searchRe.test(tr.dataset.name));
  }
  const escapeRe = (s) => s.replace(/[.*+?^${}()|[\]\\]/g, "\\$&");

  // ---- tables -----------------------------------------------------------------------------
  let topRows = null;
  function renderTop() {
    const tbody = $("top-table").querySelector("tbody");
    tbody.replaceChildren();
    if (!topRows) return;
    const hz = topRows.frequency_hz, key = topRows.group || null;
    $("grp-head").textContent = key === "binary" ? "Binary" : key === "process" ? "Process" : "";
    $("grp-head").hidden = !key;
    for (const b of document.querySelectorAll("th .sort")) b.setAttribute("aria-pressed", String(b.dataset.sort === state.sort));
    const term = $("top-search").value.trim().toLowerCase();
    for (const f of topRows.functions) {
      const group = key ? f[key] || "" : "";
      if (term && !f.name.toLowerCase().includes(term) && !group.toLowerCase().includes(term)) continue;
      const tr = document.createElement("tr");
      tr.dataset.name = f.name;
      tr.dataset.group = group;
      tr.dataset.self = String(f.self);
      const td = (text, cls, title) => { const c = document.createElement("td"); c.textContent = text; if (cls) c.className = cls; if (title) c.title = title; return c; };
      const name = td(f.name, "name", f.name);
      tr.append(name);
      if (key) tr.append(td(group || "unknown", "grp", group));
      const both = (n, sh) => fmtSecs(n, hz) + " · " + fmtPct(sh);
      tr.append(td(both(f.self, f.self_share), "num", samplesTitle(f.self) + " self"), td(both(f.total, f.total_share), "num", samplesTitle(f.total) + " total"));
      const act = document.createElement("td");
      const fb = document.createElement("button");
      fb.type = "button"; fb.className = "act"; fb.textContent = "Focus";
      fb.title = "Draw only the stacks through " + f.name + ", rooted at it";
      fb.addEventListener("click", (e) => { e.stopPropagation(); state.focus = f.name; writeState(true); load(); });
      act.append(fb);
      tr.append(act);
      tr.title = "Click to highlight " + f.name + " in the flame graph";
      tr.addEventListener("click", () => { $("search-input").value = "^" + escapeRe(f.name) + "$"; setSearch($("search-input").value); });
      tbody.append(tr);
    }
  }
  function renderChanges(body) {
    const hz = body.frequency_hz;
    const fill = (id, rows, title) => {
      const tb = $(id);
      tb.replaceChildren();
      const head = document.createElement("tr");
      head.className = "section-head";
      const h = document.createElement("td"); h.colSpan = 5; h.textContent = title + (rows.length || !both ? "" : ": none"); head.append(h);
      tb.append(head);
      for (const r of rows) {
        const tr = document.createElement("tr");
        tr.dataset.name = r.name;
        tr.dataset.delta = String(r.self_delta);
        const td = (text, cls, t) => { const c = document.createElement("td"); c.textContent = text; if (cls) c.className = cls; if (t) c.title = t; return c; };
        const dc = cpuSeconds(r.new_self - r.base_self, hz);
        tr.append(td(r.name, "name", r.name), td(fmtPct(r.base_self_share), "", samplesTitle(r.base_self)), td(fmtPct(r.new_self_share), "", samplesTitle(r.new_self)),
          td((r.self_delta >= 0 ? "+" : "−") + (100 * Math.abs(r.self_delta)).toFixed(2) + " pt", r.self_delta >= 0 ? "grew" : "shrank"),
          td(dc == null ? "" : (dc >= 0 ? "+" : "−") + fmtNum(Math.abs(dc), 2) + " s", "", fmtCpu(r.base_self, hz) + " → " + fmtCpu(r.new_self, hz)));
        tr.addEventListener("click", () => { $("search-input").value = "^" + escapeRe(r.name) + "$"; setSearch($("search-input").value); });
        tb.append(tr);
      }
    };
    // Against an empty side every function "grew" or "shrank" by all of its share: no table.
    const both = body.total_samples > 0 && body.base.total_samples > 0;
    fill("grew-rows", both ? body.grew || [] : [], both ? "Grew (by share of CPU)" : "Nothing to compare: one side has no samples");
    fill("shrank-rows", both ? body.shrank || [] : [], "Shrank");
    $("shrank-rows").hidden = !both;
  }

  // ---- downloads ------------------------------------------------------------------------
  function stamp(ms) { const d = new Date(ms); return d.getFullYear() + "-" + pad(d.getMonth() + 1) + "-" + pad(d.getDate()) + "_" + pad(d.getHours()) + pad(d.getMinutes()); }
  function setDownloads(r) {
    const set = (id, href, name) => {
      const a = $(id);
      if (href) { a.href = href; a.download = name; a.removeAttribute("aria-disabled"); a.removeAttribute("tabindex"); }
      else { a.removeAttribute("href"); a.setAttribute("aria-disabled", "true"); a.setAttribute("tabindex", "-1"); }
    };
    const stem = "ember-" + stamp(r.from) + "-" + fmtDur(r.to - r.from).replace(" ", "");
    const base = { from: apiTime(r.from), to: apiTime(r.to), filter: state.filter, type: state.type };
    if (state.mode === "compare") {
      const d = Object.assign({}, base, { base_from: apiTime(r.bfrom), base_to: apiTime(r.bto), base_filter: state.bfilter });
      const dstem = "ember-diff-" + stamp(r.bfrom) + "-vs-" + stamp(r.from);
      set("dl-folded", apiUrl("/api/v1/diff", Object.assign({ format: "folded" }, d)), dstem + ".folded");
      set("dl-svg", apiUrl("/api/v1/diff", Object.assign({ format: "svg", orientation: "icicle" }, d)), dstem + ".svg");
      set("dl-pprof", null);
    } else {
      if (state.focus) base.focus = state.focus;
      const s = stem + (state.focus ? "-" + state.focus.replace(/[^A-Za-z0-9_.-]/g, "_") : "");
      set("dl-folded", apiUrl("/api/v1/profile", Object.assign({ format: "folded" }, base)), s + ".folded");
      set("dl-svg", apiUrl("/api/v1/profile", Object.assign({ format: "svg", orientation: "icicle" }, base)), s + ".svg");
      set("dl-pprof", apiUrl("/api/v1/profile", Object.assign({ format: "pprof" }, base)), s + ".pb.gz");
    }
  }
  function disableDownloads() {
    for (const id of ["dl-folded", "dl-svg", "dl-pprof"]) { $(id).removeAttribute("href"); $(id).setAttribute("aria-disabled", "true"); $(id).setAttribute("tabindex", "-1"); }
  }

  // ---- controls ---------------------------------------------------------------------------
  function syncControls(r) {
    for (const b of document.querySelectorAll(".modes button")) b.setAttribute("aria-pressed", String(b.dataset.mode === state.mode));
    const cmp = state.mode === "compare";
    const preset = state.to === "now" && PRESETS.includes(state.from);
    $("range").value = preset ? state.from : "custom";
    $("custom-range").hidden = preset || cmp;
    $("range").disabled = cmp;
    $("ptype").value = state.type;
    $("refresh").value = state.refresh;
    $("group").value = state.group;
    $("colour-by").value = state.colour;
    $("compare-bar").hidden = !cmp;
    $("procs-card").hidden = cmp;
    document.querySelector(".summary").classList.toggle("wide", cmp);
    $("top-card").hidden = cmp;
    $("changes-card").hidden = !cmp;
    $("colour-by").disabled = cmp;
    $("flame-title").textContent = (cmp ? "A → B, normalized by share" : "Flame graph") + (offCpu() ? " of time off CPU" : "");
    // The page says which profile it shows, and in what unit.
    $("chart-title").textContent = offCpu() ? "Time off CPU" : "CPU in use";
    $("chart").setAttribute("aria-label", offCpu() ? "Threads waiting off CPU over time" : "CPU in cores over time");
    for (const b of document.querySelectorAll("#top-card button.sort")) {
      const self = b.dataset.sort === "self";
      b.textContent = (self ? "Self" : "Total") + (offCpu() ? " off CPU" : " CPU");
    }
    document.body.dataset.type = state.type;
    document.title = offCpu() ? "Ember · off-CPU time" : "Ember";
    if (r) {
      $("from").value = inputValue(r.from); $("to").value = inputValue(r.to);
      $("b-from").value = inputValue(r.from); $("b-to").value = inputValue(r.to);
      if (r.bfrom != null) { $("a-from").value = inputValue(r.bfrom); $("a-to").value = inputValue(r.bto); }
      $("b-filter").value = state.filter; $("a-filter").value = state.bfilter;
      const text = cmp ? "A " + fmtRange(r.bfrom, r.bto) + " vs B " + fmtRange(r.from, r.to) : fmtRange(r.from, r.to);
      $("range-text").textContent = text;
      $("range-text").title = utc(r.from) + " to " + utc(r.to);
    }
    renderActiveFilters();
  }

  // ---- the refresh cycle ----------------------------------------------------------------
  let generation = 0;
  async function load() {
    const gen = ++generation;
    const stale = () => gen !== generation;
    document.body.dataset.state = "loading";
    stopCountdown();
    syncControls(null);
    try {
      await loadInner(stale);
      if (stale()) return;
    } catch (e) {
      if (stale()) return;
      if (!(e instanceof ApiError)) console.error(e);
      disableDownloads();
      say(e.message + (/`(from|to|base_from|base_to)`/.test(e.message) ? ". Pick a time range above, or fix the custom one." : ""), "error");
    }
    document.body.dataset.loads = String(Number(document.body.dataset.loads) + 1);
    document.body.dataset.state = "ready";
    startCountdown();
  }

  // The absolute ranges of this load (ms): the selection, and A in the comparison view.
  async function resolveRanges() {
    const now = Date.now();
    let from = resolveTime(state.from, now), to = resolveTime(state.to, now);
    if (from == null || to == null) {
      // Let the API say what is wrong with it.
      const cpu = await api("/api/v1/cpu", { from: state.from, to: state.to });
      from = cpu.from_unix_ns / 1e6; to = cpu.to_unix_ns / 1e6;
    }
    if (from >= to) throw new ApiError("The range is empty: “From” must be before “to”. Pick a time range above, or fix the custom one.");
    const r = { from, to };
    if (state.mode === "compare") {
      let bto = state.bto ? resolveTime(state.bto, now) : from;
      let bfrom = state.bfrom ? resolveTime(state.bfrom, now) : bto - (to - from);
      if (bfrom == null || bto == null) throw new ApiError("The baseline (A) range is not a time: use the inputs of A.");
      if (bfrom >= bto) throw new ApiError("The baseline (A) range is empty: its “From” must be before its “to”.");
      r.bfrom = bfrom; r.bto = bto;
    }
    return r;
  }

  async function loadInner(stale) {
    const r = await resolveRanges();
    if (stale()) return;
    syncControls(r);
    setDownloads(r);
    const cmp = state.mode === "compare";
    const sel = { from: apiTime(r.from), to: apiTime(r.to), filter: state.filter };
    // The chart shows the selection(s) with some time around them.
    const lo = cmp ? Math.min(r.from, r.bfrom) : r.from, hi = cmp ? Math.max(r.to, r.bto) : r.to;
    const padMs = Math.max(60e3, (hi - lo) * (cmp ? 0.1 : 0.5));
    const chartFrom = lo - padMs, chartTo = Math.max(hi, Math.min(Date.now(), hi + padMs));
    const width = Math.max(200, Math.min(20000, Math.round($("flame").clientWidth || 900)));
    // The flame graph first: heavy queries queue for the agent's slots in the order they
    // arrive, and on a busy node the last in line may run out of its time budget.
    const flameP = cmp
      ? api("/api/v1/flame", Object.assign({}, sel, { base_from: apiTime(r.bfrom), base_to: apiTime(r.bto), base_filter: state.bfilter, width: width, limit: 15 }))
      : api("/api/v1/flame", Object.assign({}, sel, { width: width, focus: state.focus }));
    const topP = cmp ? null : api("/api/v1/top", Object.assign({}, sel, { group: state.group, sort: state.sort, limit: 300, }));
    const selP = api("/api/v1/cpu", sel);
    const chartP = api("/api/v1/cpu", { from: apiTime(chartFrom), to: apiTime(chartTo), filter: cmp ? "" : state.filter });
    const exploreP = api("/api/v1/explore", Object.assign({}, sel, { limit: 300 }));
    // Awaited below; marked handled so a failure while the first three load is not an
    // unhandled rejection (the await below still throws it).
    for (const p of [flameP, topP]) if (p) p.catch(() => {});
    const [chart, selCpu, ex] = await Promise.all([chartP, selP, exploreP]);
    if (stale()) return;
    explored = ex;
    noteHints();
    renderActiveFilters();
    renderExplorer();
    const hz = selCpu.frequency_hz || ex.frequency_hz;
    const seconds = (r.to - r.from) / 1000;
    const perSecond = offCpu() ? selCpu.total_samples / 1e6 / seconds : hz ? selCpu.total_samples / hz / seconds : null;
    $("cpu-total").textContent = cmp ? "" : "· " + fmtCpu(selCpu.total_samples, hz) + " in " + fmtDur(r.to - r.from) + (perSecond != null ? ", " + fmtCores(perSecond) + " on average" : "");
    $("cpu-total").title = samplesTitle(selCpu.total_samples);
    $("cpu-total").dataset.samples = String(selCpu.total_samples);
    const marks = cmp
      ? [{ from: r.bfrom, to: r.bto, cls: "sel-a", side: "a", label: "A" }, { from: r.from, to: r.to, cls: "sel-b", side: "b", label: "B" }]
      : [{ from: r.from, to: r.to, cls: "sel", side: "sel" }];
    drawChart(chart, chartFrom, chartTo, marks, (a, b) => {
      if (state.mode === "compare" && document.querySelector('input[name="brush-side"]:checked').value === "a") { state.bfrom = isoLocal(a); state.bto = isoLocal(b); }
      else { state.from = isoLocal(a); state.to = isoLocal(b); }
      writeState(true);
      load();
    });
    const measure = offCpu() ? "Threads waiting off CPU (blocked or runnable), on average" : "Cores in use";
    $("chart-hint").textContent = cmp
      ? measure + " on the node" + (offCpu() ? "" : ", the idle task left out") + "; A and B are marked. Drag across the chart to set " + "the side chosen below."
      : measure + (state.filter ? " by the filtered processes" : "") + (offCpu() ? "" : ", the idle task left out") + ". Drag across the chart to select a range.";
    renderTopProcs(ex.total_samples, hz, seconds);
    say("");
    const [flame, top] = await Promise.all([flameP, topP]);
    if (stale()) return;
    zoom = 0;
    if (cmp) {
      const empty = [];
      if (!flame.base.total_samples) empty.push("A (baseline) has no samples in " + fmtRange(r.bfrom, r.bto) + (state.bfilter ? " with the filter " + state.bfilter : ""));
      if (!flame.total_samples) empty.push("B has no samples in " + fmtRange(r.from, r.to) + (state.filter ? " with the filter " + state.filter : ""));
      if (empty.length) {
        say(empty.join("; ") + ". Nothing to compare against: pick another range or filter for " + (empty.length === 2 ? "both sides" : empty[0][0]) + ".", "empty");
        $("message").dataset.kind = "empty-side";
      } else delete $("message").dataset.kind;
      $("flame-sub").textContent = "A: " + fmtCpu(flame.base.total_samples, hz) + " · B: " + fmtCpu(flame.total_samples, hz) +
        ". Red grew, blue shrank, by share of each side's CPU time.";
      renderChanges(flame);
    } else {
      delete $("message").dataset.kind;
      topRows = top;
      renderTop();
      $("flame-sub").textContent = (state.focus ? "Stacks through " + state.focus + ": " : "") + fmtCpu(flame.total_samples, hz) + " in " + fmtDur(r.to - r.from) +
        (state.filter ? ", " + state.filter : ", every process") + ". The root at the top; hover for details, click to zoom.";
      $("flame-sub").title = samplesTitle(flame.total_samples);
      if (!selCpu.total_samples && !state.focus) await explainEmpty(stale);
      else if (!flame.total_samples && state.focus) say("No samples of " + state.focus + " in this range and filter. Clear the focus or widen the range.");
    }
    if (stale()) return;
    tree = (flame.total_samples || (flame.base && flame.base.total_samples)) ? buildTree(flame) : null;
    drawFlame();
    if (!tree) $("flame").innerHTML = '<div class="empty">Nothing to draw in this range.</div>';
    const term = $("search-input").value.trim();
    if (term) setSearch(term);
  }

  async function explainEmpty(stale) {
    let msg;
    if (state.filter) {
      msg = "No CPU time matches the filter " + state.filter + " in this range. Remove a filter (the ✕ buttons) or pick a longer time range.";
    } else {
      const all = await api("/api/v1/timeline", { from: "now-30d" });
      if (stale()) return;
      msg = all.points.some((p) => p.samples > 0)
        ? "No CPU time in this range. Pick a longer range (Last 24 h) or drag on a busier part of the chart."
        : "The store is empty: the agent has not written a window yet. It writes one every --window (10 s by default); turn on auto-refresh and wait, or check that `ember agent` is sampling (see /metrics).";
    }
    say(msg);
  }

  // ---- auto-refresh ---------------------------------------------------------------------
  let timer = null, due = 0;
  function stopCountdown() { if (timer) clearInterval(timer); timer = null; $("countdown").textContent = ""; }
  function startCountdown() {
    stopCountdown();
    const every = Number(state.refresh);
    if (!every) return;
    due = Date.now() + every * 1000;
    const tick = () => {
      const left = Math.ceil((due - Date.now()) / 1000);
      if (left <= 0) { stopCountdown(); load(); return; }
      $("countdown").textContent = "update in " + left + " s";
    };
    tick();
    timer = setInterval(tick, 1000);
  }

  // ---- wiring ---------------------------------------------------------------------------
  async function loadTypes() {
    try {
      const t = await api("/api/v1/types", {});
      $("ptype").replaceChildren(...t.types.map((x) => new Option(x.title, x.name)));
      $("ptype").value = state.type;
    } catch (_) { /* the selector keeps CPU time */ }
  }
  function init() {
    for (const b of document.querySelectorAll(".modes button")) {
      b.addEventListener("click", () => {
        if (state.mode === b.dataset.mode) return;
        state.mode = b.dataset.mode;
        if (state.mode === "compare") state.focus = "";
        writeState(true); load();
      });
    }
    $("range").addEventListener("change", () => {
      const v = $("range").value;
      if (v === "custom") { $("custom-range").hidden = false; $("from").focus(); return; }
      state.from = v; state.to = "now"; writeState(true); load();
    });
    const applyRange = () => {
      state.from = fromInput($("from").value) || DEFAULTS.from;
      state.to = fromInput($("to").value) || "now";
      writeState(true); load();
    };
    $("apply-range").addEventListener("click", applyRange);
    for (const id of ["from", "to"]) $(id).addEventListener("keydown", (e) => { if (e.key === "Enter") applyRange(); });
    const applyCompare = () => {
      state.bfrom = fromInput($("a-from").value); state.bto = fromInput($("a-to").value); state.bfilter = $("a-filter").value.trim();
      state.from = fromInput($("b-from").value) || state.from; state.to = fromInput($("b-to").value) || state.to; state.filter = $("b-filter").value.trim();
      writeState(true); load();
    };
    $("compare-apply").addEventListener("click", applyCompare);
    for (const id of ["a-from", "a-to", "a-filter", "b-from", "b-to", "b-filter"]) $(id).addEventListener("keydown", (e) => { if (e.key === "Enter") applyCompare(); });
    $("ptype").addEventListener("change", () => { state.type = $("ptype").value; writeState(true); load(); });
    $("group").addEventListener("change", () => { state.group = $("group").value; writeState(false); load(); });
    for (const b of document.querySelectorAll("th .sort")) b.addEventListener("click", () => { state.sort = b.dataset.sort; writeState(false); load(); });
    $("colour-by").addEventListener("change", () => { state.colour = $("colour-by").value; writeState(false); drawFlame(); });
    $("refresh").addEventListener("change", () => { state.refresh = $("refresh").value; writeState(false); startCountdown(); });
    $("reload").addEventListener("click", () => load());
    $("search-input").addEventListener("input", () => setSearch($("search-input").value.trim()));
    $("top-search").addEventListener("input", renderTop);
    $("reset-zoom").addEventListener("click", () => { zoom = 0; drawFlame(); });
    $("explore-btn").addEventListener("click", () => {
      const ex = $("explorer");
      ex.hidden = !ex.hidden;
      $("explore-btn").setAttribute("aria-expanded", String(!ex.hidden));
      if (!ex.hidden) { renderExplorer(); $("ex-search").focus(); }
    });
    $("ex-close").addEventListener("click", () => { $("explorer").hidden = true; $("explore-btn").setAttribute("aria-expanded", "false"); });
    $("ex-label").addEventListener("change", renderExplorer);
    $("ex-search").addEventListener("input", renderExplorer);
    document.addEventListener("keydown", (e) => {
      if ((e.ctrlKey || e.metaKey) && e.key === "f" && !$("flame").hidden) { e.preventDefault(); $("search-input").focus(); $("search-input").select(); }
      if (e.key === "Escape") {
        if (!$("explorer").hidden) { $("explorer").hidden = true; $("explore-btn").setAttribute("aria-expanded", "false"); }
        else if (document.activeElement === $("search-input")) { $("search-input").value = ""; setSearch(""); }
      }
    });
    wireFlame();
    let resizeTimer = null;
    window.addEventListener("resize", () => { clearTimeout(resizeTimer); resizeTimer = setTimeout(drawFlame, 100); });
    if (window.matchMedia) window.matchMedia("(prefers-color-scheme: dark)").addEventListener("change", drawFlame);
    window.addEventListener("popstate", () => { state = readState(); load(); });
    loadTypes();
    load();
  }
  init();
})();
