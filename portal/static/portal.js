// Poggio portal: CSRF header for htmx, the token dialog, copy buttons, auto-submitting selects.
// No inline script anywhere: the Content-Security-Policy forbids it.
(function () {
  "use strict";
  var csrf = document.querySelector('meta[name="csrf-token"]');
  document.addEventListener("htmx:configRequest", function (e) {
    if (csrf) { e.detail.headers["X-CSRFToken"] = csrf.content; }
  });

  function dialog() { return document.getElementById("token-dialog"); }

  function forget() {
    // The token leaves the page with the dialog, however the dialog closes.
    var body = document.getElementById("dialog-body");
    if (body) { body.innerHTML = ""; }
  }

  document.addEventListener("htmx:afterSwap", function (e) {
    var d = dialog();
    if (d && e.detail.target && e.detail.target.id === "dialog-body" && !d.open) { d.showModal(); }
  });

  var d0 = dialog();
  if (d0) {
    d0.addEventListener("close", forget);  // Escape, the close button, d.close() from anywhere
    d0.addEventListener("click", function (e) {
      if (e.target === d0) { d0.close(); forget(); }  // a click on the backdrop (outside the dialog's content)
    });
  }
  // Leaving the page (a link, reload, back): nothing of the secret stays for the back/forward cache.
  window.addEventListener("pagehide", function () {
    forget();
    var shown = document.getElementById("new-token");
    if (shown) { shown.textContent = ""; }
  });

  document.addEventListener("click", function (e) {
    var copy = e.target.closest("[data-copy]");
    if (copy) {
      var source = document.querySelector(copy.getAttribute("data-copy"));
      if (source && navigator.clipboard) {
        navigator.clipboard.writeText(source.textContent.trim()).then(function () {
          var label = copy.textContent;
          copy.textContent = "Copied";
          setTimeout(function () { copy.textContent = label; }, 1500);
        });
      }
      return;
    }
    var close = e.target.closest("[data-close-dialog]");
    var d = dialog();
    if (close && d && d.open) {
      e.preventDefault();
      d.close();
      forget();  // at once: the dialog's close event comes a moment later
    }
  });

  document.addEventListener("change", function (e) {
    if (e.target.matches("select[data-autosubmit]")) { e.target.form.submit(); }
  });
})();
