// The browser console in real headless Chromium (Debian's chromium, through
// playwright-core): alice logs in at the portal, presses "Open in browser"
// on her running desktop, and the console tab connects noVNC over the
// broker's WebSocket. Then:
//  - the canvas's own pixels (toDataURL) are saved and compared with QEMU's
//    screendump by COMPARE_CMD (prints an RMSE 0..1; retried while the
//    cursor blinks);
//  - a line typed on the page runs in the guest (its output reaches the
//    serial log);
//  - bob, logged in, opening alice's console gets "not yours", and a
//    WebSocket of his with a ticket of alice's never opens;
//  - a ticket left past its lifetime never opens;
//  - the console is left idle for HOLD seconds and must still be connected,
//    and a second typed line must still reach the guest.
//
//   node console.mjs URL DESKTOP OUTDIR SERIAL_LOG TTL HOLD
// with ALICE, ALICE_PW, BOB, BOB_PW and COMPARE_CMD in the environment.
// Prints one JSON line of findings; exits non-zero with a reason.
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { chromium } from 'playwright-core';

const [url, desktop, outdir, serialLog, ttlArg, holdArg] = process.argv.slice(2);
if (!holdArg) {
  console.error('usage: node console.mjs URL DESKTOP OUTDIR SERIAL_LOG TTL HOLD');
  process.exit(2);
}
const ttl = Number(ttlArg);
const hold = Number(holdArg);
const env = process.env;
fs.mkdirSync(outdir, { recursive: true });
const result = {};
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

function check(cond, what) {
  if (!cond) throw new Error(what);
}

async function waitSerial(pattern, seconds) {
  for (let i = 0; i < seconds * 10; i++) {
    if (fs.readFileSync(serialLog, 'utf8').includes(pattern)) return true;
    await sleep(100);
  }
  return false;
}

async function launch() {
  const profile = fs.mkdtempSync(path.join(os.tmpdir(), 'qdesk-chromium-'));
  return chromium.launchPersistentContext(profile, {
    executablePath: '/usr/bin/chromium',
    headless: true,
    ignoreHTTPSErrors: true,
    viewport: { width: 1280, height: 800 },
    args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
      '--disable-background-networking', '--disable-component-update',
      '--disable-sync', '--ignore-certificate-errors'],
  });
}

async function login(page, user, password) {
  await page.goto(url, { waitUntil: 'domcontentloaded' });
  await page.locator('#login-form').waitFor({ state: 'visible', timeout: 10000 });
  await page.fill('#user', user);
  await page.fill('#password', password);
  await page.click('#login-button');
}

// In page: a WebSocket to ws that must never open; resolves with what
// happened ("open" or "closed CODE").
function wsAttempt(page, ws) {
  return page.evaluate((ws) => new Promise((resolve) => {
    const s = new WebSocket('wss://' + location.host + ws, ['binary']);
    s.onopen = () => { s.close(); resolve('open'); };
    s.onclose = (e) => resolve('closed ' + e.code);
  }), ws);
}

// In page: a browser console ticket for the desktop, as console.js asks.
function askTicket(page) {
  return page.evaluate(async (desktop) => {
    const r = await fetch('/api/desktops/' + desktop + '/console', {
      method: 'POST', credentials: 'same-origin',
      headers: { 'X-Qdesk': '1', 'Content-Type': 'application/json' },
      body: JSON.stringify({ type: 'browser' }),
    });
    return { status: r.status, body: await r.json() };
  }, desktop);
}

// Type text as a US keyboard would, Shift held for the shifted signs:
// noVNC sends QEMU the keys' scancodes (QEMU's extended key events), and
// Playwright's type() gives "$" the code of the 4 key without a Shift.
const SHIFTED = { '$': 'Digit4', '(': 'Digit9', ')': 'Digit0', '*': 'Digit8',
  '>': 'Period', '_': 'Minus' };
async function typeUS(page, text) {
  for (const ch of text) {
    if (SHIFTED[ch]) await page.keyboard.press('Shift+' + SHIFTED[ch]);
    else if (ch >= 'A' && ch <= 'Z') await page.keyboard.press('Shift+Key' + ch);
    else if (ch === ' ') await page.keyboard.press('Space');
    else await page.keyboard.press(ch);
    await sleep(30);
  }
  await page.keyboard.press('Enter');
}

async function canvasPng(page, file) {
  const data = await page.evaluate(() => {
    const c = document.querySelector('#screen canvas');
    return c ? c.toDataURL('image/png') : null;
  });
  check(data, 'no canvas on the console page');
  fs.writeFileSync(file, Buffer.from(data.split(',')[1], 'base64'));
}

