// The queue page under admission models and events, in a real browser (Debian's headless
// Chromium, driven by puppeteer-core), at a phone's size (375×667):
//
// - before an event's start, the page counts down in the browser and, at the start, lets the
//   visitor in without a reload by hand;
// - with model=random, the page says among how many people the turn is drawn;
// - a place in line, as before; a room switched off (mode pass) loads the site, a room closed
//   (mode reject) before the page took its place shows the server's "closed" page;
// - in every state nothing overflows the phone's width, and axe-core finds nothing on the
//   countdown and draw pages (when axe-core can be found: t/browser/node_modules, or the path of
//   axe.min.js in AXE_CORE; otherwise that test is skipped).
//
// Each test starts and stops its own nginx; see harness.mjs for what the tests need.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { CONF_HEAD, Visitor, chromiumForFile, startNginx } from './harness.mjs';

const PHONE = { width: 375, height: 667 };
// Long enough to wrap: the room's name is shown, in capitals, at the top of the page.
const ROOM = 'spring_sale_2026_tickets_for_everyone';

const CONF = (zone) => (port) => `
${CONF_HEAD}
    waiting_room_zone zone=${ROOM}:1m ${zone};

    server {
        listen 127.0.0.1:${port};
        add_header X-WR $waiting_room_status always;

        location / {
            waiting_room ${ROOM};
        }

        location /_wr/ {
            waiting_room_api ${ROOM};
        }

        location = /_wr/control {
            allow 127.0.0.1;
            deny all;
            waiting_room_control ${ROOM};
        }

        location = /_wr_status {
            waiting_room_status ${ROOM};
        }
    }
}
`;

const PAGE = '<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><title>Shop</title></head>'
  + '<body><h1>Shop</h1></body></html>\n';

// An RFC 3339 time in UTC, `ms` from now, in whole seconds.
const inFuture = (ms) => new Date(Date.now() + ms).toISOString().replace(/\.\d+Z$/, 'Z');

// axe-core's script, if it is installed.
function axeSource() {
  let path = process.env.AXE_CORE;
  if (!path) {
    try {
      path = createRequire(import.meta.url).resolve('axe-core/axe.min.js');
    } catch {
      return null;
    }
  }
  return readFileSync(path.endsWith('.js') ? path : join(path, 'axe.min.js'), 'utf8');
}
const AXE = axeSource();


const chromium = chromiumForFile();

// Waits until `check` gives a truthy value (an exception, as while the page navigates, counts
// as no); fails after `ms`.
async function until(what, check, ms = 8000) {
  const deadline = Date.now() + ms;
  for (;;) {
    try {
      const v = await check();
      if (v) return v;
    } catch {}
    if (Date.now() > deadline) assert.fail(`timed out: ${what}`);
    await sleep(100);
  }
}

// Runs `body(nginx)` with an nginx of its own for the zone's parameters `zone`.
async function withNginx(zone, body) {
  const nginx = await startNginx(CONF(zone), { 'index.html': PAGE });
  try {
    return await body(nginx);
  } finally {
    await nginx.stop();
  }
}

// Runs `body(page, navigations)` in a browser context of its own, a page at a phone's size;
// `navigations` collects the X-WR header of each of the page's document loads.
async function withPage(body) {
  const ctx = await chromium.browser.createBrowserContext();
  try {
    const page = await ctx.newPage();
    await page.setViewport(PHONE);
    const navigations = [];
    page.on('response', (res) => {
      if (res.request().isNavigationRequest() && res.request().frame() === page.mainFrame()) {
        navigations.push(res.headers()['x-wr'] ?? null);
      }
    });
    return await body(page, navigations);
  } finally {
    await ctx.close();
  }
}

// Which of the queue page's three headline blocks shows, and its text.
async function headline(page) {
  return page.evaluate(() => {
    const shown = ['bp', 'bd', 'bs'].filter((id) => !document.getElementById(id).hidden);
    const block = shown.length === 1 ? document.getElementById(shown[0]) : null;
    return { shown: shown.join(','), text: block?.innerText.replace(/\s+/g, ' ').trim() ?? '' };
  });
}

