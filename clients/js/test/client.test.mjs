// WsauthClient in Node, with ws as its WebSocket, against the real demo
// server (and, for what a correct server never sends, a fake one).
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import WebSocket, { WebSocketServer } from 'ws';
import { WsauthClient, CLIENT_ERROR, ERROR_REAUTH_REQUIRED, isRetryable } from '../wsauth.js';
import { startDemo, fetchToken, sleep, waitFor, recordingWebSocket, tickCounter } from './demo.mjs';

let demo;
let pm; // a demo that wants a token per message (-token-per-message)
const clients = new Set();

before(async () => {
  demo = await startDemo(['-tick', '50ms', '-reauth-lead', '1s', '-reauth-grace', '2s']);
  pm = await startDemo(['-tick', '0', '-token-per-message', '-reauth-lead', '1s', '-reauth-grace', '2s']);
}, { timeout: 240_000 }); // a cold go build

after(async () => {
  for (const c of clients) c.close();
  await Promise.all([demo?.stop(), pm?.stop()]);
});

// A WebSocket (ws) that hides the server frames for which drop(frame) is
// true: how a test makes the client miss reauth_required.
function filteredWebSocket(drop) {
  return class {
    constructor(url, protocols) {
      const inner = new WebSocket(url, protocols);
      this.inner = inner;
      this.onopen = this.onmessage = this.onclose = this.onerror = null;
      inner.onopen = (e) => this.onopen?.(e);
      inner.onclose = (e) => this.onclose?.(e);
      inner.onerror = (e) => this.onerror?.(e);
      inner.onmessage = (e) => {
        if (!drop(JSON.parse(e.data))) this.onmessage?.(e);
      };
    }
    get readyState() { return this.inner.readyState; }
    get protocol() { return this.inner.protocol; }
    send(d) { this.inner.send(d); }
    close(code, reason) { this.inner.close(code, reason); }
  };
}
const dropReauthRequired = filteredWebSocket((f) => f.type === 'reauth_required');

// newClient makes a client for sub whose tokens live ttl, recording what it
// reports. Ticks are checked as they come: each node numbers the ticks it
// sends a user 1, 2, 3… (a 1 starts a new count).
function newClient(sub, { ttl = '1m', base = () => demo.base, url = () => demo.ws, provider, ...opts } = {}) {
  const ticks = tickCounter();
  const rec = {
    states: [], messages: [], errors: [], closes: [], reauths: 0, providerCalls: [], positions: [], lost: [],
    get tickGaps() { return ticks.gaps; },
    get ticks() { return ticks.ticks; },
  };
  const tokenProvider = provider ?? (async (req) => {
    rec.providerCalls.push(req);
    return (await fetchToken(base(), sub, ttl)).token;
  });
  const client = new WsauthClient(url(), { WebSocket, tokenProvider, ...opts });
  clients.add(client);
  client.addEventListener('state', (e) => {
    if (e.detail === 'active' && rec.states.at(-1) === 'reauthenticating') rec.reauths++;
    rec.states.push(e.detail);
  });
  client.addEventListener('message', (e) => {
    if (!ticks.see(e.detail)) rec.messages.push(e.detail);
  });
  client.addEventListener('position', (e) => rec.positions.push(e.detail));
  client.addEventListener('resumelost', (e) => rec.lost.push(e.detail));
  client.addEventListener('error', (e) => rec.errors.push(e.detail));
  client.addEventListener('close', (e) => rec.closes.push(e.detail));
  return { client, rec };
}

async function connected(sub, opts) {
  const c = newClient(sub, opts);
  c.client.connect();
  await waitFor(() => c.client.state === 'active', 5_000, `${sub} active`);
  return c;
}

const chatFrom = (rec, from) => rec.messages.filter((m) => m.from === from).map((m) => m.data);

