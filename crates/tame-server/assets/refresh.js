// Reloads the page every 15 s so new approvals show up, unless the
// operator is typing a reason or the tab is hidden. Without JavaScript
// the page's Refresh link does the same.
(function () {
  function busy() {
    var a = document.activeElement;
    if (a && (a.tagName === "INPUT" || a.tagName === "TEXTAREA")) return true;
    var fields = document.querySelectorAll("input[type=text]");
    for (var i = 0; i < fields.length; i++) if (fields[i].value !== "") return true;
    return false;
  }
  setInterval(function () {
    if (document.hidden || busy()) return;
    var u = new URL(location.href);
    u.searchParams.delete("flash");
    u.searchParams.delete("id");
    location.replace(u.toString());
  }, 15000);
})();
