// Every page the room sends a visitor, in a real browser (Debian's headless Chromium, driven by
// puppeteer-core), branded as nginx-conf/branded.conf brands it:
//
// - the queue page (a place in line, a drawn turn, the countdown to the start), the "line is
//   full", "closed", "event over" and "cookies are needed" pages, each in English and German,
//   with and without JavaScript, at 320 px (dark) and 1280 px (light): the language asked for,
//   nothing wider than the screen, and axe-core with no violation;
// - with JavaScript, the checking is announced and can be paused and resumed; admission and a
//   lost place are said in a live region before the page moves on;
// - without JavaScript, the page's reload is announced and can be stopped and started again;
// - a form sent while queued is not sent again: once in, the visitor is back on the form.
//
// Each test starts and stops its own nginx; see harness.mjs for what the tests need.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { setTimeout as sleep } from 'node:timers/promises';
import { chromiumForFile } from './harness.mjs';
import { fillRooms, holdTheSlot, startRooms } from './rooms.mjs';

const require = createRequire(import.meta.url);
const AXE = readFileSync(require.resolve('axe-core/axe.min.js'), 'utf8');
const TEXTS = Object.fromEntries(['en', 'de'].map((l) => [l, JSON.parse(
  readFileSync(new URL(`../../src/pages/texts/${l}.json`, import.meta.url), 'utf8'))]));

const chromium = chromiumForFile();

// Waits until `check` gives a truthy value (an exception, as while the page navigates, counts
// as no; so does a check that takes over two seconds, as one may across a navigation); fails
// after `ms`.
async function until(what, check, ms = 10000) {
  const deadline = Date.now() + ms;
  for (;;) {
    try {
      const v = await Promise.race([check(), sleep(2000).then(() => false)]);
      if (v) return v;
    } catch {}
    if (Date.now() > deadline) assert.fail(`timed out: ${what}`);
    await sleep(100);
  }
}

async function withNginx(body) {
  const nginx = await startRooms();
  try {
    return await body(nginx);
  } finally {
    await nginx.stop();
  }
}

async function withPage({ js = true, lang = 'en', width = 1280, dark = false } = {}, body) {
  const ctx = await chromium.browser.createBrowserContext();
  try {
    const page = await ctx.newPage();
    await page.setJavaScriptEnabled(js);
    await page.setExtraHTTPHeaders({ 'Accept-Language': lang });
    await page.setViewport({ width, height: 800 });
    await page.emulateMediaFeatures([{ name: 'prefers-color-scheme', value: dark ? 'dark' : 'light' }]);
    return await body(page);
  } finally {
    await ctx.close();
  }
}

async function leave(nginx, visitor, room) {
  const r = await fetch(`${nginx.base}/${room}/_wr/leave`, {
    method: 'POST', headers: { cookie: visitor.cookie },
  });
  assert.ok(r.status < 300, `leave: ${r.status}`);
}

// Everything the page says in its live region `#say`, and the note `#lost`, from now on and on
// the pages it moves on to, as it says it (the page may move on a moment later): "say:text".
async function listen(page) {
  const said = new Set();
  await page.exposeFunction('wrSaid', (text) => said.add(text));
  const watch = () => {
    new MutationObserver(() => {
      for (const id of ['say', 'lost']) {
        const e = document.getElementById(id);
        if (e?.textContent) window.wrSaid(`${id}:${e.textContent}`);
      }
    }).observe(document, { childList: true, characterData: true, subtree: true });
  };
  await page.evaluateOnNewDocument(watch);
  await page.evaluate(watch);
  return said;
}

async function axe(page) {
  await page.evaluate(AXE);
  const found = await page.evaluate(async () =>
    (await window.axe.run(document, { resultTypes: ['violations'] })).violations.map(
      (v) => `${v.id}: ${v.nodes.map((n) => n.target.join(' ')).join(', ')}`));
  return found;
}

async function fits(page, width) {
  return page.evaluate((w) => document.documentElement.scrollWidth <= w
    && Math.max(...[...document.querySelectorAll('body *')].map((e) => e.getBoundingClientRect().right)) <= w + 0.5,
  width);
}

