// A deployment's monitor values over time, from /ui-api/monitor, drawn with uPlot: one chart
// per group of values (performance, latency, traffic, prediction drift, drifted share), on a
// time axis. Per-feature drift is the heat-map above, in the page itself.
(function () {
  "use strict";
  var GROUPS = [
    ["Performance", /^(accuracy|precision_macro|recall_macro|f1_macro|f1_weighted|rmse|mae|r2|error_rate)$/],
    ["Latency (ms)", /^latency_p\d+_ms$/],
    ["Traffic", /^(requests|rows|labeled_rows|throughput_rps)$/],
    ["Prediction drift", /^prediction_(drift|drift_score|mean|std|min|max)$/],
    ["Drifted features", /^(drift_share|drifted_features|undecided_features)$/],
    ["Fairness", /^(demographic_parity_difference|equal_opportunity_difference|disparate_impact_ratio)$/],
  ];
  var COLOURS = ["#2563eb", "#dc2626", "#16a34a", "#9333ea", "#ea580c", "#0891b2", "#be185d"];

  function start(panel) {
    var deployment = panel.getAttribute("data-deployment");
    var since = panel.getAttribute("data-since") || "0";
    fetch("/ui-api/monitor?deployment=" + encodeURIComponent(deployment) + "&since=" + encodeURIComponent(since)).then(function (r) { return r.json(); }).then(function (data) {
      var style = getComputedStyle(panel);
      var xs = data.time.map(function (t) { return t / 1000; });
      var drawn = 0;
      GROUPS.forEach(function (group) {
        var keys = Object.keys(data.values).filter(function (k) { return group[1].test(k); }).sort();
        if (!keys.length || !xs.length) return;
        var figure = document.createElement("figure");
        figure.className = "chart monitor-chart";
        figure.setAttribute("data-group", group[0]);
        var caption = document.createElement("figcaption");
        caption.textContent = group[0];
        figure.appendChild(caption);
        var plot = document.createElement("div");
        figure.appendChild(plot);
        panel.appendChild(figure);
        var line = getComputedStyle(document.documentElement).getPropertyValue("--line").trim() || "#ddd";
        var axis = { stroke: style.color, grid: { stroke: line, width: 1 }, ticks: { stroke: line, width: 1 } };
        new uPlot({
          width: Math.max(300, figure.clientWidth - 16), height: 200,
          scales: { x: { time: true } },
          series: [{ label: "time" }].concat(keys.map(function (k, i) {
            return { label: k, stroke: COLOURS[i % COLOURS.length], width: 1.5, spanGaps: true, points: { show: xs.length < 60 } };
          })),
          axes: [axis, axis],
        }, [xs].concat(keys.map(function (k) { return data.values[k]; })), plot);
        drawn += 1;
      });
      panel.setAttribute("data-state", "drawn");
      panel.setAttribute("data-charts", String(drawn));
    }).catch(function () { panel.setAttribute("data-state", "error"); });
  }

  function ready() { document.querySelectorAll("#monitor-charts").forEach(start); }
  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", ready);
  else ready();
})();
