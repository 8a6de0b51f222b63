// Drive the portal in real headless Chromium (Debian's chromium, through
// playwright-core): a wrong password, log in, see the card, press Start,
// watch the state turn running, press Connect (SPICE) and catch the .vv
// download, screenshots on a laptop and a phone, log out.
//
//   node portal.mjs URL USER PASSWORD DESKTOP OUTDIR
//
// Prints one JSON line: {"vv": PATH, ...}. Exits non-zero with a reason.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { chromium } from 'playwright-core';

const [url, user, password, desktop, outdir, lockUser] = process.argv.slice(2);
if (!outdir) {
  console.error('usage: node portal.mjs URL USER PASSWORD DESKTOP OUTDIR [LOCKUSER]');
  process.exit(2);
}
fs.mkdirSync(outdir, { recursive: true });
const profile = fs.mkdtempSync(path.join(os.tmpdir(), 'qdesk-chromium-'));
const result = {};

function check(cond, what) {
  if (!cond) throw new Error(what);
}

const ctx = await chromium.launchPersistentContext(profile, {
  executablePath: '/usr/bin/chromium',
  headless: true,
  ignoreHTTPSErrors: true,
  acceptDownloads: true,
  viewport: { width: 1280, height: 800 },
  args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
    '--disable-background-networking', '--disable-component-update',
    '--disable-sync', '--ignore-certificate-errors'],
});
try {
  const page = ctx.pages()[0] || await ctx.newPage();
  const errors = [];
  page.on('pageerror', (e) => errors.push(String(e)));
  page.on('console', (m) => { if (m.type() === 'error') errors.push(m.text()); });

  await page.goto(url, { waitUntil: 'domcontentloaded' });
  await page.locator('#login-form').waitFor({ state: 'visible', timeout: 10000 });

  // A wrong password says so, in words.
  await page.fill('#user', user);
  await page.fill('#password', 'not-the-password');
  await page.click('#login-button');
  await page.locator('#login-error').filter({ hasText: 'Wrong user name or password' })
    .waitFor({ timeout: 10000 });
  result.wrong_password = await page.textContent('#login-error');

  // Five failures lock a login: the page says for how long.
  if (lockUser) {
    await page.fill('#user', lockUser);
    for (let i = 0; i < 6; i++) {
      await page.fill('#password', 'wrong-' + i);
      await page.click('#login-button');
      await page.locator('#login-button:not([disabled])').waitFor({ timeout: 10000 });
      await page.locator('#login-error').filter({ hasText: /./ }).waitFor({ timeout: 10000 });
    }
    result.locked = await page.textContent('#login-error');
    check(/locked for \d+ s/.test(result.locked), 'the lockout message: ' + result.locked);
    await page.screenshot({ path: path.join(outdir, '32-broker-portal-locked.png') });
    await page.fill('#user', user);
  }

  await page.fill('#password', password);
  await page.click('#login-button');
  const card = page.locator(`.card[data-name="${desktop}"]`);
  await card.waitFor({ state: 'visible', timeout: 10000 });
  result.who = (await page.textContent('#who-name')).trim();
  result.state_before = (await card.locator('.state').textContent()).trim();
  check(result.state_before === 'stopped', 'the card says ' + result.state_before);
  check(await card.locator('[data-action="spice"]').isDisabled(),
    'Connect is enabled on a stopped desktop');
  check(await card.locator('[data-action="rdp"]').count() === 1,
    'no Connect (RDP) button');

  // Start; the 2 s refresh turns the card running.
  await card.locator('[data-action="start"]').click();
  await card.locator('.state', { hasText: 'running' }).waitFor({ timeout: 120000 });
  result.state_after = (await card.locator('.state').textContent()).trim();
  await card.locator('[data-action="spice"]:not([disabled])').waitFor({ timeout: 10000 });

  // Connect (SPICE) hands over a .vv file.
  const [download] = await Promise.all([
    page.waitForEvent('download', { timeout: 20000 }),
    card.locator('[data-action="spice"]').click(),
  ]);
  result.vv_name = download.suggestedFilename();
  const vvPath = path.join(outdir, 'portal-' + result.vv_name);
  await download.saveAs(vvPath);
  result.vv = vvPath;
  const vv = fs.readFileSync(vvPath, 'utf8');
  check(vv.startsWith('[virt-viewer]\n'), 'the download is not a .vv file: ' + vv.slice(0, 80));
  await card.locator('.msg', { hasText: 'Downloaded' }).waitFor({ timeout: 5000 });

  // Connect (RDP), when the broker runs the gateway, hands over a .rdp.
  const me = await page.evaluate(async () => (await fetch('/api/me')).json());
  result.rdp = !!me.rdp;
  const rdpButton = card.locator('[data-action="rdp"]');
  if (me.rdp) {
    check(!(await rdpButton.isDisabled()), 'Connect (RDP) is disabled');
    const [dl] = await Promise.all([
      page.waitForEvent('download', { timeout: 20000 }),
      rdpButton.click(),
    ]);
    result.rdp_name = dl.suggestedFilename();
    result.rdp_file = path.join(outdir, 'portal-' + result.rdp_name);
    await dl.saveAs(result.rdp_file);
    const rdp = fs.readFileSync(result.rdp_file, 'utf8');
    check(/^full address:s:/m.test(rdp), 'the .rdp download: ' + rdp.slice(0, 80));
  } else {
    check(await rdpButton.isDisabled(), 'Connect (RDP) is enabled without a gateway');
  }

  await page.screenshot({ path: path.join(outdir, '32-broker-portal.png'), fullPage: true });

  // A phone: one column, nothing wider than the screen.
  await page.setViewportSize({ width: 375, height: 740 });
  await page.waitForTimeout(300);
  const widths = await page.evaluate(() => ({
    scroll: document.documentElement.scrollWidth, inner: window.innerWidth }));
  result.phone = widths;
  check(widths.scroll <= widths.inner, `the page is ${widths.scroll} px wide on a ${widths.inner} px phone`);
  await page.screenshot({ path: path.join(outdir, '32-broker-portal-phone.png'), fullPage: true });
  await page.setViewportSize({ width: 1280, height: 800 });

  // Log out: back to the form; the cookie no longer opens the API.
  await page.click('#logout');
  await page.locator('#login-form').waitFor({ state: 'visible', timeout: 10000 });
  const after = await page.evaluate(async () => (await fetch('/api/desktops')).status);
  check(after === 401, 'after logout /api/desktops answers ' + after);
  result.page_errors = errors.filter((e) => !/status of 401|status of 429/.test(e));
  check(result.page_errors.length === 0, 'script errors: ' + result.page_errors.join('; '));
  console.log(JSON.stringify(result));
} catch (e) {
  try {
    const page = ctx.pages()[0];
    if (page) await page.screenshot({ path: path.join(outdir, '32-broker-portal-failed.png'), fullPage: true });
  } catch (e2) { /* the screenshot is a bonus */ }
  console.error('portal: ' + e.message);
  process.exitCode = 1;
} finally {
  await ctx.close();
  fs.rmSync(profile, { recursive: true, force: true });
}
