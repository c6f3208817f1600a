// The demo's chat page in headless Chromium (Debian's /usr/bin/chromium,
// driven by playwright-core; no browser download).
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { chromium } from 'playwright-core';
import { startDemo } from './demo.mjs';

const executablePath = process.env.CHROMIUM_PATH ?? '/usr/bin/chromium';
const screenshotPath = fileURLToPath(new URL('./chat.png', import.meta.url));
// As this machine needs them: no sandbox as root, and no background
// networking, which the closed network refuses.
const chromiumArgs = [
  '--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
  '--disable-background-networking', '--disable-component-update', '--disable-sync',
];

let demo;
let browser;
const pageProblems = []; // uncaught errors and console errors (CSP violations among them)
const pages = {};

before(async () => {
  assert.ok(existsSync(executablePath),
    `${executablePath} is missing: apt-get install -y chromium (or set CHROMIUM_PATH)`);
  // Tokens of 5 s with a 2 s reauth lead: a reauth every ~3 s.
  demo = await startDemo(['-tick', '200ms', '-reauth-lead', '2s']);
  // launch() gives the browser a fresh temporary --user-data-dir of its own.
  browser = await chromium.launch({ executablePath, headless: true, args: chromiumArgs, timeout: 30_000 });
}, { timeout: 240_000 }); // a cold go build

after(async () => {
  await browser?.close();
  await demo?.stop();
  assert.deepEqual(pageProblems, [], 'uncaught errors or console errors in the pages');
});

async function openChat(name, ttl, { breakProvider = false } = {}) {
  const context = await browser.newContext({ viewport: { width: 900, height: 760 } });
  const page = await context.newPage();
  page.setDefaultTimeout(10_000);
  page.on('pageerror', (err) => pageProblems.push(`${name}: ${err.message}`));
  page.on('console', (msg) => {
    if (msg.type() === 'error') pageProblems.push(`${name}: console: ${msg.text()}`);
  });
  await page.goto(`${demo.base}/`);
  await page.fill('#name', name);
  await page.selectOption('#ttl', ttl);
  if (breakProvider) await page.check('#break-provider');
  await page.click('#connect');
  return page;
}

const text = (page, sel) => page.textContent(sel);

function waitText(page, sel, want, timeout = 10_000) {
  return page.waitForFunction(
    ([s, w]) => document.querySelector(s)?.textContent === w, [sel, want], { timeout },
  );
}

function waitLog(page, line, timeout = 10_000) {
  return page.waitForFunction(
    (l) => [...document.querySelectorAll('#log li')].some((li) => li.textContent === l), line, { timeout },
  );
}

async function logLines(page) {
  return page.$$eval('#log li', (lis) => lis.map((li) => li.textContent));
}

async function say(page, message) {
  await page.fill('#input', message);
  await page.press('#input', 'Enter');
}

test('two pages exchange messages', async () => {
  pages.alice = await openChat('alice', '5s');
  pages.bob = await openChat('bob', '15m');
  await waitText(pages.alice, '#state', 'active');
  await waitText(pages.bob, '#state', 'active');
  await say(pages.alice, 'hello from alice');
  await waitLog(pages.bob, 'alice:hello from alice');
  await waitLog(pages.alice, 'alice:hello from alice');
  await say(pages.bob, 'hi alice <b>not bold</b>');
  await waitLog(pages.alice, 'bob:hi alice <b>not bold</b>');
  assert.equal(await pages.alice.$('#log b'), null, 'messages are text, not HTML');
});

test('a page survives several reauth cycles with contiguous ticks', async () => {
  const page = pages.alice;
  await page.waitForFunction(() => Number(document.querySelector('#reauths').textContent) >= 3, null, { timeout: 15_000 });
  // One snapshot: ticks keep arriving between separate reads.
  const [state, gaps, ticks, last] = await page.evaluate(() =>
    ['#state', '#tick-gaps', '#ticks', '#last-tick'].map((s) => document.querySelector(s).textContent));
  assert.equal(state, 'active');
  assert.equal(gaps, '0');
  assert.ok(Number(ticks) >= 30, `${ticks} ticks`);
  assert.equal(last, ticks, 'one session, ticks 1..N');
  assert.ok(!(await logLines(page)).some((l) => l.startsWith('connection closed')), 'never reconnected');
});

test('messages typed while reauthenticating are delivered after auth_ok', async () => {
  const page = pages.alice;
  // Slow the IdP down for this page so that reauthentication takes a while.
  await page.route('**/token', async (route) => {
    await new Promise((res) => setTimeout(res, 1_500));
    await route.continue();
  });
  await waitText(page, '#state', 'reauthenticating', 6_000);
  await say(page, 'typed while reauthenticating');
  assert.equal(await text(page, '#queued'), '1');
  assert.equal(await text(page, '#state'), 'reauthenticating');
  assert.ok(!(await logLines(pages.bob)).includes('alice:typed while reauthenticating'), 'not sent before auth_ok');
  await waitLog(pages.bob, 'alice:typed while reauthenticating', 5_000);
  await waitText(page, '#state', 'active');
  await page.unroute('**/token');
  assert.equal(await text(page, '#queued'), '0');
  assert.equal(await text(page, '#tick-gaps'), '0');
  await page.screenshot({ path: screenshotPath });
});

test('a broken token provider closes the client with a visible error', async () => {
  const carol = await openChat('carol', '5m', { breakProvider: true });
  await waitText(carol, '#state', 'closed');
  assert.equal(await carol.isVisible('#error'), true);
  assert.match(await text(carol, '#error'), /token provider failed: the token provider is broken/);

  // Broken while connected: the next reauthentication fails.
  const page = pages.alice;
  await page.check('#break-provider');
  await waitText(page, '#state', 'closed', 6_000);
  assert.equal(await page.isVisible('#error'), true);
  assert.match(await text(page, '#error'), /token provider failed/);
  assert.equal(await text(pages.bob, '#state'), 'active', 'other pages are unaffected');
  assert.deepEqual(pageProblems, []);
});
