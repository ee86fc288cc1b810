// The nats-heartbeat status page: polls the status JSON of the replica that served it.
// Every string from a heartbeat goes into the page with textContent, never as HTML.
"use strict";

(() => {
  const POLL_MS = 2000;
  const HISTORY_EVERY_MS = 10000;
  const LOAD_SHARE = 10; // wait at least 10x as long as an answer took: a slow monitor is spared
  const TIMEOUT_MS = 10000;
  const SHOWN_CHARS = 200; // longer text is cut in the cell; the tooltip has more
  const TITLE_CHARS = 2000;
  const SERVER_STATES = new Set(["ok", "late", "alert"]);
  const QUIET = { paused: "PAUSED", silenced: "SILENCED", maint: "MAINT", suppressed: "SUPPRESSED" };
  const CLASS = {
    OK: "st-ok", LATE: "st-late", ALERT: "st-alert", SILENCED: "st-silenced",
    PAUSED: "st-paused", MAINT: "st-maint", SUPPRESSED: "st-suppressed", QUIET: "st-silenced",
  };

  const base = new URL(".", window.location.href); // "/" of this listener, prefix kept
  const $ = (id) => document.getElementById(id);
  const view = { state: "", subject: "", limit: 100, offset: 0 };
  let report = null; // the last answer
  let fetchedAt = 0; // performance.now() when it arrived
  let selected = null; // subject whose history is open
  let history = null; // {subject, events} | {subject, missing: true} | {subject, error}
  let timer = null;
  let inFlight = null;
  let again = false;
  let lastTookMs = 0;
  let historyAt = 0; // performance.now() of the last history fetch
  let serverQuietFilter = true; // until a monitor says it has no such state filter

  // ----- small helpers -----------------------------------------------------------------

  function cut(value, n) {
    const s = value == null ? "" : String(value);
    return s.length > n ? s.slice(0, n - 1) + "…" : s;
  }

  function cell(tr, text, cls) {
    const td = document.createElement("td");
    td.textContent = cut(text, SHOWN_CHARS);
    if (text != null && String(text).length > 24) td.title = cut(text, TITLE_CHARS); // CSS may cut it too
    if (cls) td.className = cls;
    tr.appendChild(td);
    return td;
  }

  function parseTime(s) {
    const t = s ? Date.parse(s) : NaN;
    return Number.isFinite(t) ? t : null;
  }

  // A time of day when it is within a day of now, else date and time (browser's locale).
  function when(ms) {
    const d = new Date(ms);
    const opts = { hour: "2-digit", minute: "2-digit" };
    return Math.abs(ms - Date.now()) < 86400000 ? d.toLocaleTimeString([], opts) : d.toLocaleString([], { ...opts, year: "numeric", month: "short", day: "numeric" });
  }

  function ago(seconds) {
    if (seconds < 0) seconds = 0;
    if (seconds < 60) return `${Math.floor(seconds)} s ago`;
    if (seconds < 3600) return `${Math.floor(seconds / 60)} min ago`;
    if (seconds < 86400) return `${Math.floor(seconds / 3600)} h ago`;
    return `${Math.floor(seconds / 86400)} d ago`;
  }

  // Seconds between a server time and "now", measured on the server's clock
  // (observed_at plus the time since the answer came), so browser clock skew does not count.
  function secondsSince(isoTime) {
    const t = parseTime(isoTime);
    const observed = report ? parseTime(report.observed_at) : null;
    if (t === null || observed === null) return null;
    return (observed - t) / 1000 + (performance.now() - fetchedAt) / 1000;
  }

  // A Go duration ("1m30.5s", "150ms") in seconds; null if it is not one.
  const UNIT_S = { h: 3600, m: 60, s: 1, ms: 1e-3, "µs": 1e-6, us: 1e-6, ns: 1e-9 };
  function goSeconds(text) {
    if (typeof text !== "string" || !/^(\d+(\.\d+)?(h|m|s|ms|µs|us|ns))+$/.test(text)) return null;
    let total = 0;
    for (const m of text.matchAll(/(\d+(?:\.\d+)?)(h|ms|m|s|µs|us|ns)/g)) total += parseFloat(m[1]) * UNIT_S[m[2]];
    return total;
  }

  function span(seconds) {
    if (seconds < 60) return `${Math.floor(seconds)} s`;
    if (seconds < 3600) return `${Math.floor(seconds / 60)} min ${Math.floor(seconds % 60)} s`;
    if (seconds < 86400) return `${Math.floor(seconds / 3600)} h ${Math.floor((seconds % 3600) / 60)} min`;
    return `${Math.floor(seconds / 86400)} d ${Math.floor((seconds % 86400) / 3600)} h`;
  }

  function stateOf(s) {
    if (s.quiet) return QUIET[s.quiet] || "QUIET";
    if (s.alert_active || s.job_alert) return "ALERT";
    if (s.missing) return "LATE";
    return "OK";
  }

  function details(s) {
    const parts = [];
    const job = Boolean(s.last_run || s.schedule || s.job_alert);
    if (s.quiet) {
      const ref = s.quiet_ref || "?";
      let q = {
        silenced: `silenced (${ref})`, paused: `paused (${ref})`, maint: `maintenance window ${ref}`,
        suppressed: `suppressed: ${ref} is missing`,
      }[s.quiet] || "quiet";
      const until = parseTime(s.quiet_until);
      q += until === null ? "" : ` until ${when(until)}`;
      if (s.alert_active) q += ", alert active";
      parts.push(q);
    }
    if (s.job_alert === "running_long") parts.push("running long");
    else if (s.job_alert && s.last_run !== "fail") parts.push("failed");
    if (s.missing) {
      const missed = goSeconds(s.miss_for);
      const n = s.miss_count;
      const beats = n != null ? ` (${n} ${n === 1 ? "beat" : "beats"})` : "";
      parts.push(`missed for ${missed === null ? "?" : span(missed)}${beats}`);
    } else if (!job) {
      parts.push(`interval ${s.interval}, window ${s.allowed_window}`);
    }
    if (s.last_run) {
      let run = s.last_run === "running" ? "running" : `last run ${s.last_run === "success" ? "ok" : "failed"}`;
      if (s.exit_code != null && s.last_run !== "success") run += `: exit ${s.exit_code}`;
      if (s.run_duration) run += ` after ${s.run_duration}`;
      if (s.output && s.last_run === "fail") run += `: ${s.output}`;
      parts.push(run);
    }
    if (s.next_run_due) {
      const due = parseTime(s.next_run_due);
      if (due !== null) parts.push(`next run due ${when(due)}`);
    }
    if (s.unrouted) parts.push("unrouted: no channel hears of it");
    return parts.join("; ");
  }

  function showError(text) {
    const e = $("error");
    e.textContent = text || "";
    e.hidden = !text;
  }

  // ----- the address bar keeps the filters (bookmarks, reloads) --------------------------

  function readHash() {
    const q = new URLSearchParams(window.location.hash.slice(1));
    view.state = q.get("state") || "";
    view.subject = q.get("subject") || "";
    const limit = parseInt(q.get("limit") || "100", 10);
    view.limit = [50, 100, 250, 500].includes(limit) ? limit : 100;
    const offset = parseInt(q.get("offset") || "0", 10);
    view.offset = Number.isFinite(offset) && offset > 0 ? offset : 0;
    $("state").value = view.state;
    if ($("state").value !== view.state) view.state = $("state").value = "";
    $("subject").value = view.subject;
    $("limit").value = String(view.limit);
  }

  function writeHash() {
    const q = new URLSearchParams();
    if (view.state) q.set("state", view.state);
    if (view.subject) q.set("subject", view.subject);
    if (view.limit !== 100) q.set("limit", String(view.limit));
    if (view.offset) q.set("offset", String(view.offset));
    const hash = q.toString();
    window.history.replaceState(null, "", hash ? `#${hash}` : window.location.pathname);
  }

  // ----- fetching --------------------------------------------------------------------------

  function statusURL() {
    const url = new URL(base);
    const quiet = view.state && !SERVER_STATES.has(view.state);
    if (view.state && (!quiet || serverQuietFilter)) url.searchParams.set("state", view.state);
    if (view.subject) url.searchParams.set("subject", view.subject);
    url.searchParams.set("limit", String(view.limit));
    if (view.offset) url.searchParams.set("offset", String(view.offset));
    url.searchParams.set("counts", "1");
    return url;
  }

  async function getJSON(url) {
    const ctl = new AbortController();
    const t = setTimeout(() => ctl.abort(), TIMEOUT_MS);
    try {
      const r = await fetch(url, { credentials: "same-origin", signal: ctl.signal, headers: { Accept: "application/json" } });
      const text = await r.text();
      return { status: r.status, text };
    } finally {
      clearTimeout(t);
    }
  }

  // One fetch at a time; a refresh asked for meanwhile runs right after it.
  async function refresh() {
    if (inFlight) {
      again = true;
      return inFlight;
    }
    inFlight = load();
    try {
      await inFlight;
    } finally {
      inFlight = null;
    }
    if (again) {
      again = false;
      await refresh();
    }
  }

  async function load() {
    try {
      const started = performance.now();
      let answer = await getJSON(statusURL());
      lastTookMs = performance.now() - started;
      const quiet = view.state && !SERVER_STATES.has(view.state);
      if (answer.status === 400 && quiet && serverQuietFilter) {
        serverQuietFilter = false; // this monitor has no such filter: filter the page here
        answer = await getJSON(statusURL());
      }
      if (answer.status === 401) {
        // Not reloading by itself: a proxy that guards only the JSON would make that a loop.
        showError("The monitor no longer accepts this session (was the token changed?): reload the page to sign in.");
        return;
      }
      if (answer.status !== 200) {
        showError(`The monitor answered ${answer.status}: ${cut(answer.text.trim(), 300)}`);
        return;
      }
      const body = JSON.parse(answer.text);
      if (!body || !Array.isArray(body.subjects)) throw new Error("no subjects in the answer");
      report = body;
      fetchedAt = performance.now();
      showError("");
      render();
    } catch (err) {
      showError(`Cannot reach the monitor (${cut(err && err.message, 200)}); retrying.`);
      $("replica").classList.add("stale");
    }
    // History changes rarely and costs the monitor a stream read: every 10 s is enough.
    if (selected !== null && performance.now() - historyAt > HISTORY_EVERY_MS) await loadHistory(selected);
  }

  function schedule() {
    clearTimeout(timer);
    if (document.hidden) return; // resumes on visibilitychange
    timer = setTimeout(async () => {
      await refresh();
      schedule();
    }, Math.max(POLL_MS, LOAD_SHARE * lastTookMs));
  }

  async function loadHistory(subject) {
    historyAt = performance.now();
    const url = new URL("history", base);
    url.searchParams.set("subject", subject);
    url.searchParams.set("limit", "50");
    try {
      const answer = await getJSON(url);
      if (subject !== selected) return;
      if (answer.status === 404) {
        history = { subject, missing: true };
      } else if (answer.status !== 200) {
        history = { subject, error: `the monitor answered ${answer.status}: ${cut(answer.text.trim(), 200)}` };
      } else {
        const body = JSON.parse(answer.text);
        history = { subject, events: Array.isArray(body.events) ? body.events : [] };
      }
    } catch (err) {
      history = { subject, error: cut(err && err.message, 200) };
    }
    renderHistory();
  }

  // ----- rendering -------------------------------------------------------------------------

  function render() {
    const r = report;
    const leads = r.leader === true ? " (the leader)" : r.leader_id ? `; leader: ${cut(r.leader_id, 80)}` : "; no replica leads";
    $("replica").textContent = r.monitor ? `Answered by ${cut(r.monitor, 80)}${leads}` : "";
    $("replica").classList.remove("stale");
    renderCounts(r);
    renderRows(r);
    renderPager(r);
    renderSilences(r.silences);
    tick();
  }

  function renderCounts(r) {
    const c = r.counts || {};
    const all = ["ok", "late", "alert"].reduce((n, k) => n + (c[k] || 0), 0);
    $("count-all").textContent = r.counts ? all.toLocaleString() : "–";
    for (const k of ["ok", "late", "alert"]) $(`count-${k}`).textContent = r.counts ? (c[k] || 0).toLocaleString() : "–";
    // Kinds of quiet: counted apart (a silenced subject is also ok, late or alert), shown
    // when the monitor counts them and some are quiet that way (or that filter is on).
    for (const k of Object.keys(QUIET)) {
      const n = typeof c[k] === "number" ? c[k] : null;
      $(`count-${k}`).textContent = n === null ? "–" : n.toLocaleString();
      $(`count-${k}`).parentElement.hidden = !(n > 0 || view.state === k);
    }
    for (const b of document.querySelectorAll("#summary .count")) b.classList.toggle("active", b.dataset.state === view.state);
    document.title = c.alert ? `(${c.alert}) nats-heartbeat status` : "nats-heartbeat status";
  }

  function shownSubjects(r) {
    const quiet = view.state && !SERVER_STATES.has(view.state);
    if (!quiet || serverQuietFilter) return r.subjects;
    return r.subjects.filter((s) => s.quiet === view.state);
  }

  function renderRows(r) {
    const rows = shownSubjects(r);
    const body = document.createElement("tbody");
    body.id = "rows";
    for (const s of rows) {
      const tr = document.createElement("tr");
      const state = stateOf(s);
      tr.className = CLASS[state];
      tr.dataset.subject = s.subject; // dataset is an attribute value: never parsed as HTML
      tr.tabIndex = 0;
      if (s.subject === selected) tr.classList.add("selected");
      const badge = cell(tr, "", "state");
      const span = document.createElement("span");
      span.className = "badge";
      span.textContent = state;
      badge.appendChild(span);
      cell(tr, s.subject, "subject");
      cell(tr, s.description === s.subject ? "" : s.description, "description");
      cell(tr, s.host || "");
      const seen = cell(tr, "", "seen");
      seen.dataset.lastSeen = s.last_seen || "";
      if (s.last_seen) seen.title = s.last_seen;
      cell(tr, details(s), "details");
      body.appendChild(tr);
    }
    $("rows").replaceWith(body);
    $("empty").hidden = rows.length > 0;
    const quiet = view.state && !SERVER_STATES.has(view.state);
    $("filter-note").textContent = quiet && !serverQuietFilter
      ? `This monitor cannot filter by ${QUIET[view.state] || view.state}: showing those on this page only.`
      : "";
  }

  function renderPager(r) {
    const total = typeof r.total === "number" ? r.total : r.subjects.length;
    const first = total === 0 ? 0 : view.offset + 1;
    const last = Math.min(total, view.offset + r.subjects.length);
    $("range").textContent = total === 0 ? "none" : `${first.toLocaleString()}–${last.toLocaleString()} of ${total.toLocaleString()}`;
    $("prev").disabled = view.offset === 0;
    $("next").disabled = view.offset + view.limit >= total;
    if (view.offset > 0 && view.offset >= total) {
      view.offset = Math.max(0, Math.floor((total - 1) / view.limit) * view.limit); // the list shrank
      writeHash();
      again = true;
    }
  }

  function renderSilences(silences) {
    const box = $("silences-box");
    const list = Array.isArray(silences) ? silences : [];
    box.hidden = list.length === 0;
    const body = document.createElement("tbody");
    for (const x of list) {
      const tr = document.createElement("tr");
      const starts = parseTime(x.starts);
      const ends = parseTime(x.ends);
      const pending = starts !== null && report && starts > parseTime(report.observed_at);
      cell(tr, x.id);
      cell(tr, (x.kind || "") + (pending ? " (scheduled)" : ""));
      cell(tr, Array.isArray(x.subjects) ? x.subjects.join(", ") : "");
      cell(tr, starts === null ? "" : when(starts));
      cell(tr, ends === null ? "until resumed" : when(ends));
      cell(tr, x.reason || "");
      cell(tr, x.by || "");
      body.appendChild(tr);
    }
    $("silences").querySelector("tbody").replaceWith(body);
  }

  function renderHistory() {
    const box = $("history-box");
    box.hidden = selected === null;
    if (selected === null) return;
    $("history-subject").textContent = cut(selected, SHOWN_CHARS);
    const body = document.createElement("tbody");
    const note = $("history-note");
    let shown = false;
    if (!history || history.subject !== selected) {
      note.textContent = "Loading…";
    } else if (history.missing) {
      note.textContent = "History not available on this monitor.";
    } else if (history.error) {
      note.textContent = `History could not be read: ${history.error}`;
    } else {
      note.textContent = history.events.length ? "" : "No events recorded yet.";
      shown = history.events.length > 0;
      for (const e of history.events.slice().reverse()) { // sent oldest first: newest on top
        const tr = document.createElement("tr");
        const t = parseTime(e.time);
        cell(tr, t === null ? e.time : new Date(t).toLocaleString());
        cell(tr, e.kind);
        cell(tr, e.channel || "");
        cell(tr, e.result || "");
        cell(tr, e.attempt != null ? e.attempt : "");
        cell(tr, e.detail || e.notification_id || e.alert_id || "");
        cell(tr, e.monitor || "");
        body.appendChild(tr);
      }
    }
    $("history").querySelector("tbody").replaceWith(body);
    $("history").hidden = !shown;
  }

  // Once a second: "last seen 12 s ago" and "updated 3 s ago" move without a fetch.
  function tick() {
    for (const td of document.querySelectorAll("#rows td.seen")) {
      const since = secondsSince(td.dataset.lastSeen);
      td.textContent = since === null ? "never" : ago(since);
    }
    if (report) {
      const age = (performance.now() - fetchedAt) / 1000;
      $("updated").textContent = `updated ${ago(age)}`;
      const every = Math.max(POLL_MS, LOAD_SHARE * lastTookMs) / 1000;
      $("updated").classList.toggle("stale", age > 3 * every);
    }
  }

  // ----- events ----------------------------------------------------------------------------

  function apply(changes) {
    Object.assign(view, changes);
    writeHash();
    refresh();
  }

  function open(subject) {
    selected = subject;
    history = null;
    for (const tr of document.querySelectorAll("#rows tr")) tr.classList.toggle("selected", tr.dataset.subject === subject);
    renderHistory();
    loadHistory(subject);
  }

  function init() {
    readHash();
    $("filters").addEventListener("submit", (ev) => {
      ev.preventDefault();
      apply({ state: $("state").value, subject: $("subject").value.trim(), limit: parseInt($("limit").value, 10), offset: 0 });
    });
    $("state").addEventListener("change", () => apply({ state: $("state").value, offset: 0 }));
    $("limit").addEventListener("change", () => apply({ limit: parseInt($("limit").value, 10), offset: 0 }));
    for (const b of document.querySelectorAll("#summary .count")) {
      b.addEventListener("click", () => {
        $("state").value = b.dataset.state;
        apply({ state: b.dataset.state, offset: 0 });
      });
    }
    $("prev").addEventListener("click", () => apply({ offset: Math.max(0, view.offset - view.limit) }));
    $("next").addEventListener("click", () => apply({ offset: view.offset + view.limit }));
    const rows = $("subjects");
    rows.addEventListener("click", (ev) => {
      const tr = ev.target.closest("#rows tr");
      if (tr) open(tr.dataset.subject);
    });
    rows.addEventListener("keydown", (ev) => {
      const tr = ev.target.closest("#rows tr");
      if (tr && (ev.key === "Enter" || ev.key === " ")) {
        ev.preventDefault();
        open(tr.dataset.subject);
      }
    });
    $("history-close").addEventListener("click", () => {
      selected = null;
      history = null;
      for (const tr of document.querySelectorAll("#rows tr.selected")) tr.classList.remove("selected");
      renderHistory();
    });
    window.addEventListener("hashchange", () => {
      readHash();
      refresh();
    });
    document.addEventListener("visibilitychange", async () => {
      if (!document.hidden) {
        await refresh();
        schedule();
      }
    });
    setInterval(tick, 1000);
    refresh().then(schedule);
  }

  init();
})();