test('connects, authenticates, exchanges messages and closes', async () => {
  const bob = await connected('bob');
  const alice = newClient('alice');
  alice.client.connect();
  await waitFor(() => alice.client.state === 'active');
  assert.deepEqual(alice.rec.states, ['connecting', 'authenticating', 'active']);
  assert.equal(alice.client.subject, 'alice');
  assert.ok(alice.client.session);
  assert.ok(alice.client.exp > Date.now() / 1000);

  const id = alice.client.send({ text: 'hi bob' });
  assert.equal(typeof id, 'string');
  assert.equal(alice.client.send('second', 'my-id'), 'my-id');
  for (const r of [alice.rec, bob.rec]) {
    await waitFor(() => chatFrom(r, 'alice').length === 2);
    assert.deepEqual(chatFrom(r, 'alice'), [{ text: 'hi bob' }, 'second']);
  }
  await waitFor(() => alice.rec.ticks >= 3, 2_000, 'ticks');

  alice.client.close();
  assert.equal(alice.client.state, 'closed');
  assert.deepEqual(alice.rec.closes, [{ code: 1000, reason: 'client closed', retrying: false }]);
  assert.throws(() => alice.client.send('after close'), /closed/);
  bob.client.close();
  assert.deepEqual([...alice.rec.tickGaps, ...bob.rec.tickGaps], []);
  assert.deepEqual(alice.rec.errors, []);
});

test('send validates its input and bounds the queue', async () => {
  const { client } = newClient('dave', { maxQueue: 2 });
  assert.throws(() => client.send('x'), /closed/, 'before connect');
  client.connect();
  assert.equal(client.state, 'connecting');
  assert.throws(() => client.send(undefined), TypeError);
  assert.throws(() => client.send(() => {}), TypeError);
  assert.throws(() => client.send('x', 'é'.repeat(33)), TypeError, 'id of 66 bytes');
  assert.throws(() => client.send('x', ''), TypeError);
  client.send('one');
  client.send('two', 'x'.repeat(64));
  assert.throws(() => client.send('three'), /queue full/);
  assert.equal(client.queued, 2);
  client.close();
  assert.equal(client.queued, 2, 'close keeps the queue');
  assert.throws(() => new WsauthClient('ws://x', { WebSocket }), TypeError, 'no tokenProvider');
  assert.throws(() => new WsauthClient('ws://x', { tokenProvider: () => 't', WebSocket: null }), TypeError);
  assert.equal(isRetryable(4440), true);
  assert.equal(isRetryable(4403), false);
});

test('messages sent before auth_ok are delivered after it, in order', async () => {
  const observer = await connected('olga');
  const erin = newClient('erin');
  erin.client.connect();
  for (let i = 1; i <= 5; i++) erin.client.send({ n: i });
  assert.equal(erin.client.queued, 5);
  await waitFor(() => chatFrom(observer.rec, 'erin').length === 5);
  assert.deepEqual(chatFrom(observer.rec, 'erin'), [1, 2, 3, 4, 5].map((n) => ({ n })));
  assert.equal(erin.client.queued, 0);
  erin.client.close();
  observer.client.close();
});

test('survives reauth cycles of 2 s tokens without losing or duplicating a tick', async () => {
  const { client, rec } = await connected('frank', { ttl: '2s' });
  const session = client.session;
  await waitFor(() => rec.reauths >= 3, 8_000, '3 reauths');
  await sleep(200); // ticks after the last auth_ok
  assert.equal(client.session, session, 'same socket throughout');
  assert.deepEqual(rec.tickGaps, []);
  assert.ok(rec.ticks >= 20, `${rec.ticks} ticks`);
  assert.deepEqual(rec.closes, []);
  assert.deepEqual(rec.errors, []);
  assert.deepEqual(rec.providerCalls.map((r) => r.reauth), [false, ...Array(rec.providerCalls.length - 1).fill(true)]);
  client.close();
});

