// The dashboard's only script, served from its own origin (the CSP allows nothing else).
// Everything works without it; it adds conveniences.
(function () {
  "use strict";
  // "/" focuses the page's search field, as in most consoles.
  document.addEventListener("keydown", function (e) {
    if (e.key !== "/" || e.ctrlKey || e.metaKey || e.altKey) return;
    var t = e.target;
    if (t && (t.tagName === "INPUT" || t.tagName === "TEXTAREA" || t.tagName === "SELECT")) return;
    var field = document.querySelector("[data-search]");
    if (field) { e.preventDefault(); field.focus(); }
  });
  // Pages marked data-refresh="N" reload every N seconds while nobody is typing in them.
  var page = document.querySelector("[data-refresh]");
  if (page) {
    var every = Math.max(5, parseInt(page.getAttribute("data-refresh"), 10) || 30) * 1000;
    setInterval(function () {
      var a = document.activeElement;
      if (a && (a.tagName === "INPUT" || a.tagName === "SELECT" || a.tagName === "TEXTAREA")) return;
      if (document.visibilityState === "visible") window.location.reload();
    }, every);
  }
  // The run comparison button says how many runs are selected.
  var compare = document.querySelector("[data-compare]");
  if (compare) {
    var boxes = document.querySelectorAll("input[name=run_id]");
    var update = function () {
      var n = 0;
      boxes.forEach(function (b) { if (b.checked) n++; });
      compare.textContent = n > 1 ? "Compare " + n + " runs" : "Compare selected runs";
      compare.disabled = n < 2;
    };
    boxes.forEach(function (b) { b.addEventListener("change", update); });
    update();
  }
})();
