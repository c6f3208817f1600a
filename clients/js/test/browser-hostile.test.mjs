// wsauth.js in headless Chromium (Debian's /usr/bin/chromium, driven by
// playwright-core) against fake wsauth servers: what differs in a browser,
// whose WebSocket API closes only with 1000 or 3000-4999 and cannot ping.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { createServer } from 'node:http';
import { readFileSync } from 'node:fs';
import { WebSocketServer } from 'ws';
import { launchChromium } from './demo.mjs';

const source = readFileSync(new URL('../wsauth.js', import.meta.url));

let browser;
let page;
let server;
let script = () => {}; // what the fake wsauth server does with each client frame
const conns = [];
const closes = []; // close frames the page sent: {n, code, reason}

before(async () => {
  // One origin serves the page, wsauth.js and the fake wsauth endpoint.
  server = createServer((req, res) => {
    if (req.url === '/wsauth.js') {
      res.writeHead(200, { 'Content-Type': 'text/javascript' }).end(source);
    } else {
      res.writeHead(200, { 'Content-Type': 'text/html' }).end('<!doctype html><title>wsauth</title>');
    }
  });
  const wss = new WebSocketServer({ noServer: true, handleProtocols: (p) => (p.has('wsauth.v1') ? 'wsauth.v1' : false) });
  server.on('upgrade', (req, sock, head) => wss.handleUpgrade(req, sock, head, (ws) => {
    const conn = { sock: ws, n: conns.length + 1, auths: 0 };
    conns.push(conn);
    ws.on('message', (data) => {
      const f = JSON.parse(data.toString());
      if (f.type === 'auth') conn.auths++;
      script(conn, f);
    });
    ws.on('close', (code, reason) => closes.push({ n: conn.n, code, reason: reason.toString() }));
  }));
  await new Promise((res) => server.listen(0, '127.0.0.1', res));
  browser = await launchChromium();
  page = await browser.newPage();
  page.setDefaultTimeout(10_000);
  await page.goto(`http://127.0.0.1:${server.address().port}/`);
}, { timeout: 60_000 });

after(async () => {
  await browser?.close();
  for (const c of conns) c.sock.terminate();
  await new Promise((res) => server?.close(res));
});

function authOK(conn, { sub = 'fay', exp = Math.floor(Date.now() / 1000) + 3600 } = {}) {
  conn.sock.send(JSON.stringify({ type: 'auth_ok', session: `s${conn.n}`, sub, exp }));
}

// startClient makes a client in the page, recorded in window.rec.
async function startClient(options = {}) {
  conns.length = 0;
  closes.length = 0;
  await page.evaluate(async (opts) => {
    const { WsauthClient } = await import('/wsauth.js');
    window.client?.close();
    const rec = { states: [], closes: [], errors: [], messages: [] };
    window.rec = rec;
    const client = new WsauthClient(`ws://${location.host}/ws`, {
      tokenProvider: () => 'tok', backoff: { initial: 20, max: 80 }, ...opts,
    });
    window.client = client;
    client.addEventListener('state', (e) => rec.states.push(e.detail));
    client.addEventListener('close', (e) => rec.closes.push(e.detail));
    client.addEventListener('error', (e) => rec.errors.push(e.detail.message));
    client.addEventListener('message', (e) => rec.messages.push(e.detail));
    client.connect();
  }, options);
}

const rec = () => page.evaluate(() => window.rec);
const waitPage = (fn, arg) => page.waitForFunction(fn, arg, { timeout: 5_000 });

test('a message over readLimit: the browser cannot send 1009, so the socket closes with 1000', async () => {
  script = (conn, f) => {
    if (f.type !== 'auth') return;
    authOK(conn);
    conn.sock.send(JSON.stringify({ type: 'message', data: 'x'.repeat(2_000) }));
  };
  await startClient({ readLimit: 1_000 });
  await waitPage(() => window.client.state === 'closed');
  const r = await rec();
  assert.deepEqual(r.closes, [{ code: 1009, reason: 'message too large', retrying: false }]);
  assert.deepEqual(r.messages, []);
  for (let i = 0; i < 50 && closes.length === 0; i++) await new Promise((res) => setTimeout(res, 20));
  assert.deepEqual(closes, [{ n: 1, code: 1000, reason: 'message too large' }]);
});

test('a close frame without a status code (1005) is retried in a browser too', async () => {
  script = (conn, f) => {
    if (f.type !== 'auth') return;
    authOK(conn);
    if (conn.n === 1) conn.sock.close();
  };
  await startClient();
  await waitPage(() => window.client.session === 's2' && window.client.state === 'active');
  const r = await rec();
  assert.deepEqual(r.closes, [{ code: 1005, reason: '', retrying: true }]);
});

test('a server that does not answer auth: authTimeout, then a reconnect; no pings in a browser', async () => {
  script = (conn, f) => {
    if (f.type === 'auth' && conn.n > 1) authOK(conn);
  };
  let pinged = false;
  await startClient({ authTimeout: 200, pingInterval: 50, pongTimeout: 50 });
  await waitPage(() => window.client.session === 's2' && window.client.state === 'active');
  conns[1].sock.on('ping', () => { pinged = true; });
  await new Promise((res) => setTimeout(res, 300)); // six ping intervals
  const r = await rec();
  assert.deepEqual(r.closes, [{ code: 1006, reason: 'auth timeout', retrying: true }]);
  assert.equal(pinged, false, 'page code cannot ping');
  assert.equal(await page.evaluate(() => window.client.state), 'active', 'and nothing drops it for that');
  await page.evaluate(() => window.client.close());
});