test('reauth_required raises reauthrequired with exp and deadline, before reauthenticating', async () => {
  const { client, rec } = await connected('rita', { ttl: '2s' });
  const seen = []; // events in order, with the state when each reauthrequired fired
  client.addEventListener('reauthrequired', (e) => seen.push({ ...e.detail, state: client.state }));
  client.addEventListener('state', (e) => seen.push(e.detail));
  const exp = client.exp;
  await waitFor(() => rec.reauths >= 1, 5_000, 'a reauth');
  // The demo runs with -reauth-grace 2s: the deadline is exp + 2.
  assert.deepEqual(seen.slice(0, 3), [{ exp, deadline: exp + 2, state: 'active' }, 'reauthenticating', 'active']);
  assert.ok(client.exp > exp, 'a fresh token');
  client.close();
});

test('messages sent while reauthenticating are queued and delivered after auth_ok', async () => {
  const observer = await connected('olga');
  let release;
  const slow = newClient('gina', {
    ttl: '2s',
    provider: async (req) => {
      // Hold the reauth token until the test has sent its messages.
      if (req.reauth) await new Promise((res) => { release = res; });
      return (await fetchToken(demo.base, 'gina', '2s')).token;
    },
  });
  slow.client.connect();
  await waitFor(() => slow.client.state === 'reauthenticating', 5_000, 'reauthenticating');
  slow.client.send('r1');
  slow.client.send('r2');
  slow.client.send('r3');
  assert.equal(slow.client.queued, 3);
  await sleep(100);
  assert.deepEqual(chatFrom(observer.rec, 'gina'), [], 'nothing sent before auth_ok');
  release();
  await waitFor(() => chatFrom(observer.rec, 'gina').length === 3);
  assert.equal(slow.client.state, 'active');
  await sleep(100);
  assert.deepEqual(chatFrom(observer.rec, 'gina'), ['r1', 'r2', 'r3']);
  assert.deepEqual(slow.rec.tickGaps, []);
  slow.client.close();
  observer.client.close();
});

test('a message refused with error 4401 is resent after the next auth_ok', async () => {
  const observer = await connected('olga');
  // The client never sees reauth_required and does not refresh on its own,
  // so it sends while the server holds the session expired.
  const h = await connected('hank', { ttl: '2s', WebSocket: dropReauthRequired, refreshLead: null });
  await sleep(h.client.exp * 1000 + 300 - Date.now());
  assert.equal(h.client.state, 'active');
  h.client.send('late');
  await waitFor(() => chatFrom(observer.rec, 'hank').length === 1, 3_000, 'the resent message');
  assert.equal(h.rec.reauths, 1, 'the refusal made the client reauthenticate');
  await sleep(200);
  assert.deepEqual(chatFrom(observer.rec, 'hank'), ['late'], 'delivered exactly once');
  assert.deepEqual(h.rec.errors, [], 'a resent message is no error');
  assert.deepEqual(h.rec.tickGaps, [], 'ticks buffered while expired arrive after auth_ok');
  h.client.close();
  observer.client.close();
});

test('reconnects with a new session after 4440', async () => {
  const { client, rec } = await connected('ivy', {
    ttl: '2s', WebSocket: dropReauthRequired, refreshLead: null, backoff: { initial: 50, max: 200 },
  });
  const first = client.session;
  await waitFor(() => rec.closes.length === 1, 6_000, 'close 4440');
  assert.deepEqual(rec.closes[0], { code: 4440, reason: 'session expired', retrying: true });
  await waitFor(() => client.state === 'active' && client.session !== first, 3_000, 'a new session');
  assert.deepEqual(rec.tickGaps, [], 'the ticks the old session missed are resumed');
  assert.deepEqual(rec.lost, []);
  client.close();
});

