// Interop: a raw `ws` client that shares no code with wsauth.js follows only
// docs/protocol.md against the real demo server.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import WebSocket from 'ws';
import { startDemo, fetchToken, sleep } from './demo.mjs';

const GRACE_S = 2;
let demo;

before(async () => {
  demo = await startDemo(['-tick', '50ms', '-reauth-lead', '1s', '-reauth-grace', `${GRACE_S}s`]);
}, { timeout: 240_000 }); // a cold go build

after(async () => {
  await demo?.stop();
});

// Raw is a WebSocket whose server frames are read one at a time.
class Raw {
  #frames = [];
  #waiters = [];

  static open(url, protocols = ['wsauth.v1']) {
    const ws = new WebSocket(url, protocols);
    const raw = new Raw(ws);
    return new Promise((res, rej) => {
      ws.once('open', () => res(raw));
      ws.once('error', rej);
    });
  }

  constructor(ws) {
    this.ws = ws;
    ws.on('message', (data, isBinary) => {
      assert.equal(isBinary, false, 'server frames are text');
      this.#push(JSON.parse(data.toString('utf8')));
    });
    ws.on('close', (code, reason) => this.#push({ closed: code, reason: reason.toString() }));
    ws.on('error', () => {});
  }

  #push(f) {
    const w = this.#waiters.shift();
    if (w) w(f);
    else this.#frames.push(f);
  }

