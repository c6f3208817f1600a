// WsauthClient's ticket mode (options.ticketUrl) in Node, with ws, against
// the real demo's POST /ticket, through a small HTTP front that records
// each exchange and can answer one in the demo's stead (a 503, a 401 that
// echoes the token, a dropped connection, no answer at all).
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { createServer } from 'node:http';
import { WsauthClient } from '../wsauth.js';
import { startDemo, fetchToken, sleep, waitFor, recordingWebSocket, tickCounter } from './demo.mjs';

let plain; // keeps no streams: a client never holds a position, so every connection takes a ticket
let streams; // keeps users' streams (the demo's default)
let front;
const clients = new Set();

before(async () => {
  const flags = ['-tick', '50ms', '-reauth-lead', '1s', '-reauth-grace', '2s'];
  [plain, streams] = await Promise.all([startDemo([...flags, '-keep-for', '0']), startDemo(flags)]);
  front = await startFront();
}, { timeout: 240_000 }); // a cold go build

after(async () => {
  for (const c of clients) c.close();
  await front?.close();
  await Promise.all([plain?.stop(), streams?.stop()]);
});

// startFront serves POST /ticket on a loopback port of its own. It records
// every request in requests ({method, headers, at}) and answers it with
// the next step of plan, if any (a function of (req, res)), else with what
// the demo target() answers.
async function startFront() {
  const f = { requests: [], plan: [], target: () => plain };
  const sockets = new Set();
  const server = createServer(async (req, res) => {
    req.resume(); // no body is expected: read and drop it
    f.requests.push({ method: req.method, url: req.url, headers: req.headers, at: Date.now() });
    const step = f.plan.shift();
    if (step) {
      step(req, res);
      return;
    }
    const headers = {};
    if (req.headers.authorization !== undefined) headers.Authorization = req.headers.authorization;
    const r = await fetch(`${f.target().base}/ticket`, { method: req.method, headers });
    res.writeHead(r.status, { 'Content-Type': r.headers.get('Content-Type'), 'Cache-Control': 'no-store' });
    res.end(await r.text());
  });
  server.on('connection', (s) => {
    sockets.add(s);
    s.on('close', () => sockets.delete(s));
  });
  await new Promise((res) => server.listen(0, '127.0.0.1', res));
  f.url = `http://127.0.0.1:${server.address().port}/ticket`;
  f.reset = (target = () => plain) => {
    f.requests.length = 0;
    f.plan.length = 0;
    f.target = target;
  };
  f.close = () => {
    for (const s of sockets) s.destroy();
    return new Promise((res) => server.close(res));
  };
  return f;
}

const answer = (status, body, headers = {}) => (req, res) => {
  res.writeHead(status, { 'Content-Type': 'application/json', ...headers });
  res.end(JSON.stringify(body));
};
const dropConnection = (req) => req.socket.destroy();
const neverAnswer = () => {};

// newClient makes a ticket-mode client of sub on demo d, recording what it
// reports and the tokens its provider handed out.
function newClient(d, sub, { ttl = '1m', provider, ...opts } = {}) {
  const ticks = tickCounter();
  const rec = {
    states: [], errors: [], closes: [], reauths: 0, tokens: [], calls: [], lost: [],
    get tickGaps() { return ticks.gaps; },
    get ticks() { return ticks.ticks; },
  };
  const { WebSocket, sockets } = recordingWebSocket();
  const tokenProvider = async (req) => {
    rec.calls.push(req);
    const token = provider ? await provider(req) : (await fetchToken(d.base, sub, ttl)).token;
    rec.tokens.push(token);
    return token;
  };
  const client = new WsauthClient(d.ws, { WebSocket, tokenProvider, ticketUrl: front.url, ...opts });
  clients.add(client);
  client.addEventListener('state', (e) => {
    if (e.detail === 'active' && rec.states.at(-1) === 'reauthenticating') rec.reauths++;
    rec.states.push(e.detail);
  });
  client.addEventListener('message', (e) => ticks.see(e.detail));
  client.addEventListener('resumelost', (e) => rec.lost.push(e.detail));
  client.addEventListener('error', (e) => rec.errors.push(e.detail));
  client.addEventListener('close', (e) => rec.closes.push(e.detail));
  return { client, rec, sockets };
}

