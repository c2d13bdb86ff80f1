// Leaving a page is soft, in a real browser (Debian's headless Chromium, driven by
// puppeteer-core): a reload, a click from a page that cannot enter the back/forward cache and
// the closing of one of two tabs all send "away" (heartbeat.js, on pagehide) and keep the
// visitor inside with their cookie; closing the last tab frees the slot after the grace.
//
// The room has one slot. The browser takes it; a second visitor (Node's fetch, its cookie kept
// by hand) waits behind it and polls /_wr/position: it is let in the moment the browser's
// session ends, so it tells whether the browser still holds the slot.
//
// Each test gets its own nginx, on a free loopback port, and its own browser context (its own
// cookies and localStorage); see harness.mjs for what they need.

import { test, beforeEach, afterEach } from 'node:test';
import assert from 'node:assert/strict';
import { setTimeout as sleep } from 'node:timers/promises';
import { CONF_HEAD, Visitor, chromiumForFile, startNginx } from './harness.mjs';

// The room's timings. The heartbeat is long on purpose: within a test nothing but a page
// loading (its request, and the heartbeat that heartbeat.js sends 1 s after) and another
// tab's answer to "away" (through localStorage) can keep the session past the grace, so the
// tests see the soft leave itself, not a periodic heartbeat covering it.
const GRACE = 2000;
const HEARTBEAT = 10000;
const IDLE = 20000;
const SWEEP = 1000; // the room's timer ends sessions once a second
// Long enough for a slot left for good to be free and given to the next in line.
const PAST_GRACE = GRACE + SWEEP + 500;

const CONF = (port, prefix) => `
${CONF_HEAD}
    waiting_room_zone zone=b:1m max_active=1 idle=${IDLE / 1000}s heartbeat=${HEARTBEAT / 1000}s
                      grace=${GRACE / 1000}s;

    server {
        listen 127.0.0.1:${port};
        root ${prefix}/html;
        add_header X-WR $waiting_room_status always;

        location / {
            waiting_room b;
        }

        # A page that cannot enter the back/forward cache.
        location = /b.html {
            waiting_room b;
            add_header X-WR $waiting_room_status always;
            add_header Cache-Control no-store always;
        }

        location /_wr/ {
            waiting_room_api b;
        }

        location = /_wr_status {
            waiting_room_status b;
        }
    }
}
`;

// Each page records an id made when it loaded (a page restored from the back/forward cache
// keeps its id, a page loaded anew gets another).
const PAGE = (name, other, extra = '') => `<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>Page ${name}</title>
<link rel="icon" href="data:,">
<script src="/_wr/heartbeat.js" defer></script>
<script>window.loadId = String(Math.random());${extra}</script>
</head>
<body>
<h1 id="page">${name}</h1>
<p><a id="link" href="/${other.toLowerCase()}.html">to ${other}</a></p>
</body>
</html>
`;

let nginx; // this test's nginx: { base, dir, stop(), log() }
let ctx; // this test's browser context

async function status() {
  return (await fetch(`${nginx.base}/_wr_status`)).json();
}

// How many "away" (or other API) requests nginx has logged.
function apiCount(name) {
  return nginx.log().split('\n').filter((l) => l.includes(`"POST /_wr/${name} `)).length;
}

// The browser comes in on page A, then a second visitor queues behind it.
async function admitBrowserThenQueue() {
  const page = await ctx.newPage();
  const res = await page.goto(`${nginx.base}/a.html`);
  assert.equal(res.headers()['x-wr'], 'ADMITTED', 'the browser is let in');
  assert.equal(await shown(page), 'A', 'the browser sees page A, not the queue page');
  const cookie = await roomCookie();
  assert.ok(cookie, 'the browser has the room cookie');
  const visitor = new Visitor(nginx.base, 'b');
  // A first contact gets an arrival; the page's first question takes the place.
  assert.equal((await visitor.get('/a.html')).xwr, 'ARRIVED', 'the second visitor waits');
  const pos = await visitor.position();
  assert.deepEqual([pos.state, pos.position], ['queued', 1], 'the second visitor is first in line');
  return { page, visitor, cookie };
}

async function shown(page) {
  return page.evaluate(() => document.getElementById('page')?.textContent ?? document.title);
}

async function roomCookie() {
  return (await ctx.cookies()).find((c) => c.name === 'wr_b')?.value;
}

// The browser still holds the slot: the second visitor still waits, the browser's page is the
// real page, a request from it passes, and its cookie is the one it was given.
async function assertStillInside(page, visitor, expectedPage, cookie, what) {
  const pos = await visitor.position();
  const still = `${what}: the second visitor still waits (${JSON.stringify(pos)})`;
  assert.equal(pos.state, 'queued', still);
  assert.equal((await status()).active_sessions, 1, `${what}: one session`);
  assert.equal(await shown(page), expectedPage, `${what}: the browser shows page ${expectedPage}`);
  const r = await page.evaluate(async () => {
    const res = await fetch('/a.html', { cache: 'no-store' });
    return { xwr: res.headers.get('x-wr'), body: await res.text() };
  });
  assert.equal(r.xwr, 'PASSED', `${what}: a request from the browser passes`);
  assert.match(r.body, /<h1 id="page">A<\/h1>/, `${what}: and gets the page`);
  assert.equal(await roomCookie(), cookie, `${what}: the cookie is kept, unchanged`);
}

// Waits (up to `ms`) until nginx has logged `n` more requests to /_wr/<name> than `before`;
// returns how many more it has logged.
async function waitForApi(name, before, n, ms = 3000) {
  const deadline = Date.now() + ms;
  while (apiCount(name) < before + n && Date.now() < deadline) await sleep(50);
  return apiCount(name) - before;
}

const chromium = chromiumForFile();

