// Poggio portal: CSRF header for htmx, the token dialog, copy buttons, auto-submitting selects.
// No inline script anywhere: the Content-Security-Policy forbids it.
(function () {
  "use strict";
  var csrf = document.querySelector('meta[name="csrf-token"]');
  document.addEventListener("htmx:configRequest", function (e) {
    if (csrf) { e.detail.headers["X-CSRFToken"] = csrf.content; }
  });

  function dialog() { return document.getElementById("token-dialog"); }

  document.addEventListener("htmx:afterSwap", function (e) {
    var d = dialog();
    if (d && e.detail.target && e.detail.target.id === "dialog-body" && !d.open) { d.showModal(); }
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
      document.getElementById("dialog-body").innerHTML = "";  // the token leaves the page with the dialog
    }
  });

  document.addEventListener("change", function (e) {
    if (e.target.matches("select[data-autosubmit]")) { e.target.form.submit(); }
  });
})();
