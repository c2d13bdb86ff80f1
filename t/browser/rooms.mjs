// The rooms of the page tests and of scripts/screenshot-pages: every page the room sends, branded
// as nginx-conf/branded.conf brands it, in one nginx.

import assert from 'node:assert/strict';
import { mkdirSync, writeFileSync } from 'node:fs';
import { CONF_HEAD, Visitor, startNginx } from './harness.mjs';

const utc = (ms) => new Date(ms).toISOString().replace(/\.\d+Z$/, 'Z');

// Rooms for each page: q (a place in line), p (the same, checking seldom: a page without
// JavaScript reloads every 30 s, not while axe-core looks at it), d (a draw), s (before the
// start), f (a line that fills at once), c (closed), o (over).
export const CONF = (port) => `
${CONF_HEAD}
    waiting_room_zone zone=q:1m max_active=1;
    waiting_room_zone zone=p:1m max_active=1 claim_window=10m;
    waiting_room_zone zone=d:1m max_active=1 model=random claim_window=10m;
    waiting_room_zone zone=s:1m max_active=5 start=${utc(Date.now() + 3 * 3600e3)};
    waiting_room_zone zone=f:32k max_active=1;
    waiting_room_zone zone=c:1m max_active=5 mode=reject;
    waiting_room_zone zone=o:1m max_active=5 start=2020-01-01T00:00:00Z end=2020-01-02T00:00:00Z;

    server {
        listen 127.0.0.1:${port};
        add_header X-WR $waiting_room_status always;

        waiting_room_title  "Acme Spring Sale";
        waiting_room_logo   /brand/logo.svg "Acme";
        waiting_room_colors accent=#b0125b background=#fdf2f6;
        waiting_room_message "Everything is 30% off until Sunday.";

        location / { }
        location /brand/ { types { image/svg+xml svg; } }
${['q', 'p', 'd', 's', 'f', 'c', 'o'].map((r) => `
        location /${r}/ { waiting_room ${r} api=/${r}/_wr/; }
        location /${r}/_wr/ { waiting_room_api ${r}; }`).join('')}

        location = /_wr_status {
            waiting_room_status q;
        }
    }
}
`;

export const FILES = {
  'index.html': '<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><title>Shop</title></head>'
    + '<body><h1>Shop</h1></body></html>\n',
  'form.html': '<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><title>Order</title></head>'
    + '<body><form method="post" action="/q/order"><input name="item" value="42">'
    + '<button>Order</button></form></body></html>\n',
};

// Starts nginx with the rooms, the site's pages and the logo.
export async function startRooms() {
  const nginx = await startNginx(CONF, FILES);
  // The logo, outside the room, and the page the room q protects.
  mkdirSync(`${nginx.dir}/html/q`);
  writeFileSync(`${nginx.dir}/html/q/index.html`, FILES['index.html']);
  mkdirSync(`${nginx.dir}/html/brand`, { recursive: true });
  writeFileSync(`${nginx.dir}/html/brand/logo.svg`, '<svg xmlns="http://www.w3.org/2000/svg" width="120" '
    + 'height="32"><rect width="120" height="32" rx="6" fill="#b0125b"/></svg>\n');
  return nginx;
}

// Someone holds room `room`'s one slot.
export async function holdTheSlot(nginx, room) {
  const inside = new Visitor(nginx.base, room);
  assert.equal((await inside.get(`/${room}/`)).xwr, 'ADMITTED');
  return inside;
}

// Fills the rooms so that each shows its page: p and d held, two more in d's draw, f's line
// full.
export async function fillRooms(nginx) {
  await holdTheSlot(nginx, 'p');
  await holdTheSlot(nginx, 'd');
  for (let i = 0; i < 2; i++) await new Visitor(nginx.base, 'd').get('/d/');
  await holdTheSlot(nginx, 'f');
  for (let i = 0; i < 5000; i++) {
    const v = new Visitor(nginx.base, 'f');
    if ((await v.get('/f/')).status === 503) break;
    await v.get('/f/');
  }
}
