// waiting_room_insert_heartbeat, in a real browser: a page that does not include heartbeat.js
// gets it from nginx, runs it, and so keeps its visitor inside past `idle`; a page that
// includes it as well runs it once.
//
// The room has one slot and a short `idle`. The browser takes the slot; a second visitor (node,
// its cookie kept by hand) waits behind it and asks for its place: it is let in as soon as the
// browser's session ends.

import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { setTimeout as sleep } from 'node:timers/promises';
import { CONF_HEAD, Visitor, chromiumForFile, startNginx } from './harness.mjs';

const IDLE = 6000;
const HEARTBEAT = 2000;

const CONF = (port, prefix) => `
${CONF_HEAD}
    waiting_room_zone zone=h:1m max_active=1 idle=${IDLE / 1000}s heartbeat=${HEARTBEAT / 1000}s
                      grace=2s;
    waiting_room_zone zone=two:1m max_active=1 idle=${IDLE / 1000}s heartbeat=${HEARTBEAT / 1000}s
                      grace=2s;

    server {
        listen 127.0.0.1:${port};
        root ${prefix}/html;
        add_header X-WR $waiting_room_status always;

        location / {
            waiting_room h;
            waiting_room_insert_heartbeat on;
        }

        location /_wr/ {
            waiting_room_api h;
        }

        location /two/ {
            waiting_room two api=/two/_wr/;
            waiting_room_insert_heartbeat on;
            alias ${prefix}/html/;
        }

        location /two/_wr/ {
            waiting_room_api two;
        }

        location = /_wr_status {
            waiting_room_status h;
        }
    }
}
`;

const PAGE = (name, own) => `<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>Page ${name}</title>
<link rel="icon" href="data:,">
${own ? '<script src="/two/_wr/heartbeat.js" defer></script>' : ''}
</head>
<body>
<h1 id="page">${name}</h1>
</body>
</html>
`;

const chromium = chromiumForFile();
let nginx;

before(async () => {
  nginx = await startNginx(CONF, { 'plain.html': PAGE('plain', false), 'own.html': PAGE('own', true) });
});

after(async () => {
  await nginx?.stop();
});

function heartbeats(api = '/_wr/') {
  return nginx.log().split('\n').filter((l) => l.includes(`"POST ${api}heartbeat `)).length;
}

async function activeSessions() {
  return (await (await fetch(`${nginx.base}/_wr_status?format=json`)).json()).active_sessions;
}

test('a page without the script gets it from nginx, and keeps its visitor inside', async () => {
  const ctx = await chromium.browser.createBrowserContext();
  try {
    const page = await ctx.newPage();
    const res = await page.goto(`${nginx.base}/plain.html`);
    assert.equal(res.headers()['x-wr'], 'ADMITTED', 'the browser is let in');
    assert.equal(res.headers()['content-length'], undefined, 'the page lost its length');
    const scripts = await page.evaluate(
      () => document.querySelectorAll('script[src="/_wr/heartbeat.js"]').length,
    );
    assert.equal(scripts, 1, 'the script is in the page once');
    const visitor = new Visitor(nginx.base, 'h');
    assert.equal((await visitor.get('/plain.html')).xwr, 'ARRIVED', 'a second visitor waits');
    assert.equal((await visitor.position()).state, 'queued');
    // Well past idle: only the heartbeats keep the session.
    await sleep(IDLE * 2);
    assert.ok(heartbeats() >= 4, `heartbeats sent (${heartbeats()})`);
    assert.equal((await visitor.position()).state, 'queued', 'the second visitor still waits');
    assert.equal(await activeSessions(), 1, 'the browser is still inside');
    await page.close();
  } finally {
    await ctx.close();
  }
});

test('a page that includes the script too runs it once', async () => {
  const ctx = await chromium.browser.createBrowserContext();
  try {
    const page = await ctx.newPage();
    const res = await page.goto(`${nginx.base}/two/own.html`);
    assert.equal(res.headers()['x-wr'], 'ADMITTED', 'the browser is let in');
    const tags = await page.evaluate(
      () => document.querySelectorAll('script[src="/two/_wr/heartbeat.js"]').length,
    );
    assert.equal(tags, 2, "the page's own tag and nginx's");
    const before = heartbeats('/two/_wr/');
    await sleep(HEARTBEAT * 3 + 500);
    const sent = heartbeats('/two/_wr/') - before;
    // One script: one heartbeat every HEARTBEAT (and one soon after load); two would send
    // twice that.
    assert.ok(sent >= 2 && sent <= 5, `one script's heartbeats (${sent})`);
    await page.close();
  } finally {
    await ctx.close();
  }
});
