// A deployment's live traffic, from this server's own Prometheus text at /metrics, read every
// 2 s: per model version, the request rate and error share over the last interval, latency
// percentiles from the interval's histogram buckets (the cumulative histogram until a second
// reading exists), and the shadow's agreement with the answers returned.
(function () {
  "use strict";
  var INTERVAL = 2000;

  // Prometheus text format: name{labels} value, one sample per line.
  function parse(text) {
    var samples = [];
    text.split("\n").forEach(function (line) {
      if (!line || line.charAt(0) === "#") return;
      var m = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(.*)\})?\s+(\S+)/.exec(line);
      if (!m) return;
      var labels = {};
      var re = /([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"/g, l;
      while ((l = re.exec(m[3] || "")) !== null) labels[l[1]] = l[2].replace(/\\(.)/g, "$1");
      samples.push({ name: m[1], labels: labels, value: parseFloat(m[4]) });
    });
    return samples;
  }

  // Per "model version": requests, errors (5xx), histogram buckets, shadow outcomes.
  function summarise(samples, models, deployment) {
    var out = {};
    function entry(model, version) {
      var k = model + " " + version;
      if (!out[k]) out[k] = { model: model, version: version, requests: 0, errors: 0, buckets: {}, agreed: 0, disagreed: 0, failed: 0 };
      return out[k];
    }
    samples.forEach(function (s) {
      var L = s.labels;
      if (s.name === "shipyard_inference_requests_total" && models.indexOf(L.model) >= 0) {
        var e = entry(L.model, L.version);
        e.requests += s.value;
        if (parseInt(L.code, 10) >= 500) e.errors += s.value;
      } else if (s.name === "shipyard_inference_request_duration_seconds_bucket" && models.indexOf(L.model) >= 0) {
        var b = entry(L.model, L.version).buckets;
        b[L.le] = (b[L.le] || 0) + s.value;
      } else if (s.name === "shipyard_deployment_routed_requests_total" && L.deployment === deployment) {
        var role = L.role, d = entry(L.model, L.version);
        if (role === "shadow_agreed") d.agreed += s.value;
        else if (role === "shadow_disagreed") d.disagreed += s.value;
        else if (role === "shadow_failed") d.failed += s.value;
      }
    });
    return out;
  }

  // The q-quantile of cumulative buckets {le: count}, interpolated inside its bucket.
  function quantile(buckets, q) {
    var bounds = Object.keys(buckets).map(function (le) { return { le: le === "+Inf" ? Infinity : parseFloat(le), n: buckets[le] }; })
      .sort(function (a, b) { return a.le - b.le; });
    if (!bounds.length) return null;
    var total = bounds[bounds.length - 1].n;
    if (!(total > 0)) return null;
    var rank = q * total, prevLe = 0, prevN = 0;
    for (var i = 0; i < bounds.length; i++) {
      if (bounds[i].n >= rank) {
        if (bounds[i].le === Infinity) return prevLe;
        var inBucket = bounds[i].n - prevN;
        return prevLe + (bounds[i].le - prevLe) * (inBucket > 0 ? (rank - prevN) / inBucket : 0);
      }
      prevLe = bounds[i].le; prevN = bounds[i].n;
    }
    return prevLe;
  }

  function minus(now, before) {
    var buckets = {};
    Object.keys(now.buckets).forEach(function (le) { buckets[le] = now.buckets[le] - ((before && before.buckets[le]) || 0); });
    return buckets;
  }

  function cell(text) { var td = document.createElement("td"); td.className = "num"; td.textContent = text; return td; }

  function start(panel) {
    var deployment = panel.getAttribute("data-deployment");
    var models = (panel.getAttribute("data-models") || "").split(" ").filter(Boolean);
    var body = panel.querySelector("tbody");
    var previous = null, previousAt = 0;
    function tick() {
      fetch("/metrics", { headers: { Accept: "text/plain" } }).then(function (r) { return r.text(); }).then(function (text) {
        var now = summarise(parse(text), models, deployment), at = performance.now();
        var seconds = previous ? (at - previousAt) / 1000 : null;
        body.textContent = "";
        Object.keys(now).sort().forEach(function (k) {
          var e = now[k], p = previous && previous[k];
          var requests = e.requests - (p ? p.requests : 0), errors = e.errors - (p ? p.errors : 0);
          var buckets = p ? minus(e, p) : e.buckets;
          var agreed = e.agreed - (p ? p.agreed : 0), disagreed = e.disagreed - (p ? p.disagreed : 0);
          if (!p || requests <= 0) buckets = e.buckets; // idle interval: the whole history
          var tr = document.createElement("tr");
          tr.setAttribute("data-version", e.version);
          var name = document.createElement("td"); name.textContent = e.model; tr.appendChild(name);
          var version = document.createElement("td"); version.textContent = e.version ? "v" + e.version : "—"; tr.appendChild(version);
          tr.appendChild(cell(seconds ? (requests / seconds).toFixed(1) : "…"));
          var total = p ? requests : e.requests, bad = p ? errors : e.errors;
          tr.appendChild(cell(total > 0 ? (100 * bad / total).toFixed(1) + "%" : "—"));
          [0.5, 0.95, 0.99].forEach(function (q) {
            var v = quantile(buckets, q);
            tr.appendChild(cell(v === null ? "—" : (v * 1000).toFixed(2)));
          });
          var judged = e.agreed + e.disagreed;
          tr.appendChild(cell(judged > 0 ? (100 * e.agreed / judged).toFixed(1) + "% of " + judged : "—"));
          body.appendChild(tr);
        });
        panel.setAttribute("data-state", "live");
        previous = now; previousAt = at;
      }).catch(function () { panel.setAttribute("data-state", "error"); });
    }
    tick();
    setInterval(tick, INTERVAL);
  }

  function ready() { document.querySelectorAll("#live").forEach(start); }
  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", ready);
  else ready();
})();
