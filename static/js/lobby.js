/* Lobby: when htmx swaps in the status that says "admitted", go on to the meeting by submitting
   its join form (a POST from our own page, the only way a token is minted). A full page load
   never submits it: coming back from the room must not send anyone straight in again. */
(function () {
  "use strict";

  document.addEventListener("htmx:load", function (event) {
    var element = event.target;
    if (!element || element === document.body || !element.querySelector) return;
    var form = element.matches("form[data-auto-join]")
      ? element
      : element.querySelector("form[data-auto-join]");
    if (!form) return;
    if (form.requestSubmit) form.requestSubmit();
    else form.submit();
  });
})();