// Nothing wider than the phone's screen.
async function assertFits(page, state) {
  const { scroll, widest } = await page.evaluate(() => ({
    scroll: document.documentElement.scrollWidth,
    widest: Math.max(...[...document.querySelectorAll('body *')].map((e) => e.getBoundingClientRect().right)),
  }));
  assert.ok(scroll <= PHONE.width, `${state}: the page is ${scroll}px wide on a ${PHONE.width}px screen`);
  assert.ok(widest <= PHONE.width + 0.5, `${state}: an element reaches ${widest}px`);
}

// The countdown's seconds ("01:02:03" or "00:07").
const seconds = (text) => text.split(':').reduce((s, part) => s * 60 + Number(part), 0);

async function control(nginx, change) {
  const r = await fetch(`${nginx.base}/_wr/control`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify(change),
  });
  const text = await r.text();
  assert.equal(r.status, 200, text);
  return JSON.parse(text);
}

// `n` visitors without a browser, each with a place in line.
async function inLine(nginx, n) {
  for (let i = 0; i < n; i++) {
    const v = new Visitor(nginx.base, ROOM);
    assert.equal((await v.get('/')).xwr, 'ARRIVED');
    assert.equal((await v.position()).state, 'queued');
  }
}

// Someone holds the one slot (and comes back, so the session stays).
async function holdTheSlot(nginx) {
  const inside = new Visitor(nginx.base, ROOM);
  assert.equal((await inside.get('/')).xwr, 'ADMITTED');
  assert.equal((await inside.get('/')).xwr, 'PASSED');
}

test('before the start the page counts down, and lets the visitor in at the start', { timeout: 40000 }, async (t) => {
  const start = inFuture(8000);
  await withNginx(`max_active=5 start=${start}`, (nginx) =>
    withPage(async (page, navigations) => {
      await page.goto(`${nginx.base}/`);
      const h = await until('the countdown shows', async () => {
        const v = await headline(page);
        return v.shown === 'bs' && /Opens in \d\d:\d\d/.test(v.text) && v.text;
      });
      assert.match(h, /not open yet/i);
      assert.match(await page.$eval('#bs .lead', (e) => e.textContent), /has not started.*place is kept/);
      assert.match(h, /in the order they arrived/, 'fifo: arrival order at the start');
      const first = seconds(await page.$eval('#sn', (e) => e.textContent));
      assert.ok(first > 0 && first <= 9, `the countdown starts from the start: ${first} s`);
      assert.match(await page.title(), /^Opens in \d\d:\d\d · /);
      await assertFits(page, 'countdown');
      await until('the countdown goes down', async () =>
        seconds(await page.$eval('#sn', (e) => e.textContent)) < first, 3000);
      assert.equal((await (await fetch(`${nginx.base}/_wr_status`)).json()).phase, 'before');
      // At the start: in, without a reload by hand.
      await until('the site at the start', () => page.evaluate(() => document.title === 'Shop'), 20000);
      // The page asks the moment its countdown ends, not at its next poll.
      const late = Date.now() - Date.parse(start);
      assert.ok(late >= 0 && late < 2500, `in ${late} ms after the start`);
      t.diagnostic(`in the site ${late} ms after the start`);
      assert.equal(navigations.length, 2, `one load, one reload by the page: ${navigations}`);
      assert.equal(navigations[0], 'ARRIVED');
      assert.match(navigations[1], /^(ADMITTED|PASSED)$/);
    }));
});

