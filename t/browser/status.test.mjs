// The status location's live page for operators, in a real browser (Debian's headless Chromium,
// driven by puppeteer-core), at a phone's width (320 px) and a desktop's (1280 px):
//
// - a browser's Accept gets the page; it shows the room's figures from the JSON, and its four
//   charts draw the history and follow the room as it changes (a sample every 5 s);
// - its Content-Security-Policy refuses nothing the page does (no console error);
// - nothing overflows the phone's width, and axe-core finds no violation, in light and dark
//   (when axe-core can be found: t/browser/node_modules, or the path of axe.min.js in AXE_CORE;
//   otherwise that test is skipped).
//
// See harness.mjs for what the tests need.

import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { CONF_HEAD, Visitor, chromiumForFile, startNginx } from './harness.mjs';

const ROOM = 'launch';
const SIZES = [{ width: 320, height: 640 }, { width: 1280, height: 800 }];

const CONF = (port) => `
${CONF_HEAD}
    waiting_room_zone zone=${ROOM}:1m max_active=1;

    server {
        listen 127.0.0.1:${port};

        location / {
            waiting_room ${ROOM};
        }

        location /_wr/ {
            waiting_room_api ${ROOM};
        }

        location = /_wr_status {
            waiting_room_status ${ROOM};
        }
    }
}
`;

const PAGE = '<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><title>Shop</title></head>'
  + '<body><h1>Shop</h1></body></html>\n';

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
let nginx;
before(async () => {
  nginx = await startNginx(CONF, { 'index.html': PAGE });
});
after(async () => {
  await nginx?.stop();
});

async function until(what, check, ms = 15000) {
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

// A visitor who takes a place: let in (the room has a free slot) or in line.
async function comes() {
  const v = new Visitor(nginx.base, ROOM);
  const first = await v.get('/');
  if (first.body.includes('Shop')) await v.get('/'); // the browser comes back: confirmed
  else await v.position(); // the queue page's first question takes the place
  return v;
}

// Runs `body(page, errors)` on the live page in a browser context of its own, at `size`, in
// light or dark; `errors` collects the console's errors (a CSP refusal is one).
async function withStatusPage(size, dark, body) {
  const ctx = await chromium.browser.createBrowserContext();
  try {
    const page = await ctx.newPage();
    await page.setViewport(size);
    await page.emulateMediaFeatures([{ name: 'prefers-color-scheme', value: dark ? 'dark' : 'light' }]);
    const errors = [];
    page.on('console', (m) => m.type() === 'error' && errors.push(m.text()));
    page.on('pageerror', (e) => errors.push(String(e)));
    const res = await page.goto(`${nginx.base}/_wr_status`);
    assert.match(res.headers()['content-type'], /^text\/html/);
    assert.match(res.headers()['content-security-policy'], /script-src 'sha256-/);
    return await body(page, errors);
  } finally {
    await ctx.close();
  }
}

const text = (page, id) => page.$eval(`#${id}`, (e) => e.textContent);
const points = (page, id) => page.$eval(`#c-${id}`, (e) => Number(e.getAttribute('data-points') || 0));

test('the live page shows the figures, and its charts draw and follow the room', { timeout: 90000 }, async () => {
  await comes(); // inside
  await comes(); // in line
  await withStatusPage(SIZES[1], false, async (page, errors) => {
    await until('the figures show', async () => (await text(page, 'v-active')) === '1 of 1');
    assert.equal(await text(page, 'v-waiting'), '1');
    assert.match(await text(page, 'title'), /launch/);
    await until('the charts draw', async () => (await points(page, 'active')) >= 1);
    for (const id of ['active', 'waiting', 'eta']) {
      assert.ok(await page.$(`#c-${id} path.ln`), `chart ${id} has a line`);
    }
    const desc = await text(page, 'd-waiting');
    assert.match(desc, /In line over the last/);
    const before = await points(page, 'waiting');
    await comes(); // a second one in line
    await until('the figures follow', async () => (await text(page, 'v-waiting')) === '2', 12000);
    await until('the chart follows', async () => (await points(page, 'waiting')) > before, 15000);
    await until('the chart reaches 2', async () => /to 2,/.test(await text(page, 'd-waiting')), 15000);
    assert.ok((await points(page, 'rate')) >= 1, 'admissions per minute from two samples on');
    assert.deepEqual(errors, []);
  });
});

test('nothing overflows a phone, and axe-core finds nothing, light and dark', {
  timeout: 90000,
  skip: !AXE && 'axe-core is not installed (npm install axe-core in t/browser, or AXE_CORE=path)',
}, async () => {
  for (const size of SIZES) {
    for (const dark of [false, true]) {
      const what = `${size.width} px${dark ? ', dark' : ''}`;
      await withStatusPage(size, dark, async (page, errors) => {
        await until(`${what}: the charts draw`, async () => (await points(page, 'waiting')) >= 1);
        const overflow = await page.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
        assert.ok(overflow <= 0, `${what}: ${overflow} px too wide`);
        await page.evaluate(AXE);
        const violations = await page.evaluate(async () =>
          (await window.axe.run(document, { resultTypes: ['violations'] })).violations.map(
            (v) => `${v.id}: ${v.help} (${v.nodes.map((n) => n.target.join(' ')).join(', ')})`));
        assert.deepEqual(violations, [], `${what}: ${violations.join('\n')}`);
        assert.deepEqual(errors, [], what);
      });
    }
  }
});
