(function () {
  var api = '{{API_JS}}', ms = Math.max(+'{{HEARTBEAT_MS}}' || 30000, 1000), on = 1, t;
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
  setTimeout(beat, 1000);
  t = setInterval(beat, ms);
  addEventListener('pageshow', function (e) { if (e.persisted) beat(); });
  addEventListener('pagehide', function (e) {
    if (e.persisted !== false || !on) return;
    stop();
    var n = navigator, ok = 0;
    try { ok = n.sendBeacon && n.sendBeacon(api + 'leave'); } catch (e2) {}
    if (!ok) { var r = post('leave'); if (r) r.catch(function () {}); }
  });
})();