const PAGES = [
  { name: 'queue: a place', path: '/p/', status: 200, text: 'in_line', queue: true },
  { name: 'queue: a draw', path: '/d/', status: 200, text: 'in_draw', queue: true },
  { name: 'queue: before the start', path: '/s/', status: 200, text: 'not_open', queue: true },
  { name: 'the line is full', path: '/f/', status: 503, text: 'full_heading' },
  { name: 'closed', path: '/c/', status: 503, text: 'closed_heading' },
  { name: 'the event is over', path: '/o/', status: 503, text: 'over_heading' },
  { name: 'cookies are needed', path: '/p/?wr_check=1', status: 200, text: 'cookies_heading' },
];

// One page, as `page` shows it: the right page, in `lang`, fitting `width`, axe-core finding
// nothing.
async function checkPage(nginx, page, p, { lang, js, width, dark }) {
  let res = await page.goto(nginx.base + p.path);
  assert.equal(res.status(), p.status);
  if (p.queue && !js) {
    // A first contact's page reloads (by its Refresh header) to take the place.
    assert.match(res.headers().refresh, /^\d+; url=.*wr_check=1$/);
    res = await page.waitForNavigation({ timeout: 10000 });
    assert.equal(res.headers()['x-wr'], 'QUEUED');
    assert.ok(await page.$('noscript a[href*="wr_reload=off"]'), 'a way to stop the reload');
  }
  if (p.queue && js) {
    await until('the script runs', () =>
      page.$eval('#st', (e) => !e.hidden && e.textContent.length > 0));
  }
  assert.equal(await page.$eval('html', (e) => e.lang), lang);
  const main = await page.$eval('main', (e) => e.textContent);
  assert.ok(main.includes(TEXTS[lang][p.text]), main);
  assert.ok(main.includes('Acme Spring Sale'), 'the brand');
  if (js) await until('the logo shows', () => page.$eval('img.logo', (e) => e.naturalWidth > 0));
  // axe-core needs timers, which a page without JavaScript does not run: it looks at what
  // that page shows (its <noscript> content, none of its scripts) in a page of its own.
  const view = js ? page : await shown(nginx, page, { width, dark });
  assert.ok(await fits(view, width), 'wider than the screen');
  assert.deepEqual(await axe(view), []);
}

// A page with JavaScript that shows what `page`, without it, shows.
async function shown(nginx, page, { width, dark }) {
  const html = (await page.content())
    .replace(/<script>[\s\S]*?<\/script>/g, '')
    .replace(/<(\/?)noscript>/g, '<$1div>')
    .replace('<head>', `<head><base href="${nginx.base}/">`);
  const view = await page.browserContext().newPage();
  await view.setViewport({ width, height: 800 });
  await view.emulateMediaFeatures([{ name: 'prefers-color-scheme', value: dark ? 'dark' : 'light' }]);
  await view.setContent(html, { waitUntil: 'load' });
  return view;
}

test('every page, in two languages, with and without JavaScript, on a phone and a desktop: '
  + 'axe-core finds nothing', { timeout: 300000 }, async (t) => {
  await withNginx(async (nginx) => {
    await fillRooms(nginx);
    let checked = 0;
    for (const p of PAGES) {
      for (const lang of ['en', 'de']) {
        for (const js of [true, false]) {
          for (const [width, dark] of [[320, true], [1280, false]]) {
            const what = `${p.name}, ${lang}, ${js ? 'JS' : 'no JS'}, ${width}px${dark ? ' dark' : ''}`;
            await withPage({ js, lang, width, dark }, (page) =>
              checkPage(nginx, page, p, { lang, js, width, dark }).catch((e) => {
                throw new Error(`${what}: ${e.message}`);
              }));
            checked++;
          }
        }
      }
    }
    t.diagnostic(`${checked} pages checked`);
  });
});

