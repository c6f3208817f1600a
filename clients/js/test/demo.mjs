// Test helpers: build and run the real demo server (cmd/wsauth-demo) and
// talk to its development IdP. Not a test file itself.
import { spawn, execFile } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, dirname, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { createInterface } from 'node:readline';
import { promisify } from 'node:util';

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
