/* Jobdesk console: live updates over the WebSocket routes.
 *
 * - job list: every row's status badge and progress bar follow /ws/ops/;
 * - job page: the live panel follows /ws/jobs/<id>/; the log is re-read while the job runs;
 * - batch page: follows /ws/batches/<id>/ (aggregate progress, counts, the final message);
 * - batch list: rows whose jobs move (/ws/ops/ carries batch_id) are re-read from
 *   /api/batches/<id>/, at most once a second each;
 * - dashboard: rendered from JSON, re-read (at most once a second) when /ws/ops/ says
 *   something changed, and every 15 s for what has no event (heartbeats, workers).
 * The browser's session cookie authenticates; a dropped connection is retried with
 * backoff, and the "live" badge says whether updates are flowing.
 */
(function () {
  "use strict";

  var FINAL = { complete: 1, failed: 1, dead_letter: 1, canceled: 1, deleted: 1 };

  function socketUrl(path) {
    return (location.protocol === "https:" ? "wss://" : "ws://") + location.host + path;
  }

  // How right first ETAs were: error as a share of the wait, warm and cold estimates
  // apart, and how often the real start fell inside the 80 % range (goal 75-85 %).
  function accuracyText(acc) {
    if (!acc.samples) { return "no samples yet"; }
    function part(p, label) {
      return p && p.samples ? label + " median " + (100 * p.median_fraction).toFixed(1) + " %, p90 " +
        (100 * p.p90_fraction).toFixed(1) + " % (" + p.samples + ")" : label + " none";
    }
    var cov = acc.coverage || {};
    return "median " + (100 * acc.median_fraction).toFixed(1) + " % of the wait (" + secs(acc.median_seconds) + "), p90 " +
      (100 * acc.p90_fraction).toFixed(1) + " %, over " + acc.samples + " jobs; " + part(acc.warm, "warm") + "; " +
      part(acc.cold, "cold (a new type in play)") + "; the 80 % range held the real start " +
      (cov.share === null || cov.share === undefined ? "— (no job waited yet)" : (100 * cov.share).toFixed(0) + " % of the time (" + cov.samples + " that waited)") + ".";
  }

  function esc(text) {  // for element text and quoted attribute values alike
    return (text == null ? "" : String(text)).replace(/&/g, "&amp;").replace(/</g, "&lt;")
      .replace(/>/g, "&gt;").replace(/"/g, "&quot;").replace(/'/g, "&#39;");
  }

  function badge(status) {
    return '<span class="jd-status jd-' + esc(status) + '">' + esc(String(status).replace("_", " ")) + "</span>";
  }

  /* The fill takes the job's status colour: a failed job's bar is red, not a green 100 %. */
  function bar(percent, status) {
    return '<span class="jd-bar"><span class="jd-fill jd-fill-' + esc(status || "") + '" style="width:' +
      Number(percent) + '%"></span></span>' +
      '<span class="jd-pct">' + Number(percent) + "%</span>";
  }

  /* Times in the operator's zone (the server's current zone: the page's jd-zone meta,
     which every console page carries in any project) and saying which: never the
     browser's zone silently. */
  function zone() {
    var meta = document.querySelector('meta[name="jd-zone"]');
    var el = document.getElementById("jd-zone-switch");
    return (meta && meta.content) || (el && el.dataset.current) || "UTC";
  }

  function zoned(iso, withDate) {
    if (!iso) { return "—"; }
    if (withDate === "unless today") {  // an ETA days away said without its date reads as today's
      var day = { timeZone: zone(), year: "numeric", month: "2-digit", day: "2-digit" };
      try {
        withDate = new Date(iso).toLocaleDateString("sv-SE", day) !== new Date().toLocaleDateString("sv-SE", day);
      } catch (e) { withDate = true; }
    }
    var options = { timeZone: zone(), timeZoneName: "short", hour: "2-digit", minute: "2-digit", second: "2-digit",
      hour12: false };
    if (withDate) { options.year = "numeric"; options.month = "2-digit"; options.day = "2-digit"; }
    try { return new Date(iso).toLocaleString("sv-SE", options); } catch (e) { return new Date(iso).toISOString(); }
  }

  function setLive(on, label) {
    document.querySelectorAll(".jd-live").forEach(function (el) {
      el.classList.toggle("on", on);
      el.textContent = label || (on ? "live" : "offline");
    });
  }

  /* Follow a route; reconnect unless the server closed for good (final job, refused). */
  function follow(path, onMessage) {
    var delay = 1000;
    function open() {
      var ws = new WebSocket(socketUrl(path));
      ws.onopen = function () { delay = 1000; setLive(true); };
      ws.onmessage = function (event) { onMessage(JSON.parse(event.data)); };
      ws.onclose = function (event) {
        setLive(false, event.code === 1000 ? "ended" : (event.code >= 4400 ? "refused" : "reconnecting"));
        if (event.code === 1000 || event.code === 4401 || event.code === 4403 || event.code === 4404) { return; }
        setTimeout(open, delay);
        delay = Math.min(delay * 2, 30000);
      };
    }
    open();
  }

  /* --- job list: rows follow the operators' stream ------------------------------- */
  /* The status badge and the bar are drawn here; the cells the browser cannot draw alike
     (ETA or duration, tries, error: times in the operator's zone, estimates) are read
     from the server as a reload renders them, after each status change. */
  function updateRows(msg) {
    if (!msg.job_id) { return; }
    var stale = false;
    document.querySelectorAll('[data-job="' + msg.job_id + '"]').forEach(function (el) {
      if (el.dataset.field === "status") { el.innerHTML = badge(msg.status); }
      if (el.dataset.field === "progress") { el.innerHTML = bar(msg.progress, msg.status); }
      if (/^(eta|tries|error|message)$/.test(el.dataset.field || "")) { stale = true; }
    });
    if (stale && msg.type !== "progress") { cells.stale(msg.job_id); }
  }

  /* One read at a time, at most two a second, of every row changed meanwhile. */
  var cells = (function () {
    var wanted = {}, busy = false, timer = null, last = 0;
    function url() {
      var el = document.querySelector("[data-cells-url]");
      return el && el.dataset.cellsUrl;
    }
    function draw(data) {
      Object.keys(data.cells).forEach(function (id) {
        Object.keys(data.cells[id]).forEach(function (field) {
          document.querySelectorAll('[data-job="' + id + '"][data-field="' + field + '"]').forEach(function (el) {
            el.innerHTML = data.cells[id][field];
          });
        });
      });
    }
    function read() {
      timer = null;
      var ids = Object.keys(wanted);
      if (busy || !ids.length) { return; }
      busy = true;
      last = Date.now();
      wanted = {};
      fetch(url() + "?" + ids.map(function (id) { return "id=" + encodeURIComponent(id); }).join("&"),
        { credentials: "same-origin", headers: { Accept: "application/json" } })
        .then(function (r) { return r.ok ? r.json() : null; })
        .then(function (data) { if (data) { draw(data); } })
        .catch(function () { /* the next change reads again */ })
        .then(function () { busy = false; schedule(); });
    }
    function schedule() {
      if (!timer && Object.keys(wanted).length) { timer = setTimeout(read, Math.max(0, 500 - (Date.now() - last))); }
    }
    return { stale: function (id) { if (url()) { wanted[id] = 1; schedule(); } } };
  })();

  /* Rows on the page follow their jobs; changes to jobs not on the page are counted,
     with a link to reload (the list's order and filters are the server's to apply). */
  /* Routine runs of crons and maintenance jobs (every minute) are noise to a person:
     skipped unless they went wrong. */
  function routine(msg, systemTypes) {
    return systemTypes.indexOf(msg.job_type) >= 0 && msg.type !== "error";
  }

  function followList() {
    var unseen = 0, note = document.getElementById("jd-unseen");
    var systemTypes = note ? (note.dataset.systemTypes || "").split(",") : [];
    follow("/ws/ops/", function (msg) {
      if (msg.type === "snapshot") { return; }
      if (msg.job_id && document.querySelector('[data-job="' + msg.job_id + '"]')) { return updateRows(msg); }
      if (msg.type === "progress" || !note || routine(msg, systemTypes)) { return; }
      unseen += msg.job_id ? 1 : (msg.details && msg.details.submitted) || 1;
      note.style.display = "";
      note.querySelector("a").textContent = unseen + " change" + (unseen === 1 ? "" : "s") + " to other jobs — reload";
    });
  }

  /* --- job page: the log ---------------------------------------------------------- */
  /* The job's log lines (GET /api/jobs/<id>/logs/): read on load, every second while the
     job is active (the worker writes its lines in batches, every half second at most),
     and once more when it ends. Redrawn only when a run has new lines. */
  function jobLogs(box) {
    var url = box.dataset.logsUrl, lines = box.querySelector("[data-logs=lines]"), drawn = null, busy = false, again = false;
    function num(n) { return Number(n).toLocaleString(); }
    function render(data) {
      var key = data.runs.map(function (r) { return r.attempt + ":" + r.total; }).join(",");
      if (key === drawn) { return; }
      drawn = key;
      var total = 0, html = [];
      data.runs.forEach(function (r) { total += r.total; });
      box.querySelector("[data-logs=summary]").textContent = data.runs.length ? num(total) + " line" +
        (total === 1 ? "" : "s") + " over " + data.runs.length + " attempt" + (data.runs.length === 1 ? "" : "s") +
        (data.dropped ? ", " + num(data.dropped) + " older dropped" : "") : "nothing logged";
      var atBottom = lines.scrollTop + lines.clientHeight >= lines.scrollHeight - 4, at = 0;
      data.runs.forEach(function (r) {  // the lines come run by run, r.kept of each
        if (r.dropped) {
          html.push('<div class="jd-log-dropped">attempt ' + r.attempt + ": " + num(r.dropped) + " earlier line" +
            (r.dropped === 1 ? "" : "s") + " dropped (only the last " + num(r.kept) + " are kept)</div>");
        }
        data.lines.slice(at, at + r.kept).forEach(function (line) {
          html.push('<div class="jd-log-line jd-log-' + esc(line.level) + '" data-attempt="' + line.attempt +
            '" data-n="' + line.n + '"><span title="' + esc(line.time) + '">' + esc(new Date(line.time).toLocaleTimeString()) +
            '</span><span title="attempt">#' + line.attempt + '</span><span class="jd-log-level">' + esc(line.level) +
            '</span><span title="' + esc(line.logger) + '">' + esc(line.logger) + '</span><span class="jd-log-msg">' +
            esc(line.message) + "</span></div>");
        });
        at += r.kept;
      });
      lines.innerHTML = html.join("");
      if (atBottom) { lines.scrollTop = lines.scrollHeight; }
    }
    function read() {
      if (busy) { again = true; return; }
      busy = true;
      fetch(url, { credentials: "same-origin", headers: { Accept: "application/json" } })
        .then(function (r) { return r.ok ? r.json() : null; })
        .then(function (data) { if (data) { render(data); } })
        .catch(function () { /* the next read tries again */ })
        .then(function () { busy = false; if (again) { again = false; read(); } });
    }
    var timer = null;
    read();
    return function (status) {  // told each status the live panel shows
      if (status === "active" && !timer) { timer = setInterval(read, 1000); }
      if (status !== "active" && timer) { clearInterval(timer); timer = null; read(); }
    };
  }

  /* --- job page: the live panel -------------------------------------------------- */
  function followJob(panel) {
    var id = panel.dataset.jobId, logBox = document.getElementById("jd-logs");
    var logs = logBox ? jobLogs(logBox) : function () {};
    follow("/ws/jobs/" + id + "/", function (msg) {
      logs(msg.status);
      panel.querySelector("[data-live=status]").innerHTML = badge(msg.status);
      panel.querySelector("[data-live=progress]").innerHTML = bar(msg.progress, msg.status);
      panel.querySelector("[data-live=stage]").textContent = msg.stage || "";
      panel.querySelector("[data-live=seq]").textContent = msg.seq;
      var eta = msg.status === "active" ? msg.estimated_finish_at : msg.estimated_start_at;
      panel.querySelector("[data-live=eta]").textContent = eta ? zoned(eta, "unless today") : "—";
      // [data-live=message] (the error, workers as host:pid) comes from the server: see cells.
      updateRows(msg);
      if (FINAL[msg.status] && (msg.type !== "snapshot" || panel.dataset.seenLive)) {
        panel.querySelector("[data-live=done]").hidden = false;
      }
      panel.dataset.seenLive = "1";  // after the first message, a final snapshot is news too
    });
  }

  /* --- dashboard ----------------------------------------------------------------- */
  function ago(iso) {
    if (!iso) { return "—"; }
    var seconds = Math.max(0, (Date.now() - new Date(iso).getTime()) / 1000);
    if (seconds < 90) { return Math.round(seconds) + " s ago"; }
    if (seconds < 5400) { return Math.round(seconds / 60) + " min ago"; }
    return seconds < 129600 ? Math.round(seconds / 3600) + " h ago" : Math.round(seconds / 86400) + " d ago";
  }

  function time(iso) { return zoned(iso, true); }

  function secs(value) { return value == null ? "—" : (value < 10 ? value.toFixed(2) : value.toFixed(0)) + " s"; }

  function pad2(n) { return (n < 10 ? "0" : "") + n; }

  /* The chart's hours, in the console's zone like every other time (not the browser's). */
  function clock(iso, seconds) {
    var options = { timeZone: zone(), hour: "2-digit", minute: "2-digit", hour12: false };
    if (seconds) { options.second = "2-digit"; }
    try { return new Date(iso).toLocaleTimeString("sv-SE", options); } catch (e) {
      var d = new Date(iso);
      return pad2(d.getUTCHours()) + ":" + pad2(d.getUTCMinutes()) + (seconds ? ":" + pad2(d.getUTCSeconds()) : "");
    }
  }

  /* 1, 2, 5 × 10^k at or above value: round figures on the y axis. */
  function niceCeil(value) {
    if (value <= 0) { return 1; }
    var power = Math.pow(10, Math.floor(Math.log(value) / Math.LN10)), steps = [1, 2, 5, 10];
    for (var i = 0; i < steps.length; i++) { if (steps[i] * power >= value) { return steps[i] * power; } }
    return 10 * power;
  }

  function rate(value) { return value >= 10 ? value.toFixed(0) : value >= 1 ? value.toFixed(1) : value.toFixed(2); }

  /* Finished per hour over the last 24 h: every hour has its slot and tick (zeros too),
     labels every 3 hours in the browser's time, the scale's top on the left. */
  function chart(hours) {
    var top = 1;
    hours.forEach(function (h) { top = Math.max(top, h.complete + h.failed); });
    top = niceCeil(top);
    var left = 34, width = 24 * 20, plot = 120, base = 132;
    var svg = ['<svg viewBox="0 0 ' + (left + width + 4) + ' 150" role="img" data-hours="' + hours.length + '" ' +
      'aria-label="jobs finished per hour, last 24 hours">'];
    svg.push('<line x1="' + left + '" y1="' + (base - plot) + '" x2="' + (left + width) + '" y2="' + (base - plot) +
      '" stroke="#eee"/><line x1="' + left + '" y1="' + (base - plot / 2) + '" x2="' + (left + width) + '" y2="' +
      (base - plot / 2) + '" stroke="#eee"/>');
    hours.forEach(function (h, i) {
      var ok = plot * h.complete / top, bad = plot * h.failed / top, x = left + i * 20 + 2;
      var label = esc(time(h.at)) + ": " + h.complete + " complete, " + h.failed + " failed";
      svg.push('<rect class="jd-hour-slot" x="' + x + '" y="' + (base - plot) + '" width="16" height="' + plot +
        '" fill="#f6f6f6"><title>' + label + "</title></rect>");
      svg.push('<rect x="' + x + '" y="' + (base - ok - bad) + '" width="16" height="' + bad + '" fill="#c0392b">' +
        "<title>" + label + "</title></rect>");
      svg.push('<rect x="' + x + '" y="' + (base - ok) + '" width="16" height="' + ok + '" fill="#2e8b57">' +
        "<title>" + label + "</title></rect>");
      svg.push('<line x1="' + (x + 8) + '" y1="' + base + '" x2="' + (x + 8) + '" y2="' + (base + 3) + '" stroke="#999"/>');
      if (i % 3 === 0) {
        svg.push('<text x="' + (x + 8) + '" y="' + (base + 13) + '" font-size="9" fill="#666" text-anchor="middle">' +
          esc(clock(h.at)) + "</text>");
      }
    });
    svg.push('<line x1="' + left + '" y1="' + base + '" x2="' + (left + width) + '" y2="' + base + '" stroke="#999"/>');
    svg.push('<text x="' + (left + width) + '" y="' + (base + 13) + '" font-size="9" fill="#666" text-anchor="end">now</text>');
    svg.push('<text x="' + (left - 4) + '" y="' + (base - plot + 4) + '" font-size="9" fill="#666" text-anchor="end">' + top +
      '</text><text x="' + (left - 4) + '" y="' + (base + 3) + '" font-size="9" fill="#666" text-anchor="end">0</text>');
    svg.push('<text x="' + (left - 4) + '" y="' + (base - plot + 14) + '" font-size="8" fill="#999" text-anchor="end">/ h</text></svg>');
    return svg.join("");
  }

  function total(list) { return list.reduce(function (a, b) { return a + b; }, 0); }

  /* Jobs finished per second, one bar per bucket (stacked: failed under complete), the
     last 15 minutes; the svg carries its sums and window for tests and tooltips. */
  function rateChart(series, tp, top, name, height) {
    var n = series.complete.length, left = 38, width = 720, base = height - 16, plot = height - 24;
    var step = tp.step, slot = width / n, start = new Date(tp.start).getTime();
    var svg = ['<svg class="jd-tp" viewBox="0 0 ' + (left + width + 4) + " " + height + '" role="img" data-series="' +
      esc(name) + '" data-complete="' + total(series.complete) + '" data-failed="' + total(series.failed) +
      '" data-end="' + esc(tp.end) + '" aria-label="' + esc(name) + ': jobs finished per second, last 15 minutes">'];
    svg.push('<line x1="' + left + '" y1="' + (base - plot) + '" x2="' + (left + width) + '" y2="' + (base - plot) +
      '" stroke="#eee"/><line x1="' + left + '" y1="' + (base - plot / 2) + '" x2="' + (left + width) + '" y2="' +
      (base - plot / 2) + '" stroke="#eee"/>');
    for (var i = 0; i < n; i++) {
      var ok = series.complete[i], bad = series.failed[i];
      if (!ok && !bad) { continue; }
      var hOk = plot * ok / step / top, hBad = plot * bad / step / top, x = left + i * slot;
      var label = clock(new Date(start + i * step * 1000).toISOString(), true) + ": " + rate(ok / step) + " complete/s, " +
        rate(bad / step) + " failed/s";
      svg.push('<rect class="jd-tp-failed" x="' + x.toFixed(1) + '" y="' + (base - hOk - hBad).toFixed(1) + '" width="' +
        Math.max(1, slot - 0.6).toFixed(1) + '" height="' + hBad.toFixed(1) + '" fill="#c0392b"><title>' + label + "</title></rect>");
      svg.push('<rect class="jd-tp-complete" x="' + x.toFixed(1) + '" y="' + (base - hOk).toFixed(1) + '" width="' +
        Math.max(1, slot - 0.6).toFixed(1) + '" height="' + hOk.toFixed(1) + '" fill="#2e8b57"><title>' + label + "</title></rect>");
    }
    svg.push('<line x1="' + left + '" y1="' + base + '" x2="' + (left + width) + '" y2="' + base + '" stroke="#999"/>');
    for (var m = 0; m <= 15; m++) {  // a tick a minute, a label every 5
      var tx = left + width * m / 15;
      svg.push('<line x1="' + tx + '" y1="' + base + '" x2="' + tx + '" y2="' + (base + 3) + '" stroke="#999"/>');
      if (m % 5 === 0) {
        var at = new Date(start + m * 60000).toISOString();
        svg.push('<text x="' + tx + '" y="' + (base + 13) + '" font-size="9" fill="#666" text-anchor="' +
          (m === 0 ? "start" : m === 15 ? "end" : "middle") + '">' + (m === 15 ? "now " : "−" + (15 - m) + " min ") +
          esc(clock(at)) + "</text>");
      }
    }
    svg.push('<text x="' + (left - 4) + '" y="' + (base - plot + 4) + '" font-size="9" fill="#666" text-anchor="end">' +
      rate(top) + ' /s</text><text x="' + (left - 4) + '" y="' + (base + 3) + '" font-size="9" fill="#666" ' +
      'text-anchor="end">0</text></svg>');
    return svg.join("");
  }

  function throughputPanel(root, tp) {
    var view = root.dataset.tpView || "total", html = [], top = 0;
    var shown = view === "queues" ? Object.keys(tp.queues).map(function (q) { return [q, tp.queues[q]]; }) : [["total", tp.total]];
    shown.forEach(function (pair) {
      pair[1].complete.forEach(function (ok, i) { top = Math.max(top, (ok + pair[1].failed[i]) / tp.step); });
    });
    top = niceCeil(top);
    html.push('<section class="jd-panel jd-chart" id="jd-throughput" data-view="' + view + '"><h2>Throughput: jobs ' +
      "finished per second, last 15 minutes " + '<span class="jd-switch"><button type="button" data-tp-view="total"' +
      (view === "total" ? ' class="on"' : "") + '>All queues</button><button type="button" data-tp-view="queues"' +
      (view === "queues" ? ' class="on"' : "") + ">Per queue</button></span></h2>");
    html.push('<p class="jd-tp-now">Last minute: <b class="jd-ok">' + rate(tp.rate.complete) + "/s</b> complete, " +
      '<b class="' + (tp.rate.failed ? "jd-bad" : "") + '">' + rate(tp.rate.failed) + "/s</b> failed or dead letter " +
      '<span class="jd-when">(' + tp.step + " s bars, times in " + esc(zone()) + ")</span></p>");
    shown.forEach(function (pair) {
      if (view === "queues") { html.push('<h3 class="jd-tp-queue">' + esc(pair[0]) + "</h3>"); }
      html.push(rateChart(pair[1], tp, top, pair[0], view === "queues" ? 96 : 170));
    });
    html.push('<div class="jd-legend"><span><i style="background:#2e8b57"></i>complete</span>' +
      '<span><i style="background:#c0392b"></i>failed or dead letter</span></div></section>');
    return html.join("");
  }

  /* Every queue, paused or not, even when Redis (the depths) is unreachable. */
  function queueRows(data) {
    if (data.queue_flow) { return data.queue_flow; }
    return Object.keys(data.queues).map(function (name) { return { name: name, paused: false }; });
  }

  function queueState(q) {
    if (!q.paused) { return '<span class="jd-ok">running</span>'; }
    return badge("paused") + (q.paused_reason ? ' <span data-field="reason">' + esc(q.paused_reason) + "</span>" : "") +
      ' <span class="jd-when">by ' + esc(q.paused_by || "someone") + ", since " + esc(time(q.paused_at)) +
      (q.held ? ", " + q.held + " held" : "") + "</span>";
  }

  /* Resume is one click; pausing wants a reason, typed on the flow page (this panel is
     redrawn on every refresh, which would wipe a half-typed one). */
  function queueButtons(root, q) {
    var flowUrl = root.dataset.flowUrl;
    if (!root.dataset.flowActs) { return ""; }
    if (!q.paused) { return '<a class="button" href="' + esc(flowUrl) + "#queue-" + esc(q.name) + '">Pause…</a>'; }
    return '<form method="post" class="jd-inline" action="' + esc(flowUrl + "queue/" + encodeURIComponent(q.name) +
      "/resume/") + '"><input type="hidden" name="csrfmiddlewaretoken" value="' + esc(root.dataset.csrf) + '">' +
      '<input type="hidden" name="next" value="' + esc(root.dataset.here) + '"><input type="submit" value="Resume"></form>';
  }

  function renderDashboard(root, data) {
    var list = root.dataset.listUrl, html = [];
    var counts = data.counts, order = ["queued", "scheduled", "deferred", "waiting", "retrying", "active",
      "complete", "failed", "dead_letter", "canceled"];
    html.push('<div class="jd-grid"><section class="jd-panel" id="jd-counts"><h2>Jobs by status</h2><div class="jd-tiles">');
    order.forEach(function (status) {
      var alarm = (status === "dead_letter" || status === "failed") && counts[status] ? " alarm" : "";
      html.push('<a class="jd-tile' + alarm + '" href="' + list + "?status__exact=" + status + '" data-count="' +
        status + '"><b>' + (counts[status] || 0) + "</b>" + badge(status) + "</a>");
    });
    html.push("</div></section>");

    html.push('<section class="jd-panel" id="jd-dead"><h2>Dead letters</h2><p><a class="jd-tile' +
      (data.dead_letters ? " alarm" : "") + '" href="' + list + '?status__exact=dead_letter"><b>' + data.dead_letters +
      "</b>waiting for an operator — open the list to requeue</a></p></section>");

    html.push('<section class="jd-panel" id="jd-queues"><h2>Queues (jobs waiting in Redis)</h2>');
    if (data.redis_error) { html.push('<p class="jd-bad">Redis unreachable: ' + esc(data.redis_error) + "</p>"); }
    html.push('<table class="jd-table"><tr><th>queue</th><th>depth</th><th>state</th>' +
      (root.dataset.flowUrl ? "<th></th>" : "") + "</tr>");
    queueRows(data).forEach(function (q) {
      var depth = Object.prototype.hasOwnProperty.call(data.queues, q.name) ? data.queues[q.name] : "—";
      html.push('<tr data-queue="' + esc(q.name) + '"' + (q.paused ? ' class="jd-lever-paused"' : "") + "><td>" +
        esc(q.name) + "</td><td>" + depth + "</td><td>" + queueState(q) + "</td>" +
        (root.dataset.flowUrl ? "<td>" + queueButtons(root, q) + "</td>" : "") + "</tr>");
    });
    html.push('</table><p><a href="' + root.dataset.rqUrl + '" title="RQ\'s own registries in Redis (dispatches), not Jobdesk\'s statuses: see the note below">RQ registries (django-rq) →</a>' +
      (root.dataset.flowUrl ? ' · <a href="' + esc(root.dataset.flowUrl) + '">Flow control →</a>' : "") + "</p></section>");

    var sched = data.scheduler || {};
    html.push('<section class="jd-panel" id="jd-scheduler"><h2>Scheduler and work window</h2><p>Scheduler heartbeat: ' +
      (sched.ok ? '<span class="jd-ok">' : '<span class="jd-bad">') + esc(sched.last_heartbeat ? ago(sched.last_heartbeat) : (sched.error || "none")) +
      "</span></p>");
    var win = data.window;
    if (!win.configured) {
      html.push("<p>Work window: none configured — heavy jobs run at any time.</p>");
    } else if (win.open) {
      html.push('<p>Work window: <span class="jd-ok">open</span>, closes ' + esc(time(win.closes_at)) + "</p>");
    } else {
      html.push('<p>Work window: <span class="jd-bad">closed</span>, next opening ' + esc(time(win.next_opening)) +
        " (" + win.deferred + " heavy job" + (win.deferred === 1 ? "" : "s") + " deferred)</p>");
    }
    html.push('<p><a href="' + root.dataset.windowsUrl + '">Edit work windows →</a></p></section></div>');

    if (data.throughput) { html.push(throughputPanel(root, data.throughput)); }

    html.push('<section class="jd-panel" id="jd-workers"><h2>Workers (' + data.workers.length + ')</h2>');
    if (!data.workers.length) { html.push('<p class="jd-bad">No worker is alive: nothing runs. Start <code>manage.py rqworker-pool</code>.</p>'); }
    html.push('<table class="jd-table"><tr><th>worker (host:pid)</th><th>queues</th><th>running now</th>' +
      "<th>jobs done</th><th>since</th><th>heartbeat</th></tr>");
    data.workers.forEach(function (w) {
      var job = w.job ? '<a href="' + list + w.job.id + '/change/">' + esc(w.job.type) + " " + esc(String(w.job.id).slice(0, 8)) +
        "</a> " + '<span data-job="' + esc(w.job.id) + '" data-field="progress">' + bar(w.job.progress, "active") + "</span> " +
        esc(w.job.stage) : '<span class="jd-when">idle</span>';
      var done = '<span title="RQ\'s count of dispatches this worker handled' + (w.failed_runs ? ", " + w.failed_runs +
        " of them with a failed work-horse" : "") + '">' + (w.done == null ? "—" : w.done) + "</span>";
      html.push('<tr data-worker="' + esc(w.name) + '"><td><span class="jd-worker" title="RQ name: ' + esc(w.name) + '">' +
        esc(w.label || w.name) + "</span></td><td>" + esc((w.queues || []).join(", ")) + "</td><td>" + job + "</td><td>" +
        done + '</td><td title="' + esc(time(w.since)) + '">' + (w.since ? ago(w.since) : "—") + "</td><td>" +
        ago(w.last_heartbeat) + "</td></tr>");
    });
    html.push("</table></section>");

    html.push('<div class="jd-grid"><section class="jd-panel jd-chart" id="jd-chart"><h2>Finished per hour, last 24 h</h2>' +
      chart(data.hours) + '<div class="jd-legend"><span><i style="background:#2e8b57"></i>complete</span>' +
      '<span><i style="background:#c0392b"></i>failed or dead letter</span></div></section>');

    var acc = data.eta_accuracy || {};
    html.push('<section class="jd-panel" id="jd-wait"><h2>Queue wait and run time (last 24 h), ETA accuracy</h2>' +
      '<table class="jd-table"><tr><th>type</th><th>complete</th><th>failed</th><th>wait p50</th><th>wait p95</th><th>run p50</th></tr>');
    data.types.forEach(function (t) {
      var wait = t.queue_wait || {}, run = t.duration || {};
      html.push("<tr><td>" + esc(t.type) + "</td><td>" + t.complete + "</td><td>" + t.failed + "</td><td>" + secs(wait.p50) +
        "</td><td>" + secs(wait.p95) + "</td><td>" + secs(run.p50) + "</td></tr>");
    });
    html.push("</table><p>First ETAs vs real starts (last 1,000 started jobs): " + accuracyText(acc) + "</p></section></div>");

    root.querySelector("#jd-body").innerHTML = html.join("");
    root.jdData = data;  // the throughput switch redraws from it
    root.querySelector("#jd-generated").textContent = zoned(data.generated_at, false);
  }

  function dashboard(root) {
    var pending = null, last = 0, lastEvent = 0;
    function refresh() {
      pending = null;
      last = Date.now();
      fetch(root.dataset.dataUrl, { credentials: "same-origin" })
        .then(function (r) { return r.json(); })
        .then(function (data) {
          renderDashboard(root, data);
          // The overview is cached for a moment server-side: if it predates the last
          // event, read it again shortly.
          if (new Date(data.generated_at).getTime() < lastEvent) { soon(); }
        });
    }
    function soon() {
      if (!pending) { pending = setTimeout(refresh, Math.max(0, 1000 - (Date.now() - last))); }
    }
    renderDashboard(root, JSON.parse(document.getElementById("jd-overview").textContent));
    root.addEventListener("click", function (event) {
      var button = event.target.closest("[data-tp-view]");
      if (!button) { return; }
      root.dataset.tpView = button.dataset.tpView;
      renderDashboard(root, root.jdData);
    });
    var feed = root.querySelector("#jd-feed"), systemTypes = (root.dataset.systemTypes || "").split(",");
    follow("/ws/ops/", function (msg) {
      if (msg.type === "snapshot") { return; }
      updateRows(msg);
      if (routine(msg, systemTypes)) {
        if (msg.type !== "progress") { soon(); }  // counts change; the feed need not say so
        return;
      }
      var line = document.createElement("li");
      line.textContent = zoned(msg.timestamp, false) + "  " + (msg.job_type || "bulk") + "  " +
        (msg.job_id ? msg.job_id.slice(0, 8) : "") + "  " + msg.status + (msg.type === "progress" ? " " + msg.progress + "%" : "");
      feed.insertBefore(line, feed.firstChild);
      while (feed.children.length > 30) { feed.removeChild(feed.lastChild); }
      if (msg.type !== "progress") {
        lastEvent = Math.max(lastEvent, new Date(msg.timestamp).getTime());
        soon();
      } else if (!root.querySelector('#jd-workers [data-job="' + msg.job_id + '"]')) {
        soon();  // running, but not yet shown on its worker's row
      }
    });
    setInterval(refresh, 15000);
  }

  /* --- batches ------------------------------------------------------------------- */
  var BATCH_FILL = { complete: "complete", finished: "failed" };
  var BATCH_BADGE = { complete: "complete", finished: "failed", running: "active", open: "queued" };

  function batchBadge(state) {
    return '<span class="jd-status jd-' + esc(BATCH_BADGE[state] || state) + '">' + esc(state) + "</span>";
  }

  function batchCounts(counts) {
    return Object.keys(counts).filter(function (s) { return counts[s]; })
      .map(function (s) { return counts[s] + " " + s.replace("_", " "); }).join(", ");
  }

  function followBatch(panel) {
    function set(name, html) {
      var el = panel.querySelector('[data-live="' + name + '"]');
      if (el) { el.innerHTML = html; }
    }
    follow("/ws/batches/" + panel.dataset.batchId + "/", function (msg) {
      set("state", batchBadge(msg.state));
      set("bar", bar(msg.progress, BATCH_FILL[msg.state] || "active"));
      set("total", esc(msg.total));
      set("counts", esc(batchCounts(msg.counts || {})));
      set("eta", esc(msg.estimated_finish_at ? zoned(msg.estimated_finish_at, "unless today") : "—"));
      if (msg.type === "finished") { panel.querySelector('[data-live="done"]').hidden = false; }
    });
  }

  function followBatchList() {
    var due = {};
    function reread(id) {
      fetch("/api/batches/" + id + "/", { credentials: "same-origin" })
        .then(function (r) { return r.ok ? r.json() : null; })
        .then(function (b) {
          if (!b) { return; }
          document.querySelectorAll('[data-batch="' + id + '"]').forEach(function (el) {
            if (el.dataset.field === "state") { el.innerHTML = batchBadge(b.state); }
            if (el.dataset.field === "progress") { el.innerHTML = bar(b.progress, BATCH_FILL[b.state] || "active"); }
            if (el.dataset.field === "counts") { el.textContent = b.total + " job(s)" + (b.total ? ": " + batchCounts(b.counts) : ""); }
          });
        })
        .catch(function () { /* the next event tries again */ });
    }
    follow("/ws/ops/", function (msg) {
      var id = msg.batch_id;
      if (!id || due[id] || !document.querySelector('[data-batch="' + id + '"]')) { return; }
      due[id] = setTimeout(function () { delete due[id]; reread(id); }, 1000);
    });
  }

  document.addEventListener("DOMContentLoaded", function () {
    var root = document.getElementById("jd-dashboard");
    if (root) { return dashboard(root); }
    var panel = document.getElementById("jd-live-job");
    if (panel) { return followJob(panel); }
    var batch = document.getElementById("jd-batch");
    if (batch) { return followBatch(batch); }
    if (document.querySelector("[data-batch]")) { return followBatchList(); }
    if (document.getElementById("changelist")) { followList(); }
  });
})();
