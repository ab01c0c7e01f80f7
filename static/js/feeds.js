/* Copy buttons (calendar feed addresses, ad-hoc room links). Without JavaScript the buttons stay
   hidden and the read-only fields can still be selected and copied by hand. */
(function () {
  "use strict";

  function announce(from, text) {
    var region = from.closest("[data-copied]").querySelector("[data-copy-status]");
    if (!region) return;
    region.textContent = "";
    window.setTimeout(function () { region.textContent = text; }, 50);
  }

  function copy(field) {
    if (navigator.clipboard && window.isSecureContext) {
      return navigator.clipboard.writeText(field.value);
    }
    field.focus();
    field.select();
    return document.execCommand("copy") ? Promise.resolve() : Promise.reject(new Error("copy"));
  }

  document.querySelectorAll("button[data-copy]").forEach(function (button) {
    button.hidden = false;
    button.addEventListener("click", function () {
      var field = document.getElementById(button.getAttribute("data-copy"));
      if (!field) return;
      copy(field).then(
        function () { announce(button, button.closest("[data-copied]").getAttribute("data-copied")); },
        function () { field.focus(); field.select(); }
      );
    });
  });
})();
