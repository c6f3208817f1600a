// The demo's operator's view and token timeline in headless Chromium: the
// status page (/status) follows real sessions, and the chat page draws its
// tokens, reauth_required, the grace window and what the server held
// while the token was expired.
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

// timelineOf reads the chat page's timeline (#timeline, redrawn every
// 250 ms) in one go: its marks in seconds from now, read off the axis.
function timelineOf(page) {
  return page.evaluate(() => {
    const svg = document.querySelector('#timeline');
    const num = (e, a) => Number(e.getAttribute(a));
    // The axis: each label's x and the time it names.
    const ticks = [...svg.querySelectorAll('text.axis-label')].map((e) => {
      const s = e.textContent.replace('−', '-');
      const v = s === 'now' ? 0 : parseFloat(s) * (s.endsWith('min') ? 60 : 1);
      return { x: num(e, 'x'), s: v };
    });
    const [a, b] = [ticks[0], ticks.at(-1)];
    const pxPerSec = (b.x - a.x) / (b.s - a.s);
    const at = (x) => a.s + (x - a.x) / pxPerSec; // seconds from now
    const spans = (cls) => [...svg.querySelectorAll(`rect.${cls}`)].map((e) => ({
      from: at(num(e, 'x')), to: at(num(e, 'x') + num(e, 'width')),
      title: e.querySelector('title')?.textContent ?? '',
    }));
    const marks = (cls) => [...svg.querySelectorAll(`line.${cls}`)].map((e) => at(num(e, 'x1')));
    return {
      pxPerSec,
      tokens: spans('token-bar'),
      superseded: spans('superseded'),
      grace: spans('grace'),
      expired: spans('expired'),
      released: spans('released'),
      reauth: marks('reauth-mark'),
      messages: marks('msg'),
      closes: marks('close-mark'),
      labels: [...svg.querySelectorAll('text')].map((e) => e.textContent),
      reauths: Number(document.querySelector('#reauths').textContent),
      svgText: svg.outerHTML,
    };
  });
}

// near asserts that got is within tol of want (seconds).
function near(got, want, tol, what) {
  assert.ok(Math.abs(got - want) <= tol, `${what}: ${got.toFixed(2)} s, want ${want} ± ${tol} s`);
}

test('the chat page draws its tokens, reauth_required, the grace window, and the messages held while expired', async (t) => {
  // 5 s tokens; reauth_required 2 s before exp; 2 s of grace after it.
  const demo = await startDemo(['-tick', '200ms', '-reauth-lead', '2s', '-reauth-grace', '2s']);
  t.after(() => demo.stop());
  const { page } = await openPage(demo.base, '/');
  await page.fill('#name', 'tina');
  await page.selectOption('#ttl', '5s');
  await page.click('#connect');
  await waitText(page, '#state', 'active');

  // On time: each token a bar of its lifetime, auth_ok to exp, taken
  // over by the next one before its exp; reauth_required 2 s before exp.
  await page.waitForFunction(() => document.querySelectorAll('#timeline rect.token-bar').length >= 3, null, { timeout: 15_000 });
  let tl = await timelineOf(page);
  assert.ok(tl.pxPerSec > 5, `${tl.pxPerSec} px/s`);
  assert.ok(tl.tokens.length >= 3, `${tl.tokens.length} token bars`);
  assert.equal(tl.reauths, tl.tokens.length - 1, 'a bar per token: the first, and one per reauthentication');
  const [first, second] = tl.tokens;
  // exp is whole seconds: a bar is 4 to 5 s, less the round trip.
  for (const [what, bar] of [["token 1's bar", first], ["token 2's bar", second]]) {
    const life = bar.to - bar.from;
    assert.ok(life > 3.8 && life < 5.05, `${what}: ${life.toFixed(2)} s, want 4 to 5 s`);
  }
  assert.match(first.title, /^token 1: auth_ok \S+.*, exp \S+/);
  assert.ok(second.from < first.to, 'token 2 before token 1 expired');
  assert.ok(tl.superseded.some((s) => Math.abs(s.from - second.from) < 0.1 && Math.abs(s.to - first.to) < 0.1),
    "token 1's rest, after token 2's auth_ok, drawn as superseded");
  const mark = tl.reauth.find((r) => r > first.from && r < first.to);
  assert.ok(mark !== undefined, `a reauth_required mark within token 1: ${tl.reauth}`);
  near(first.to - mark, 2, 0.5, "reauth_required before token 1's exp");
  assert.ok(tl.reauth.length >= 2);
  assert.ok(tl.labels.includes('reauth_required'));
  const grace = tl.grace.find((g) => Math.abs(g.from - first.to) < 0.1);
  assert.ok(grace, "token 1's grace window starts at its exp");
  near(grace.to - grace.from, 2, 0.1, "token 1's grace window");
  assert.deepEqual(tl.expired, [], 'never expired');
  assert.deepEqual(tl.released, [], 'nothing held');
  assert.deepEqual(tl.closes, []);

  // Late: the page answers reauth_required halfway through the grace
  // window. The token expires, the server holds the ticks meanwhile and
  // writes them after the fresh token's auth_ok.
  await page.check('#late-reauth');
  await page.waitForFunction(() => document.querySelector('#timeline text.released-label'), null, { timeout: 15_000 });
  tl = await timelineOf(page);
  assert.equal(tl.expired.length, 1, 'one expired stretch');
  const [expired] = tl.expired;
  const lateToken = tl.tokens.find((tok) => Math.abs(tok.to - expired.from) < 0.1);
  assert.ok(lateToken, 'the expired stretch starts at a token\'s exp');
  near(expired.to - expired.from, 1, 0.5, 'expired: half the grace window');
  const fresh = tl.tokens.find((tok) => Math.abs(tok.from - expired.to) < 0.1);
  assert.ok(fresh, "the expired stretch ends at the fresh token's auth_ok");
  assert.equal(tl.released.length, 1);
  near(tl.released[0].from, expired.to, 0.2, 'released at auth_ok');
  const [, held] = /^(\d+) messages? held while expired, released at auth_ok/.exec(tl.released[0].title) ?? [];
  assert.ok(Number(held) >= 2, `${tl.released[0].title}: 200 ms ticks over about 1 s`);
  assert.ok(tl.labels.includes(`${held} released at auth_ok`));
  const during = tl.messages.filter((m) => m > expired.from + 0.05 && m < expired.to - 0.05);
  assert.deepEqual(during, [], 'no message arrived while expired');
  assert.equal(await page.textContent('#state'), 'active');
  assert.equal(await page.textContent('#tick-gaps'), '0', 'the held ticks arrived, in order');
  assert.ok(!(await page.$$eval('#log li', (lis) => lis.some((li) => li.textContent.startsWith('connection closed')))),
    'one connection throughout');
  // The timeline shows times only: no token (a JWT's dots) in the SVG.
  assert.doesNotMatch(tl.svgText, /eyJ[\w-]+\.[\w-]+\./);
  await page.context().close();
});