test('reconnects after the server went away (1001) and came back', async () => {
  const own = await startDemo(['-tick', '50ms']);
  try {
    const { client, rec } = await connected('jack', {
      base: () => own.base, url: () => own.ws, backoff: { initial: 50, max: 200 },
    });
    const first = client.session;
    await waitFor(() => rec.ticks >= 1, 2_000, "a tick: a position in jack's stream");
    assert.equal(await own.stop(), 0, 'SIGTERM: graceful exit 0');
    await waitFor(() => rec.closes.length >= 1);
    assert.deepEqual(rec.closes[0], { code: 1001, reason: 'server shutting down', retrying: true });
    await waitFor(() => rec.closes.length >= 3, 3_000, 'failed reconnects');
    assert.ok(rec.closes.slice(1).every((c) => c.code === 1006 && c.retrying), JSON.stringify(rec.closes));
    assert.equal(client.state, 'connecting');

    const again = await startDemo(['-tick', '50ms'], { addr: own.addr });
    try {
      await waitFor(() => client.state === 'active', 3_000, 'reconnected');
      assert.notEqual(client.session, first);
      // A new process: its streams are new, so the old position is lost.
      assert.equal(rec.lost.length, 1, JSON.stringify(rec.lost));
      client.close();
    } finally {
      await again.stop();
    }
  } finally {
    await own.stop();
  }
});

// contiguous reports whether positions run seq n, n+1, n+2… in one epoch
// (the first may be where a session started: an empty epoch, seq 0).
function contiguous(positions) {
  return positions.every((p, i) => i === 0 || (p.seq === positions[i - 1].seq + 1
    && (p.epoch === positions[i - 1].epoch || positions[i - 1].epoch === '')));
}

const directTo = (rec, to) => rec.messages.filter((m) => m.data?.to === to).map((m) => m.data.n);

test('keeps its stream position and resumes after a dropped connection, without a gap', async () => {
  const peggy = await connected('peggy');
  const { WebSocket: WS, sockets } = recordingWebSocket();
  const { client, rec } = await connected('oscar', { WebSocket: WS, backoff: { initial: 400, max: 400 } });
  assert.deepEqual(sockets[0].sent[0].resume, undefined, 'nothing to resume at first');
  assert.deepEqual(rec.positions[0], { epoch: '', seq: 0 }, 'oscar had no stream message: the session starts at 0');
  peggy.client.send({ to: 'oscar', n: 1 });
  await waitFor(() => directTo(rec, 'oscar').length === 1 && rec.ticks >= 3, 3_000, 'a message and ticks');
  const before = client.position;
  assert.ok(before.seq >= 4, JSON.stringify(before));
  assert.deepEqual(before, rec.positions.at(-1), 'position events report every move');

  sockets[0].terminate(); // dropped without a close frame: 1006, reconnect after ~400 ms
  await waitFor(() => rec.closes.length === 1);
  assert.equal(rec.closes[0].code, 1006);
  for (let n = 2; n <= 4; n++) peggy.client.send({ to: 'oscar', n });
  await waitFor(() => directTo(rec, 'oscar').length === 4, 5_000, 'the messages sent while away');
  await sleep(200);
  assert.equal(sockets.length, 2);
  assert.equal(sockets[1].sent[0].type, 'auth');
  assert.ok(sockets[1].sent[0].resume.seq >= before.seq, 'the position is presented on reconnect');
  assert.deepEqual(directTo(rec, 'oscar'), [1, 2, 3, 4], 'each once, in order');
  assert.deepEqual(rec.tickGaps, []);
  assert.ok(contiguous(rec.positions), JSON.stringify(rec.positions));
  assert.deepEqual(rec.lost, []);
  client.close();
  peggy.client.close();
});