test('with JavaScript the checking can be paused and resumed, and admission is said before the '
  + 'page moves on', { timeout: 60000 }, async () => {
  await withNginx(async (nginx) => {
    const inside = await holdTheSlot(nginx, 'q');
    await withPage({}, async (page) => {
      await page.goto(`${nginx.base}/q/`);
      await until('in line', () => page.$eval('#pos', (e) => e.textContent === '1'));
      const said = await listen(page);
      const polls = () => nginx.log().split('\n').filter((l) => l.includes('/q/_wr/position')).length;
      await page.click('#pz');
      assert.equal(await page.$eval('#pz', (e) => e.getAttribute('aria-pressed')), 'true');
      assert.equal(await page.$eval('#cd', (e) => e.textContent), TEXTS.en.paused);
      const before = polls();
      await sleep(7000);
      assert.equal(polls(), before, 'no checks while paused');
      await page.click('#pz');
      await until('checks again', () => polls() > before);
      await leave(nginx, inside, 'q');
      await until('admission is said', () => said.has(`say:${TEXTS.en.your_turn}`), 30000);
      await until('in the site', () => page.$eval('h1', (e) => e.textContent === 'Shop'));
    });
  });
});

test('with JavaScript a lost place is said, and explained on the new page', { timeout: 60000 }, async () => {
  await withNginx(async (nginx) => {
    await holdTheSlot(nginx, 'q');
    await withPage({}, async (page) => {
      await page.goto(`${nginx.base}/q/`);
      await until('in line', () => page.$eval('#pos', (e) => e.textContent === '1'));
      const said = await listen(page);
      // The ticket is gone (a cleared cookie): the next check finds no place.
      await page.deleteCookie({ name: 'wr_q', url: nginx.base });
      await until('the loss is said', () => said.has(`say:${TEXTS.en.place_lost}`), 30000);
      await until('the new page explains', () => said.has(`lost:${TEXTS.en.place_lost_after}`), 15000);
      // The old ticket is still in line until it expires: the new place is behind it.
      await until('in line again', () => page.$eval('#pos', (e) => e.textContent === '2'));
    });
  });
});

test('without JavaScript the reload is announced, and stops and starts again', { timeout: 60000 }, async () => {
  await withNginx(async (nginx) => {
    await holdTheSlot(nginx, 'q');
    await withPage({ js: false }, async (page) => {
      await page.goto(`${nginx.base}/q/`);
      // The arrival reloads to take the place.
      await until('in line', () => page.$eval('#pos', (e) => e.textContent === '1'));
      const notice = await page.$eval('noscript', (e) => e.textContent);
      assert.match(notice, /This page reloads itself every \d+ seconds/);
      const loads = () => nginx.log().split('\n').filter((l) => /"GET \/q\/ /.test(l)).length;
      await Promise.all([page.waitForNavigation(), page.click('noscript a')]);
      assert.ok(page.url().endsWith('/q/'), page.url());
      assert.match(await page.$eval('noscript', (e) => e.textContent), /Automatic reloading is off/);
      const before = loads();
      await sleep(8000);
      assert.equal(loads(), before, 'no reload once stopped');
      await Promise.all([page.waitForNavigation(), page.click('noscript a[href*="wr_reload=on"]')]);
      await until('reloads again', () => loads() > before + 1, 15000);
    });
  });
});

test('a form sent while queued is not sent again: once in, the visitor is back on the form', {
  timeout: 60000,
}, async () => {
  await withNginx(async (nginx) => {
    const inside = await holdTheSlot(nginx, 'q');
    await withPage({}, async (page) => {
      // A place first, then the form.
      await page.goto(`${nginx.base}/q/`);
      await until('in line', () => page.$eval('#pos', (e) => e.textContent === '1'));
      await page.goto(`${nginx.base}/form.html`);
      await Promise.all([page.waitForNavigation(), page.click('button')]);
      const note = await page.$eval('#form', (e) => e.textContent);
      assert.ok(note.includes(TEXTS.en.form_not_sent), note);
      assert.equal(await page.$eval('#form a', (e) => new URL(e.href).pathname), '/form.html');
      await leave(nginx, inside, 'q');
      await until('back on the form', () => page.url().endsWith('/form.html'), 20000);
      const posts = nginx.log().split('\n').filter((l) => l.includes('"POST /q/order ')).length;
      assert.equal(posts, 1, 'the form was sent once');
    });
  });
});