const ticketOf = (socket) => new URL(socket.url).searchParams.get('ticket');

// noSecrets asserts that no error or close the client reported quotes a
// token or a ticket.
function noSecrets(rec, sockets) {
  const secrets = [...rec.tokens, ...sockets.map(ticketOf).filter(Boolean)];
  const said = JSON.stringify([rec.errors.map((e) => e.message), rec.closes]);
  for (const s of secrets) assert.ok(!said.includes(s), 'a token or ticket in an error or close');
}

test('ticket mode: the token is exchanged, the socket opens with ?ticket=, auth_ok comes first, reauth stays in-band', async () => {
  front.reset();
  const { client, rec, sockets } = newClient(plain, 'tia', { ttl: '2s' });
  assert.equal(client.credential, '');
  client.connect();
  await waitFor(() => client.state === 'active', 5_000, 'active');
  assert.deepEqual(rec.states, ['connecting', 'authenticating', 'active']);
  assert.equal(client.credential, 'ticket');
  assert.equal(client.subject, 'tia');

  assert.equal(front.requests.length, 1);
  const { method, headers } = front.requests[0];
  assert.equal(method, 'POST');
  assert.equal(headers.authorization, `Bearer ${rec.tokens[0]}`);
  assert.equal(headers.cookie, undefined);
  assert.deepEqual(rec.calls, [{ reauth: false }]);

  assert.equal(sockets.length, 1);
  const u = new URL(sockets[0].url);
  assert.equal(u.pathname, '/ws');
  assert.match(ticketOf(sockets[0]), /^[\w-]{43}$/, 'the ticket, not the token');
  assert.equal(sockets[0].received[0].type, 'auth_ok', 'auth_ok is the first frame');
  assert.deepEqual(sockets[0].sent, [], 'no auth frame');

  // 2 s tokens, reauth_required 1 s before exp: in-band, on the same socket.
  const session = client.session;
  await waitFor(() => rec.reauths >= 2, 8_000, '2 reauths');
  assert.equal(client.session, session);
  assert.equal(sockets.length, 1, 'one socket throughout');
  assert.equal(front.requests.length, 1, 'reauth takes no ticket');
  assert.ok(sockets[0].sent.length >= 2 && sockets[0].sent.every((f) => f.type === 'auth' && !('resume' in f)),
    JSON.stringify(sockets[0].sent.map((f) => f.type)));
  assert.deepEqual(rec.calls.slice(1).map((r) => r.reauth), rec.calls.slice(1).map(() => true));
  await waitFor(() => rec.ticks >= 5, 2_000, 'ticks');
  assert.deepEqual(rec.tickGaps, []);
  assert.deepEqual(rec.errors, []);
  assert.deepEqual(rec.closes, []);
  noSecrets(rec, sockets);
  client.close();
});

test('ticket mode keeps the endpoint URL\'s query parameters', async () => {
  front.reset();
  const { WebSocket: WS, sockets } = recordingWebSocket();
  const client = new WsauthClient(`${plain.ws}?room=lobby&x=a%20b`, {
    WebSocket: WS, ticketUrl: front.url, tokenProvider: async () => (await fetchToken(plain.base, 'quentin')).token,
  });
  clients.add(client);
  client.connect();
  await waitFor(() => client.state === 'active', 5_000, 'active');
  const { search } = new URL(sockets[0].url);
  assert.match(search, /^\?room=lobby&x=a%20b&ticket=[\w-]{43}$/);
  client.close();
});

test('ticket mode: every reconnection without a stream position takes a fresh ticket', async () => {
  front.reset();
  const { client, rec, sockets } = newClient(plain, 'uma', { backoff: { initial: 50, max: 200 } });
  client.connect();
  await waitFor(() => client.state === 'active', 5_000, 'active');
  const first = client.session;
  assert.equal(client.position, null, 'a server without streams gives no position');
  sockets[0].terminate(); // dropped without a close frame: 1006
  await waitFor(() => client.state === 'active' && client.session !== first, 5_000, 'reconnected');
  assert.deepEqual(rec.closes.map((c) => [c.code, c.retrying]), [[1006, true]]);
  assert.equal(front.requests.length, 2);
  assert.equal(sockets.length, 2);
  const [t1, t2] = sockets.map(ticketOf);
  assert.ok(t1 && t2 && t1 !== t2, 'a fresh ticket');
  assert.equal(sockets[1].received[0].type, 'auth_ok');
  assert.deepEqual(sockets[1].sent, [], 'no auth frame on the new socket either');
  assert.deepEqual(rec.calls, [{ reauth: false }, { reauth: false }], 'a token from the provider for each');
  assert.ok(front.requests[1].headers.authorization === `Bearer ${rec.tokens[1]}`, 'the second token, exchanged');
  assert.equal(client.credential, 'ticket');
  noSecrets(rec, sockets);
  client.close();
});

