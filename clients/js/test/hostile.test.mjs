// WsauthClient in Node against hostile or faulty servers: fake wsauth
// servers (ws's WebSocketServer on loopback) scripted by each test.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import WebSocket, { WebSocketServer } from 'ws';
import { WsauthClient, CLIENT_ERROR, isRetryable } from '../wsauth.js';
import { sleep, waitFor } from './demo.mjs';

const servers = new Set();
const clients = new Set();

after(async () => {
  for (const c of clients) c.close();
  for (const s of servers) await s.stop();
});

const nowS = () => Math.floor(Date.now() / 1000);

// fakeServer starts a fake wsauth server; on(conn, frame) sees every frame
// a client sends. conn: {sock, n (from 1), auths, openedAt}. closes: the
// close frames clients sent, {n, code, reason}.
async function fakeServer(on, wsOptions = {}) {
  const wss = new WebSocketServer({
    host: '127.0.0.1', port: 0, handleProtocols: (p) => (p.has('wsauth.v1') ? 'wsauth.v1' : false), ...wsOptions,
  });
  await new Promise((res) => wss.once('listening', res));
  const srv = {
    url: `ws://127.0.0.1:${wss.address().port}/`,
    conns: [],
    closes: [],
    async stop() {
      for (const s of wss.clients) s.terminate();
      await new Promise((res) => wss.close(res));
    },
  };
  wss.on('connection', (sock) => {
    const conn = { sock, n: srv.conns.length + 1, auths: 0, openedAt: Date.now() };
    srv.conns.push(conn);
    sock.on('message', (data) => {
      const f = JSON.parse(data.toString());
      if (f.type === 'auth') conn.auths++;
      on(conn, f);
    });
    sock.on('close', (code, reason) => srv.closes.push({ n: conn.n, code, reason: reason.toString() }));
  });
  servers.add(srv);
  return srv;
}

function authOK(conn, { sub = 'fay', exp = nowS() + 3600 } = {}) {
  conn.sock.send(JSON.stringify({ type: 'auth_ok', session: `s${conn.n}`, sub, exp }));
}

// newClient connects a client with a counting token provider to srv and
// records what it reports.
function newClient(srv, { provider, ...opts } = {}) {
  const rec = { states: [], messages: [], errors: [], closes: [], tokens: 0 };
  const tokenProvider = provider ?? (() => `tok-${++rec.tokens}`);
  const client = new WsauthClient(srv.url, { WebSocket, tokenProvider, backoff: { initial: 20, max: 80 }, ...opts });
  clients.add(client);
  client.addEventListener('state', (e) => rec.states.push(e.detail));
  client.addEventListener('message', (e) => rec.messages.push(e.detail));
  client.addEventListener('error', (e) => rec.errors.push(e.detail));
  client.addEventListener('close', (e) => rec.closes.push(e.detail));
  client.connect();
  return { client, rec };
}

test('a token living longer than 24.8 days does not make the client refresh at once', async () => {
  const srv = await fakeServer((conn, f) => {
    if (f.type === 'auth') authOK(conn, { exp: nowS() + 30 * 86_400 });
  });
  const { client, rec } = newClient(srv);
  await waitFor(() => client.state === 'active');
  await sleep(300); // a refresh loop makes ~300 token fetches in this time
  assert.equal(rec.tokens, 1);
  assert.equal(srv.conns[0].auths, 1);
  client.close();
});

// An in-memory WebSocket for tests with mocked timers: it opens at once
// and hands every frame the client sends to onSend.
class MemoryWebSocket {
  static last;
  readyState = 0;
  protocol = 'wsauth.v1';
  onopen = null;
  onmessage = null;
  onclose = null;
  onerror = null;
  sent = [];

  constructor() {
    MemoryWebSocket.last = this;
    queueMicrotask(() => {
      this.readyState = 1;
      this.onopen?.({});
    });
  }

