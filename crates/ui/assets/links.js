// MLflow's UI addresses pages with a hash (http://host/#/experiments/1/runs/ID); the server never
// sees it, so this forwards those links to Shipyard's pages. No other script is needed to read
// any page.
(function () {
  var hash = window.location.hash;
  if (!hash || hash.indexOf("#/") !== 0) return;
  var parts = hash.slice(2).split("?")[0].split("/").filter(Boolean).map(decodeURIComponent);
  var target = null;
  if (parts[0] === "experiments" && parts[1]) {
    target = parts[2] === "runs" && parts[3]
      ? "/runs/" + encodeURIComponent(parts[3])
      : "/experiments/" + encodeURIComponent(parts[1]);
  } else if (parts[0] === "models" && parts[1]) {
    target = "/models/" + encodeURIComponent(parts[1]) +
      (parts[2] === "versions" && parts[3] ? "/versions/" + encodeURIComponent(parts[3]) : "");
  }
  if (target) window.location.replace(target);
})();
