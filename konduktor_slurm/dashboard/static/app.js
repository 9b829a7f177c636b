// konduktor dashboard: renders what the server pushes. Every text that comes from a job
// (names, details, log lines) goes into the DOM through textContent, never as markup.
"use strict";

(() => {
  const SVG = "http://www.w3.org/2000/svg";
  const LOG_MAX_LINES = 5000;
  const token = new URLSearchParams(location.search).get("token") || "";
  const $ = (id) => document.getElementById(id);

  let meta = null;
  let events = null;
  let logSource = null;
  let selected = null; // the job shown in the detail panel
  let rank = "all";
  let ranksShown = -1;
  let detailBusy = false;

  function el(tag, text, className) {
    const node = document.createElement(tag);
    if (text !== undefined && text !== null) node.textContent = String(text);
    if (className) node.className = className;
    return node;
  }

  function svg(tag, attributes, text) {
    const node = document.createElementNS(SVG, tag);
    for (const [name, value] of Object.entries(attributes || {})) node.setAttribute(name, String(value));
    if (text !== undefined) node.textContent = String(text);
    return node;
  }

  function clear(node) {
    while (node.firstChild) node.removeChild(node.firstChild);
  }

  function withToken(path) {
    return path + (path.includes("?") ? "&" : "?") + "token=" + encodeURIComponent(token);
  }

  async function api(path, options) {
    const init = Object.assign({ headers: {} }, options || {});
    init.headers["X-Konduktor-Token"] = token;
    const response = await fetch(path, init);
    let body = null;
    try {
      body = await response.json();
    } catch (error) {
      body = { ok: false, messages: ["Error: the dashboard answered " + response.status] };
    }
    return { status: response.status, body };
  }

  function showBanner(text) {
    const banner = $("banner");
    banner.textContent = text || "";
    banner.hidden = !text;
  }

  // ---- filters and the table ------------------------------------------------------------

  function filterQuery() {
    const form = new FormData($("filters"));
    const query = new URLSearchParams();
    for (const [name, value] of form.entries()) {
      if (String(value).trim() !== "") query.append(name, String(value).trim());
    }
    return query.toString();
  }

  function connect() {
    if (events) events.close();
    $("filter-error").textContent = "";
    const query = filterQuery();
    events = new EventSource(withToken("/api/events" + (query ? "?" + query : "")));
    events.addEventListener("jobs", (event) => {
      $("connection").textContent = "live";
      $("connection").className = "connection live";
      renderTable(JSON.parse(event.data));
    });
    events.onerror = async () => {
      $("connection").textContent = "reconnecting";
      $("connection").className = "connection";
      // A bad filter is a 400 the EventSource cannot show: ask once to say why.
      const answer = await api("/api/jobs" + (query ? "?" + query : ""));
      if (answer.status === 400) {
        events.close();
        $("filter-error").textContent = answer.body.error || "";
      } else if (answer.status === 403) {
        // A dashboard started again has a new token: this page's is no longer valid.
        events.close();
        showBanner(answer.body.error || "The dashboard refused this page.");
      }
    };
  }

  function renderTable(table) {
    document.body.dataset.version = String(table.version);
    $("who").textContent = "user: " + table.user;
    $("refreshed").textContent = "refreshed " + table.refreshed;
    showBanner(
      table.stale
        ? "Slurm could not be reached (" + table.stale_reason + "); states marked (stale) are the last known."
        : ""
    );
    const accounting = $("accounting");
    accounting.hidden = !table.accounting_error;
    accounting.textContent = table.accounting_error
      ? "GPU-hours: Slurm accounting failed (" + table.accounting_error + "); the last known are shown."
      : "";

    const head = document.querySelector("#jobs thead tr");
    clear(head);
    for (const column of table.columns) head.appendChild(el("th", column));
    const body = document.querySelector("#jobs tbody");
    clear(body);
    const statusIndex = table.columns.indexOf("STATUS");
    for (const job of table.jobs) {
      const row = el("tr");
      row.dataset.job = job.name;
      row.dataset.status = job.status;
      if (job.name === selected) row.className = "selected";
      job.cells.forEach((cell, index) => {
        const td = el("td", cell);
        const name = table.columns[index].toLowerCase().replace(/[^a-z]+/g, "-");
        td.className = "col-" + name;
        if (index === statusIndex) td.className += " status state-" + job.status.split(" ")[0];
        row.appendChild(td);
      });
      row.addEventListener("click", () => select(job.name));
      body.appendChild(row);
    }
    $("empty").hidden = table.jobs.length > 0;
    drawTimeline($("timeline"), table.timeline);
    if (selected) refreshDetail();
  }

  // ---- timelines (the report's drawing: one row per job, one bar per state) --------------

  function drawTimeline(node, timeline) {
    const width = 900;
    const labelWidth = 220;
    const rowHeight = 26;
    clear(node);
    const height = 40 + Math.max(timeline.rows.length, 1) * rowHeight;
    node.setAttribute("height", String(height));
    const span = Math.max(timeline.now - timeline.origin, 1);
    const x = (at) => labelWidth + ((width - labelWidth - 80) * (at - timeline.origin)) / span;
    for (const tick of timeline.ticks) {
      const tx = x(tick.at).toFixed(1);
      node.appendChild(svg("line", { x1: tx, y1: 20, x2: tx, y2: height, stroke: "#ddd" }));
      node.appendChild(svg("text", { x: tx, y: 14, "text-anchor": "middle" }, tick.label));
    }
    if (!timeline.rows.length) {
      node.appendChild(svg("text", { x: 4, y: 40 }, "No history to draw."));
      return;
    }
    timeline.rows.forEach((row, index) => {
      const y = 30 + index * rowHeight;
      node.appendChild(svg("text", { x: 4, y: y + 14 }, row.job));
      for (const segment of row.segments) {
        const start = x(segment.start);
        const rect = svg("rect", {
          class: "segment",
          x: start.toFixed(1),
          y: y,
          width: Math.max(x(segment.end) - start, 3).toFixed(1),
          height: 18,
          fill: segment.colour,
        });
        rect.dataset.state = segment.state;
        rect.appendChild(svg("title", {}, segment.title));
        node.appendChild(rect);
      }
    });
  }

  function drawLegend(colours) {
    const legend = $("legend");
    clear(legend);
    for (const [state, colour] of Object.entries(colours)) {
      const item = el("span");
      const swatch = el("i");
      swatch.style.background = colour;
      item.appendChild(swatch);
      item.appendChild(document.createTextNode(state));
      legend.appendChild(item);
    }
  }

  // ---- one job --------------------------------------------------------------------------

  function select(name) {
    if (selected !== name) {
      selected = name;
      rank = "all";
      ranksShown = -1;
      $("action-result").hidden = true;
      history.replaceState(null, "", location.pathname + location.search + "#job=" + encodeURIComponent(name));
      for (const row of document.querySelectorAll("#jobs tbody tr")) {
        row.className = row.dataset.job === name ? "selected" : "";
      }
      openLog();
    }
    refreshDetail();
  }

  async function refreshDetail() {
    if (!selected || detailBusy) return;
    detailBusy = true;
    const name = selected;
    try {
      const answer = await api("/api/jobs/" + encodeURIComponent(name));
      if (name !== selected) return;
      const section = $("detail");
      section.hidden = false;
      section.dataset.job = name;
      if (answer.status !== 200) {
        $("detail-title").textContent = answer.body.error || "Error";
        return;
      }
      renderDetail(answer.body);
    } finally {
      detailBusy = false;
    }
  }

  function renderDetail(job) {
    $("detail").dataset.status = job.status;
    $("detail-title").textContent = job.name + ": " + job.status;
    const fields = $("detail-fields");
    clear(fields);
    for (const [label, value] of job.fields) {
      fields.appendChild(el("dt", label));
      const dd = el("dd", value);
      dd.dataset.field = label;
      fields.appendChild(dd);
    }
    const rows = document.querySelector("#history tbody");
    clear(rows);
    for (const change of job.history) {
      const tr = el("tr");
      tr.appendChild(el("td", change.at));
      tr.appendChild(el("td", change.state));
      tr.appendChild(el("td", change.detail));
      rows.appendChild(tr);
    }
    drawTimeline($("job-timeline"), job.timeline);
    for (const verb of ["stop", "start", "down"]) {
      const button = $("action-" + verb);
      button.disabled = !job.own;
      button.title = job.own ? "" : "another user's job: use the CLI with --all-users";
    }
    if (job.num_nodes !== ranksShown) drawRanks(job.num_nodes);
  }

  function drawRanks(count) {
    ranksShown = count;
    const ranks = $("ranks");
    clear(ranks);
    const choices = ["all"];
    for (let index = 0; index < count; index += 1) choices.push(String(index));
    if (count <= 1) return;
    for (const choice of choices) {
      const button = el("button", choice === "all" ? "all ranks" : "rank " + choice);
      button.type = "button";
      button.dataset.rank = choice;
      button.className = choice === rank ? "current" : "";
      button.addEventListener("click", () => {
        rank = choice;
        for (const other of ranks.children) other.className = other.dataset.rank === rank ? "current" : "";
        openLog();
      });
      ranks.appendChild(button);
    }
  }

  // ---- the log, streamed -------------------------------------------------------------------

  function appendLines(lines, className) {
    const log = $("log");
    const atBottom = log.scrollHeight - log.scrollTop - log.clientHeight < 40;
    for (const line of lines) log.appendChild(el("div", line, className));
    while (log.childElementCount > LOG_MAX_LINES) log.removeChild(log.firstChild);
    if (atBottom) log.scrollTop = log.scrollHeight;
  }

  function openLog() {
    if (logSource) logSource.close();
    clear($("log"));
    $("log-state").textContent = "(following)";
    const path = "/api/jobs/" + encodeURIComponent(selected) + "/log?rank=" + encodeURIComponent(rank);
    const source = new EventSource(withToken(path));
    logSource = source;
    source.addEventListener("start", (event) => {
      clear($("log"));
      appendLines(JSON.parse(event.data).lines);
    });
    source.addEventListener("lines", (event) => appendLines(JSON.parse(event.data).lines));
    source.addEventListener("problem", (event) => {
      $("log-state").textContent = "(" + JSON.parse(event.data).message + ")";
    });
    source.addEventListener("end", (event) => {
      const end = JSON.parse(event.data);
      source.close(); // finished: do not let the browser reconnect and replay it
      $("log-state").textContent = "(the job is " + end.status + ")";
      appendLines(["-- " + end.status + (end.detail ? " (" + end.detail + ")" : "") + " --"], "end");
    });
    source.onerror = () => {
      if (source.readyState === EventSource.CLOSED) $("log-state").textContent = "(not available)";
    };
  }

  // ---- actions ----------------------------------------------------------------------------

  async function act(verb) {
    if (!selected) return;
    const name = selected;
    const mode = $("stop-mode").value;
    const what = verb === "down" ? "Take down (cancel and hide)" : verb.charAt(0).toUpperCase() + verb.slice(1);
    if (!window.confirm(what + " " + name + "?")) return;
    const busy = $("action-busy");
    busy.hidden = false;
    for (const other of ["stop", "start", "down"]) $("action-" + other).disabled = true;
    try {
      const body = new URLSearchParams();
      if (verb === "stop" && mode) body.set("mode", mode);
      const answer = await api("/api/jobs/" + encodeURIComponent(name) + "/" + verb, {
        method: "POST",
        headers: { "Content-Type": "application/x-www-form-urlencoded" },
        body: body.toString(),
      });
      const result = $("action-result");
      result.hidden = false;
      result.className = "messages " + (answer.body.ok ? "ok" : "refused");
      result.dataset.ok = String(Boolean(answer.body.ok));
      result.textContent = (answer.body.messages || []).join("\n") || (answer.body.ok ? "Done." : "Refused.");
    } finally {
      busy.hidden = true;
      refreshDetail();
    }
  }

  // ---- start ------------------------------------------------------------------------------

  async function start() {
    const answer = await api("/api/meta");
    if (answer.status !== 200) {
      showBanner(answer.body.error || "The dashboard refused this page.");
      $("connection").textContent = "no token";
      return;
    }
    meta = answer.body;
    const states = $("state-filters");
    for (const state of meta.states) {
      const label = el("label");
      const box = el("input");
      box.type = "checkbox";
      box.name = "state";
      box.value = state;
      label.appendChild(box);
      label.appendChild(document.createTextNode(" " + state));
      states.appendChild(label);
    }
    const modes = $("stop-mode");
    for (const mode of meta.stop_modes) {
      const option = el("option", mode);
      option.value = mode;
      if (mode === meta.default_stop_mode) option.selected = true;
      modes.appendChild(option);
    }
    drawLegend(meta.colours);
    $("filters").addEventListener("submit", (event) => {
      event.preventDefault();
      connect();
    });
    for (const verb of ["stop", "start", "down"]) $("action-" + verb).addEventListener("click", () => act(verb));
    connect();
    const wanted = new URLSearchParams(location.hash.slice(1)).get("job");
    if (wanted) select(wanted);
    // A tab in the background lets go of its streams: browsers allow ~6 connections per
    // server, and a page nobody looks at should not keep the refresh loop going.
    document.addEventListener("visibilitychange", () => {
      if (document.hidden) {
        if (events) events.close();
        if (logSource) logSource.close();
        $("connection").textContent = "paused (tab in the background)";
        $("connection").className = "connection";
      } else {
        connect();
        if (selected) openLog();
      }
    });
  }

  start();
})();
