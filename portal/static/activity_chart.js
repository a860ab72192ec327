// The activity page's charts (uPlot): calls per bucket stacked by outcome, and latency (median, p95).
// Data from the chart's JSON endpoint, with the page's filters; drawn again when the filters change.
// The figures are also in a table under the charts, for screen readers and keyboards.
(function () {
  "use strict";
  var COLOURS = {ok: "#2f7d4f", tool_error: "#c0392b", refused: "#8e44ad", rate_limited: "#d68910", timed_out: "#566573"};
  var LABELS = {ok: "OK", tool_error: "Tool error", refused: "Refused", rate_limited: "Rate-limited", timed_out: "Timed out"};
  var plots = [];

  function width(el) { return Math.max(300, el.clientWidth || 600); }

  function draw(data) {
    plots.forEach(function (p) { p.destroy(); });
    plots = [];
    var calls = document.getElementById("calls-chart");
    var latency = document.getElementById("latency-chart");
    if (!calls || !window.uPlot) { return; }
    var keys = Object.keys(data.outcomes);
    // stacked: each series is the sum of itself and those before; drawn largest first, the hover shows its own count
    var sums = [], running = data.t.map(function () { return 0; });
    keys.forEach(function (k) {
      running = running.map(function (v, i) { return v + data.outcomes[k][i]; });
      sums.push(running.slice());
    });
    var bars = uPlot.paths.bars({size: [0.8, 40]});
    var series = [{label: data.unit === "day" ? "Day (UTC)" : "Hour (UTC)"}];
    var values = [data.t];
    for (var i = keys.length - 1; i >= 0; i--) {
      (function (k) {
        series.push({label: LABELS[k] || k, fill: COLOURS[k], stroke: COLOURS[k], paths: bars, points: {show: false},
                     value: function (u, v, si, idx) { return idx == null ? "—" : data.outcomes[k][idx]; }});
      })(keys[i]);
      values.push(sums[i]);
    }
    var time = {time: true, utc: true};
    plots.push(new uPlot({width: width(calls), height: 220, series: series, scales: {x: time},
                          axes: [{}, {label: "calls", size: 60}], tzDate: function (ts) { return uPlot.tzDate(new Date(ts * 1e3), "Etc/UTC"); }},
                         values, calls));
    if (latency) {
      plots.push(new uPlot({width: width(latency), height: 160, scales: {x: time},
                            tzDate: function (ts) { return uPlot.tzDate(new Date(ts * 1e3), "Etc/UTC"); },
                            series: [{label: "Bucket"}, {label: "median ms", stroke: "#1f618d", width: 2},
                                     {label: "p95 ms", stroke: "#b03a2e", width: 2, dash: [6, 4]}],
                            axes: [{}, {label: "ms", size: 60}]},
                           [data.t, data.median_ms, data.p95_ms], latency));
    }
  }

  function load() {
    var el = document.getElementById("calls-chart");
    if (!el) { return; }
    fetch(el.getAttribute("data-chart-url"), {credentials: "same-origin", headers: {"Accept": "application/json"}})
      .then(function (r) { return r.ok ? r.json() : null; })
      .then(function (data) { if (data) { draw(data); } });
  }

  document.addEventListener("DOMContentLoaded", load);
  document.addEventListener("htmx:afterSwap", function (e) {
    if (e.detail.target && e.detail.target.id === "activity-results") { load(); }
  });
})();
