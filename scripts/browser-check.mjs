// Drives a headless Chromium over the DevTools protocol: opens a URL, records the place in
// line the queue page shows each second, and stops once the page is no longer the queue page
// (the visitor was let in). Writes a screenshot of the queue page and of the final page.
// Usage: node --experimental-websocket browser-check.mjs DEVTOOLS_PORT URL SECONDS OUT_PREFIX
import { writeFileSync } from 'node:fs';

const [port, url, seconds, out] = process.argv.slice(2);
const list = await (await fetch(`http://127.0.0.1:${port}/json/list`)).json();
const ws = new WebSocket(list.find((t) => t.type === 'page').webSocketDebuggerUrl);
let id = 0;
const pending = {};
const send = (method, params = {}) =>
  new Promise((resolve) => {
    const i = ++id;
    pending[i] = resolve;
    ws.send(JSON.stringify({ id: i, method, params }));
  });
ws.onmessage = (e) => {
  const m = JSON.parse(e.data);
  if (m.id && pending[m.id]) pending[m.id](m.result);
};
await new Promise((resolve) => (ws.onopen = resolve));
const shot = async (name) => {
  const s = await send('Page.captureScreenshot', { format: 'png' });
  if (s && s.data) writeFileSync(`${out}-${name}.png`, Buffer.from(s.data, 'base64'));
};

await send('Page.enable');
await send('Page.navigate', { url });
const positions = [];
let admitted = false;
for (let i = 0; i < +seconds && !admitted; i++) {
  await new Promise((resolve) => setTimeout(resolve, 1000));
  const r = await send('Runtime.evaluate', {
    expression: `JSON.stringify({pos: (document.getElementById('pos') || {}).textContent || null,
                                 title: document.title})`,
    returnByValue: true,
  });
  const v = JSON.parse((r && r.result && r.result.value) || '{}');
  if (v.pos) {
    if (positions[positions.length - 1] !== v.pos) console.log(`${i + 1} s: number ${v.pos} in line`);
    positions.push(v.pos);
    if (positions.length === 2) await shot('queue');
  } else if (positions.length > 0 && v.title) {
    console.log(`${i + 1} s: let in, the page is now "${v.title}"`);
    admitted = true;
  }
}
await shot('final');
const fell = positions.length > 0 && +positions[positions.length - 1] < +positions[0];
console.log(fell ? 'the position fell' : 'the position did not fall');
process.exit(admitted && fell ? 0 : 1);
