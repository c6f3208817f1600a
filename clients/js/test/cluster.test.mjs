// WsauthClient in Node against a cluster of two real demo processes on one
// NATS server (built from its Go module), behind a TCP proxy that fails
// over from node a to node b: chat across nodes, and a client that resumes
// on b, without a gap, when a stops.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { WsauthClient } from '../wsauth.js';
import {
  startCluster, fetchToken, waitFor, recordingWebSocket, streamOf, tickCounter, nodeOf,
} from './demo.mjs';

let cluster;
const clients = new Set();

before(async () => {
  cluster = await startCluster(['-tick', '100ms']);
}, { timeout: 400_000 }); // a cold go build of the demo and of nats-server

after(async () => {
  for (const c of clients) c.close();
  await cluster?.stop();
});

// connect connects sub to url with a token from base, recording every frame
// and following the ticks.
async function connect(sub, url, base) {
  const { WebSocket, sockets } = recordingWebSocket();
  const ticks = tickCounter();
  const rec = { sockets, ticks, messages: [], closes: [], lost: [] };
  const client = new WsauthClient(url, {
    WebSocket,
    tokenProvider: async () => (await fetchToken(base, sub, '5m')).token,
    backoff: { initial: 250, max: 1000 },
  });
  clients.add(client);
  client.addEventListener('message', (e) => {
    if (!ticks.see(e.detail)) rec.messages.push(e.detail);
  });
  client.addEventListener('close', (e) => rec.closes.push(e.detail));
  client.addEventListener('resumelost', (e) => rec.lost.push(e.detail));
  client.connect();
  await waitFor(() => client.state === 'active', 5_000, `${sub} active`);
  return { client, rec };
}

const said = (rec, from, text) => rec.messages.some((m) => m.from === from && m.data?.text === text);

test('chat across nodes; a client resumes on the other node without a gap when its node stops', async () => {
  const { a, b, proxy } = cluster;
  // alice through the proxy (node a), with tokens minted through it; a
  // watcher of alice's stream directly on b (so b ticks alice too, and
  // ticks while alice is between nodes); bob on b with a token of a's.
  const alice = await connect('alice', proxy.ws, proxy.base);
  const watcher = await connect('alice', b.ws, b.base);
  const bob = await connect('bob', b.ws, a.base);
  const nodeA = nodeOf(alice.client.session);
  const nodeB = nodeOf(watcher.client.session);
  assert.notEqual(nodeA, nodeB);

  bob.client.send({ to: 'alice', text: 'psst, from node b' });
  await waitFor(() => said(alice.rec, 'bob', 'psst, from node b'), 5_000, 'the direct message on node a');
  alice.client.send({ text: 'hello, both nodes' });
  await waitFor(() => said(bob.rec, 'alice', 'hello, both nodes'), 5_000, 'the broadcast on node b');
  await waitFor(() => alice.rec.ticks.from(nodeA) >= 5 && alice.rec.ticks.from(nodeB) >= 5, 5_000, 'ticks of both nodes');

  assert.equal(await a.stop(), 0, 'SIGTERM: graceful exit');
  await waitFor(() => alice.client.state === 'active' && nodeOf(alice.client.session) === nodeB, 10_000, 'alice on node b');
  const target = streamOf(watcher.rec.sockets).at(-1).seq + 5;
  await waitFor(() => (streamOf(alice.rec.sockets).at(-1)?.seq ?? 0) >= target, 5_000, 'live traffic on node b');

  assert.deepEqual(alice.rec.closes, [{ code: 1001, reason: 'server shutting down', retrying: true }]);
  assert.equal(alice.rec.sockets[1].sent[0].resume?.seq, streamOf([alice.rec.sockets[0]]).at(-1).seq,
    'the first auth on b presents the last position taken on a');
  assert.deepEqual(alice.rec.lost, []);
  assert.deepEqual(alice.rec.ticks.gaps, [], 'ticks of both nodes counted without a gap');
  // Every message of alice's stream, once, in order, across the two
  // connections: what the watcher, on b all along, saw at each position.
  const seen = streamOf(alice.rec.sockets);
  const watched = new Map(streamOf(watcher.rec.sockets).map((f) => [f.seq, f]));
  seen.forEach((f, i) => {
    if (i > 0) assert.deepEqual([f.epoch, f.seq], [seen[i - 1].epoch, seen[i - 1].seq + 1], 'a gap or a repeat');
    if (watched.has(f.seq)) assert.deepEqual(f, watched.get(f.seq));
  });
});
