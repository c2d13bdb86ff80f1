(function () {
  // Keeps an admitted visitor's slot while a page of the site is open: a heartbeat every
  // {{HEARTBEAT_MS}} ms, and "away" when a page is left. Away is soft: the room keeps the slot
  // for a short grace, so a reload, a click to another page or another open tab (told here
  // through localStorage, and answering with a heartbeat) keeps the visitor inside.
  var api = '{{API_JS}}', ms = Math.max(+'{{HEARTBEAT_MS}}' || 30000, 1000), on = 1, t;
  var key = 'wr-away:' + api;
  // Once a page, however many times it is included (by the page and by nginx).
  if (window[key]) return;
  window[key] = 1;
  function post(p) {
    try {
      return fetch(api + p, { method: 'POST', credentials: 'same-origin', keepalive: true });
    } catch (e) {}
  }
  function stop() { on = 0; clearInterval(t); }
  function beat() {
    if (!on) return;
    var r = post('heartbeat');
    if (r) r.then(function (res) { if (res.status === 403) stop(); }, function () {});
  }
  // Soon after load: after a reload, the old page's "away" may reach the room after the new
  // page's request, and this heartbeat, well within any grace, undoes it.
  setTimeout(beat, 300);
  t = setInterval(beat, ms);
  addEventListener('pageshow', function (e) { if (e.persisted) beat(); });
  // Another tab of the site was left: this one is still here, and says so a moment later (a
  // tab that is closing too, with its whole window, must not answer).
  addEventListener('storage', function (e) { if (e.key === key) setTimeout(beat, 500); });
  addEventListener('pagehide', function (e) {
    if (e.persisted !== false || !on) return;
    var n = navigator, ok = 0;
    try { ok = n.sendBeacon && n.sendBeacon(api + 'away'); } catch (e2) {}
    if (!ok) { var r = post('away'); if (r) r.catch(function () {}); }
    try { localStorage.setItem(key, String(Date.now() + Math.random())); } catch (e3) {}
  });
})();
