// The compare page's scatter: any numeric param or metric (x) against any metric (y), one point
// per run, from the values the page's own tables carry (data-value on each cell), drawn with
// uPlot. The element records what it drew (data-state, data-points) for tests.
(function () {
  "use strict";
  function columns() {
    // Per row key ("params.lr", "metrics.acc"): each run's number, or null.
    var found = {};
    document.querySelectorAll("table.compare tbody tr[data-key]").forEach(function (row) {
      var cells = Array.prototype.slice.call(row.querySelectorAll("td")).slice(1);
      var values = cells.map(function (td) {
        var v = td.getAttribute("data-value");
        return v === null ? null : parseFloat(v);
      });
      if (values.some(function (v) { return v !== null; })) found[row.getAttribute("data-key")] = values;
    });
    return found;
  }

  function runNames() {
    return Array.prototype.slice.call(document.querySelectorAll("#compare-runs tbody tr td:first-child"))
      .map(function (td) { return td.textContent; });
  }

  function fill(select, keys, preferred) {
    keys.forEach(function (k) {
      var o = document.createElement("option");
      o.value = k; o.textContent = k;
      select.appendChild(o);
    });
    if (preferred && keys.indexOf(preferred) >= 0) select.value = preferred;
  }

  function start(panel) {
    var data = columns(), keys = Object.keys(data).sort();
    var metrics = keys.filter(function (k) { return k.indexOf("metrics.") === 0; });
    var xs = panel.querySelector("select[name=scatter-x]"), ys = panel.querySelector("select[name=scatter-y]");
    var target = panel.querySelector(".scatter-plot");
    if (!metrics.length || !xs || !ys) { panel.hidden = true; return; }
    var firstParam = keys.filter(function (k) { return k.indexOf("params.") === 0; })[0];
    fill(xs, keys, firstParam || keys[0]);
    fill(ys, metrics, metrics[0]);
    var names = runNames(), plot = null;
    function draw() {
      var x = data[xs.value] || [], y = data[ys.value] || [];
      var points = [];
      for (var i = 0; i < names.length; i++) {
        if (x[i] !== null && x[i] !== undefined && y[i] !== null && y[i] !== undefined) points.push([x[i], y[i], names[i]]);
      }
      points.sort(function (a, b) { return a[0] - b[0]; });
      var style = getComputedStyle(panel);
      var axis = function (label) {
        return { label: label, stroke: style.color, grid: { stroke: style.borderTopColor, width: 1 } };
      };
      var opts = {
        width: Math.max(300, panel.clientWidth), height: 300,
        scales: { x: { time: false } },
        series: [{ label: xs.value }, { label: ys.value, stroke: "#2563eb", paths: function () { return null; },
                   points: { show: true, size: 8, fill: "#2563eb" } }],
        axes: [axis(xs.value), axis(ys.value)],
        legend: { show: true },
      };
      if (plot) plot.destroy();
      plot = new uPlot(opts, [points.map(function (p) { return p[0]; }), points.map(function (p) { return p[1]; })], target);
      panel.setAttribute("data-state", "drawn");
      panel.setAttribute("data-points", String(points.length));
    }
    xs.addEventListener("change", draw);
    ys.addEventListener("change", draw);
    draw();
  }

  function ready() { document.querySelectorAll("#scatter").forEach(start); }
  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", ready);
  else ready();
})();