test('starts from a saved position (options.resume)', async () => {
  const peggy = await connected('peggy');
  const first = await connected('quinn');
  peggy.client.send({ to: 'quinn', n: 1 });
  await waitFor(() => directTo(first.rec, 'quinn').length === 1);
  const saved = JSON.parse(JSON.stringify(first.client.position)); // as an app would store it
  first.client.close();
  await sleep(100); // quinn has no session now: no ticks
  peggy.client.send({ to: 'quinn', n: 2 });
  peggy.client.send({ to: 'quinn', n: 3 });
  await waitFor(() => directTo(peggy.rec, 'quinn').length === 3, 3_000, "peggy's copies");

  const later = await connected('quinn', { resume: saved });
  await waitFor(() => directTo(later.rec, 'quinn').length === 2, 3_000, 'the missed messages');
  assert.deepEqual(directTo(later.rec, 'quinn'), [2, 3]);
  assert.deepEqual(later.rec.lost, []);
  assert.equal(later.rec.positions[0].seq, saved.seq + 1, 'on from the saved position');
  later.client.close();
  peggy.client.close();

  for (const resume of [{ epoch: 1, seq: 1 }, { epoch: 'e', seq: -1 }, { epoch: 'e', seq: 1.5 }, { epoch: 'é'.repeat(33), seq: 1 }, 'e:1']) {
    assert.throws(() => new WsauthClient('ws://x', { tokenProvider: () => 't', WebSocket, resume }), TypeError, JSON.stringify(resume));
  }
});

test('a lost resume raises resumelost and goes on from the head', async () => {
  const presented = { epoch: 'not-an-epoch', seq: 7 };
  const { client, rec } = await connected('rita', { resume: presented });
  assert.equal(rec.lost.length, 1);
  assert.deepEqual(rec.lost[0], { presented, position: client.position });
  assert.notEqual(client.position.epoch, presented.epoch);
  assert.deepEqual(rec.states.slice(-1), ['active'], 'the session goes on');
  await waitFor(() => rec.ticks >= 2);
  client.close();
});

test('a token provider failure is terminal, at connect and at reauth', async () => {
  const failing = newClient('kate', { provider: () => Promise.reject(new Error('IdP down')) });
  failing.client.connect();
  await waitFor(() => failing.client.state === 'closed');
  assert.equal(failing.rec.errors.length, 1);
  assert.equal(failing.rec.errors[0].code, CLIENT_ERROR);
  assert.match(failing.rec.errors[0].message, /token provider failed: IdP down/);
  assert.equal(failing.rec.closes.length, 1);
  assert.equal(failing.rec.closes[0].retrying, false);

  let calls = 0;
  const later = newClient('liam', {
    provider: async () => {
      if (++calls > 1) throw new Error('refresh refused');
      return (await fetchToken(demo.base, 'liam', '2s')).token;
    },
  });
  later.client.connect();
  await waitFor(() => later.rec.states.includes('active'));
  await waitFor(() => later.client.state === 'closed', 4_000, 'closed after the failed reauth');
  assert.deepEqual(later.rec.states, ['connecting', 'authenticating', 'active', 'reauthenticating', 'closed']);
  assert.match(later.rec.errors[0]?.message ?? '', /refresh refused/);
  await sleep(300);
  assert.equal(calls, 2, 'no reconnect');
});

test('a fresh token the server refuses at reauth is terminal', async () => {
  let calls = 0;
  const c = newClient('nina', {
    provider: async () => {
      if (++calls > 1) return 'not.a.jwt';
      return (await fetchToken(demo.base, 'nina', '3s')).token;
    },
  });
  c.client.connect();
  await waitFor(() => c.rec.states.includes('active'));
  await waitFor(() => c.client.state === 'closed', 4_000, 'closed after the refused reauth');
  assert.deepEqual(c.rec.closes[0], { code: 4401, reason: 'malformed token', retrying: false });
  await sleep(300);
  assert.equal(calls, 2, 'no reconnect');
});

