// What the browser tests share: an nginx of their own on a free loopback port, a visitor without
// a browser (node:http), and Debian's headless Chromium (puppeteer-core, which downloads
// nothing).
//
// Needs TEST_NGINX_BINARY (nginx) and WR_MODULE (the module's .so), as scripts/test sets them,
// and Chromium at /usr/bin/chromium (or CHROMIUM). WR_BROWSER_KEEP=1 keeps nginx's directories
// (configuration, logs) for a look afterwards.

import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdtempSync, mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { get as httpGet } from 'node:http';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { after, before } from 'node:test';
import puppeteer from 'puppeteer-core';

export const NGINX = process.env.TEST_NGINX_BINARY;
export const MODULE = process.env.WR_MODULE;
const CHROMIUM = process.env.CHROMIUM || '/usr/bin/chromium';
const KEEP = process.env.WR_BROWSER_KEEP === '1';

// The top of every test's nginx.conf, up to the inside of its http block: the module, nginx in
// the foreground, and an access log with what the room decided.
export const CONF_HEAD = `load_module ${MODULE};
${process.getuid?.() === 0 ? 'user root;' : ''}
daemon off;
worker_processes 2;
error_log logs/error.log notice;
pid logs/nginx.pid;

events {
    worker_connections 256;
}

http {
    types {
        text/html html;
    }
    log_format wr '$msec "$request" $status $waiting_room_status';
    access_log logs/access.log wr;
`;

export function freePort() {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.on('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const { port } = s.address();
      s.close(() => resolve(port));
    });
  });
}

// Starts nginx with the configuration `conf(port, dir)` and the files `html` (name: text) in
// `dir/html`; answers once `/_wr_status` does.
export async function startNginx(conf, html) {
  assert.ok(NGINX && MODULE, 'TEST_NGINX_BINARY and WR_MODULE must name nginx and the module');
  const dir = mkdtempSync(join(tmpdir(), 'wr-browser-'));
  for (const d of ['conf', 'logs', 'html']) mkdirSync(join(dir, d));
  const port = await freePort();
  writeFileSync(join(dir, 'conf/nginx.conf'), conf(port, dir));
  for (const [name, text] of Object.entries(html)) writeFileSync(join(dir, 'html', name), text);
  const proc = spawn(NGINX, ['-p', `${dir}/`, '-e', 'logs/error.log', '-c', 'conf/nginx.conf'], {
    stdio: ['ignore', 'inherit', 'inherit'],
  });
  const exited = new Promise((resolve) => proc.on('exit', resolve));
  const killOnExit = () => proc.kill('SIGTERM');
  process.on('exit', killOnExit);
  const base = `http://127.0.0.1:${port}`;
  const log = (file = 'access.log') => {
    try {
      return readFileSync(join(dir, 'logs', file), 'utf8');
    } catch {
      return '';
    }
  };
  const stop = async () => {
    process.off('exit', killOnExit);
    if (proc.exitCode === null && proc.signalCode === null) {
      proc.kill('SIGTERM');
      const t = setTimeout(() => proc.kill('SIGKILL'), 5000);
      await exited;
      clearTimeout(t);
    }
    if (!KEEP) rmSync(dir, { recursive: true, force: true });
  };
  for (const deadline = Date.now() + 10000; ; ) {
    try {
      if ((await fetch(`${base}/_wr_status`)).ok) break;
    } catch {}
    if (proc.exitCode !== null || Date.now() > deadline) {
      const err = log('error.log');
      await stop();
      throw new Error(`nginx did not start:\n${err}`);
    }
    await sleep(50);
  }
  return { base, dir, stop, log };
}

// A visitor without a browser: node:http, saying it loads a page as a browser does (only page
// loads join the line; fetch() would say "cors"), the room's cookie kept by hand.
export class Visitor {
  cookie = '';

  // `base`: nginx's URL; `room`: the room's name, whose cookie is kept.
  constructor(base, room) {
    this.base = base;
    this.name = `wr_${room}=`;
  }

  get(path) {
    const headers = { accept: 'text/html', 'sec-fetch-mode': 'navigate', 'sec-fetch-dest': 'document' };
    if (this.cookie) headers.cookie = this.cookie;
    return new Promise((resolve, reject) => {
      const req = httpGet(this.base + path, { headers }, (res) => {
        for (const c of res.headers['set-cookie'] ?? []) {
          const pair = c.split(';')[0];
          if (pair.startsWith(this.name)) {
            this.cookie = /max-age=0|expires=thu, 01 jan 1970/i.test(c) ? '' : pair;
          }
        }
        let body = '';
        res.setEncoding('utf8');
        res.on('data', (d) => (body += d));
        res.on('end', () => resolve({ status: res.statusCode, xwr: res.headers['x-wr'] ?? null, body }));
      });
      req.on('error', reject);
    });
  }

  async position() {
    const r = await this.get('/_wr/position');
    return { status: r.status, ...JSON.parse(r.body) };
  }
}

// Debian's Chromium, headless, with its profile in `profile`.
export function launchChromium(profile) {
  return puppeteer.launch({
    executablePath: CHROMIUM,
    headless: true,
    pipe: true,
    userDataDir: profile,
    // headless: true adds --headless=new. The machine may have no network but loopback:
    // nothing that phones home.
    args: [
      '--no-sandbox',
      '--disable-gpu',
      '--disable-quic',
      '--no-first-run',
      '--disable-background-networking',
      '--disable-component-update',
      '--disable-sync',
    ],
    protocolTimeout: 20000,
  });
}

// Chromium for the tests of one file: launched before them, closed (its profile removed) after.
// `chromium.browser` is the browser while they run.
export function chromiumForFile() {
  const chromium = { browser: undefined, profile: undefined };
  before(async () => {
    chromium.profile = mkdtempSync(join(tmpdir(), 'wr-chromium-'));
    chromium.browser = await launchChromium(chromium.profile);
  });
  after(async () => {
    await chromium.browser?.close();
    if (chromium.profile) rmSync(chromium.profile, { recursive: true, force: true });
  });
  return chromium;
}