test('with model=random the page says among how many the turn is drawn', { timeout: 30000 }, async () => {
  await withNginx('max_active=1 model=random', async (nginx) => {
    await holdTheSlot(nginx);
    await inLine(nginx, 2);
    await withPage(async (page) => {
      assert.equal((await page.goto(`${nginx.base}/`)).headers()['x-wr'], 'ARRIVED');
      const h = await until('the draw shows', async () => {
        const v = await headline(page);
        return v.shown === 'bd' && v.text;
      });
      // The browser took the third place: the draw is among the three waiting.
      await until('the draw among 3', () =>
        page.evaluate(() => document.getElementById('dn').textContent === '3'));
      assert.match((await headline(page)).text, /Your turn is drawn at random among 3 people waiting/);
      assert.match(h, /everyone in the draw has the same chance: refreshing or arriving early does not change it/);
      assert.match(await page.title(), /^You are in the draw · /);
      assert.match(await page.$eval('#eta', (e) => e.textContent), /^(being measured|about .+ \(at most .+\)|less than a minute.*)$/);
      const st = await (await fetch(`${nginx.base}/_wr_status`)).json();
      assert.equal(st.queue_length, 3);
      await assertFits(page, 'draw');
    });
  });
});

test('a place in line; a room switched off or closed', { timeout: 40000 }, async () => {
  await withNginx('max_active=1', async (nginx) => {
    await holdTheSlot(nginx);
    await withPage(async (page, navigations) => {
      await page.goto(`${nginx.base}/`);
      await until('place 1 shows', () =>
        page.evaluate(() => document.getElementById('pos').textContent === '1'
          && !document.getElementById('bp').hidden));
      assert.match((await headline(page)).text, /You are number 1 in line/);
      assert.match(await page.title(), /^#1 · /);
      await assertFits(page, 'place');
      // The room switched off: the page loads the site.
      await control(nginx, { mode: 'pass' });
      await until('the site, the room off', () => page.evaluate(() => document.title === 'Shop'), 12000);
      assert.deepEqual(navigations, ['ARRIVED', 'OFF']);
    });
    // The room closed before the page took its place: the page reloads, once, into the
    // server's "closed" page.
    await control(nginx, { mode: 'normal' });
    await withPage(async (page, navigations) => {
      await page.setRequestInterception(true);
      let closed;
      const isClosed = new Promise((resolve) => (closed = resolve));
      page.on('request', async (req) => {
        if (req.isInterceptResolutionHandled()) return;
        if (req.url().endsWith('/_wr/position')) await isClosed;
        req.continue();
      });
      assert.equal((await page.goto(`${nginx.base}/`)).headers()['x-wr'], 'ARRIVED');
      await control(nginx, { mode: 'reject' });
      closed();
      await until('the closed page', () => page.evaluate(() => document.title === 'Closed for now'));
      assert.deepEqual(navigations, ['ARRIVED', 'CLOSED']);
    });
  });
});

test('axe-core finds nothing on the countdown and draw pages', {
  timeout: 30000,
  skip: !AXE && 'axe-core is not installed (npm install axe-core in t/browser, or AXE_CORE=path)',
}, async () => {
  const check = async (page, state) => {
    await page.evaluate(AXE);
    const violations = await page.evaluate(async () =>
      (await window.axe.run(document, { resultTypes: ['violations'] })).violations.map(
        (v) => `${v.id}: ${v.help} (${v.nodes.map((n) => n.target.join(' ')).join(', ')})`));
    assert.deepEqual(violations, [], `${state}: ${violations.join('\n')}`);
  };
  for (const dark of [false, true]) {
    await withNginx(`max_active=5 model=lottery start=${inFuture(3600_000)}`, (nginx) =>
      withPage(async (page) => {
        await page.emulateMediaFeatures([{ name: 'prefers-color-scheme', value: dark ? 'dark' : 'light' }]);
        await page.goto(`${nginx.base}/`);
        await until('the countdown shows', async () => (await headline(page)).shown === 'bs');
        await check(page, `countdown${dark ? ', dark' : ''}`);
      }));
    await withNginx('max_active=1 model=random', async (nginx) => {
      await holdTheSlot(nginx);
      await withPage(async (page) => {
        await page.emulateMediaFeatures([{ name: 'prefers-color-scheme', value: dark ? 'dark' : 'light' }]);
        await page.goto(`${nginx.base}/`);
        await until('the draw shows', async () => (await headline(page)).shown === 'bd');
        await check(page, `draw${dark ? ', dark' : ''}`);
      });
    });
  }
});