  send(data) { this.sent.push(JSON.parse(data)); }
  close() { this.readyState = 3; }
  receive(frame) { this.onmessage?.({ data: JSON.stringify(frame) }); }
}

const settle = async () => { for (let i = 0; i < 10; i++) await Promise.resolve(); };

test('a refresh beyond 2^31-1 ms is waited out in chunks, on time (mocked clock)', async (t) => {
  t.mock.timers.enable({ apis: ['setTimeout', 'Date'], now: Date.UTC(2026, 10, 23) });
  const calls = [];
  const client = new WsauthClient('ws://memory', {
    WebSocket: MemoryWebSocket,
    tokenProvider: () => { calls.push(Date.now()); return 'tok'; },
  });
  client.connect();
  await settle();
  const ws = MemoryWebSocket.last;
  assert.deepEqual(ws.sent.map((f) => f.type), ['auth']);
  const exp = Date.now() + 30 * 86_400_000;
  ws.receive({ type: 'auth_ok', session: 's1', sub: 'fay', exp: exp / 1000 });
  assert.equal(client.state, 'active');

  t.mock.timers.tick(2 ** 31 - 1); // the first chunk
  await settle();
  assert.equal(calls.length, 1, 'no refresh after the first chunk');
  const due = exp - 10_000; // refreshLead
  t.mock.timers.tick(due - Date.now() - 1);
  await settle();
  assert.equal(calls.length, 1, 'no refresh before exp - refreshLead');
  t.mock.timers.tick(1);
  await settle();
  assert.equal(calls.length, 2);
  assert.equal(calls[1], due);
  assert.deepEqual(ws.sent.map((f) => f.type), ['auth', 'auth']);
  client.close();
});

test('a server that never answers the first auth is given authTimeout, then the client reconnects', async () => {
  const srv = await fakeServer((conn, f) => {
    if (f.type === 'auth' && conn.n > 1) authOK(conn);
  });
  const { client, rec } = newClient(srv, { authTimeout: 150 });
  await waitFor(() => client.state === 'active' && client.session === 's2', 3_000, 'the second connection');
  assert.deepEqual(rec.closes, [{ code: 1006, reason: 'auth timeout', retrying: true }]);
  assert.deepEqual(rec.states, ['connecting', 'authenticating', 'connecting', 'authenticating', 'active']);
  await waitFor(() => srv.closes.length === 1);
  assert.deepEqual(srv.closes[0], { n: 1, code: 1000, reason: 'auth timeout' });
  client.close();
});

test('a server that never answers a reauth is given reauthTimeout, then the client reconnects', async () => {
  const srv = await fakeServer((conn, f) => {
    if (f.type === 'message') conn.got = [...(conn.got ?? []), f.data];
    if (f.type !== 'auth' || conn.auths > 1) return; // reauths go unanswered
    authOK(conn);
    if (conn.n === 1) conn.sock.send(JSON.stringify({ type: 'reauth_required', exp: nowS() + 3600, deadline: nowS() + 3610 }));
  });
  const { client, rec } = newClient(srv, { reauthTimeout: 150 });
  await waitFor(() => client.state === 'reauthenticating', 3_000); // a second after the first auth
  client.send('queued');
  await waitFor(() => client.session === 's2' && client.state === 'active', 3_000, 'the second connection');
  assert.deepEqual(rec.closes, [{ code: 1006, reason: 'reauth timeout', retrying: true }]);
  await waitFor(() => srv.conns[1].got?.length === 1);
  assert.deepEqual(srv.conns[1].got, ['queued'], 'the queue went out on the new connection');
  assert.deepEqual(srv.closes[0], { n: 1, code: 1000, reason: 'reauth timeout' });
  client.close();
});

