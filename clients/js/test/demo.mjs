// Test helpers: build and run the real demo server (cmd/wsauth-demo), a
// NATS server for its cluster and a TCP proxy in front of its nodes, talk
// to its development IdP, and launch headless Chromium. Not a test file
// itself.
import { spawn, execFile } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { createServer, connect } from 'node:net';
import { tmpdir } from 'node:os';
import { join, dirname, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { createInterface } from 'node:readline';
import { promisify } from 'node:util';
import WebSocket from 'ws';
import { chromium } from 'playwright-core';

const repoRoot = resolve(dirname(fileURLToPath(import.meta.url)), '../../..');
const running = new Set();

// Kill whatever is left if the test process exits abnormally.
process.on('exit', () => {
  for (const p of running) p.kill('SIGKILL');
});

let built;

/**
 * Returns the path of a demo binary: $WSAUTH_DEMO_BIN if set, otherwise one
 * built (once per process) with `go build` into a temporary directory that
 * is removed on exit.
 */
export function demoBinary() {
  if (process.env.WSAUTH_DEMO_BIN) return Promise.resolve(process.env.WSAUTH_DEMO_BIN);
  built ??= (async () => {
    const dir = mkdtempSync(join(tmpdir(), 'wsauth-demo-'));
    process.on('exit', () => rmSync(dir, { recursive: true, force: true }));
    const bin = join(dir, 'wsauth-demo');
    await promisify(execFile)(process.env.GO ?? 'go', ['build', '-o', bin, './cmd/wsauth-demo'], {
      cwd: repoRoot,
      timeout: 180_000,
    });
    return bin;
  })();
  return built;
}

/**
 * Starts the demo on a free loopback port with extra flags and resolves
 * once it printed its listening line. stop() shuts it down with SIGTERM
 * (SIGKILL after 5 s) and resolves with its exit code.
 */
export async function startDemo(args = [], { addr = '127.0.0.1:0' } = {}) {
  const bin = await demoBinary();
  const proc = spawn(bin, ['-addr', addr, '-log-level', 'debug', ...args], {
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  running.add(proc);
  let logs = '';
  proc.stderr.setEncoding('utf8');
  proc.stderr.on('data', (s) => { logs += s; });
  const exited = new Promise((res) => {
    proc.on('exit', (code, signal) => {
      running.delete(proc);
      res(code ?? signal);
    });
  });

  const base = await new Promise((res, rej) => {
    const timer = setTimeout(() => rej(new Error(`demo did not start within 15s:\n${logs}`)), 15_000);
    const lines = createInterface({ input: proc.stdout });
    lines.once('line', (line) => {
      clearTimeout(timer);
      const m = /^wsauth-demo listening on (http:\/\/\S+)$/.exec(line);
      if (m) res(m[1]);
      else rej(new Error(`unexpected first line ${JSON.stringify(line)}`));
    });
    exited.then((code) => {
      clearTimeout(timer);
      rej(new Error(`demo exited (${code}) before listening:\n${logs}`));
    });
  }).catch((err) => {
    proc.kill('SIGKILL');
    throw err;
  });

  let stopping;
  return {
    base,
    ws: `${base.replace(/^http/, 'ws')}/ws`,
    addr: new URL(base).host,
    logs: () => logs,
    exited,
    stop() {
      stopping ??= (async () => {
        if (proc.exitCode === null && proc.signalCode === null) {
          proc.kill('SIGTERM');
          const timer = setTimeout(() => proc.kill('SIGKILL'), 5_000);
          await exited;
          clearTimeout(timer);
        }
        return exited;
      })();
      return stopping;
    },
  };
}

/** A temporary directory, removed when the process exits. */
export function tempDir(prefix) {
  const dir = mkdtempSync(join(tmpdir(), prefix));
  process.on('exit', () => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

let natsBuilt;

/**
 * Returns the path of a nats-server binary: $NATS_SERVER_BIN if set,
 * otherwise the one scripts/install-nats-server builds from the Go module
 * into .tools/bin (building it first if missing: never a download).
 */
export function natsServerBinary() {
  if (process.env.NATS_SERVER_BIN) return Promise.resolve(process.env.NATS_SERVER_BIN);
  natsBuilt ??= promisify(execFile)(join(repoRoot, 'scripts/install-nats-server'), [], {
    cwd: repoRoot,
    timeout: 300_000,
  }).then(({ stdout }) => stdout.trim());
  return natsBuilt;
}

/**
 * Starts nats-server with JetStream on a free loopback port and a
 * temporary store, and resolves with {url, stop()} once it listens.
 */
export async function startNats() {
  const bin = await natsServerBinary();
  const proc = spawn(bin, ['-a', '127.0.0.1', '-p', '-1', '-js', '-sd', tempDir('wsauth-nats-')], {
    stdio: ['ignore', 'ignore', 'pipe'],
  });
  running.add(proc);
  let logs = '';
  const exited = new Promise((res) => {
    proc.on('exit', (code, signal) => {
      running.delete(proc);
      res(code ?? signal);
    });
  });
  const url = await new Promise((res, rej) => {
    const timer = setTimeout(() => rej(new Error(`nats-server did not start within 15s:\n${logs}`)), 15_000);
    proc.stderr.setEncoding('utf8');
    proc.stderr.on('data', (chunk) => {
      logs += chunk;
      const m = /Listening for client connections on (\S+:\d+)/.exec(logs);
      if (m) {
        clearTimeout(timer);
        res(`nats://${m[1]}`);
      }
    });
    exited.then((code) => {
      clearTimeout(timer);
      rej(new Error(`nats-server exited (${code}) before listening:\n${logs}`));
    });
  }).catch((err) => {
    proc.kill('SIGKILL');
    throw err;
  });
  return {
    url,
    async stop() {
      if (proc.exitCode === null && proc.signalCode === null) proc.kill('SIGTERM');
      return exited;
    },
  };
}

/**
 * Starts a TCP proxy on a free loopback port that hands each connection to
 * the first of upstreams() ("host:port", in order) that accepts it: a load
 * balancer that fails over when a node stops listening. base and ws are
 * its URLs; close() ends it and every connection through it.
 */
export async function startProxy(upstreams) {
  const sockets = new Set();
  const track = (sock) => {
    sockets.add(sock);
    sock.on('close', () => sockets.delete(sock));
    sock.on('error', () => {});
  };
  const server = createServer((client) => {
    track(client);
    client.pause();
    const tryNext = (list) => {
      if (list.length === 0 || client.destroyed) {
        client.destroy();
        return;
      }
      const [host, port] = list[0].split(':');
      const up = connect({ host, port: Number(port) });
      const refused = () => tryNext(list.slice(1));
      up.once('error', refused);
      up.once('connect', () => {
        up.off('error', refused);
        track(up);
        client.pipe(up).pipe(client);
        client.on('close', () => up.destroy());
        up.on('close', () => client.destroy());
        client.resume();
      });
    };
    tryNext(upstreams());
  });
  await new Promise((res) => server.listen(0, '127.0.0.1', res));
  const base = `http://127.0.0.1:${server.address().port}`;
  return {
    base,
    ws: `${base.replace(/^http/, 'ws')}/ws`,
    close() {
      for (const sock of sockets) sock.destroy();
      return new Promise((res) => server.close(res));
    },
  };
}

/**
 * Starts a cluster of two demo nodes, a and b, on a NATS server of their
 * own, sharing one development key (-dev-key), with args added to each,
 * and a proxy in front that sends connections to a while it listens, then
 * to b. stop() stops them all.
 */
export async function startCluster(args = []) {
  const nats = await startNats();
  const key = join(tempDir('wsauth-key-'), 'dev-key.pem');
  const flags = ['-nats', nats.url, '-dev-key', key, ...args];
  const a = await startDemo(flags);
  const b = await startDemo(flags);
  const proxy = await startProxy(() => [a.addr, b.addr]);
  return {
    a, b, proxy, nats,
    async stop() {
      await proxy.close();
      await Promise.all([a.stop(), b.stop()]);
      await nats.stop();
    },
  };
}

/** The node of a session id ("node.random"). */
export const nodeOf = (session) => session.slice(0, session.indexOf('.'));

/**
 * A WebSocket class (ws) whose sockets record the frames the client sends
 * (sent) and receives (received), parsed; sockets lists them in order.
 */
export function recordingWebSocket() {
  const sockets = [];
  class Recording extends WebSocket {
    constructor(url, protocols) {
      super(url, protocols);
      this.sent = [];
      this.received = [];
      this.on('message', (d) => this.received.push(JSON.parse(d.toString())));
      sockets.push(this);
    }

    send(d) {
      this.sent.push(JSON.parse(d));
      super.send(d);
    }
  }
  return { WebSocket: Recording, sockets };
}

/** The stream messages ({epoch, seq, data}) the recorded sockets received, in order. */
export const streamOf = (sockets) => sockets.flatMap((s) => s.received.filter((f) => f.type === 'message' && f.seq !== undefined));

/**
 * Follows the demo's ticks ({tick, node}): each node numbers the ticks it
 * sends a user 1, 2, 3…, and a 1 starts a new count. see(data) reports
 * whether data is a tick; a tick that does not follow the node's last one
 * is recorded in gaps as [last, tick].
 */
export function tickCounter() {
  const last = new Map();
  return {
    ticks: 0,
    gaps: [],
    from: (node) => last.get(node) ?? 0,
    see(d) {
      if (typeof d?.tick !== 'number') return false;
      const prev = last.get(d.node);
      if (prev !== undefined && d.tick !== 1 && d.tick !== prev + 1) this.gaps.push([prev, d.tick]);
      last.set(d.node, d.tick);
      this.ticks++;
      return true;
    },
  };
}

/** Mints a token from the demo's development IdP. */
export async function fetchToken(base, sub, ttl) {
  const resp = await fetch(`${base}/token`, {
    method: 'POST',
    headers: { 'Content-Type': 'application/json' },
    body: JSON.stringify(ttl === undefined ? { sub } : { sub, ttl }),
  });
  const body = await resp.json();
  if (!resp.ok) throw new Error(`POST /token: ${resp.status} ${body.error}`);
  return body;
}

export const sleep = (ms) => new Promise((res) => setTimeout(res, ms));

/** Resolves when pred() is true, polling every 10 ms; rejects after ms. */
export async function waitFor(pred, ms = 5_000, what = 'condition') {
  const end = Date.now() + ms;
  while (!pred()) {
    if (Date.now() > end) throw new Error(`timed out after ${ms} ms waiting for ${what}`);
    await sleep(10);
  }
}

/** The Chromium the browser tests drive: Debian's, or $CHROMIUM_PATH. */
export const chromiumPath = process.env.CHROMIUM_PATH ?? '/usr/bin/chromium';

/**
 * Launches headless Chromium (chromiumPath, driven by playwright-core; no
 * browser download) with the flags this machine needs: no sandbox as
 * root, and no background networking, which the closed network refuses.
 * launch() gives the browser a fresh temporary --user-data-dir of its own.
 */
export function launchChromium() {
  if (!existsSync(chromiumPath)) {
    throw new Error(`${chromiumPath} is missing: apt-get install -y chromium (or set CHROMIUM_PATH)`);
  }
  return chromium.launch({
    executablePath: chromiumPath,
    headless: true,
    args: [
      '--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
      '--disable-background-networking', '--disable-component-update', '--disable-sync',
    ],
    timeout: 30_000,
  });
}
