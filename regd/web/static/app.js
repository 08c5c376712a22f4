/* regd web interface: copy buttons, confirmations for small deletions, and the CSRF
   header on htmx requests. No inline scripts anywhere (the Content-Security-Policy
   forbids them); everything the pages run is here and in the vendored htmx. */
(function () {
  "use strict";

  function csrfToken() {
    var meta = document.querySelector('meta[name="csrf-token"]');
    return meta ? meta.getAttribute("content") : "";
  }

  document.addEventListener("htmx:configRequest", function (event) {
    event.detail.headers["X-CSRF-Token"] = csrfToken();
  });

  function showCopied(button) {
    if (!button.dataset.label) {
      button.dataset.label = button.textContent;
    }
    button.textContent = "Copied";
    button.classList.add("copied");
    window.setTimeout(function () {
      button.textContent = button.dataset.label;
      button.classList.remove("copied");
    }, 2000);
  }

  function copyWithSelection(text) {
    var area = document.createElement("textarea");
    area.value = text;
    area.setAttribute("readonly", "");
    area.className = "offscreen";
    document.body.appendChild(area);
    area.select();
    var done = false;
    try {
      done = document.execCommand("copy");
    } catch (e) {
      done = false;
    }
    document.body.removeChild(area);
    return done;
  }

  function copy(button) {
    var text = button.getAttribute("data-copy");
    if (navigator.clipboard && window.isSecureContext) {
      navigator.clipboard.writeText(text).then(
        function () { showCopied(button); },
        function () { if (copyWithSelection(text)) { showCopied(button); } }
      );
    } else if (copyWithSelection(text)) {
      showCopied(button);
    }
  }

  document.addEventListener("click", function (event) {
    var target = event.target instanceof Element ? event.target : null;
    if (!target) {
      return;
    }
    var copyButton = target.closest("[data-copy]");
    if (copyButton) {
      event.preventDefault();
      copy(copyButton);
      return;
    }
    var confirmable = target.closest("[data-confirm]");
    if (confirmable && !window.confirm(confirmable.getAttribute("data-confirm"))) {
      event.preventDefault();
    }
  });
})();
