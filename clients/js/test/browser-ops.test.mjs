// The demo's operator's view in headless Chromium: the status page
// (/status) follows real sessions.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import WebSocket from 'ws';
import { WsauthClient } from '../wsauth.js';
import { startDemo, fetchToken, waitFor, launchChromium } from './demo.mjs';

let browser;
const pageProblems = []; // uncaught errors and console errors (CSP violations among them)

before(async () => {
  browser = await launchChromium();
}, { timeout: 60_000 });

after(async () => {
  await browser?.close();
  assert.deepEqual(pageProblems, [], 'uncaught errors or console errors in the pages');
});

// openPage opens path of base in a context of its own; responses lists the
// page's fetches ({path, body}) as they complete.
async function openPage(base, path, { viewport = { width: 1280, height: 800 } } = {}) {
  const context = await browser.newContext({ viewport });
  const page = await context.newPage();
  page.setDefaultTimeout(10_000);
  page.on('pageerror', (err) => pageProblems.push(`${path}: ${err.message}`));
  page.on('console', (msg) => {
    if (msg.type() === 'error') pageProblems.push(`${path}: console: ${msg.text()}`);
  });
  const responses = [];
  page.on('response', async (resp) => {
    if (resp.request().resourceType() !== 'fetch') return;
    responses.push({ path: new URL(resp.url()).pathname, body: await resp.text().catch(() => '') });
  });
  await page.goto(`${base}${path}`);
  return { page, responses };
}

function waitText(page, sel, want, timeout = 10_000) {
  return page.waitForFunction(
    ([s, w]) => document.querySelector(s)?.textContent === w, [sel, want], { timeout },
  );
}

// rowOf is the count of the row of tbody sel whose key is key, or null.
const rowOf = (page, sel, key) => page.evaluate(([s, k]) => {
  const tr = [...document.querySelectorAll(`${s} tr`)].find((r) => r.dataset.key === k);
  return tr ? tr.querySelector('td.count').textContent : null;
}, [sel, key]);

function waitRow(page, sel, key, want, timeout = 10_000) {
  return page.waitForFunction(([s, k, w]) => {
    const tr = [...document.querySelectorAll(`${s} tr`)].find((r) => r.dataset.key === k);
    return tr?.querySelector('td.count').textContent === w;
  }, [sel, key, want], { timeout });
}

test('the status page updates itself as a client authenticates, reauthenticates, fails and leaves; it shows no secret', async (t) => {
  // 2 s tokens with a 1 s lead: a reauthentication within seconds.
  const demo = await startDemo(['-tick', '100ms', '-reauth-lead', '1s']);
  t.after(() => demo.stop());
  const { page, responses } = await openPage(demo.base, '/status');
  await waitText(page, '#ready', 'ready');
  for (const [sel, want] of [['#sessions-pending', '0'], ['#sessions-active', '0'], ['#sessions-expired', '0'],
    ['#sessions-opened', '0'], ['#lag-count', '0'], ['#lag-mean', '–'], ['#sent', '0'], ['#accepted', 'none yet']]) {
    assert.equal(await page.textContent(sel), want, sel);
  }
  assert.equal(await page.textContent('#refused'), 'none');
  assert.equal(await rowOf(page, '#verifier', demo.base), '1 key');
  assert.equal(await rowOf(page, '#checks', 'verifier'), 'ok');

  // A client of 2 s tokens: active, then reauthenticated in-band.
  const sub = 'status-page-subject-w4q';
  const tokens = [];
  const client = new WsauthClient(demo.ws, {
    WebSocket,
    tokenProvider: async () => {
      const { token } = await fetchToken(demo.base, sub, '2s');
      tokens.push(token);
      return token;
    },
  });
  t.after(() => client.close());
  client.connect();
  await waitFor(() => client.state === 'active', 5_000, 'the client active');
  const session = client.session;
  await waitText(page, '#sessions-active', '1');
  assert.equal(await page.textContent('#sessions-opened'), '1');
  await page.waitForFunction(() => /^auth 1\b/.test(document.querySelector('#accepted').textContent));
  await page.waitForFunction(() => Number(document.querySelector('#sent').textContent) > 0, null, { timeout: 5_000 });
  await waitText(page, '#lag-count', '1', 10_000);
  assert.match(await page.textContent('#lag-mean'), /^\d+ ms$|^\d+\.\d+ s$/);
  assert.match(await page.textContent('#accepted'), /^auth 1 · reauth [1-9]/);

  // A bad token: refused with its reason, closed with 4401.
  const bad = new WebSocket(demo.ws, 'wsauth.v1');
  await new Promise((res, rej) => { bad.once('open', res); bad.once('error', rej); });
  const badClose = new Promise((res) => bad.once('close', (code) => res(code)));
  bad.send(JSON.stringify({ type: 'auth', token: 'not-a-token' }));
  assert.equal(await badClose, 4401);
  await waitRow(page, '#refused', 'malformed token', '1');
  await waitRow(page, '#closes', '4401', '1');

  // The client leaves: no session, a 1000.
  client.close();
  await waitText(page, '#sessions-active', '0');
  await waitRow(page, '#closes', '1000', '1');
  assert.equal(await page.textContent('#sessions-opened'), '2', 'the bad token opened one too');

  // The page polls /status.json and /readyz, nothing else; neither they
  // nor the page name the user, a token, the session or the client's
  // address.
  const paths = new Set(responses.map((r) => r.path));
  assert.deepEqual([...paths].sort(), ['/readyz', '/status.json']);
  assert.ok(responses.length >= 6, `${responses.length} polls`);
  const seen = [await page.textContent('body'), ...responses.map((r) => r.body)].join('\n');
  const secrets = { subject: sub, session };
  for (const [i, tok] of tokens.entries()) secrets[`token ${i + 1}`] = tok;
  assert.ok(tokens.length >= 2);
  for (const [what, secret] of Object.entries(secrets)) {
    assert.ok(!seen.includes(secret), `the status page shows the ${what}`);
  }
  // The one loopback address shown is the demo's own, its issuer's URL.
  const addrs = new Set(seen.match(/127\.0\.0\.1:\d+/g));
  assert.deepEqual([...addrs], [demo.addr], 'a client address shown');
  await page.context().close();
});