test('in Node with ws the client pings, and drops a connection that stops answering', async () => {
  let answer = true;
  const srv = await fakeServer((conn, f) => {
    if (f.type === 'auth') authOK(conn);
  }, { autoPong: false });
  let pings = 0;
  const { client, rec } = newClient(srv, { pingInterval: 100, pongTimeout: 100 });
  await waitFor(() => client.state === 'active');
  srv.conns[0].sock.on('ping', (data) => {
    pings++;
    if (answer) srv.conns[0].sock.pong(data);
  });
  await waitFor(() => pings >= 3, 3_000, 'three pings');
  assert.equal(client.session, 's1', 'answered pings keep the connection');
  answer = false;
  await waitFor(() => client.session === 's2' && client.state === 'active', 3_000, 'a new connection');
  assert.deepEqual(rec.closes, [{ code: 1006, reason: 'keepalive timeout', retrying: true }]);
  client.close();
});

test('backoff grows across sessions that close right after auth_ok, and resets after a stable one', async () => {
  const stable = 6;
  const srv = await fakeServer((conn, f) => {
    if (f.type !== 'auth') return;
    authOK(conn);
    if (conn.n !== stable) conn.sock.close(1011, 'internal error');
  });
  const { client } = newClient(srv, { backoff: { initial: 25, max: 200 } });
  await waitFor(() => srv.conns.length === stable, 5_000, 'the stable connection');
  const gaps = srv.conns.slice(1).map((c, i) => c.openedAt - srv.conns[i].openedAt);
  // 25, 50, 100, 200, 200 (±20%), not 25 each time.
  assert.ok(gaps[2] >= 75 && gaps[3] >= 150 && gaps[4] >= 150, `gaps ${gaps}`);
  await waitFor(() => client.state === 'active');
  await sleep(220); // longer than backoff.max: the count starts again
  const closedAt = Date.now();
  srv.conns[stable - 1].sock.close(1011, 'internal error');
  await waitFor(() => srv.conns.length === stable + 1, 3_000);
  assert.ok(srv.conns[stable].openedAt - closedAt < 150, 'back to backoff.initial, not backoff.max');
  client.close();
});

test('a message over readLimit closes with 1009, for good', async () => {
  const srv = await fakeServer((conn, f) => {
    if (f.type !== 'auth') return;
    authOK(conn);
    conn.sock.send(JSON.stringify({ type: 'message', data: 'x'.repeat(100) }));
    conn.sock.send(JSON.stringify({ type: 'message', data: 'é'.repeat(600_000) })); // 1.2 MB of UTF-8
  });
  const { client, rec } = newClient(srv);
  await waitFor(() => client.state === 'closed');
  assert.deepEqual(rec.messages, ['x'.repeat(100)]);
  assert.deepEqual(rec.closes, [{ code: 1009, reason: 'message too large', retrying: false }]);
  assert.equal(rec.errors[0].code, CLIENT_ERROR);
  await waitFor(() => srv.closes.length === 1);
  assert.deepEqual(srv.closes[0], { n: 1, code: 1009, reason: 'message too large' });
  assert.equal(srv.conns.length, 1);

  const big = newClient(srv, { readLimit: 2_000_000 });
  await waitFor(() => big.rec.messages.length === 2);
  assert.equal(big.client.state, 'active');
  big.client.close();
  assert.throws(() => new WsauthClient(srv.url, { WebSocket, tokenProvider: () => 't', readLimit: 0 }), RangeError);
});

test("the token provider's error text never reaches the server, and a long one costs nothing", async () => {
  const srv = await fakeServer((conn, f) => {
    if (f.type === 'auth') authOK(conn, { exp: nowS() + 2 });
  });
  // 40k characters took the old quadratic truncation ~300 ms of blocked
  // event loop; the text must not reach the server at all.
  const secret = 'provider said: refresh_token=abc123 ' + 'x'.repeat(40_000);
  let calls = 0;
  let rejectedAt;
  const { client, rec } = newClient(srv, {
    provider: () => {
      if (++calls === 1) return 'tok';
      rejectedAt = Date.now();
      return Promise.reject(new Error(secret));
    },
  });
  let closedAt;
  client.addEventListener('close', () => { closedAt = Date.now(); });
  await waitFor(() => client.state === 'closed', 4_000, 'the failed refresh');
  assert.ok(closedAt - rejectedAt < 100, `${closedAt - rejectedAt} ms from the rejection to the close`);
  assert.deepEqual(rec.closes, [{ code: 1000, reason: 'token provider failed', retrying: false }]);
  assert.equal(rec.errors[0].message, `token provider failed: ${secret}`, 'the application sees the text');
  await waitFor(() => srv.closes.length === 1);
  assert.deepEqual(srv.closes[0], { n: 1, code: 1000, reason: 'token provider failed' });
});