const alice = await launch();
const bob = await launch();
try {
  const portal = alice.pages()[0] || await alice.newPage();
  const errors = [];
  await login(portal, env.ALICE, env.ALICE_PW);
  const card = portal.locator('.card[data-name="' + desktop + '"]');
  await card.locator('[data-action="browser"]:not([disabled])')
    .waitFor({ timeout: 20000 });
  result.button = await card.locator('[data-action="browser"]').textContent();
  const [page] = await Promise.all([
    alice.waitForEvent('page', { timeout: 10000 }),
    card.locator('[data-action="browser"]').click(),
  ]);
  page.on('pageerror', (e) => errors.push(String(e)));
  // Chromium logs a refused WebSocket's HTTP status: the 403s expected
  // below are counted apart from real errors.
  const refused = { alice: 0, bob: 0 };
  const ws403 = /WebSocket connection to .* Unexpected response code: 403/;
  page.on('console', (m) => {
    if (m.type() !== 'error') return;
    if (ws403.test(m.text())) refused.alice++;
    else errors.push(m.text());
  });
  await page.locator('body[data-state="connected"]').waitFor({ timeout: 60000 });
  result.url = page.url();
  result.status = await page.textContent('#status');

  // The canvas shows what QEMU shows.
  const shot = path.join(outdir, '39-broker-browser.png');
  let best = 1;
  for (let i = 0; i < 20 && best >= 0.02; i++) {
    await sleep(500);
    await canvasPng(page, shot);
    const rmse = Number(execFileSync('bash', ['-c', env.COMPARE_CMD, 'cmp', shot],
      { encoding: 'utf8' }).trim());
    if (!Number.isNaN(rmse)) best = Math.min(best, rmse);
  }
  result.rmse = best;
  result.canvas = await page.evaluate(() => {
    const c = document.querySelector('#screen canvas');
    return c.width + 'x' + c.height;
  });
  check(best < 0.02, 'the canvas does not show the guest (best RMSE ' + best + ')');
  await page.screenshot({ path: path.join(outdir, '39-broker-browser-page.png') });

  // Keys typed on the page reach the guest.
  await page.locator('#screen canvas').click();
  await typeUS(page, 'echo QDESK-WEB-$((6*7)) > /dev/ttyS0');
  check(await waitSerial('QDESK-WEB-42', 30), 'the typed line did not reach the guest');
  result.typed = true;

  // Bob: his portal does not list d1, its console page says "not yours",
  // and a ticket of alice's does not open a WebSocket with his cookie.
  const bpage = bob.pages()[0] || await bob.newPage();
  bpage.on('console', (m) => {
    if (m.type() === 'error' && ws403.test(m.text())) refused.bob++;
  });
  await login(bpage, env.BOB, env.BOB_PW);
  await bpage.locator('#desktops-view:not([hidden])').waitFor({ timeout: 10000 });
  await bpage.goto(url + 'console.html?desktop=' + desktop);
  await bpage.locator('body[data-state="error"]').waitFor({ timeout: 20000 });
  result.bob_page = await bpage.textContent('#status');
  const other = await askTicket(page);
  check(other.status === 200, 'alice could not get a second ticket: ' +
    JSON.stringify(other));
  result.bob_ws = await wsAttempt(bpage, other.body.ws);
  await sleep(200);
  result.bob_ws_403 = refused.bob;

  // A ticket past its lifetime (the broker's --console-ttl) does not open.
  const stale = await askTicket(page);
  check(stale.status === 200, 'no ticket: ' + JSON.stringify(stale));
  await sleep((ttl + 2) * 1000);
  result.stale_ws = await wsAttempt(page, stale.body.ws);
  // A ticket, used once by the page, does not open again.
  const once = await askTicket(page);
  result.first_ws = await wsAttempt(page, once.body.ws);
  result.reused_ws = await wsAttempt(page, once.body.ws);
  await sleep(200);
  result.alice_ws_403 = refused.alice; // the stale and the reused

  // Idle for HOLD seconds: still connected, and still typing.
  await sleep(hold * 1000);
  result.state_after_hold = await page.getAttribute('body', 'data-state');
  check(result.state_after_hold === 'connected',
    'after ' + hold + ' s idle the console is ' + result.state_after_hold);
  await page.locator('#screen canvas').click();
  await typeUS(page, 'echo QDESK-WEB-$((7*8)) > /dev/ttyS0');
  check(await waitSerial('QDESK-WEB-56', 30), 'after the idle hold, typing no longer reaches the guest');
  result.typed_after_hold = true;
  await canvasPng(page, path.join(outdir, '39-broker-browser-after.png'));
  result.errors = errors;
  console.log(JSON.stringify(result));
} finally {
  await alice.close();
  await bob.close();
}