test('terminal close codes from the server are not retried', async () => {
  let calls = 0;
  const bad = newClient('mia', { provider: () => { calls++; return 'not.a.jwt'; }, backoff: { initial: 10 } });
  bad.client.connect();
  await waitFor(() => bad.rec.closes.length === 1);
  assert.deepEqual(bad.rec.closes[0], { code: 4401, reason: 'malformed token', retrying: false });
  assert.equal(bad.client.state, 'closed');
  await sleep(200);
  assert.equal(calls, 1);
});

test('error frames are reported and malformed server frames are fatal (fake server)', async () => {
  const wss = new WebSocketServer({ host: '127.0.0.1', port: 0, handleProtocols: (p) => (p.has('wsauth.v1') ? 'wsauth.v1' : false) });
  await new Promise((res) => wss.once('listening', res));
  wss.on('connection', (sock) => {
    sock.once('message', () => {
      sock.send(JSON.stringify({ type: 'auth_ok', session: 's1', sub: 'nina', exp: Math.floor(Date.now() / 1000) + 60 }));
      sock.send(JSON.stringify({ type: 'future_frame', x: 1 }));
      sock.send(JSON.stringify({ type: 'error', code: 4001, message: 'nope', ref: 'm9' }));
      sock.send('not json');
    });
  });
  try {
    const { client, rec } = newClient('nina', { url: () => `ws://127.0.0.1:${wss.address().port}/`, provider: () => 'tok' });
    client.connect();
    await waitFor(() => client.state === 'closed');
    assert.deepEqual(rec.errors[0], { code: 4001, message: 'nope', ref: 'm9' });
    assert.equal(rec.errors[1].code, CLIENT_ERROR);
    assert.match(rec.errors[1].message, /malformed server frame/);
    assert.deepEqual(rec.closes, [{ code: 4400, reason: 'malformed server frame', retrying: false }]);
  } finally {
    for (const s of wss.clients) s.terminate();
    await new Promise((res) => wss.close(res));
  }
});

// A client of the -token-per-message demo (pm) whose WebSocket records the
// frames it sends (rec.sockets).
function pmClient(sub, opts = {}) {
  const { WebSocket: WS, sockets } = recordingWebSocket();
  const c = newClient(sub, { base: () => pm.base, url: () => pm.ws, WebSocket: WS, tokenPerMessage: true, ...opts });
  c.rec.sockets = sockets;
  return c;
}

async function pmConnected(sub, opts) {
  const c = pmClient(sub, opts);
  c.client.connect();
  await waitFor(() => c.client.state === 'active', 5_000, `${sub} active`);
  return c;
}

// The message frames a socket sent, each with the token of the last auth
// frame sent before it on that socket.
function messagesWithAuth(sock) {
  let auth;
  const out = [];
  for (const f of sock.sent) {
    if (f.type === 'auth') auth = f.token;
    if (f.type === 'message') out.push({ data: f.data, token: f.token, auth });
  }
  return out;
}

test('with tokenPerMessage, messages (queued ones too) are delivered, each carrying the session token', async () => {
  const observer = await pmConnected('olga');
  const alice = pmClient('alice');
  alice.client.connect();
  alice.client.send({ text: 'queued before auth_ok' });
  await waitFor(() => alice.client.state === 'active', 5_000, 'alice active');
  alice.client.send({ text: 'sent while active' });
  for (const r of [observer.rec, alice.rec]) {
    await waitFor(() => chatFrom(r, 'alice').length === 2, 3_000, 'both messages');
    assert.deepEqual(chatFrom(r, 'alice'), [{ text: 'queued before auth_ok' }, { text: 'sent while active' }]);
  }
  const sent = messagesWithAuth(alice.rec.sockets[0]);
  assert.equal(sent.length, 2);
  for (const m of sent) assert.ok(m.token && m.token === m.auth, 'the token of the auth frame that made the session active');
  assert.deepEqual(alice.rec.errors, []);
  assert.deepEqual(observer.rec.errors, []);
  alice.client.close();
  observer.client.close();
});

