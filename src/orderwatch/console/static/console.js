// orderwatch console: live updates over server-sent events. No inline script (the CSP forbids it).
// A changed exception refreshes the queue table (at most once a second) or the open exception's
// panel; a panel whose forms hold typed text is left alone so nobody loses what they were writing.
(function () {
  "use strict";
  var source = null;
  var pending = false;
  var last = 0;
  var missed = 0;

  function setLive(on) {
    var badge = document.getElementById("live");
    if (!badge) return;
    badge.className = on ? "live on" : "live off";
    badge.textContent = on ? badge.dataset.on : badge.dataset.off;
  }

  function dirty(el) {
    var fields = el.querySelectorAll("input[type=text], input:not([type]), textarea");
    for (var i = 0; i < fields.length; i++) {
      if (fields[i].value && fields[i].value !== fields[i].defaultValue) return true;
      if (fields[i] === document.activeElement) return true;
    }
    return false;
  }

  // the queue's table, or the approvals list's
  function liveTable() { return document.querySelector("[data-live=refresh]"); }

  function refreshQueue() {
    var table = liveTable();
    if (!table || pending || dirty(table)) return;
    var wait = Math.max(0, 1000 - (Date.now() - last));
    pending = true;
    setTimeout(function () {
      pending = false;
      last = Date.now();
      var current = liveTable();
      if (current && window.htmx) window.htmx.trigger(current, "ow-refresh");
    }, wait);
  }

  function onException(message) {
    var data;
    try { data = JSON.parse(message.data); } catch (e) { return; }
    // a change told while a boosted navigation is under way (the new page rendered before it,
    // not yet swapped in): remember it, and refresh that page once it has settled
    var detail = document.getElementById("detail");
    if (!liveTable() && !(detail && detail.dataset.id === data.exception_id)) missed = Date.now();
    refreshQueue();
    if (detail && detail.dataset.id === data.exception_id && !dirty(detail) && window.htmx) {
      window.htmx.trigger(detail, "ow-refresh");
    }
  }

  function connect() {
    var url = document.body.dataset.liveUrl;
    if (!url || !window.EventSource) return;
    if (source) source.close();
    source = new EventSource(url);
    source.onopen = function () { setLive(true); };
    source.onerror = function () { setLive(false); };
    source.addEventListener("exception", onException);
  }

  document.addEventListener("DOMContentLoaded", connect);
  // a boosted navigation replaces the body: reconnect only if the stream was dropped
  document.addEventListener("htmx:afterSettle", function () {
    if (!source || source.readyState === 2) connect(); else setLive(source.readyState === 1);
    if (missed && Date.now() - missed < 10000) {
      missed = 0;
      refreshQueue();
      var detail = document.getElementById("detail");
      if (detail && !dirty(detail) && window.htmx) window.htmx.trigger(detail, "ow-refresh");
    }
  });
})();
