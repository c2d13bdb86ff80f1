// Makes docs/pages/*.png and docs/pages/README.md: every page the room sends a visitor (the
// queue page with a place, a draw and a countdown; the full, closed, over and cookies pages;
// the queue page in German), branded as nginx-conf/branded.conf brands it, at a desktop's and
// a phone's size, light and dark, as headless Chromium shows it with JavaScript. Run by
// scripts/screenshot-pages, which builds and installs what it needs.
//
// Usage: node scripts/screenshot-pages.mjs OUT-DIR

import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { launchChromium } from '../t/browser/harness.mjs';
import { fillRooms, startRooms } from '../t/browser/rooms.mjs';

const [out = 'docs/pages'] = process.argv.slice(2);
const PAGES = [
  ['queue', '/p/', 'en', 'The queue page: a place in line'],
  ['draw', '/d/', 'en', 'A turn drawn at random'],
  ['countdown', '/s/', 'en', 'Before the event\'s start'],
  ['full', '/f/', 'en', 'The line is full'],
  ['closed', '/c/', 'en', 'Closed or sold out'],
  ['over', '/o/', 'en', 'The event is over'],
  ['cookies', '/p/?wr_check=1', 'en', 'Cookies are needed'],
  ['queue-de', '/p/', 'de', 'The queue page in German'],
];
const SIZES = [['desktop', 1024, 720], ['phone', 390, 760]];

mkdirSync(out, { recursive: true });
const nginx = await startRooms();
const profile = mkdtempSync(join(tmpdir(), 'wr-shots-'));
const browser = await launchChromium(profile);
const rows = [];
try {
  await fillRooms(nginx);
  for (const [name, path, lang, title] of PAGES) {
    const cells = [];
    for (const [size, width, height] of SIZES) {
      for (const scheme of ['light', 'dark']) {
        const ctx = await browser.createBrowserContext();
        const page = await ctx.newPage();
        await page.setExtraHTTPHeaders({ 'Accept-Language': lang });
        await page.setViewport({ width, height });
        await page.emulateMediaFeatures([{ name: 'prefers-color-scheme', value: scheme }]);
        await page.goto(nginx.base + path);
        // The script's first check, and the countdown's first tick.
        await sleep(1500);
        const file = `${name}-${size}-${scheme}.png`;
        await page.screenshot({ path: join(out, file) });
        await ctx.close();
        cells.push(`<img src="${file}" alt="${title}, ${size}, ${scheme}" width="${size === 'phone' ? 160 : 320}">`);
      }
    }
    rows.push(`| ${title} | ${cells.join(' ')} |`);
  }
} finally {
  await browser.close();
  rmSync(profile, { recursive: true, force: true });
  await nginx.stop();
}
writeFileSync(join(out, 'README.md'), `# The pages, as a visitor sees them

Made by \`scripts/screenshot-pages\`: desktop (light, dark) and phone (light, dark).

| Page | Screenshots |
|------|-------------|
${rows.join('\n')}
`);
console.log(`${rows.length} pages in ${out}`);
