// The demo's chat page in headless Chromium (Debian's /usr/bin/chromium,
// driven by playwright-core; no browser download).
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { fileURLToPath } from 'node:url';
import { WsauthClient } from '../wsauth.js';
import WebSocket from 'ws';
import { startDemo, startCluster, fetchToken, waitFor, nodeOf, launchChromium } from './demo.mjs';

const screenshotPath = fileURLToPath(new URL('./chat.png', import.meta.url));

let demo;
let browser;
const pageProblems = []; // uncaught errors and console errors (CSP violations among them)
const pages = {};

before(async () => {
  // Tokens of 5 s with a 2 s reauth lead: a reauth every ~3 s.
  demo = await startDemo(['-tick', '200ms', '-reauth-lead', '2s']);
  browser = await launchChromium();
}, { timeout: 240_000 }); // a cold go build

after(async () => {
  await browser?.close();
  await demo?.stop();
  assert.deepEqual(pageProblems, [], 'uncaught errors or console errors in the pages');
});

// openChat opens the chat page of base (default: the demo's) in a context
// of its own and connects as name, with an auth frame or a ticket
// (credential). With nodeStops, the browser's own console errors about
// sockets that fail while a node stops are expected. watch(page) runs
// before the page loads.
async function openChat(name, ttl, {
  breakProvider = false, base = demo.base, nodeStops = false, credential = 'auth',
  viewport = { width: 900, height: 760 }, watch = () => {},
} = {}) {
  const context = await browser.newContext({ viewport });
  const page = await context.newPage();
  page.setDefaultTimeout(10_000);
  page.on('pageerror', (err) => pageProblems.push(`${name}: ${err.message}`));
  page.on('console', (msg) => {
    if (msg.type() !== 'error') return;
    if (nodeStops && /^WebSocket connection to '.*' failed/.test(msg.text())) return;
    pageProblems.push(`${name}: console: ${msg.text()}`);
  });
  watch(page);
  await page.goto(`${base}/`);
  await page.fill('#name', name);
  await page.selectOption('#ttl', ttl);
  await page.selectOption('#credential', credential);
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

const ticksOf = (page) => page.evaluate(() => Number(document.querySelector('#ticks').textContent));

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

test('a page connects with a ticket and keeps ticking across reauths, in-band', async () => {
  const exchanges = []; // POST /ticket requests: their headers
  const sockets = []; // the page's sockets: {url, frames: ['<' or '>' + type]}
  const page = await openChat('tess', '5s', {
    credential: 'ticket',
    viewport: { width: 1280, height: 800 },
    watch: (p) => {
      p.on('request', (req) => {
        if (new URL(req.url()).pathname === '/ticket') exchanges.push({ method: req.method(), headers: req.headers() });
      });
      p.on('websocket', (ws) => {
        const sock = { url: ws.url(), frames: [] };
        sockets.push(sock);
        const type = (f) => { try { return JSON.parse(f.payload).type; } catch { return '?'; } };
        ws.on('framereceived', (f) => sock.frames.push(`<${type(f)}`));
        ws.on('framesent', (f) => sock.frames.push(`>${type(f)}`));
      });
    },
  });
  await waitText(page, '#state', 'active');
  assert.equal(await text(page, '#via'), 'ticket');
  assert.equal(exchanges.length, 1);
  assert.equal(exchanges[0].method, 'POST');
  assert.match(exchanges[0].headers.authorization ?? '', /^Bearer [\w-]+\.[\w-]+\.[\w-]+$/);
  assert.equal(exchanges[0].headers.cookie, undefined, 'credentials omitted');
  assert.equal(sockets.length, 1);
  const ticket = new URL(sockets[0].url).searchParams.get('ticket');
  assert.match(ticket ?? '', /^[\w-]{43}$/, sockets[0].url);
  const log = await logLines(page);
  assert.ok(log.some((l) => /^connected as tess to node \S+, session \S+, with a ticket$/.test(l)), log.join('\n'));

  // 5 s tokens, reauth_required 2 s before exp: in-band, on the same socket.
  const before = await ticksOf(page);
  await page.waitForFunction(() => Number(document.querySelector('#reauths').textContent) >= 1, null, { timeout: 10_000 });
  await page.waitForFunction((n) => Number(document.querySelector('#ticks').textContent) >= n + 10, before);
  const [state, gaps] = await page.evaluate(() => ['#state', '#tick-gaps'].map((s) => document.querySelector(s).textContent));
  assert.equal(state, 'active');
  assert.equal(gaps, '0');
  assert.equal(sockets.length, 1, 'one socket throughout');
  assert.equal(exchanges.length, 1, 'a reauth takes no ticket');
  const { frames } = sockets[0];
  assert.equal(frames[0], '<auth_ok', 'auth_ok first, no auth frame before it');
  assert.ok(frames.includes('>auth'), 'the reauth went in-band');
  assert.ok(!(await logLines(page)).some((l) => l.startsWith('connection closed')), 'never reconnected');
  // Nothing secret is kept: the page stores its stream position only.
  const stored = await page.evaluate(() => JSON.stringify([{ ...sessionStorage }, { ...localStorage }]));
  assert.ok(!stored.includes(ticket) && !stored.includes(exchanges[0].headers.authorization.slice(7)), stored);
  await page.context().close();
});

test('the page fits a 1280 px window: the login form on one line, nothing wider than the window', async () => {
  const page = await openChat('ursula', '5m', { viewport: { width: 1280, height: 800 } });
  await waitText(page, '#state', 'active');
  const { width, rows } = await page.evaluate(() => ({
    width: document.documentElement.scrollWidth,
    rows: [...document.querySelectorAll('#login > *')].map((e) => {
      const r = e.getBoundingClientRect();
      return [r.top, r.bottom];
    }),
  }));
  assert.ok(width <= 1280, `${width} px wide`);
  const lowestTop = Math.max(...rows.map(([top]) => top));
  const highestBottom = Math.min(...rows.map(([, bottom]) => bottom));
  assert.ok(lowestTop < highestBottom, `the login form wraps: ${JSON.stringify(rows)}`);
  await page.context().close();
});

test('the page keeps at most 500 log lines, each of at most 2,000 characters', async (t) => {
  const page = await openChat('flo', '5m');
  await waitText(page, '#state', 'active');
  // The demo lets a session send a burst of 20 messages: 26 senders of 20
  // direct messages each give flo 520 lines, then one more sends a long one.
  const senders = await Promise.all(Array.from({ length: 26 }, (_, i) => nodeClient(t, `flooder${i}`, demo.ws, demo.base)));
  for (const [i, s] of senders.entries()) {
    for (let n = 0; n < 20; n++) s.client.send({ to: 'flo', text: `flood ${i}.${n}` });
  }
  // Each sender gets its own copy of a direct message: once all are back,
  // every flood line is in flo's stream, ahead of the long one.
  await waitFor(() => senders.every((s) => s.rec.messages.filter((m) => m.data?.to === 'flo').length === 20), 10_000, 'the flood sent');
  const last = await nodeClient(t, 'longwinded', demo.ws, demo.base);
  last.client.send({ to: 'flo', text: 'y'.repeat(3_000) });
  // The page shows a direct message as typed: "@flo yyy…", cut to 2,000.
  const long = `longwinded:@flo ${'y'.repeat(1_995)}…`;
  await waitLog(page, long);
  const lines = await logLines(page);
  assert.equal(lines.length, 500, 'the oldest lines were dropped');
  assert.equal(lines.at(-1), long, 'the long line, cut to 2,000 characters');
  assert.ok(!lines.some((l) => l.startsWith('connected as flo')), 'the first line is gone');
  assert.equal(lines.filter((l) => /^flooder\d+:@flo flood \d+\.\d+$/.test(l)).length, 499);
  assert.deepEqual(pageProblems, []);
  await page.context().close();
});

// A Node client of sub on url, with tokens from base; closed when the
// test ends.
async function nodeClient(t, sub, url, base) {
  const rec = { messages: [], closes: [] };
  const client = new WsauthClient(url, { WebSocket, tokenProvider: async () => (await fetchToken(base, sub, '5m')).token });
  client.addEventListener('message', (e) => rec.messages.push(e.detail));
  client.addEventListener('close', (e) => rec.closes.push(e.detail));
  t.after(() => client.close());
  client.connect();
  await waitFor(() => client.state === 'active', 5_000, `${sub} active`);
  return { client, rec };
}

test('on a cluster, the page shows its node and keeps counting ticks without a gap when that node stops', async (t) => {
  const cluster = await startCluster(['-tick', '100ms']);
  t.after(() => cluster.stop());
  const { a, b, proxy } = cluster;
  // The page loads through the proxy, which sends it to node a; pat is
  // also on b, so b ticks pat too, while the page moves between nodes.
  const page = await openChat('pat', '5m', { base: proxy.base, nodeStops: true });
  await waitText(page, '#state', 'active');
  const watcher = await nodeClient(t, 'pat', b.ws, b.base);
  const bob = await nodeClient(t, 'bob', b.ws, b.base);
  const nodeA = await text(page, '#node');
  const nodeB = nodeOf(watcher.client.session);
  assert.ok(nodeA && nodeA !== nodeB, `page on ${nodeA}, b is ${nodeB}`);

  bob.client.send({ to: 'pat', text: 'hi pat, from node b' });
  await waitLog(page, 'bob:@pat hi pat, from node b');
  await say(page, 'hello from node a');
  await waitFor(() => bob.rec.messages.some((m) => m.from === 'pat' && m.data?.text === 'hello from node a'), 5_000, 'the broadcast on b');
  await say(page, '@bob psst, from node a');
  await waitFor(() => bob.rec.messages.some((m) => m.from === 'pat' && m.data?.to === 'bob' && m.data?.text === 'psst, from node a'), 5_000, 'the direct message on b');

  // Sign out everywhere: vic's page on a, vic's client on b.
  const vic = await openChat('vic', '5m', { base: proxy.base });
  await waitText(vic, '#state', 'active');
  const vicB = await nodeClient(t, 'vic', b.ws, b.base);
  await vic.click('#signout');
  await waitText(vic, '#state', 'closed');
  assert.match(await text(vic, '#error'), /closed 4403: session revoked/);
  await waitFor(() => vicB.client.state === 'closed', 5_000, "vic's session on node b revoked");
  assert.deepEqual(vicB.rec.closes, [{ code: 4403, reason: 'session revoked', retrying: false }]);

  await page.waitForFunction(() => Number(document.querySelector('#ticks').textContent) >= 20);
  assert.equal(await a.stop(), 0);
  await waitText(page, '#node', nodeB);
  await waitText(page, '#state', 'active');
  const after = await ticksOf(page);
  await page.waitForFunction((n) => Number(document.querySelector('#ticks').textContent) >= n + 20, after);
  assert.equal(await text(page, '#tick-gaps'), '0');
  const log = await logLines(page);
  assert.ok(log.includes('connection closed: 1001 server shutting down, reconnecting'), log.join('\n'));
  assert.ok(log.some((l) => l.startsWith(`connected as pat to node ${nodeB}`)), log.join('\n'));
  assert.ok(!log.some((l) => l.startsWith('could not resume')), 'resumed');
  assert.match(await text(page, '#position'), /^\S+ #\d+$/);
});