beforeEach(async () => {
  // An unload listener as well: another reason not to keep the page in the cache.
  const unload = "addEventListener('unload', function () {});";
  nginx = await startNginx(CONF, { 'a.html': PAGE('A', 'B'), 'b.html': PAGE('B', 'A', unload) });
  ctx = await chromium.browser.createBrowserContext();
});

afterEach(async () => {
  await ctx?.close().catch(() => {});
  await nginx?.stop();
  ctx = nginx = null;
});

test('reloads keep the visitor inside', { timeout: 30000 }, async () => {
  const { page, visitor, cookie } = await admitBrowserThenQueue();
  for (let i = 1; i <= 3; i++) {
    const aways = apiCount('away');
    const res = await page.reload();
    assert.equal(res.headers()['x-wr'], 'PASSED', `reload ${i}: passes`);
    assert.ok(await waitForApi('away', aways, 1), `reload ${i}: the page left sent away`);
    await sleep(PAST_GRACE);
    await assertStillInside(page, visitor, 'A', cookie, `reload ${i}, past the grace`);
  }
});

test('a click from a page that cannot enter the back/forward cache keeps the visitor inside', {
  timeout: 30000,
}, async () => {
  const { page, visitor, cookie } = await admitBrowserThenQueue();

  // A -> B. A may go into the back/forward cache (pagehide, persisted: no away).
  let [res] = await Promise.all([page.waitForNavigation(), page.click('#link')]);
  assert.equal(res.headers()['x-wr'], 'PASSED', 'A -> B: passes');
  assert.equal(res.headers()['cache-control'], 'no-store');
  const bId = await page.evaluate(() => window.loadId);
  await sleep(PAST_GRACE);
  await assertStillInside(page, visitor, 'B', cookie, 'A -> B, past the grace');

  // B -> A: B cannot be cached, so leaving it is final for that page (pagehide, not
  // persisted): away is sent, and A comes in time.
  const aways = apiCount('away');
  [res] = await Promise.all([page.waitForNavigation(), page.click('#link')]);
  assert.equal(res.headers()['x-wr'], 'PASSED', 'B -> A: passes');
  assert.ok(await waitForApi('away', aways, 1), 'B -> A: B sent away');
  await sleep(PAST_GRACE);
  await assertStillInside(page, visitor, 'A', cookie, 'B -> A, past the grace');

  // Back to B: loaded anew (it was not kept in the back/forward cache).
  res = await page.goBack();
  assert.ok(res, 'back to B: B is requested again');
  assert.equal(res.headers()['x-wr'], 'PASSED', 'back to B: passes');
  assert.notEqual(await page.evaluate(() => window.loadId), bId, 'back to B: B was loaded anew');
  await sleep(PAST_GRACE);
  await assertStillInside(page, visitor, 'B', cookie, 'back to B, past the grace');
});

test('closing one of two tabs keeps the visitor inside', { timeout: 30000 }, async () => {
  const { page: first, visitor, cookie } = await admitBrowserThenQueue();
  const second = await ctx.newPage();
  const res = await second.goto(`${nginx.base}/a.html`);
  assert.equal(res.headers()['x-wr'], 'PASSED', 'the second tab passes');
  // Past the second tab's first heartbeat (1 s after it loaded): from here to the end of the
  // test its periodic heartbeat is not due, only its answer to the other tab's leaving.
  await sleep(1500);
  const aways = apiCount('away');
  const beats = apiCount('heartbeat');
  await first.close();
  assert.ok(await waitForApi('away', aways, 1), 'the closed tab sent away');
  assert.ok(await waitForApi('heartbeat', beats, 1), 'the other tab answered with a heartbeat');
  await sleep(2 * GRACE + SWEEP + 500);
  await assertStillInside(second, visitor, 'A', cookie, 'a tab closed, past twice the grace');
});

test('closing the last tab frees the slot after the grace', { timeout: 30000 }, async () => {
  const { page, visitor } = await admitBrowserThenQueue();
  // Reached by a click, as a visitor would.
  await Promise.all([page.waitForNavigation(), page.click('#link')]);
  const aways = apiCount('away');
  const t0 = Date.now();
  await page.close();
  assert.ok(await waitForApi('away', aways, 1), 'the closed tab sent away');
  let pos;
  while (Date.now() - t0 < GRACE + 3000) {
    pos = await visitor.position();
    if (pos.state !== 'queued') break;
    await sleep(100);
  }
  const took = Date.now() - t0;
  assert.equal(pos.state, 'admitted', `the second visitor is let in within ${GRACE + 3000} ms`);
  assert.ok(took >= GRACE - 300, `not at once, but after the grace (${took} ms)`);
  assert.equal((await visitor.get('/a.html')).xwr, 'PASSED', 'the second visitor passes');
  const s = await status();
  assert.equal(s.active_sessions, 1, 'one session: the second visitor');
  assert.equal(s.queue_length, 0, 'nobody waits');
});

// Closing a window with two tabs of the site: a tab that is closing too hears the other's
// "away" through localStorage; heartbeat.js answers only a moment later, so a closing tab
// never answers and the slot frees after the grace (answering at once kept it until `idle`).
test('closing a window with two tabs frees the slot after the grace', {
  timeout: 30000,
}, async () => {
  const { visitor } = await admitBrowserThenQueue();
  const second = await ctx.newPage();
  await second.goto(`${nginx.base}/b.html`);
  await sleep(1500);
  const t0 = Date.now();
  await ctx.close();
  ctx = null;
  let pos;
  while (Date.now() - t0 < GRACE + 3000) {
    pos = await visitor.position();
    if (pos.state !== 'queued') break;
    await sleep(100);
  }
  assert.equal(pos.state, 'admitted', `the second visitor is let in within ${GRACE + 3000} ms`);
});
