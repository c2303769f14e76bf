/* The console's time-zone switch: times in the operator's own zone (the browser's) or in
   UTC. The choice is a cookie the server reads (jobs.console.zone); the page reloads. */
(function () {
  "use strict";
  document.addEventListener("DOMContentLoaded", function () {
    var link = document.getElementById("jd-zone-switch");
    if (!link) { return; }
    var mine = (Intl.DateTimeFormat().resolvedOptions().timeZone) || "UTC";
    var now = link.dataset.current;
    var target = now === "UTC" ? mine : "UTC";
    if (target === now) { link.hidden = true; return; }
    link.textContent = target === "UTC" ? "(show in UTC)" : "(show in my zone, " + target + ")";
    link.addEventListener("click", function (event) {
      event.preventDefault();
      document.cookie = "jd_tz=" + encodeURIComponent(target) + "; path=/; max-age=31536000; SameSite=Lax";
      location.reload();
    });
  });
})();