test('a server that asks for a reauth after every auth_ok gets one auth frame a second', async () => {
  const srv = await fakeServer((conn, f) => {
    if (f.type !== 'auth') return;
    authOK(conn);
    conn.sock.send(JSON.stringify({ type: 'reauth_required', exp: nowS() + 3600, deadline: nowS() + 3610 }));
  });
  const { client, rec } = newClient(srv);
  await waitFor(() => client.state === 'active');
  await sleep(1_300);
  assert.ok(srv.conns[0].auths === 2, `${srv.conns[0].auths} auth frames in 1.3 s`);
  assert.equal(rec.tokens, 2);
  client.close();
});

test('an auth_ok that changes the subject on reauth is a terminal protocol error', async () => {
  const srv = await fakeServer((conn, f) => {
    if (f.type !== 'auth') return;
    if (conn.auths === 1) {
      authOK(conn);
      conn.sock.send(JSON.stringify({ type: 'reauth_required', exp: nowS() + 3600, deadline: nowS() + 3610 }));
    } else {
      authOK(conn, { sub: 'mallory' });
    }
  });
  const { client, rec } = newClient(srv);
  await waitFor(() => client.state === 'closed', 3_000);
  assert.equal(client.subject, 'fay');
  assert.deepEqual(rec.closes, [{ code: 4400, reason: 'subject changed', retrying: false }]);
  assert.match(rec.errors[0].message, /changed the subject/);
  await waitFor(() => srv.closes.length === 1);
  assert.deepEqual(srv.closes[0], { n: 1, code: 4400, reason: 'subject changed' });
  assert.equal(srv.conns.length, 1, 'no reconnection');
});

test('a stream message at or before the position is dropped, not delivered twice', async () => {
  const stream = (seq, data, epoch = 'e1') => JSON.stringify({ type: 'message', epoch, seq, data });
  const srv = await fakeServer((conn, f) => {
    if (f.type !== 'auth') return;
    conn.sock.send(JSON.stringify({ type: 'auth_ok', session: 's1', sub: 'fay', exp: nowS() + 3600, epoch: 'e1', seq: 5 }));
    conn.sock.send(stream(5, 'five again')); // where the session started: handed over
    conn.sock.send(stream(6, 'six'));
    conn.sock.send(stream(6, 'six again'));
    conn.sock.send(stream(4, 'four'));
    conn.sock.send(JSON.stringify({ type: 'message', data: 'outside the stream' }));
    conn.sock.send(stream(7, 'seven'));
    conn.sock.send(stream(1, 'a new epoch', 'e2'));
  });
  const { client, rec } = newClient(srv);
  await waitFor(() => rec.messages.length === 4, 3_000);
  await sleep(50);
  assert.deepEqual(rec.messages, ['six', 'outside the stream', 'seven', 'a new epoch']);
  assert.deepEqual(client.position, { epoch: 'e2', seq: 1 });
  assert.deepEqual(rec.errors.map((e) => e.code), [CLIENT_ERROR, CLIENT_ERROR, CLIENT_ERROR]);
  assert.match(rec.errors[1].message, /repeated stream message 6 \(at 6\); dropped/);
  assert.equal(client.state, 'active', 'a repeat is dropped, not a reason to end the session');
});