test('after reauthentications, messages carry the fresh token and still go through', async () => {
  const observer = await pmConnected('olga');
  const bea = await pmConnected('bea', { ttl: '2s' });
  const firstExp = bea.client.exp;
  bea.client.send('before reauth');
  // Past the first token's exp: a message carrying it now is refused.
  await waitFor(() => bea.rec.reauths >= 1 && Date.now() > firstExp * 1000 + 300, 6_000, 'a reauth, and the first token expired');
  bea.client.send('after the first token expired');
  await waitFor(() => bea.rec.reauths >= 2, 6_000, 'a second reauth');
  bea.client.send('after a second reauth');
  await waitFor(() => chatFrom(observer.rec, 'bea').length === 3, 3_000, 'three messages');
  await sleep(100);
  assert.deepEqual(chatFrom(observer.rec, 'bea'), ['before reauth', 'after the first token expired', 'after a second reauth']);
  assert.deepEqual(bea.rec.errors, [], 'no message was refused');
  assert.equal(bea.rec.sockets.length, 1, 'one socket throughout');
  const sent = messagesWithAuth(bea.rec.sockets[0]);
  assert.equal(sent.length, 3, 'none resent');
  for (const m of sent) assert.equal(m.token, m.auth, `${m.data}: the token of the latest auth frame`);
  // The dev IdP mints the same token for the same second, so two reauths
  // may carry one token; but the first had expired before the second send.
  assert.notEqual(sent[1].token, sent[0].token, 'a fresh token after the first expired');
  assert.notEqual(sent[2].token, sent[0].token);
  bea.client.close();
  observer.client.close();
});

test('with a ticket, messages carry the token exchanged for it', async () => {
  const observer = await pmConnected('olga');
  const tess = await pmConnected('tess', { ticketUrl: `${pm.base}/ticket` });
  assert.equal(tess.client.credential, 'ticket');
  tess.client.send('by ticket');
  await waitFor(() => chatFrom(observer.rec, 'tess').length === 1, 3_000, 'the message');
  assert.deepEqual(tess.rec.sockets[0].sent.map((f) => f.type), ['message'], 'no auth frame: the token came from the exchange');
  assert.equal(typeof tess.rec.sockets[0].sent[0].token, 'string');
  assert.deepEqual(tess.rec.errors, []);
  tess.client.close();
  observer.client.close();
});

test('without tokenPerMessage the server refuses every message: error 4401, after one resend', async () => {
  const observer = await pmConnected('olga');
  const nat = await pmConnected('nat', { tokenPerMessage: false });
  const id = nat.client.send('unsigned');
  await waitFor(() => nat.rec.errors.length === 1, 4_000, 'an error event');
  assert.deepEqual(nat.rec.errors[0], { code: ERROR_REAUTH_REQUIRED, message: 'token required', ref: id });
  const sent = nat.rec.sockets[0].sent.filter((f) => f.type === 'message');
  assert.equal(sent.length, 2, 'sent, then resent once after a fresh token');
  assert.ok(sent.every((f) => !('token' in f)));
  assert.equal(nat.rec.reauths, 1);
  await sleep(1_200); // a resend loop would reauthenticate every second
  assert.equal(nat.rec.reauths, 1, 'not resent for ever');
  assert.equal(nat.rec.errors.length, 1);
  assert.equal(nat.client.state, 'active', 'the session itself is fine');
  assert.deepEqual(chatFrom(observer.rec, 'nat'), []);
  nat.client.close();
  observer.client.close();
});

test('tokenPerMessage must be a boolean', () => {
  const opts = { tokenProvider: () => 't', WebSocket: class {} };
  for (const v of ['true', 1, null]) {
    assert.throws(() => new WsauthClient('ws://x', { ...opts, tokenPerMessage: v }), TypeError, String(v));
  }
  assert.doesNotThrow(() => new WsauthClient('ws://x', { ...opts, tokenPerMessage: true }));
});
