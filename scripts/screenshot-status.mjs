// Makes docs/status-page.png: the status location's live page in headless Chromium, after a
// couple of minutes of a small simulated sale (a room of 4, visitors arriving faster than
// they leave, then slower), so that the charts have a history to show. Run by
// scripts/screenshot-status, which builds and installs what it needs.
//
// Usage: node scripts/screenshot-status.mjs OUT.png [SECONDS]

import { request } from 'node:http';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { CONF_HEAD, Visitor, launchChromium, startNginx } from '../t/browser/harness.mjs';

const [out = 'docs/status-page.png', seconds = '150'] = process.argv.slice(2);
const ROOM = 'shop';
const CONF = (port) => `
${CONF_HEAD}
    waiting_room_zone zone=${ROOM}:1m max_active=4 idle=20s heartbeat=10s session=60s;

    server {
        listen 127.0.0.1:${port};
        location / { waiting_room ${ROOM}; }
        location /_wr/ { waiting_room_api ${ROOM}; }
        location = /_wr_status { waiting_room_status ${ROOM}; }
    }
}
`;
const PAGE = '<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><title>Shop</title></head>'
  + '<body><h1>Shop</h1></body></html>\n';

const post = (base, path, cookie) => new Promise((resolve) => {
  const req = request(base + path, { method: 'POST', headers: { cookie, 'content-length': 0 } },
    (res) => { res.resume(); res.on('end', resolve); });
  req.on('error', resolve);
  req.end();
});

// A visitor: comes, waits in line polling every 2 s, stays inside `stay` seconds, leaves.
async function visit(base, stay, until) {
  const v = new Visitor(base, ROOM);
  const first = await v.get('/');
  if (first.body.includes('Shop')) await v.get('/');
  else {
    for (;;) {
      const p = await v.position();
      if (p.state === 'admitted') break;
      if (p.state !== 'queued' || Date.now() > until) return;
      await sleep(2000);
    }
  }
  await sleep(stay * 1000);
  await post(base, '/_wr/leave', v.cookie);
}

const nginx = await startNginx(CONF, { 'index.html': PAGE });
const profile = mkdtempSync(join(tmpdir(), 'wr-shot-'));
let browser;
try {
  const end = Date.now() + Number(seconds) * 1000;
  const visits = [];
  // A rush (one every 1.5 s) for the first half, then a trickle (one every 6 s).
  for (let t = Date.now(); t < end - 10000; t = Date.now()) {
    const rush = t < end - (Number(seconds) * 1000) / 2;
    visits.push(visit(nginx.base, 5 + Math.random() * 10, end));
    await sleep(rush ? 1500 : 6000);
  }
  await sleep(Math.max(0, end - Date.now()));
  browser = await launchChromium(profile);
  const page = await browser.newPage();
  await page.setViewport({ width: Number(process.env.SHOT_WIDTH || 1100), height: 760, deviceScaleFactor: 1 });
  await page.goto(`${nginx.base}/_wr_status`);
  await page.waitForFunction(() => Number(document.querySelector('#c-waiting')?.getAttribute('data-points')) > 5);
  await page.evaluate(() => { document.getElementById('updated').textContent = 'Updated just now'; });
  await page.screenshot({ path: out, fullPage: true });
  console.log(`wrote ${out}`);
  await Promise.race([Promise.allSettled(visits), sleep(1000)]);
} finally {
  await browser?.close();
  rmSync(profile, { recursive: true, force: true });
  await nginx.stop();
}
process.exit(0);