test('a close frame without a status code (1005) is retried', async () => {
  const srv = await fakeServer((conn, f) => {
    if (f.type !== 'auth') return;
    authOK(conn);
    if (conn.n === 1) conn.sock.close(); // no code: an empty close frame
  });
  const { client, rec } = newClient(srv);
  await waitFor(() => client.session === 's2' && client.state === 'active', 3_000);
  assert.deepEqual(rec.closes, [{ code: 1005, reason: '', retrying: true }]);
  assert.equal(isRetryable(1005), true);
  client.close();
});

test('with tokenPerMessage a message carries the token of the latest accepted auth, one queued while reauthenticating the new one', async () => {
  const msgs = []; // {data, token} of every message frame, in order
  let held; // the reauth auth frame the server has not answered yet
  const srv = await fakeServer((conn, f) => {
    if (f.type === 'auth') {
      if (conn.auths === 1) authOK(conn);
      else held = { conn, f };
    }
    if (f.type === 'message') {
      msgs.push({ data: f.data, token: f.token });
      // A server that echoes the token in an error frame's message.
      if (f.data === 'echo') conn.sock.send(JSON.stringify({ type: 'error', code: 4500, message: `bad: ${f.token}`, ref: f.id }));
    }
  });
  const { client, rec } = newClient(srv, { tokenPerMessage: true });
  client.send('queued before auth_ok');
  await waitFor(() => client.state === 'active');
  client.send('a');
  await waitFor(() => msgs.length === 2);
  const sock = srv.conns[0].sock;

  sock.send(JSON.stringify({ type: 'reauth_required', exp: nowS() + 5, deadline: nowS() + 10 }));
  await waitFor(() => held?.f.token === 'tok-2', 3_000, 'the reauth auth frame');
  assert.equal(client.state, 'reauthenticating');
  client.send('queued while reauthenticating');
  await sleep(50);
  assert.equal(msgs.length, 2, 'nothing sent before auth_ok');
  authOK(held.conn);
  held = undefined;
  await waitFor(() => msgs.length === 3);
  client.send('b');
  await waitFor(() => msgs.length === 4);

  // A reauth refused as too soon (4429): the session keeps tok-2.
  sock.send(JSON.stringify({ type: 'reauth_required', exp: nowS() + 5, deadline: nowS() + 10 }));
  await waitFor(() => held?.f.token === 'tok-3', 3_000, 'the second reauth auth frame');
  held = undefined;
  sock.send(JSON.stringify({ type: 'error', code: 4429, message: 'too many requests' }));
  await waitFor(() => client.state === 'active');
  client.send('c');
  await waitFor(() => msgs.length === 5);
  // The client retries the refresh a second later: tok-4, accepted.
  await waitFor(() => held?.f.token === 'tok-4', 3_000, 'the retried reauth');
  authOK(held.conn);
  await waitFor(() => client.state === 'active');
  client.send('echo');
  await waitFor(() => rec.errors.length === 1);

  assert.deepEqual(msgs, [
    { data: 'queued before auth_ok', token: 'tok-1' },
    { data: 'a', token: 'tok-1' },
    { data: 'queued while reauthenticating', token: 'tok-2' },
    { data: 'b', token: 'tok-2' },
    { data: 'c', token: 'tok-2' },
    { data: 'echo', token: 'tok-4' },
  ]);
  assert.deepEqual(rec.errors, [{ code: 4500, message: '', ref: '6' }], 'the echoed token is blanked');
  client.close();
});

test('without tokenPerMessage a message frame has no token', async () => {
  const msgs = [];
  const srv = await fakeServer((conn, f) => {
    if (f.type === 'auth') authOK(conn);
    if (f.type === 'message') msgs.push(f);
  });
  const { client } = newClient(srv);
  client.send('plain', 'p1');
  await waitFor(() => msgs.length === 1);
  assert.deepEqual(msgs, [{ type: 'message', id: 'p1', data: 'plain' }]);
  client.close();
});