  /** The next frame, or {closed, reason}; rejects after ms. */
  next(ms = 5_000) {
    if (this.#frames.length) return Promise.resolve(this.#frames.shift());
    return new Promise((res, rej) => {
      const waiter = (f) => {
        clearTimeout(timer);
        res(f);
      };
      const timer = setTimeout(() => {
        this.#waiters.splice(this.#waiters.indexOf(waiter), 1);
        rej(new Error(`no frame within ${ms} ms`));
      }, ms);
      this.#waiters.push(waiter);
    });
  }

  /** The next frame that is not a tick message. */
  async nextNonTick(ms) {
    for (;;) {
      const f = await this.next(ms);
      if (!(f.type === 'message' && typeof f.data?.tick === 'number')) return f;
    }
  }

  send(obj) {
    this.ws.send(typeof obj === 'string' ? obj : JSON.stringify(obj));
  }

  close() {
    this.ws.terminate();
  }
}

async function login(sub, ttl = '1m', protocols, resume) {
  const { token, exp } = await fetchToken(demo.base, sub, ttl);
  const c = await Raw.open(demo.ws, protocols);
  c.send(resume ? { type: 'auth', token, resume } : { type: 'auth', token });
  const ok = await c.nextNonTick();
  assert.equal(ok.type, 'auth_ok', JSON.stringify(ok));
  return { c, ok, exp };
}

test('auth_ok carries session, sub and exp; wsauth.v1 is selected', async () => {
  const { c, ok, exp } = await login('alice');
  assert.equal(c.ws.protocol, 'wsauth.v1');
  // The demo keeps users' streams: the first auth_ok says where the
  // session starts in alice's.
  assert.deepEqual(Object.keys(ok).sort(), ['epoch', 'exp', 'seq', 'session', 'sub', 'type']);
  assert.equal(typeof ok.epoch, 'string');
  assert.ok(Number.isInteger(ok.seq) && ok.seq >= 0, JSON.stringify(ok));
  assert.equal(ok.sub, 'alice');
  assert.equal(ok.exp, exp);
  assert.match(ok.session, /^\S{8,}$/);
  c.close();

  // A client offering no subprotocol is served too.
  const plain = await login('alice', '1m', []);
  assert.equal(plain.c.ws.protocol, '');
  plain.c.close();
});

test('messages are broadcast to every session with from', async () => {
  const a = await login('alice');
  const b = await login('bob');
  a.c.send({ type: 'message', id: 'm1', data: { text: 'hi bob' } });
  for (const c of [a.c, b.c]) {
    assert.deepEqual(await c.nextNonTick(), { type: 'message', data: { from: 'alice', data: { text: 'hi bob' } } });
  }
  b.c.send({ type: 'message', data: [1, null, 'x'] });
  for (const c of [a.c, b.c]) {
    assert.deepEqual(await c.nextNonTick(), { type: 'message', data: { from: 'bob', data: [1, null, 'x'] } });
  }
  a.c.close();
  b.c.close();
});

test('protocol violations close with the documented codes', async () => {
  const cases = [
    [{ type: 'message', data: 'before auth' }, 4401, 'auth required'],
    ['not json', 4400, 'malformed frame'],
    [{ type: 'auth', token: 'not.a.jwt' }, 4401, 'malformed token'],
  ];
  for (const [frame, code, reason] of cases) {
    const c = await Raw.open(demo.ws);
    c.send(frame);
    assert.deepEqual(await c.next(), { closed: code, reason });
  }
});

// Two reauthentications on one socket: the first answered at once, the
// second after the token expired (the server then buffers ticks and refuses
// messages with error 4401). Tick numbers run on with no gap or duplicate.
test('reauth on the same socket keeps ticks contiguous', async () => {
  const { c, ok } = await login('carol', '2s');
  let next = 1;
  const tick = (f) => {
    assert.equal(f.type, 'message', JSON.stringify(f));
    assert.equal(f.data.tick, next, `tick ${next} expected, got ${JSON.stringify(f)}`);
    next++;
  };
  const untilType = async (type) => {
    for (;;) {
      const f = await c.next();
      if (f.type === type) return f;
      tick(f);
    }
  };

  // Cycle 1: answer reauth_required at once.
  let rr = await untilType('reauth_required');
  assert.deepEqual(rr, { type: 'reauth_required', exp: ok.exp, deadline: ok.exp + GRACE_S });
  c.send({ type: 'auth', token: (await fetchToken(demo.base, 'carol', '2s')).token });
  const ok2 = await untilType('auth_ok');
  assert.equal(ok2.session, ok.session);
  assert.ok(ok2.exp > ok.exp);

  // Cycle 2: let the token expire first.
  rr = await untilType('reauth_required');
  await sleep(rr.exp * 1000 + 300 - Date.now());
  c.send({ type: 'message', id: 'late-1', data: 'sent while expired' });
  const refused = await untilType('error');
  assert.deepEqual(refused, { type: 'error', code: 4401, message: 'reauth required', ref: 'late-1' });
  // Expired: the server holds ticks now.
  await assert.rejects(c.next(300), /no frame/);
  c.send({ type: 'auth', token: (await fetchToken(demo.base, 'carol', '2s')).token });
  const ok3 = await c.next();
  assert.equal(ok3.type, 'auth_ok', 'auth_ok comes before the buffered ticks');
  assert.equal(ok3.session, ok.session);
  const resumeAt = next;
  while (next < resumeAt + 10) tick(await c.next()); // the buffered ones, then live ones

  // The refused message, sent again, goes through.
  c.send({ type: 'message', id: 'late-1', data: 'sent while expired' });
  for (;;) {
    const f = await c.next();
    if (f.type === 'message' && f.data.from !== undefined) {
      assert.deepEqual(f.data, { from: 'carol', data: 'sent while expired' });
      break;
    }
    tick(f);
  }
  c.close();
});

// Section 5: a client that presents its last position in the first auth of
// its next connection gets what it missed, in order, then live traffic; a
// position the server cannot resume from is answered "lost".
test('resume after a reconnect gets the missed stream messages; a bad position is lost', async () => {
  const tess = await login('tess');
  const sam = await login('sam');
  let at = { epoch: sam.ok.epoch, seq: sam.ok.seq };
  const follow = (f) => { // every stream message moves the position on by one
    assert.equal(f.type, 'message', JSON.stringify(f));
    if (f.seq === undefined) return;
    if (at.epoch !== '') assert.equal(f.epoch, at.epoch);
    assert.equal(f.seq, at.seq + 1, `after ${JSON.stringify(at)}: ${JSON.stringify(f)}`);
    at = { epoch: f.epoch, seq: f.seq };
  };
  const untilDirect = async (c, n) => {
    for (;;) {
      const f = await c.next();
      follow(f);
      if (f.data?.data?.n === n) return f;
    }
  };
  tess.c.send({ type: 'message', data: { to: 'sam', n: 1 } });
  const first = await untilDirect(sam.c, 1);
  assert.deepEqual(first.data, { from: 'tess', data: { to: 'sam', n: 1 } });
  sam.c.close();

  tess.c.send({ type: 'message', data: { to: 'sam', n: 2 } });
  tess.c.send({ type: 'message', data: { to: 'sam', n: 3 } });
  await sleep(100);
  const again = await login('sam', '1m', undefined, at);
  assert.equal(again.ok.resume, 'ok');
  assert.deepEqual([again.ok.epoch, again.ok.seq], [at.epoch, at.seq], 'the session starts at the position presented');
  await untilDirect(again.c, 2);
  await untilDirect(again.c, 3);
  again.c.close();

  const lost = await login('sam', '1m', undefined, { epoch: 'no-such-epoch', seq: 1 });
  assert.equal(lost.ok.resume, 'lost');
  assert.equal(lost.ok.epoch, at.epoch, 'the session starts at the head');
  assert.ok(lost.ok.seq >= at.seq);
  lost.c.close();
  tess.c.close();
});
