// rackboot web UI: live cells over the event stream (/api/v1/events, SSE;
// the browser resumes with Last-Event-ID on reconnect) and stage logs tailed
// by byte offset (X-Text-Size / X-More-Data). Pages work without it.
(function () {
  "use strict";
  const body = document.body;
  const skew = Date.now() - Number(body.dataset.now || Date.now());
  const state = (window.__rackboot = { events: 0, tails: 0 });
  const $$ = (sel) => Array.from(document.querySelectorAll(sel));
  const esc = (s) => String(s).replace(/["\\]/g, "\\$&");
  const cls = (s) =>
    s === "succeeded" ? "ok" : s === "failed" || s === "timed_out" ? "bad"
      : s === "cancelled" ? "off" : s === "queued" ? "wait" : "run";
  const terminal = (s) => ["succeeded", "failed", "cancelled", "timed_out"].includes(s);

  function fmt(ms) {
    const neg = ms < 0, s = Math.floor(Math.abs(ms) / 1000), p = (n) => String(n).padStart(2, "0");
    const t = s < 60 ? s + "s" : s < 3600 ? Math.floor(s / 60) + "m " + p(s % 60) + "s"
      : Math.floor(s / 3600) + "h " + p(Math.floor((s % 3600) / 60)) + "m";
    return (neg ? "-" : "") + t;
  }
  // Count down every phase deadline on the page.
  function tick() {
    for (const el of $$("[data-due]")) {
      const left = Number(el.dataset.due) - (Date.now() - skew);
      el.textContent = fmt(left);
      el.classList.toggle("late", left < 0);
    }
  }
  setInterval(tick, 1000);

  // A pill (link to the run) showing a phase.
  function pill(run, phase) {
    const a = document.createElement("a");
    a.className = "pill " + cls(phase);
    a.href = "/ui/runs/" + encodeURIComponent(run);
    a.dataset.run = run;
    a.textContent = phase;
    return a;
  }
  // Refresh what a transition does not carry: the deadline, stage statuses.
  function refresh(run) {
    fetch("/ui/runs/" + encodeURIComponent(run) + "/live").then((r) => (r.ok ? r.json() : null)).then((s) => {
      if (!s) return;
      for (const el of $$('[data-left-run="' + esc(run) + '"]')) {
        if (s.due && !s.terminal) el.dataset.due = s.due; else { delete el.dataset.due; el.textContent = ""; }
      }
      for (const st of s.stages) {
        for (const el of $$('[data-stage-status="' + st.seq + '"]')) { el.textContent = st.status; el.className = "pill " + st.class; }
        for (const el of $$('[data-stage-exit="' + st.seq + '"]')) el.textContent = st.exit_code === null ? "" : st.exit_code;
        for (const el of $$('pre[data-stage-log="' + st.seq + '"]')) if (!el.dataset.tailing) tail(el);
      }
      tick();
    }).catch(() => {});
  }

  function onTransition(ev) {
    state.events++;
    for (const el of $$('[data-phase-run="' + esc(ev.run) + '"]')) {
      el.textContent = ev.to;
      el.className = "pill " + cls(ev.to);
    }
    for (const cell of $$('[data-phase-system="' + esc(ev.system) + '"]')) {
      cell.replaceChildren(pill(ev.run, ev.to));
      const left = document.querySelector('[data-left-system="' + esc(ev.system) + '"]');
      if (left) { left.replaceChildren(); delete left.dataset.due; left.dataset.leftRun = ev.run; }
      if (terminal(ev.to)) {
        const res = document.querySelector('[data-result-system="' + esc(ev.system) + '"]');
        if (res) res.replaceChildren(pill(ev.run, ev.to));
      }
    }
    if (body.dataset.run === ev.run && terminal(ev.to)) body.dataset.runActive = "0";
    if (document.querySelector('[data-left-run="' + esc(ev.run) + '"], [data-phase-run="' + esc(ev.run) + '"]')) refresh(ev.run);
  }

  // The machine page's "what happened" list: a new event of its machine
  // goes on top (once: the stream may replay what the page already shows).
  const utc = (ms) => new Date(ms).toISOString().slice(0, 19).replace("T", " ") + " UTC";
  const compact = (s, max) => {
    const one = String(s || "").split(/\s+/).filter(Boolean).join(" ");
    return one.length <= max ? one : one.slice(0, max) + "\u2026";
  };
  // The machine page's "why didn't it boot?" panel, facts and durations follow
  // its machine's events: the page is fetched again (at most one fetch per
  // 400 ms) and those sections are swapped in; the rest stays as it is.
  let refetch = null;
  function refreshPanels() {
    if (refetch) return;
    refetch = setTimeout(() => {
      fetch(location.href, { headers: { Accept: "text/html" } })
        .then((r) => (r.ok ? r.text() : null))
        .then((html) => {
          refetch = null;
          if (!html) return;
          const doc = new DOMParser().parseFromString(html, "text/html");
          for (const id of ["diagnosis", "facts", "durations", "streak"]) {
            const cur = document.getElementById(id), next = doc.getElementById(id);
            if (cur && next) cur.replaceWith(next);
          }
          state.panels = (state.panels || 0) + 1;
        })
        .catch(() => { refetch = null; });
    }, 400);
  }

  function onFeedEvent(ev) {
    for (const list of $$('[data-feed-system="' + esc(ev.system) + '"]')) {
      if (ev.id !== undefined && list.querySelector('[data-id="' + ev.id + '"]')) continue;
      let what = ev.type, pc = "off", full = "";
      if (ev.type === "transition") {
        what = ev.from ? ev.from + " \u2192 " + ev.to : ev.to;
        pc = cls(ev.to);
        full = [...new Set([ev.detail, ev.reason].filter(Boolean))].join(": ");
      } else if (ev.type === "observation") {
        what = ev.what;
        full = ev.detail || "";
      }
      const li = document.createElement("li");
      li.className = "ev ev-" + ev.type + " new";
      if (ev.id !== undefined) li.dataset.id = ev.id;
      const at = ev.at || Date.now() - skew;
      const add = (tag, className, text) => {
        const el = document.createElement(tag);
        if (className) el.className = className;
        el.textContent = text;
        li.append(el, " ");
        return el;
      };
      add("time", "", utc(at)).title = utc(at);
      add("span", "kind", ev.type);
      add("span", "pill " + pc, what);
      add("span", "detail", compact(full, 160)).title = full;
      const links = add("span", "links", "");
      if (ev.run) {
        const a = document.createElement("a");
        a.className = "mono run-link";
        a.textContent = ev.run;
        a.href = "/ui/runs/" + encodeURIComponent(ev.run);
        links.append(a);
      }
      if (document.getElementById("diagnosis")) refreshPanels();
      const empty = list.querySelector("li.empty");
      if (empty) empty.remove();
      list.prepend(li);
      state.feed = (state.feed || 0) + 1;
    }
  }

  // Live updates, from the feed position the page was rendered at.
  if (body.dataset.feedHead !== undefined) {
    const es = (state.es = new EventSource("/api/v1/events?since=" + body.dataset.feedHead));
    const live = document.getElementById("live");
    es.onopen = () => { if (live) { live.classList.add("on"); live.title = "live updates: on"; } };
    es.onerror = () => { if (live) { live.classList.remove("on"); live.title = "live updates: reconnecting"; } };
    // Leaving the page closes the stream: a page kept in the back/forward
    // cache would otherwise hold its connection, and after six of them the
    // browser has no connection left for this server (HTTP/1.1 limit).
    window.addEventListener("pagehide", () => es.close());
    window.addEventListener("pageshow", (e) => { if (e.persisted) location.reload(); });
    es.onmessage = (m) => {
      let ev;
      try { ev = JSON.parse(m.data); } catch (e) { return; }
      if (ev.type === "transition" && ev.run) onTransition(ev);
      if (ev.system) onFeedEvent(ev);
    };
  }

  // Tail a log (a stage's, the serial console): the bytes after data-offset, again while more may come.
  function tail(pre) {
    pre.dataset.tailing = "1";
    state.tails++;
    fetch(pre.dataset.log + "?offset=" + (pre.dataset.offset || 0)).then((r) => {
      const more = r.headers.get("X-More-Data") === "true";
      const size = r.headers.get("X-Text-Size");
      return r.text().then((t) => ({ ok: r.ok, more, size, t }));
    }).then(({ ok, more, size, t }) => {
      if (ok && t) {
        const stick = pre.scrollTop + pre.clientHeight >= pre.scrollHeight - 4;
        pre.append(t);
        if (stick) pre.scrollTop = pre.scrollHeight;
      }
      if (ok && size !== null) pre.dataset.offset = size;
      // A stage that has not started yet answers 404: ask again while the run goes on.
      if (more || (!ok && body.dataset.runActive === "1")) setTimeout(() => tail(pre), ok ? 1000 : 2000);
      else delete pre.dataset.tailing;
    }).catch(() => setTimeout(() => tail(pre), 3000));
  }
  for (const pre of $$("pre[data-live]")) tail(pre);

  // Select every machine on the page.
  const all = document.querySelector("[data-select-all]");
  if (all) all.addEventListener("change", () => {
    for (const c of $$('input[name="system"]')) c.checked = all.checked;
  });
})();
