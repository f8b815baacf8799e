// Keep the live part of a console page current without reloading the page:
// fetch the same URL with fragment=1 every few seconds and swap the HTML in.
// The fragment is rendered and escaped by the server, like the page itself.
(function () {
  "use strict";
  var EVERY_MS = 5000;
  var live = document.getElementById("live");
  var state = document.getElementById("refresh-state");
  if (!live) {
    return;
  }
  var url = new URL(live.getAttribute("data-refresh-url"), window.location.href);
  url.searchParams.set("fragment", "1");
  var shown = null;

  function say(text) {
    if (state) {
      state.textContent = text;
    }
  }

  function refresh() {
    // A hidden tab need not poll; it catches up on the next tick after it is shown.
    if (document.hidden) {
      return window.setTimeout(refresh, EVERY_MS);
    }
    fetch(url, { credentials: "same-origin", cache: "no-store" })
      .then(function (response) {
        if (!response.ok) {
          throw new Error("HTTP " + response.status + ", reload the page");
        }
        return response.text();
      })
      .then(function (html) {
        // Swap only on change, so a selection the operator is copying survives.
        if (html !== shown) {
          live.innerHTML = html;
          shown = html;
        }
        say("updated " + new Date().toLocaleTimeString());
      })
      .catch(function (error) {
        say("refresh failed: " + error.message);
      })
      .then(function () {
        window.setTimeout(refresh, EVERY_MS);
      });
  }

  window.setTimeout(refresh, EVERY_MS);
})();
