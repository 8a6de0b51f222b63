// The transport bench's browser console client (bench/transport/browser.sh):
// headless Chromium (Debian's, through playwright-core) logs in at the
// portal, opens /console.html?desktop=NAME and lets noVNC connect over the
// broker's WebSocket. Once connected and still for a moment it prints
// "start", watches (or types) for SECS seconds, prints "end", waits for a
// line on stdin (the caller's counters read), then prints one JSON line: frames (noVNC blits of a changed area onto the visible
// canvas), and with MODE keys the key press to pixel times of keys typed
// on the page at RATE a second ('x' and BackSpace in turn): from the
// page's keydown to the first blit after it.
//
//   node browser.mjs URL USER PASSWORD DESKTOP SECS watch|keys [RATE]
import { chromium } from 'playwright-core';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import readline from 'node:readline';

const [url, user, password, desktop, secsArg, mode, rateArg] =
  process.argv.slice(2);
if (!mode || !['watch', 'keys'].includes(mode)) {
  console.error('usage: node browser.mjs URL USER PASSWORD DESKTOP SECS watch|keys [RATE]');
  process.exit(2);
}
const secs = Number(secsArg);
const rate = Number(rateArg || 5);
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
// The caller's word on stdin, a line at a time (or its end); a terminal
// says nothing, so nothing is waited for there.
const lines = [];
let waiting = null;
let stdinEnded = process.stdin.isTTY;
if (!process.stdin.isTTY) {
  const rl = readline.createInterface({ input: process.stdin });
  rl.on('line', (l) => { lines.push(l); if (waiting) waiting(); });
  rl.on('close', () => { stdinEnded = true; if (waiting) waiting(); });
}
const word = async () => {
  while (!lines.length && !stdinEnded)
    await new Promise((r) => { waiting = r; });
  waiting = null;
  return lines.shift();
};

const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'qdesk-tbench-'));
const ctx = await chromium.launchPersistentContext(dir, {
  executablePath: '/usr/bin/chromium', headless: true,
  ignoreHTTPSErrors: true, bypassCSP: true,
  viewport: { width: 1280, height: 1100 },
  args: ['--no-sandbox', '--disable-gpu', '--no-first-run',
    '--disable-background-networking', '--disable-component-update',
    '--disable-sync'],
});
try {
  const page = ctx.pages()[0] || await ctx.newPage();
  // Log in from the page, as the portal does: page.request would log in
  // from node, whose kept-alive connection sends a TCP keep-alive each
  // second until the broker closes it, ~1 Kbit/s that the still row
  // counted as the console's.
  await page.goto(url);
  const status = await page.evaluate(async ([u, pw]) => (await fetch(
    'api/login', { method: 'POST', headers: { 'X-Qdesk': '1',
      'Content-Type': 'application/json' },
    body: JSON.stringify({ user: u, password: pw }) })).status,
  [user, password]);
  if (status !== 200) throw new Error('login: HTTP ' + status);
  await page.goto(url + 'console.html?desktop=' + desktop);
  await page.locator('body[data-state="connected"]').waitFor({ timeout: 60000 });
  // Every blit of a changed area onto the visible canvas, timed. flip()
  // from a non-empty render queue only queues; the blit is flip(true).
  await page.evaluate(async () => {
    const { default: Display } = await import('/novnc/core/display.js');
    const flip = Display.prototype.flip;
    window.qdBlits = [];
    window.qdKeys = [];
    Display.prototype.flip = function (fromQueue) {
      const b = this._damageBounds;
      if ((fromQueue || this._renderQ.length === 0) &&
          b.right > b.left && b.bottom > b.top)
        window.qdBlits.push(performance.now());
      return flip.apply(this, arguments);
    };
    window.addEventListener('keydown', () => {
      window.qdKeys.push(performance.now());
    }, true);
  });
  await page.locator('#screen canvas').click();
  // Still: no blit for 500 ms (at most 10 s), as keylat waits.
  for (let i = 0; i < 100; i++) {
    const n = await page.evaluate(() => window.qdBlits.length);
    await sleep(500);
    if (await page.evaluate(() => window.qdBlits.length) === n) break;
  }
  // The caller lets the page's other connections settle first: the
  // portal's kept-alive HTTPS connections of the page load, which the
  // broker closes 10 s after their last answer (~26 packets, once a page).
  console.log('still');
  await word();
  const t0 = await page.evaluate(() => performance.now());
  console.log('start');
  if (mode === 'keys') {
    for (let i = 0; i < secs * rate; i++) {
      const next = Date.now() + 1000 / rate;
      await page.keyboard.press(i % 2 ? 'Backspace' : 'x');
      const left = next - Date.now();
      if (left > 0) await sleep(left);
    }
  } else {
    await sleep(secs * 1000);
  }
  const t1 = await page.evaluate(() => performance.now());
  console.log('end');
  // The caller reads the link's counters at "end" and then says so on
  // stdin: closing Chromium earlier put its close handshakes (the
  // WebSocket's and the portal's idle connections', ~30 packets) into
  // the still row, ~2 Kbit/s over 8 s that the console never sent.
  await word();
  // A stdin left open keeps node running after the page is closed.
  process.stdin.destroy();
  const { blits, keys } = await page.evaluate(() =>
    ({ blits: window.qdBlits, keys: window.qdKeys }));
  const inside = blits.filter((t) => t >= t0 && t <= t1);
  const res = { frames: inside.length, secs: (t1 - t0) / 1000 };
  if (mode === 'keys') {
    // Each key's first blit before the next key (or within 2 s).
    const lat = [];
    keys.forEach((k, i) => {
      const until = i + 1 < keys.length ? keys[i + 1] : k + 2000;
      const b = blits.find((t) => t > k && t <= until);
      if (b !== undefined) lat.push(b - k);
    });
    lat.sort((a, b) => a - b);
    const pct = (p) => lat[Math.max(0, Math.ceil(p * lat.length) - 1)];
    Object.assign(res, { keys: keys.length, echoed: lat.length,
      p50: lat.length ? pct(0.5) : null, p95: lat.length ? pct(0.95) : null });
  }
  console.log(JSON.stringify(res));
} finally {
  await ctx.close();
  fs.rmSync(dir, { recursive: true, force: true });
}
