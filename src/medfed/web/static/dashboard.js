// medfed dashboard: draws the JSON the server embeds in the page, then keeps it current
// (a study page listens to server-sent events; the consortium page polls every 2 s).
// Every chart has a table of the same numbers next to it for screen readers.
(function () {
  "use strict";

  // Okabe-Ito: distinguishable with the common colour-vision deficiencies.
  var PALETTE = ["#0072B2", "#D55E00", "#009E73", "#CC79A7", "#E69F00", "#56B4E9", "#000000", "#F0E442"];
  var charts = {};
  window.medfedCharts = charts; // what the browser tests read
  var siteMetric = null;

  function el(tag, attrs, text) {
    var node = document.createElement(tag);
    Object.keys(attrs || {}).forEach(function (k) { node.setAttribute(k, attrs[k]); });
    if (text !== undefined && text !== null) node.textContent = String(text);
    return node;
  }

  function fmt(value, digits) {
    if (value === null || value === undefined) return "–";
    if (typeof value !== "number") return String(value);
    if (Number.isInteger(value)) return String(value);
    return value.toFixed(digits === undefined ? 3 : digits);
  }

  function bytes(n) {
    if (n >= 1048576) return (n / 1048576).toFixed(2) + " MiB";
    if (n >= 1024) return (n / 1024).toFixed(1) + " KiB";
    return n + " B";
  }

  function when(ms) {
    if (!ms) return "never";
    var ago = Math.max(0, Math.round((Date.now() - ms) / 1000));
    return new Date(ms).toLocaleString() + " (" + ago + " s ago)";
  }

  // A table from headers and rows; numeric cells are right-aligned.
  function table(headers, rows, caption) {
    var t = el("table", { "class": "data" });
    if (caption) t.appendChild(el("caption", {}, caption));
    var head = el("tr");
    headers.forEach(function (h) { head.appendChild(el("th", { scope: "col" }, h)); });
    t.appendChild(el("thead")).appendChild(head);
    var body = t.appendChild(el("tbody"));
    rows.forEach(function (row) {
      var tr = body.appendChild(el("tr"));
      row.forEach(function (cell, i) {
        var td = el(i === 0 ? "th" : "td", i === 0 ? { scope: "row" } : {});
        if (cell instanceof Node) td.appendChild(cell);
        else td.textContent = fmt(cell);
        if (typeof cell === "number") td.className = "num";
        tr.appendChild(td);
      });
    });
    return t;
  }

  function fill(id, node) {
    var host = document.getElementById(id);
    if (!host) return;
    host.replaceChildren(node);
  }

  function none(text) { return el("p", { "class": "none" }, text); }

  function color(hospitals, name) {
    var i = hospitals.indexOf(name);
    return PALETTE[(i < 0 ? hospitals.length : i) % PALETTE.length];
  }

  function points(pairs) { return pairs.map(function (p) { return { x: p[0], y: p[1] }; }); }

  function roundAxis() {
    return { type: "linear", title: { display: true, text: "round" }, ticks: { stepSize: 1, precision: 0 } };
  }

  // Create the chart on first use, replace its data afterwards (no animation: live updates).
  function draw(id, type, datasets, scales, extra) {
    var canvas = document.getElementById(id);
    if (!canvas) return;
    var chart = charts[id];
    if (chart) {
      chart.data.datasets = datasets;
      chart.update("none");
      return;
    }
    var options = Object.assign({
      animation: false, responsive: true, maintainAspectRatio: false, parsing: true,
      interaction: { mode: "nearest", intersect: false },
      plugins: { legend: { position: "bottom" } },
      scales: scales
    }, extra || {});
    charts[id] = new Chart(canvas, { type: type, data: { datasets: datasets }, options: options });
  }

  function hideChart(id, message) {
    var canvas = document.getElementById(id);
    if (!canvas) return;
    canvas.parentNode.hidden = true;
    var note = canvas.parentNode.nextElementSibling;
    if (note && note.classList && note.classList.contains("none")) { note.textContent = message; return; }
    canvas.parentNode.after(none(message));
  }

  function showChart(id) {
    var canvas = document.getElementById(id);
    if (!canvas) return;
    canvas.parentNode.hidden = false;
    var note = canvas.parentNode.nextElementSibling;
    if (note && note.classList && note.classList.contains("none")) note.remove();
  }

  function renderGlobal(v) {
    var labels = v.labels.global;
    var keys = Object.keys(labels).filter(function (k) { return v.global[k]; });
    if (!keys.length) { hideChart("chart-global", "No round evaluated yet."); fill("table-global", none("No round evaluated yet.")); return; }
    showChart("chart-global");
    var datasets = keys.map(function (k, i) {
      return { label: labels[k], data: points(v.global[k]), borderColor: PALETTE[i % PALETTE.length],
               backgroundColor: PALETTE[i % PALETTE.length], yAxisID: k === "loss" ? "loss" : "y",
               borderDash: k === "loss" ? [6, 3] : [] };
    });
    draw("chart-global", "line", datasets, {
      x: roundAxis(),
      y: { min: 0, max: 1, title: { display: true, text: "fraction (0–1)" } },
      loss: { position: "right", min: 0, title: { display: true, text: "loss (cross-entropy)" }, grid: { drawOnChartArea: false } }
    });
    var rounds = v.rounds.filter(function (r) { return keys.some(function (k) { return k in r.metrics; }); });
    fill("table-global", table(["round"].concat(keys.map(function (k) { return labels[k]; })),
      rounds.map(function (r) { return [r.round].concat(keys.map(function (k) { return r.metrics[k]; })); }),
      "Global metrics per round"));
  }

  function renderSites(v) {
    var select = document.getElementById("site-metric");
    var keys = Object.keys(v.labels.site).filter(function (k) { return v.per_hospital[k]; });
    if (!keys.length) {
      hideChart("chart-sites", "No hospital has evaluated a model yet.");
      fill("table-sites", none("No hospital has evaluated a model yet."));
      fill("table-spread", none("–"));
      return;
    }
    showChart("chart-sites");
    if (!siteMetric || keys.indexOf(siteMetric) < 0) siteMetric = keys[0];
    if (select.options.length !== keys.length) {
      select.replaceChildren.apply(select, keys.map(function (k) { return el("option", { value: k }, v.labels.site[k]); }));
      select.onchange = function () { siteMetric = select.value; renderSites(window.medfedStudy); };
    }
    select.value = siteMetric;
    var per = v.per_hospital[siteMetric];
    var names = Object.keys(per).sort();
    var datasets = names.map(function (name) {
      var c = color(v.hospitals, name);
      return { label: name, data: points(per[name]), borderColor: c, backgroundColor: c };
    });
    var title = v.labels.site[siteMetric] + (siteMetric === "loss" ? "" : " (0–1)");
    draw("chart-sites", "line", datasets, { x: roundAxis(), y: { title: { display: true, text: title } } });
    charts["chart-sites"].options.scales.y.title.text = title;
    charts["chart-sites"].update("none");
    var rounds = Array.from(new Set([].concat.apply([], names.map(function (n) { return per[n].map(function (p) { return p[0]; }); })))).sort(function (a, b) { return a - b; });
    fill("table-sites", table(["round"].concat(names), rounds.map(function (r) {
      return [r].concat(names.map(function (n) { var p = per[n].find(function (q) { return q[0] === r; }); return p ? p[1] : null; }));
    }), v.labels.site[siteMetric] + " per hospital and round"));
    var spread = v.spread[siteMetric];
    if (!spread) { fill("table-spread", none("–")); return; }
    var sr = spread.min.map(function (p, i) { return [p[0], p[1], (spread.max[i] || [])[1], (spread.std[i] || [])[1]]; });
    fill("table-spread", table(["round", "min", "max", "std"], sr, "Spread of the hospitals' own " + v.labels.site[siteMetric]));
  }

  function renderRounds(v) {
    var part = v.participation;
    draw("chart-participation", "bar", [
      { label: "hospitals selected", data: part.map(function (p) { return { x: p.round, y: p.selected }; }), backgroundColor: "#9ecae1" },
      { label: "replies accepted", data: part.map(function (p) { return { x: p.round, y: p.accepted }; }), backgroundColor: "#0072B2" }
    ], { x: roundAxis(), y: { min: 0, ticks: { precision: 0 }, title: { display: true, text: "hospitals" } } });
    draw("chart-bytes", "bar", [
      { label: "uploaded (KiB)", data: v.upload_bytes.map(function (p) { return { x: p[0], y: p[1] / 1024 }; }), backgroundColor: "#009E73" }
    ], { x: roundAxis(), y: { min: 0, title: { display: true, text: "KiB uploaded to the coordinator" } } });
    var up = {};
    v.upload_bytes.forEach(function (p) { up[p[0]] = p[1]; });
    fill("table-rounds", table(["round", "selected", "accepted", "rejected", "participation", "uploaded", "duration (s)"],
      v.rounds.map(function (r) {
        return [r.round, r.selected, r.accepted, r.rejected, r.metrics.participation, up[r.round] === undefined ? null : bytes(up[r.round]), r.duration_s];
      }), "Participation, upload bytes and duration per round"));
  }

  function renderRefusals(v) {
    fill("refusals", v.refusals.length ? table(["round", "hospital", "code", "reason"],
      v.refusals.map(function (f) { return [f.round, f.node, f.code, el("span", { "class": "reason" }, f.reason)]; }),
      "Every task a hospital refused and every reply the coordinator rejected") : none("No refusal or rejection so far."));
    fill("site-states", v.sites.length ? table(["hospital", "status", "reason", "last heartbeat"],
      v.sites.map(function (s) {
        return [s.node, el("span", { "class": "status-" + s.status }, s.status), el("span", { "class": "reason" }, s.reason), when(s.last_seen_unix_ms)];
      }), "Each hospital the study could use, and why it is not ready") : none("–"));
  }

  function renderPrivacy(v) {
    var eps = v.privacy.epsilon;
    var names = Object.keys(eps).sort();
    if (!names.length) {
      hideChart("chart-privacy", "This study trains without record-level differential privacy.");
      fill("table-privacy", el("span"));
      return;
    }
    showChart("chart-privacy");
    draw("chart-privacy", "line", names.map(function (n) {
      var c = color(v.hospitals, n);
      return { label: n, data: points(eps[n]), borderColor: c, backgroundColor: c };
    }), { x: roundAxis(), y: { min: 0, title: { display: true, text: "ε spent on this study" } } });
    fill("table-privacy", table(["hospital", "ε spent", "ε budget left"], names.map(function (n) {
      return [n, v.privacy.latest[n], v.privacy.budget_left[n] === undefined ? null : v.privacy.budget_left[n]];
    }), "Record-level privacy per hospital after its last round"));
  }

  function renderSecagg(v) {
    var sa = v.secure_aggregation;
    var stages = Object.keys(sa.stages);
    if (!sa.enabled || !stages.length) {
      hideChart("chart-secagg", sa.enabled ? "No secure round committed yet." : "Secure aggregation is off for this study.");
      fill("table-secagg", el("span"));
      return;
    }
    showChart("chart-secagg");
    draw("chart-secagg", "bar", stages.map(function (s, i) {
      return { label: s.replace("_", "+"), data: points(sa.stages[s]), backgroundColor: PALETTE[i % PALETTE.length], stack: "t" };
    }), { x: Object.assign(roundAxis(), { stacked: true }), y: { stacked: true, min: 0, title: { display: true, text: "seconds per stage" } } });
    var drop = {};
    sa.dropouts.forEach(function (p) { drop[p[0]] = p[1]; });
    var rounds = sa.stages[stages[0]].map(function (p) { return p[0]; });
    fill("table-secagg", table(["round"].concat(stages.map(function (s) { return s + " (s)"; }), ["dropouts"]),
      rounds.map(function (r) {
        return [r].concat(stages.map(function (s) { var p = sa.stages[s].find(function (q) { return q[0] === r; }); return p ? p[1] : null; }), [drop[r] === undefined ? null : drop[r]]);
      }), "Secure aggregation stage durations and dropouts per round"));
  }

  function renderProtocol(v) {
    var rows = Object.keys(v.protocol).map(function (k) {
      var value = v.protocol[k];
      if (value !== null && typeof value === "object") value = JSON.stringify(value);
      return [k, value === null ? "off" : value];
    });
    fill("protocol", table(["setting", "value"], rows, "The study protocol as submitted"));
    document.getElementById("model-sha256").textContent = v.provenance.model_sha256;
    document.getElementById("ledger-head").textContent = v.provenance.ledger_head || "not exposed by this coordinator yet";
  }

  function renderStudy(v) {
    window.medfedStudy = v;
    document.getElementById("state").textContent = v.state;
    document.getElementById("round-counter").textContent = v.completed_rounds;
    document.getElementById("message").textContent = v.message;
    renderGlobal(v);
    renderSites(v);
    renderRounds(v);
    renderRefusals(v);
    renderPrivacy(v);
    renderSecagg(v);
    renderProtocol(v);
  }

  function renderConsortium(d) {
    var nodes = document.querySelector("#nodes tbody");
    var tNodes = table([], d.nodes.map(function (n) {
      var sets = n.datasets.map(function (s) { return s.name + (s.train_rows !== undefined ? " (" + s.train_rows + " / " + s.test_rows + ")" : ""); }).join(", ");
      return [n.name, el("span", { "class": "status-" + n.status }, n.status), when(n.last_seen_unix_ms), sets,
              n.agent_version || "not reported", n.cert_not_after_unix_ms ? new Date(n.cert_not_after_unix_ms).toLocaleDateString() : "not reported"];
    }));
    if (nodes) nodes.replaceWith(tNodes.tBodies[0]);
    var studies = document.querySelector("#studies tbody");
    var tStudies = table([], d.studies.map(function (s) {
      var link = el("a", { href: "/studies/" + encodeURIComponent(s.study_id) }, s.study_id);
      return [link, s.name, s.state, s.completed_rounds + " / " + s.rounds_planned, el("span", { "class": "reason" }, s.message)];
    }));
    if (studies) studies.replaceWith(tStudies.tBodies[0]);
  }

  function live(text) { var l = document.getElementById("live"); if (l) l.textContent = text; }

  function listen(v) {
    if (v.finished || !window.EventSource) { live(v.finished ? "study " + v.state : ""); return; }
    var source = new EventSource("/api/studies/" + encodeURIComponent(v.study_id) + "/events");
    source.addEventListener("study", function (e) {
      var view = JSON.parse(e.data);
      renderStudy(view);
      live("live · updated " + new Date().toLocaleTimeString());
      if (view.finished) { source.close(); live("study " + view.state); }
    });
    source.addEventListener("trouble", function (e) { live("coordinator unreachable: " + JSON.parse(e.data)); });
    source.onerror = function () { live("reconnecting…"); };
  }

  function poll() {
    fetch("/api/overview", { credentials: "same-origin" }).then(function (r) {
      if (!r.ok) throw new Error(r.status + " " + r.statusText);
      return r.json();
    }).then(function (d) { renderConsortium(d); live("updated " + new Date().toLocaleTimeString()); })
      .catch(function (e) { live("coordinator unreachable: " + e.message); });
  }

  document.addEventListener("DOMContentLoaded", function () {
    var initial = JSON.parse(document.getElementById("initial").textContent);
    var page = document.body.dataset.page;
    if (page === "study") { renderStudy(initial); listen(initial); }
    if (page === "consortium") { renderConsortium(initial); setInterval(poll, 2000); }
  });
})();
