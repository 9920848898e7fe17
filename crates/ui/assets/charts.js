// Metric charts: each `.chart` element (data-key, data-runs = run ids separated by spaces) is
// drawn with uPlot from /ui-api/series, which reduces a history on the server to about one
// bucket per pixel and keeps each bucket's min and max. Every bucket is drawn as its two
// extremes, so a one-step spike stays visible at any zoom; dragging across a chart zooms and
// asks the server again for the narrower range (finer buckets, down to the exact values);
// a double click goes back to the whole series.
//
// The controls of the enclosing `.charts` element choose the x axis (step, wall time, time
// relative to each run's first value), an exponential smoothing (drawn over the faded raw line)
// and a log y scale. Charts are drawn when they scroll into view.
//
// Each drawn chart records what it drew on its element (data-state, data-points, data-max,
// data-min) so tests and people can check it.
(function () {
  "use strict";
  var COLOURS = ["#2563eb", "#dc2626", "#16a34a", "#9333ea", "#ea580c", "#0891b2", "#be185d", "#4d7c0f", "#7c2d12", "#475569"];
  var HEIGHT = 220;

  function controls(panel) {
    var x = panel.querySelector("select[name=x]");
    var smooth = panel.querySelector("input[name=smooth]");
    var log = panel.querySelector("input[name=log]");
    return {
      axis: x ? x.value : "step",
      smooth: smooth ? Math.min(Math.max(parseFloat(smooth.value) || 0, 0), 0.99) : 0,
      log: !!(log && log.checked),
    };
  }

  function runNames(panel) {
    var names = {};
    panel.querySelectorAll("[data-run-name]").forEach(function (el) {
      names[el.getAttribute("data-run-name")] = el.textContent;
    });
    return names;
  }

  // Server x (step, or ms) to chart x, and back.
  function toChart(axis, x, origin) {
    if (axis === "time") return x / 1000;
    if (axis === "relative") return (x - origin) / 1000;
    return x;
  }
  function toServer(axis, x, origin, round) {
    if (axis === "time") return round(x * 1000);
    if (axis === "relative") return round(x * 1000 + origin);
    return round(x);
  }

  function fetchSeries(runs, key, axis, range, buckets) {
    var q = new URLSearchParams();
    runs.forEach(function (r) { q.append("run", r); });
    q.set("key", key);
    q.set("x", axis === "step" ? "step" : "time");
    q.set("buckets", String(buckets));
    if (range) {
      q.set("from", String(range[0]));
      q.set("to", String(range[1]));
    }
    return fetch("/ui-api/series?" + q.toString(), { headers: { Accept: "application/json" } }).then(function (r) {
      return r.json().then(function (body) {
        if (!r.ok) throw new Error(body.error || ("HTTP " + r.status));
        return body.runs;
      });
    });
  }

  // One run's buckets as a line through each bucket's extremes, in the order that keeps the
  // line continuous: the extreme nearer the previous point first.
  function line(run, axis, origin) {
    var xs = [], ys = [];
    var prev = null;
    for (var i = 0; i < run.count.length; i++) {
      var lo = run.min[i], hi = run.max[i];
      var x0 = toChart(axis, run.x_first[i], origin), x1 = toChart(axis, run.x_last[i], origin);
      if (run.count[i] === 1 || lo === hi) {
        xs.push(x0); ys.push(lo); prev = lo;
      } else if (x0 === x1) {
        var far = prev === null || Math.abs(hi - prev) >= Math.abs(lo - prev) ? hi : lo;
        xs.push(x0); ys.push(far); prev = far;
      } else {
        var lowFirst = prev === null || Math.abs(lo - prev) <= Math.abs(hi - prev);
        xs.push(x0, x1);
        ys.push(lowFirst ? lo : hi, lowFirst ? hi : lo);
        prev = lowFirst ? hi : lo;
      }
    }
    return { xs: xs, ys: ys };
  }

  // TensorBoard's debiased exponential moving average.
  function smoothed(ys, weight) {
    var out = new Array(ys.length), last = 0, n = 0;
    for (var i = 0; i < ys.length; i++) {
      var y = ys[i];
      if (y === null || !isFinite(y)) { out[i] = null; continue; }
      n += 1;
      last = last * weight + (1 - weight) * y;
      out[i] = last / (1 - Math.pow(weight, n));
    }
    return out;
  }

  // Lines of several runs on one x array (uPlot's shape), null where a run has no value.
  function join(lines) {
    var all = [];
    lines.forEach(function (l) { for (var i = 0; i < l.xs.length; i++) all.push(l.xs[i]); });
    all.sort(function (a, b) { return a - b; });
    var xs = [];
    for (var i = 0; i < all.length; i++) if (i === 0 || all[i] !== all[i - 1]) xs.push(all[i]);
    var index = new Map();
    xs.forEach(function (x, i) { index.set(x, i); });
    var columns = lines.map(function (l) {
      var col = new Array(xs.length).fill(null);
      for (var i = 0; i < l.xs.length; i++) col[index.get(l.xs[i])] = l.ys[i];
      return col;
    });
    return [xs].concat(columns);
  }

  // An axis in the page's own colours (light or dark).
  function axis(el, label) {
    var style = getComputedStyle(el), fg = style.color, line = style.borderTopColor;
    var a = { stroke: fg, grid: { stroke: line, width: 1 }, ticks: { stroke: line, width: 1 } };
    if (label) a.label = label;
    return a;
  }

  function fade(hex) { return hex + "55"; }

  function Chart(el, panel) {
    this.el = el;
    this.panel = panel;
    this.key = el.getAttribute("data-key");
    this.runs = (el.getAttribute("data-runs") || "").split(" ").filter(Boolean);
    this.plot = null;
    this.range = null; // server units, per run origin for relative time
    this.origins = {};
  }

  // A zoom asks for its width's worth of buckets; the whole history for the page's fixed
  // number, which the page preloaded for its first charts.
  Chart.prototype.buckets = function (whole) {
    var fixed = parseInt(this.panel.getAttribute("data-buckets") || "", 10);
    if (whole && fixed > 0) return fixed;
    return Math.max(50, Math.min(4000, Math.round((this.el.clientWidth || 600) * 1.5)));
  };

  // Fetches the whole series, or the zoomed range `chartRange` (chart units).
  Chart.prototype.load = function (chartRange) {
    var self = this, c = controls(this.panel);
    this.el.setAttribute("data-state", "loading");
    var requests;
    if (c.axis === "relative" && chartRange) {
      // Each run has its own origin, so each asks for its own range.
      requests = this.runs.map(function (r) {
        var o = self.origins[r] || 0;
        return fetchSeries([r], self.key, c.axis,
          [toServer(c.axis, chartRange[0], o, Math.floor), toServer(c.axis, chartRange[1], o, Math.ceil)], self.buckets());
      });
    } else {
      var range = chartRange ? [toServer(c.axis, chartRange[0], 0, Math.floor), toServer(c.axis, chartRange[1], 0, Math.ceil)] : null;
      requests = [fetchSeries(this.runs, this.key, c.axis, range, this.buckets(!range))];
    }
    return Promise.all(requests).then(function (parts) {
      var runs = [].concat.apply([], parts);
      runs.forEach(function (r) { if (r.extent) self.origins[r.run_id] = r.extent[0]; });
      self.draw(runs, c);
    }).catch(function (e) {
      self.el.setAttribute("data-state", "error");
      var msg = self.el.querySelector(".chart-error") || document.createElement("p");
      msg.className = "chart-error error";
      msg.textContent = "Could not draw " + self.key + ": " + e.message;
      self.el.appendChild(msg);
    });
  };

  Chart.prototype.draw = function (runs, c) {
    var self = this, names = runNames(this.panel);
    var xLabel = c.axis === "step" ? "step" : c.axis === "time" ? "time" : "seconds since first value";
    var lines = [], series = [{ label: xLabel }], points = 0, max = -Infinity, min = Infinity;
    runs.forEach(function (run, i) {
      var l = line(run, c.axis, self.origins[run.run_id] || 0);
      if (c.log) l.ys = l.ys.map(function (y) { return y > 0 ? y : null; });
      l.ys.forEach(function (y) { if (y !== null) { if (y > max) max = y; if (y < min) min = y; } });
      points += run.points;
      var colour = COLOURS[i % COLOURS.length], label = names[run.run_id] || run.run_id.slice(0, 8);
      lines.push(l);
      series.push({ label: label, stroke: c.smooth > 0 ? fade(colour) : colour, width: 1, spanGaps: true, points: { show: false } });
      if (c.smooth > 0) {
        lines.push({ xs: l.xs, ys: smoothed(l.ys, c.smooth) });
        series.push({ label: label + " (smoothed)", stroke: colour, width: 2, spanGaps: true, points: { show: false } });
      }
    });
    var data = join(lines);
    var opts = {
      width: Math.max(200, this.el.clientWidth || 600),
      height: HEIGHT,
      series: series,
      scales: { x: { time: c.axis === "time" }, y: { distr: c.log ? 3 : 1 } },
      axes: [axis(this.el, xLabel), axis(this.el, null)],
      cursor: {
        drag: { x: true, y: false, setScale: false },
        bind: {
          dblclick: function () { return function () { self.range = null; self.load(null); return null; }; },
        },
      },
      hooks: {
        // A drag across the chart asks the server for that range (finer buckets).
        setSelect: [function (u) {
          if (u.select.width < 2) return;
          var lo = u.posToVal(u.select.left, "x"), hi = u.posToVal(u.select.left + u.select.width, "x");
          u.setSelect({ left: 0, top: 0, width: 0, height: 0 }, false);
          self.range = [lo, hi];
          self.load(self.range);
        }],
      },
    };
    var target = this.el.querySelector(".chart-plot");
    if (this.plot) this.plot.destroy();
    this.plot = new uPlot(opts, data, target);
    this.el.setAttribute("data-state", "drawn");
    this.el.setAttribute("data-points", String(points));
    this.el.setAttribute("data-drawn", String(data[0].length));
    if (points > 0) {
      this.el.setAttribute("data-max", String(max));
      this.el.setAttribute("data-min", String(min));
    }
  };

  function start(panel) {
    var charts = [];
    panel.querySelectorAll(".chart").forEach(function (el) { charts.push(new Chart(el, panel)); });
    var visible = function (chart) { if (!chart.plot && chart.el.getAttribute("data-state") !== "loading") chart.load(null); };
    if ("IntersectionObserver" in window) {
      var watcher = new IntersectionObserver(function (entries) {
        entries.forEach(function (e) {
          if (!e.isIntersecting) return;
          watcher.unobserve(e.target);
          charts.forEach(function (c) { if (c.el === e.target) visible(c); });
        });
      }, { rootMargin: "200px" });
      charts.forEach(function (c) { watcher.observe(c.el); });
    } else {
      charts.forEach(visible);
    }
    panel.querySelectorAll("select[name=x], input[name=smooth], input[name=log]").forEach(function (input) {
      input.addEventListener("change", function () {
        charts.forEach(function (c) { if (c.plot || c.el.getAttribute("data-state")) { c.range = null; c.load(null); } });
      });
    });
    var resizing = null;
    window.addEventListener("resize", function () {
      clearTimeout(resizing);
      resizing = setTimeout(function () {
        charts.forEach(function (c) { if (c.plot) c.plot.setSize({ width: Math.max(200, c.el.clientWidth), height: HEIGHT }); });
      }, 150);
    });
  }

  function ready() { document.querySelectorAll(".charts").forEach(start); }
  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", ready);
  else ready();
})();