test('ticket mode on a server that keeps streams: a reconnection, and a saved position, resume with the auth frame', async () => {
  front.reset(() => streams);
  const { client, rec, sockets } = newClient(streams, 'vera', { backoff: { initial: 50, max: 200 } });
  client.connect();
  await waitFor(() => client.state === 'active', 5_000, 'active');
  assert.equal(client.credential, 'ticket', 'no position yet: a ticket');
  await waitFor(() => rec.ticks >= 3, 3_000, 'ticks');
  const held = client.position;
  assert.ok(held?.epoch && held.seq >= 3, JSON.stringify(held));
  sockets[0].terminate();
  await waitFor(() => sockets.length === 2 && client.state === 'active', 5_000, 'reconnected');
  assert.equal(client.credential, 'auth');
  assert.equal(ticketOf(sockets[1]), null, 'no ticket in the URL');
  assert.equal(sockets[1].sent[0].type, 'auth');
  assert.equal(sockets[1].sent[0].token, rec.tokens[1]);
  assert.ok(sockets[1].sent[0].resume.seq >= held.seq, 'resumes from its position');
  assert.equal(front.requests.length, 1, 'no second exchange');
  await waitFor(() => rec.ticks >= held.seq + 3, 3_000, 'ticks after the reconnect');
  assert.deepEqual(rec.tickGaps, [], 'resumed: no tick lost');
  assert.deepEqual(rec.lost, []);
  const saved = JSON.parse(JSON.stringify(client.position));
  client.close();

  // After a page reload, say: options.resume.
  const later = newClient(streams, 'vera', { resume: saved });
  later.client.connect();
  await waitFor(() => later.client.state === 'active', 5_000, 'active');
  assert.equal(later.client.credential, 'auth');
  assert.deepEqual(later.sockets[0].sent[0].resume, saved);
  assert.equal(front.requests.length, 1, 'no exchange');
  assert.deepEqual(later.rec.lost, []);
  later.client.close();
});

test('ticket mode: a 401 from the exchange is terminal, like a 4401', async () => {
  front.reset();
  const { client, rec, sockets } = newClient(plain, 'will', { provider: () => 'not.a.jwt', backoff: { initial: 10, max: 50 } });
  client.connect();
  await waitFor(() => client.state === 'closed', 5_000, 'closed');
  assert.deepEqual(rec.closes, [{ code: 4401, reason: 'malformed token', retrying: false, status: 401 }]);
  assert.deepEqual(rec.errors, []);
  assert.equal(sockets.length, 0, 'no socket');
  await sleep(200);
  assert.equal(front.requests.length, 1, 'not retried');
  assert.equal(rec.calls.length, 1);

  // A server that quotes the token back does not get it into the close event.
  front.reset();
  const echo = newClient(plain, 'will', { provider: () => 'sec.ret.token' });
  front.plan.push(answer(401, { error: 'refused sec.ret.token' }, { 'WWW-Authenticate': 'Bearer' }));
  echo.client.connect();
  await waitFor(() => echo.client.state === 'closed', 5_000, 'closed');
  assert.deepEqual(echo.rec.closes, [{ code: 4401, reason: 'unauthorized', retrying: false, status: 401 }]);
  noSecrets(echo.rec, echo.sockets);
});

test('ticket mode: a token provider failure is terminal, before any exchange', async () => {
  front.reset();
  const { client, rec, sockets } = newClient(plain, 'zoe', { provider: () => Promise.reject(new Error('IdP down')) });
  client.connect();
  await waitFor(() => client.state === 'closed', 5_000, 'closed');
  assert.deepEqual(rec.errors.map((e) => e.message), ['token provider failed: IdP down']);
  assert.deepEqual(rec.closes, [{ code: 1000, reason: 'token provider failed', retrying: false }]);
  assert.equal(front.requests.length, 0);
  assert.equal(sockets.length, 0);
});

