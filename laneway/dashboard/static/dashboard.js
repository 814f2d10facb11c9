// laneway dashboard: refreshes the page content in place and asks before destructive actions.
(function () {
  "use strict";
  var seconds = parseFloat(document.body.getAttribute("data-refresh") || "0");
  var toggle = document.getElementById("refresh-toggle");
  var enabled = seconds > 0 && window.localStorage.getItem("laneway-refresh") !== "off";
  var busy = false;

  function label() {
    if (!toggle) return;
    toggle.textContent = "auto-refresh: " + (enabled ? "on" : "off");
    toggle.setAttribute("aria-pressed", enabled ? "true" : "false");
    if (seconds <= 0) toggle.hidden = true;
  }

  function refresh() {
    if (!enabled || busy || document.hidden) return;
    var active = document.activeElement;
    if (active && active.closest && active.closest("form") && active.tagName !== "BUTTON") return;
    busy = true;
    fetch(window.location.href, { credentials: "same-origin", headers: { Accept: "text/html", "X-Laneway-Refresh": "1" } })
      .then(function (response) {
        if (response.status === 401) { window.location.reload(); return null; }
        return response.ok ? response.text() : null;
      })
      .then(function (text) {
        if (!text) return;
        var doc = new DOMParser().parseFromString(text, "text/html");
        var fresh = doc.getElementById("main");
        var main = document.getElementById("main");
        if (!fresh || !main) return;
        var flash = main.querySelector("p.flash");
        main.innerHTML = fresh.innerHTML;
        // an action's message is sent once; keep it on screen until the next navigation
        if (flash && !main.querySelector("p.flash")) main.insertBefore(flash, main.firstChild);
      })
      .catch(function () { /* the server may be restarting: try again next tick */ })
      .then(function () { busy = false; });
  }

  document.addEventListener("submit", function (event) {
    var form = event.target;
    var question = form.getAttribute("data-confirm");
    if (question && !window.confirm(question)) event.preventDefault();
  });

  if (toggle) {
    toggle.addEventListener("click", function () {
      enabled = !enabled;
      window.localStorage.setItem("laneway-refresh", enabled ? "on" : "off");
      label();
    });
  }
  label();
  if (seconds > 0) window.setInterval(refresh, seconds * 1000);
})();
