// Only people take places, in a real browser (Debian's headless Chromium): a first contact is
// given an arrival, and the queue page's first question, sent at once, takes the place; without
// JavaScript the page's reload does. A Chromium that blocks cookies makes no lasting ticket, is
// told that cookies are needed, and the page stops asking.
//
// The room has one slot, held by a visitor without a browser (node:http); the browser is sent
// to the line. See harness.mjs for what the tests need.

import { test, before, after, beforeEach, afterEach } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { CONF_HEAD, Visitor, launchChromium, startNginx } from './harness.mjs';

const CONF = (port) => `
${CONF_HEAD}
    waiting_room_zone zone=p:1m max_active=1;

    server {
        listen 127.0.0.1:${port};
        add_header X-WR $waiting_room_status always;

        location / {
            waiting_room p;
        }

        location /_wr/ {
            waiting_room_api p;
        }

        location = /_wr_status {
            waiting_room_status p;
        }
    }
}
`;

const PAGE = '<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><title>Shop</title></head>'
  + '<body><h1>Shop</h1></body></html>\n';

let browser; // cookies allowed
let blocking; // cookies blocked for every site
const profiles = [];
let nginx;

async function status() {
  return (await fetch(`${nginx.base}/_wr_status`)).json();
}

async function until(what, check, ms = 8000) {
  const deadline = Date.now() + ms;
  for (;;) {
    const v = await check();
    if (v) return v;
    if (Date.now() > deadline) assert.fail(`timed out: ${what}`);
    await sleep(100);
  }
}

function profile(prefs) {
  const dir = mkdtempSync(join(tmpdir(), 'wr-chromium-'));
  profiles.push(dir);
  if (prefs) {
    mkdirSync(join(dir, 'Default'));
    writeFileSync(join(dir, 'Default/Preferences'), JSON.stringify(prefs));
  }
  return dir;
}

before(async () => {
  browser = await launchChromium(profile());
  // Chromium's setting "Block all cookies" (content setting 2 = block).
  blocking = await launchChromium(
    profile({ profile: { default_content_setting_values: { cookies: 2 } } }),
  );
});

after(async () => {
  await browser?.close();
  await blocking?.close();
  for (const d of profiles) rmSync(d, { recursive: true, force: true });
});

beforeEach(async () => {
  nginx = await startNginx(CONF, { 'index.html': PAGE });
  // Someone holds the one slot (and comes back, so the session stays).
  const inside = new Visitor(nginx.base, 'p');
  assert.equal((await inside.get('/')).xwr, 'ADMITTED');
  assert.equal((await inside.get('/')).xwr, 'PASSED');
});

afterEach(async () => {
  await nginx?.stop();
  nginx = null;
});

test('the queue page takes its place at once', { timeout: 30000 }, async () => {
  const ctx = await browser.createBrowserContext();
  try {
    const page = await ctx.newPage();
    const res = await page.goto(`${nginx.base}/`);
    assert.equal(res.headers()['x-wr'], 'ARRIVED', 'a first contact gets an arrival');
    const st = await until('the place is taken', async () => {
      const s = await status();
      return s.joined_total === 1 && s;
    });
    assert.equal(st.queue_length, 1);
    await until('the page shows place 1', () =>
      page.evaluate(() => document.getElementById('pos')?.textContent === '1'));
    const cookie = (await ctx.cookies()).find((c) => c.name === 'wr_p');
    assert.ok(cookie, 'the browser keeps the ticket');
    // A reload keeps the place.
    const again = await page.reload();
    assert.equal(again.headers()['x-wr'], 'QUEUED');
    assert.equal((await status()).joined_total, 1, 'a reload takes no second place');
    assert.ok(!page.url().includes('wr_check'), 'no word about cookies');
    assert.equal(await page.$eval('#say', (e) => e.textContent), '');
  } finally {
    await ctx.close();
  }
});

test('without JavaScript, the reload takes the place', { timeout: 30000 }, async () => {
  const ctx = await browser.createBrowserContext();
  try {
    const page = await ctx.newPage();
    await page.setJavaScriptEnabled(false);
    const res = await page.goto(`${nginx.base}/`);
    assert.equal(res.headers()['x-wr'], 'ARRIVED');
    assert.equal((await status()).joined_total, 0, 'no place before the browser comes back');
    await until('the reload takes the place', async () => (await status()).joined_total === 1);
    assert.equal((await status()).queue_length, 1);
  } finally {
    await ctx.close();
  }
});

test('a browser that blocks cookies makes no ticket and is told why', { timeout: 30000 }, async () => {
  const ctx = await blocking.createBrowserContext();
  try {
    const page = await ctx.newPage();
    const res = await page.goto(`${nginx.base}/`);
    assert.equal(res.headers()['x-wr'], 'ARRIVED');
    // The page goes to its check, which finds no cookie and says why.
    await until('the page says cookies are needed', async () =>
      page.url().endsWith('/?wr_check=1')
      && /Cookies are needed/.test(await page.$eval('h1', (e) => e.textContent)));
    assert.match(await page.$eval('main', (e) => e.textContent), /Allow cookies for this site/);
    // The page stops: no reloads, no questions.
    const before = nginx.log().split('\n').length;
    await sleep(6000);
    const after = nginx.log().split('\n').length;
    assert.ok(after - before <= 1, `the page stopped asking (${after - before} requests)`);
    const st = await status();
    assert.equal(st.joined_total, 0, 'no ticket');
    assert.equal(st.queue_length, 0, 'nobody in line');
    assert.equal(st.active_sessions, 1, 'the one inside only');
  } finally {
    await ctx.close();
  }
});

test('a browser whose cookie does not come back is told why', { timeout: 30000 }, async () => {
  // Cookies are on, but the cookie is gone before the page's question leaves (as with an
  // extension that clears it): the room answers "none", and the page stops and says so.
  const ctx = await browser.createBrowserContext();
  try {
    const page = await ctx.newPage();
    await page.setRequestInterception(true);
    page.on('request', async (req) => {
      // The cookie is gone by the time the question leaves.
      if (req.url().includes('/_wr/position')) {
        await page.deleteCookie({ name: 'wr_p', url: nginx.base });
      }
      return req.continue();
    });
    assert.equal((await page.goto(`${nginx.base}/`)).headers()['x-wr'], 'ARRIVED');
    assert.equal(await page.evaluate(() => navigator.cookieEnabled), true);
    await until('the page says cookies are needed', async () =>
      page.url().endsWith('/?wr_check=1')
      && /Cookies are needed/.test(await page.$eval('h1', (e) => e.textContent)));
    const before = nginx.log().split('\n').length;
    await sleep(4000);
    assert.ok(nginx.log().split('\n').length - before <= 1, 'the page stopped asking');
    assert.equal((await status()).joined_total, 0, 'no ticket');
  } finally {
    await ctx.close();
  }
});