test('ticket mode: 503, 429, 408 and network errors are retried with the backoff; 503 waits its Retry-After', async () => {
  front.reset();
  front.plan.push(
    answer(503, { error: 'tickets unavailable' }, { 'Retry-After': '1' }),
    dropConnection,
    answer(429, { error: 'slow down' }),
    answer(408, { error: 'timeout' }),
  );
  const { client, rec, sockets } = newClient(plain, 'xena', { backoff: { initial: 20, max: 300 } });
  client.connect();
  await waitFor(() => client.state === 'active', 10_000, 'active after the refusals');
  const retried = (status) => ({ code: 1006, reason: 'ticket exchange failed', retrying: true, ...(status && { status }) });
  assert.deepEqual(rec.closes, [retried(503), retried(), retried(429), retried(408)]);
  assert.equal(front.requests.length, 5);
  assert.equal(sockets.length, 1, 'one socket: after the exchange that worked');
  // Retry-After: 1 s, capped at backoff.max (300 ms) rather than 20 ms.
  const waited = front.requests[1].at - front.requests[0].at;
  assert.ok(waited >= 230, `waited ${waited} ms after the 503`);
  assert.deepEqual(rec.calls.map((r) => r.reauth), [false, false, false, false, false], 'a fresh token each time');
  assert.deepEqual(rec.errors, []);
  noSecrets(rec, sockets);
  client.close();
});

test('ticket mode: a 403 from the exchange is terminal; authTimeout bounds an exchange that never answers', async () => {
  front.reset();
  front.plan.push(answer(403, { error: 'origin not allowed' }));
  const refused = newClient(plain, 'yann', { backoff: { initial: 10, max: 50 } });
  refused.client.connect();
  await waitFor(() => refused.client.state === 'closed', 5_000, 'closed');
  assert.deepEqual(refused.rec.closes, [{ code: 1000, reason: 'ticket exchange refused', retrying: false, status: 403 }]);
  assert.deepEqual(refused.rec.errors.map((e) => [e.code, e.message]), [[0, 'ticket exchange refused: HTTP 403']]);
  await sleep(100);
  assert.equal(front.requests.length, 1, 'not retried');

  front.reset();
  front.plan.push(neverAnswer);
  const { client, rec, sockets } = newClient(plain, 'yann', { authTimeout: 500, backoff: { initial: 20, max: 100 } });
  client.connect();
  await waitFor(() => client.state === 'active', 10_000, 'active after the timeout');
  // On a loaded machine a later attempt may time out too: each is retried.
  assert.ok(rec.closes.length >= 1, 'the exchange that never answered was given up');
  for (const c of rec.closes) assert.deepEqual(c, { code: 1006, reason: 'auth timeout', retrying: true });
  assert.equal(front.requests.length, rec.closes.length + 1);
  assert.ok(sockets.length >= 1);
  client.close();

  // close() while the exchange is under way aborts it: no socket follows.
  front.reset();
  front.plan.push(neverAnswer);
  const gone = newClient(plain, 'yann');
  gone.client.connect();
  await waitFor(() => front.requests.length === 1, 5_000, 'the exchange under way');
  gone.client.close();
  assert.deepEqual(gone.rec.closes, [{ code: 1000, reason: 'client closed', retrying: false }]);
  await sleep(100);
  assert.equal(gone.sockets.length, 0);
});

test('options.ticketUrl: an absolute http(s) URL, https for a wss endpoint', () => {
  const make = (url, ticketUrl) => new WsauthClient(url, { WebSocket: class {}, tokenProvider: () => 't', ticketUrl });
  assert.throws(() => make('ws://h/ws', '/ticket'), TypeError, 'relative, and no page to resolve it against');
  assert.throws(() => make('wss://h/ws', 'http://h/ticket'), /must be https unless the endpoint is a ws:\/\/ URL/);
  assert.throws(() => make('ws://h/ws', 'ftp://h/ticket'), /http or https/);
  assert.throws(() => make('ws://h/ws', 'ws://h/ticket'), /http or https/);
  make('wss://h/ws', 'https://h/ticket');
  make('ws://h/ws', 'http://h/ticket');
  make('ws://h/ws', new URL('https://h/ticket'));
  make('ws://h/ws', null);
});
