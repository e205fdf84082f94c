// Ember's web UI: vanilla JS, no build step. State lives in the query string (shareable,
// restored on reload); every view is fetched from the agent's /api/v1 endpoints. Flame
// graphs are inferno SVGs inlined into the page; inferno's own script is run once so its
// zoom, search and tooltips work on whichever graph is shown.
"use strict";
(function () {
  const $ = (id) => document.getElementById(id);
  const PRESETS = ["now-5m", "now-15m", "now-1h", "now-24h"];
  const MODES = ["flame", "top", "sandwich", "diff"];
  const DEFAULTS = { from: "now-15m", to: "now", filter: "", mode: "flame", orientation: "flame", focus: "", sort: "self", refresh: "0" };
  // Labels offered as filters first, in this order, with friendlier names.
  const LABELS = [["comm", "Process"], ["pid", "PID"], ["thread", "Thread"], ["tid", "Thread ID"], ["container_id", "Container"], ["pod_uid", "Pod"], ["runtime", "Runtime"], ["qos", "QoS class"], ["cgroup", "cgroup"]];
  const SKIP_LABELS = ["exe"];

  // ---- state <-> URL ------------------------------------------------------------------
  // Encoded with encodeURIComponent, as inferno's script encodes the `s`, `x`, `y` params it
  // keeps in the same query string.
  function readQuery() {
    const out = {};
    for (const part of location.search.replace(/^\?/, "").split("&")) {
      const i = part.indexOf("=");
      if (i <= 0) continue;
      try { out[part.slice(0, i)] = decodeURIComponent(part.slice(i + 1)); } catch (_) { /* ignore */ }
    }
    return out;
  }
  function readState() {
    const q = readQuery();
    const s = Object.assign({}, DEFAULTS);
    for (const k of Object.keys(DEFAULTS)) if (q[k]) s[k] = q[k];
    if (!MODES.includes(s.mode)) s.mode = "flame";
    if (s.orientation !== "icicle") s.orientation = "flame";
    return s;
  }
  let state = readState();

  // Writes the state into the URL. `keepZoom` keeps inferno's zoom (x, y), which only
  // makes sense for the same graph.
  function writeState(push, keepZoom) {
    const q = readQuery();
    for (const k of Object.keys(DEFAULTS)) {
      if (state[k] && state[k] !== DEFAULTS[k]) q[k] = state[k]; else delete q[k];
    }
    if (!keepZoom) { delete q.x; delete q.y; }
    const qs = Object.keys(q).map((k) => k + "=" + encodeURIComponent(q[k])).join("&");
    const url = location.pathname + (qs ? "?" + qs : "");
    if (push) history.pushState(null, "", url); else history.replaceState(null, "", url);
  }

  // ---- fetching -------------------------------------------------------------------------
  let generation = 0;
  class ApiError extends Error {}
  async function api(path, params, as) {
    const qs = Object.keys(params).filter((k) => params[k] !== "" && params[k] != null)
      .map((k) => k + "=" + encodeURIComponent(params[k])).join("&");
    let res;
    try {
      res = await fetch(path + (qs ? "?" + qs : ""));
    } catch (e) {
      throw new ApiError("Cannot reach the agent at " + location.origin + " (" + e.message + "). Is `ember agent` still running?");
    }
    if (!res.ok) {
      let msg = res.status + " " + res.statusText;
      try { msg = (await res.json()).error || msg; } catch (_) { /* not JSON */ }
      throw new ApiError("The API refused the request: " + msg);
    }
    return as === "text" ? res.text() : res.json();
  }
  function apiUrl(path, params) {
    const qs = Object.keys(params).filter((k) => params[k] !== "" && params[k] != null)
      .map((k) => k + "=" + encodeURIComponent(params[k])).join("&");
    return path + (qs ? "?" + qs : "");
  }

  // ---- messages -------------------------------------------------------------------------
  function say(text, isError) {
    const m = $("message");
    m.hidden = !text;
    m.textContent = text || "";
    m.classList.toggle("error", !!isError);
  }

  // ---- time -----------------------------------------------------------------------------
  const nsToSec = (ns) => (Math.floor(ns / 1e6) / 1e3).toFixed(3);
  function fmtTime(ns) {
    const d = new Date(ns / 1e6);
    const t = d.toLocaleTimeString([], { hour12: false });
    return (Date.now() - d.getTime() > 20 * 3600e3 ? d.toLocaleDateString() + " " : "") + t;
  }
  function fmtDuration(ns) {
    const s = ns / 1e9;
    if (s < 120) return Math.round(s) + " s";
    if (s < 7200) return Math.round(s / 60) + " min";
    return (s / 3600).toFixed(s < 36000 ? 1 : 0) + " h";
  }

  // ---- filters --------------------------------------------------------------------------
  function parseFilter(f) {
    return f.split(",").map((p) => p.trim()).filter(Boolean).map((p) => {
      const i = p.indexOf("=");
      return [p.slice(0, i), p.slice(i + 1)];
    });
  }
  function setFilter(pairs) {
    state.filter = pairs.map(([k, v]) => k + "=" + v).join(",");
    writeState(true);
    load();
  }
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
      b.className = "chip";
      b.dataset.filter = k + "=" + v;
      b.textContent = k + " = " + v + "  ✕";
      b.setAttribute("aria-label", "Remove filter " + k + "=" + v);
      b.addEventListener("click", () => setFilter(pairs.filter((_, j) => j !== i)));
      li.append(b);
      ul.append(li);
    });
  }
  function renderFilterSelects(labels) {
    const box = $("filter-selects");
    box.replaceChildren();
    const names = Object.keys(labels);
    const order = LABELS.map(([n]) => n).filter((n) => names.includes(n))
      .concat(names.filter((n) => !LABELS.some(([l]) => l === n) && !SKIP_LABELS.includes(n)).sort());
    const active = parseFilter(state.filter);
    for (const name of order) {
      const friendly = (LABELS.find(([n]) => n === name) || [name, name])[1];
      const id = "f-" + name.replace(/[^a-z0-9_-]/gi, "_");
      const label = document.createElement("label");
      label.htmlFor = id;
      label.textContent = friendly + (friendly !== name ? " (" + name + ")" : "");
      const sel = document.createElement("select");
      sel.id = id;
      const first = new Option("add…", "");
      sel.append(first);
      const values = Object.entries(labels[name]).sort((a, b) => b[1] - a[1]).slice(0, 300);
      for (const [v, n] of values) {
        if (active.some(([k, x]) => k === name && x === v)) continue;
        sel.append(new Option(v + " (" + n.toLocaleString() + " samples)", v));
      }
      sel.addEventListener("change", () => {
        if (sel.value) setFilter(active.concat([[name, sel.value]]));
      });
      box.append(label, sel);
    }
  }

  // ---- timeline -------------------------------------------------------------------------
  const SVGNS = "http://www.w3.org/2000/svg";
  function el(name, attrs, text) {
    const e = document.createElementNS(SVGNS, name);
    for (const k of Object.keys(attrs || {})) e.setAttribute(k, attrs[k]);
    if (text != null) e.textContent = text;
    return e;
  }
  function drawTimeline(tl) {
    const box = $("timeline");
    const W = Math.max(300, box.clientWidth || 800), H = 72, top = 6, bottom = 16;
    const from = tl.from_unix_ns, to = tl.to_unix_ns, span = to - from;
    const svg = el("svg", { viewBox: "0 0 " + W + " " + H, preserveAspectRatio: "none", "aria-hidden": "true" });
    const max = Math.max(1, ...tl.points.map((p) => p.samples));
    for (const p of tl.points) {
      const x = Math.max(0, (p.start_unix_ns - from) / span * W);
      const x2 = Math.min(W, (p.end_unix_ns - from) / span * W);
      const h = p.samples / max * (H - top - bottom);
      const r = el("rect", { class: "bar", x: x, y: H - bottom - h, width: Math.max(1, x2 - x - 1), height: Math.max(p.samples ? 1 : 0, h) });
      r.append(el("title", {}, fmtTime(p.start_unix_ns) + ": " + p.samples + " samples"));
      svg.append(r);
    }
    svg.append(el("text", { class: "axis", x: 2, y: H - 3 }, fmtTime(from)));
    svg.append(el("text", { class: "axis", x: W - 2, y: H - 3, "text-anchor": "end" }, fmtTime(to)));
    svg.append(el("text", { class: "axis", x: 2, y: 12 }, "max " + max.toLocaleString() + " samples/window"));
    const brush = el("rect", { class: "brush", x: 0, y: 0, width: 0, height: H - bottom, visibility: "hidden" });
    svg.append(brush);
    let x0 = null;
    const xOf = (e) => { const b = svg.getBoundingClientRect(); return Math.min(W, Math.max(0, (e.clientX - b.left) / b.width * W)); };
    svg.addEventListener("pointerdown", (e) => { x0 = xOf(e); svg.setPointerCapture(e.pointerId); brush.setAttribute("visibility", "visible"); brush.setAttribute("x", x0); brush.setAttribute("width", 0); });
    svg.addEventListener("pointermove", (e) => { if (x0 == null) return; const x = xOf(e); brush.setAttribute("x", Math.min(x, x0)); brush.setAttribute("width", Math.abs(x - x0)); });
    svg.addEventListener("pointerup", (e) => {
      if (x0 == null) return;
      const x1 = xOf(e), a = Math.min(x0, x1), b = Math.max(x0, x1);
      x0 = null;
      brush.setAttribute("visibility", "hidden");
      if (b - a < 4) return;
      state.from = nsToSec(from + a / W * span);
      state.to = nsToSec(from + b / W * span);
      writeState(true);
      syncControls();
      load();
    });
    box.replaceChildren(svg);
  }

  // ---- inferno graphs -------------------------------------------------------------------
  let infernoLoaded = false;
  function runScript(code) {
    const s = document.createElement("script");
    s.textContent = code;
    document.head.append(s);
    s.remove();
  }
  // inferno's init() adds a window "resize" listener and a deferred width update bound to
  // the graph it starts on; both set the frames' width to the SVG's width minus padding.
  // On a replaced graph (detached) or a hidden one (a view not shown yet) that width is 0
  // and they would set negative widths. So the previous graph's listeners are removed, and
  // both run only while the graph is in the page and laid out: a deferred update waits for
  // the next frame in which the graph has a width.
  let infernoResizeListeners = [];
  function initInferno(node) {
    for (const f of infernoResizeListeners) window.removeEventListener("resize", f);
    infernoResizeListeners = [];
    const laidOut = () => node.isConnected && node.getBoundingClientRect().width > 0;
    const addListener = window.addEventListener;
    const setTimer = window.setTimeout;
    window.addEventListener = function (type, fn, options) {
      if (type !== "resize") return addListener.call(window, type, fn, options);
      const guarded = function (e) { if (laidOut()) fn(e); };
      infernoResizeListeners.push(guarded);
      return addListener.call(window, type, guarded, options);
    };
    window.setTimeout = function (fn, ms, ...rest) {
      const whenLaidOut = function () {
        if (laidOut()) fn(...rest);
        else if (node.isConnected) requestAnimationFrame(whenLaidOut);
      };
      return setTimer.call(window, whenLaidOut, ms);
    };
    try {
      window.init();
    } finally {
      window.addEventListener = addListener;
      window.setTimeout = setTimer;
    }
  }
  // Inlines an inferno SVG into #graph and starts inferno's script on it. Returns false
  // for the API's "no samples" SVG (no frames).
  function inlineGraph(text) {
    const doc = new DOMParser().parseFromString(text, "image/svg+xml");
    const svg = doc.documentElement;
    if (svg.nodeName !== "svg" || doc.querySelector("parsererror")) throw new ApiError("The flame graph SVG did not parse");
    const script = svg.querySelector("script");
    const code = script ? script.textContent : "";
    if (script) script.remove();
    svg.removeAttribute("onload");
    svg.id = "flame-svg";
    const node = document.importNode(svg, true);
    $("graph").replaceChildren(node);
    if (!node.querySelector("#frames") || !code) return false;
    // inferno's script looks up "the first <svg> of the document"; the timeline is one too.
    const patched = code.replace('document.getElementsByTagName("svg")[0]', 'document.getElementById("flame-svg")');
    if (!infernoLoaded) {
      runScript(patched); // settings + functions + window listeners, once
      infernoLoaded = true;
    } else {
      runScript(code.split('"use strict";')[0]); // only this graph's settings (inverted, ...)
    }
    initInferno(node);
    // Keyboard: frames are focusable, Enter zooms like a click.
    for (const g of node.querySelectorAll("#frames > g")) {
      g.setAttribute("tabindex", "0");
      g.addEventListener("keydown", (e) => { if (e.key === "Enter") g.dispatchEvent(new MouseEvent("click", { bubbles: true })); });
    }
    return true;
  }
  function matchedText() {
    const m = document.getElementById("matched");
    return m && !m.classList.contains("hide") ? m.textContent : "";
  }
  function doSearch(term) {
    if (!window.search || !document.getElementById("frames")) return;
    if (window.searching) window.search_prompt(); // inferno's toggle: resets the last search
    $("search-result").textContent = "";
    if (!term) return;
    try { new RegExp(term); } catch (e) { $("search-result").textContent = "Not a regular expression: " + e.message; return; }
    window.search(term);
    $("search-result").textContent = matchedText() || "No match for " + term;
  }

  // ---- views ----------------------------------------------------------------------------
  function renderTop(top) {
    const tbody = $("top-table").querySelector("tbody");
    tbody.replaceChildren();
    for (const f of top.functions) {
      const tr = document.createElement("tr");
      tr.dataset.name = f.name;
      const name = document.createElement("td");
      const b = document.createElement("button");
      b.type = "button";
      b.textContent = f.name;
      b.title = "Focus the flame graph on " + f.name;
      b.addEventListener("click", () => { state.focus = f.name; state.mode = "flame"; writeState(true); load(); });
      name.append(b);
      const pct = (x) => (100 * x).toFixed(1) + "%";
      const cell = (t) => { const td = document.createElement("td"); td.textContent = t; return td; };
      const bar = cell(pct(f.self_share));
      const s = document.createElement("span");
      s.className = "share";
      s.style.width = Math.round(60 * f.self_share) + "px";
      bar.prepend(s);
      const act = document.createElement("td");
      const sw = document.createElement("button");
      sw.type = "button";
      sw.textContent = "Sandwich";
      sw.setAttribute("aria-label", "Sandwich view of " + f.name);
      sw.addEventListener("click", () => { state.focus = f.name; state.mode = "sandwich"; writeState(true); load(); });
      act.append(sw);
      tr.append(name, cell(f.self.toLocaleString()), bar, cell(f.total.toLocaleString()), cell(pct(f.total_share)), act);
      tbody.append(tr);
    }
  }

  function graphWidth() { return Math.max(200, Math.min(20000, Math.round($("graph").clientWidth || 1200))); }

  // The parameters that define "what is on screen", with the range made absolute.
  function screenParams(range) {
    const p = { from: range.from, to: range.to, filter: state.filter };
    if (state.mode === "diff") return p;
    if (state.focus) p.focus = state.focus;
    return p;
  }

  function setDownloads(range) {
    const base = screenParams(range);
    const stem = "ember-" + range.from + "-" + range.to + (state.focus && state.mode !== "diff" ? "-" + state.focus.replace(/[^A-Za-z0-9_.-]/g, "_") : "");
    const set = (id, href, name) => {
      const a = $(id);
      if (href) { a.href = href; a.download = name; a.removeAttribute("aria-disabled"); a.removeAttribute("tabindex"); }
      else { a.removeAttribute("href"); a.setAttribute("aria-disabled", "true"); a.setAttribute("tabindex", "-1"); }
    };
    if (state.mode === "diff") {
      set("dl-folded", apiUrl("/api/v1/diff", Object.assign({ format: "folded" }, base)), stem + "-diff.folded");
      set("dl-svg", apiUrl("/api/v1/diff", Object.assign({ format: "svg", orientation: state.orientation, width: graphWidth() }, base)), stem + "-diff.svg");
      set("dl-pprof", null);
    } else {
      set("dl-folded", apiUrl("/api/v1/profile", Object.assign({ format: "folded" }, base)), stem + ".folded");
      set("dl-svg", apiUrl("/api/v1/profile", Object.assign({ format: "svg", orientation: state.orientation, width: graphWidth() }, base)), stem + ".svg");
      set("dl-pprof", apiUrl("/api/v1/profile", Object.assign({ format: "pprof" }, base)), stem + ".pb.gz");
    }
  }

  function syncControls() {
    for (const b of document.querySelectorAll(".modes button")) b.setAttribute("aria-pressed", String(b.dataset.mode === state.mode));
    const preset = state.to === "now" && PRESETS.includes(state.from);
    $("range").value = preset ? state.from : "custom";
    $("custom-range").hidden = preset;
    $("from").value = state.from;
    $("to").value = state.to;
    $("orientation").value = state.orientation;
    $("refresh").value = state.refresh;
    $("top-sort").value = state.sort;
    $("focus-bar").hidden = !state.focus || state.mode === "diff";
    $("focus-name").textContent = state.focus;
    for (const c of document.querySelectorAll(".focus-echo")) c.textContent = state.focus;
    $("view-top").hidden = state.mode !== "top";
    const showCallers = state.mode === "sandwich" && !!state.focus;
    if (!showCallers && $("callers-frame").hasAttribute("src")) {
      // Hiding the frame would resize its graph to zero width, and inferno's resize handler
      // inside it would then set negative widths: drop the document instead.
      const fresh = document.createElement("iframe");
      fresh.id = "callers-frame";
      fresh.title = "Callers flame graph";
      $("callers-frame").replaceWith(fresh);
    }
    $("view-callers").hidden = !showCallers;
    $("view-graph").hidden = state.mode === "top";
    $("graph-controls").hidden = state.mode === "top";
    $("diff-text").hidden = state.mode !== "diff";
    const q = readQuery();
    if (q.s && !$("search-input").value) $("search-input").value = q.s;
    renderActiveFilters();
  }

  // ---- the refresh cycle ----------------------------------------------------------------
  async function load() {
    const gen = ++generation;
    const stale = () => gen !== generation;
    document.body.dataset.state = "loading";
    stopCountdown();
    syncControls();
    try {
      await loadInner(stale);
      if (stale()) return;
    } catch (e) {
      if (stale()) return;
      if (!(e instanceof ApiError)) console.error(e);
      for (const id of ["dl-folded", "dl-svg", "dl-pprof"]) {
        $(id).removeAttribute("href");
        $(id).setAttribute("aria-disabled", "true");
        $(id).setAttribute("tabindex", "-1");
      }
      say(e.message + (/`(from|to)`/.test(e.message) ? ". Pick a time range above, or fix the custom one." : ""), true);
    }
    document.body.dataset.loads = String(Number(document.body.dataset.loads) + 1);
    document.body.dataset.state = "ready";
    startCountdown();
  }

  async function loadInner(stale) {
    const tl = await api("/api/v1/timeline", { from: state.from, to: state.to, filter: state.filter });
    if (stale()) return;
    const range = { from: nsToSec(tl.from_unix_ns), to: nsToSec(tl.to_unix_ns) };
    $("range-text").textContent = fmtTime(tl.from_unix_ns) + " – " + fmtTime(tl.to_unix_ns) + " (" + fmtDuration(tl.to_unix_ns - tl.from_unix_ns) + ")";
    drawTimeline(tl);
    setDownloads(range);
    const labels = await api("/api/v1/labels", range);
    if (stale()) return;
    renderFilterSelects(labels.labels);
    const samples = tl.points.reduce((n, p) => n + p.samples, 0);
    say("");
    if (samples === 0) {
      $("graph").replaceChildren();
      $("top-table").querySelector("tbody").replaceChildren();
      $("callers-frame").removeAttribute("src");
      let msg;
      if (Object.keys(labels.labels).length > 0 && state.filter) {
        msg = "No samples match the filter " + state.filter + " in this range. Remove a filter (the ✕ buttons) or pick a longer time range.";
      } else {
        const all = await api("/api/v1/timeline", { from: "now-30d" });
        if (stale()) return;
        msg = all.points.some((p) => p.samples > 0)
          ? "No samples in this time range. Pick a longer range (Last 24 hours) or drag on a busier part of the timeline."
          : "The store is empty: the agent has not written a window yet. It writes one every --window (10 s by default); turn on auto-refresh and wait, or check that `ember agent` is sampling (see /metrics).";
      }
      say(msg, false);
      return;
    }
    if (state.mode === "top") {
      const top = await api("/api/v1/top", Object.assign({ limit: 100, sort: state.sort }, screenParams(range)));
      if (stale()) return;
      renderTop(top);
      return;
    }
    if (state.mode === "sandwich" && !state.focus) {
      $("graph").replaceChildren();
      say("Pick a function for the sandwich view: open Top functions and press Sandwich on a row.", false);
      return;
    }
    let text;
    const width = graphWidth();
    if (state.mode === "diff") {
      const secs = tl.to_unix_ns - tl.from_unix_ns;
      $("diff-text").textContent = "Comparing " + fmtTime(tl.from_unix_ns) + " – " + fmtTime(tl.to_unix_ns) + " against the " + fmtDuration(secs) +
        " before it, normalized by share of samples: red frames grew, blue frames shrank. Widths are the newer range.";
      text = await api("/api/v1/diff", { from: range.from, to: range.to, filter: state.filter, format: "svg", orientation: state.orientation, width: width }, "text");
    } else if (state.mode === "sandwich") {
      const callers = apiUrl("/api/v1/profile", { from: range.from, to: range.to, filter: state.filter, callers: state.focus, format: "svg", orientation: "flame", width: width });
      const frame = $("callers-frame");
      if (frame.getAttribute("src") !== callers) {
        frame.onload = () => {
          try { frame.style.height = Math.min(600, frame.contentDocument.documentElement.getBoundingClientRect().height + 8) + "px"; } catch (_) { /* ignore */ }
        };
        frame.src = callers;
      }
      text = await api("/api/v1/profile", { from: range.from, to: range.to, filter: state.filter, focus: state.focus, format: "svg", orientation: "icicle", width: width }, "text");
    } else {
      text = await api("/api/v1/profile", Object.assign({ format: "svg", orientation: state.orientation, width: width }, screenParams(range)), "text");
    }
    if (stale()) return;
    if (!inlineGraph(text)) {
      say(state.focus ? "No samples of " + state.focus + " in this range and filter. Clear the focus or widen the range." : "No samples to draw in this range.", false);
      return;
    }
    const term = $("search-input").value.trim();
    if (term) setTimeout(() => doSearch(term), 0);
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
  function init() {
    for (const b of document.querySelectorAll(".modes button")) {
      b.addEventListener("click", () => { state.mode = b.dataset.mode; writeState(true); load(); });
    }
    $("range").addEventListener("change", () => {
      const v = $("range").value;
      if (v === "custom") { $("custom-range").hidden = false; $("from").focus(); return; }
      state.from = v; state.to = "now"; writeState(true); load();
    });
    const applyRange = () => { state.from = $("from").value.trim() || DEFAULTS.from; state.to = $("to").value.trim() || "now"; writeState(true); load(); };
    $("apply-range").addEventListener("click", applyRange);
    for (const id of ["from", "to"]) $(id).addEventListener("keydown", (e) => { if (e.key === "Enter") applyRange(); });
    $("orientation").addEventListener("change", () => { state.orientation = $("orientation").value; writeState(false); load(); });
    $("top-sort").addEventListener("change", () => { state.sort = $("top-sort").value; writeState(false); load(); });
    $("refresh").addEventListener("change", () => { state.refresh = $("refresh").value; writeState(false, true); startCountdown(); });
    $("reload").addEventListener("click", () => { writeState(false); load(); });
    $("search-btn").addEventListener("click", () => doSearch($("search-input").value.trim()));
    $("search-input").addEventListener("keydown", (e) => { if (e.key === "Enter") doSearch($("search-input").value.trim()); });
    $("search-clear").addEventListener("click", () => { $("search-input").value = ""; doSearch(""); });
    $("reset-zoom").addEventListener("click", () => { if (window.unzoom && document.getElementById("frames")) window.unzoom(); writeState(false); });
    $("focus-clear").addEventListener("click", () => { state.focus = ""; if (state.mode === "sandwich") state.mode = "flame"; writeState(true); load(); });
    $("focus-sandwich").addEventListener("click", () => { state.mode = "sandwich"; writeState(true); load(); });
    window.addEventListener("popstate", () => { state = readState(); load(); });
    load();
  }
  init();
})();
