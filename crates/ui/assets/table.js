// The runs table: a parent's "▸ N children" link (which, without this script, lists the
// children as a filtered table) shows and hides its child rows in place.
(function () {
  "use strict";
  document.addEventListener("click", function (event) {
    var link = event.target.closest ? event.target.closest("a.children-toggle") : null;
    if (!link) return;
    event.preventDefault();
    var parent = link.getAttribute("data-parent");
    var open = link.getAttribute("aria-expanded") !== "true";
    link.setAttribute("aria-expanded", open ? "true" : "false");
    link.textContent = (open ? "▾" : "▸") + link.textContent.slice(1);
    document.querySelectorAll("tr.child").forEach(function (row) {
      if (row.getAttribute("data-parent") === parent) row.hidden = !open;
    });
  });
})();
