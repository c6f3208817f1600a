// The status page: polls /status.json (the values of the node's metrics)
// and /readyz every second and shows them. Everything shown comes from
// those two answers, which name no user, session, token or address.

const POLL_MS = 1000;

const $ = (id) => document.getElementById(id);

// What each close code means (docs/protocol.md, section 7).
const closeMeanings = {
  1000: 'normal', 1001: 'going away', 1002: 'protocol error', 1005: 'no status', 1006: 'dropped',
  1008: 'policy', 1009: 'too large', 1011: 'server error', 1013: 'try again later',
  4400: 'malformed frame', 4401: 'unauthorized', 4403: 'forbidden', 4408: 'auth timeout',
  4413: 'buffer overflow', 4429: 'too many requests', 4440: 'session expired', other: 'other codes',
};

const count = (n) => (Number.isFinite(n) ? n.toLocaleString('en') : '–');

function seconds(s) {
  if (s === null || s === undefined) return '–';
  return s < 1 ? `${Math.round(s * 1000)} ms` : `${s.toFixed(s < 10 ? 2 : 1)} s`;
}

function bytes(n) {
  if (n < 1024) return `${n} B`;
  return n < 1 << 20 ? `${(n / 1024).toFixed(1)} KiB` : `${(n / (1 << 20)).toFixed(1)} MiB`;
}

function setText(id, text) {
  const el = $(id);
  if (el.textContent !== text) el.textContent = text;
}

// fillTable replaces tbody's rows with rows of [key, value, note?] cells,
// or one empty-row text; each row's data-key is its key, for tests and
// styles.
function fillTable(id, rows, empty) {
  const tbody = $(id);
  const trs = rows.map(([key, value, note, cls]) => {
    const tr = document.createElement('tr');
    tr.dataset.key = key;
    if (cls) tr.className = cls;
    const th = document.createElement('th');
    th.textContent = key;
    if (note) {
      const small = document.createElement('span');
      small.className = 'note';
      small.textContent = ` ${note}`;
      th.append(small);
    }
    const td = document.createElement('td');
    td.className = 'count';
    td.textContent = value;
    tr.append(th, td);
    return tr;
  });
  if (trs.length === 0) {
    const tr = document.createElement('tr');
    tr.className = 'empty';
    const td = document.createElement('td');
    td.colSpan = 2;
    td.textContent = empty;
    tr.append(td);
    trs.push(tr);
  }
  tbody.replaceChildren(...trs);
}

const byCountDesc = (entries) => entries.sort((a, b) => b[1] - a[1] || String(a[0]).localeCompare(String(b[0])));

let previous = null; // the last answer, for rates

function rate(now, before, field) {
  if (!before) return '–';
  const dt = (now.time - before.time) / 1000;
  return dt > 0 ? (Math.max(now[field] - before[field], 0) / dt).toFixed(1) : '–';
}

function show(s) {
  setText('node', s.node || '–');
  setText('broker', s.broker);
  setText('updated', new Date(s.time).toLocaleTimeString());
  for (const state of ['pending', 'active', 'expired']) setText(`sessions-${state}`, count(s.sessions[state]));
  setText('sessions-opened', count(s.sessions_opened));
  setText('received', count(s.messages_received));
  setText('sent', count(s.messages_sent));
  setText('received-rate', rate(s, previous, 'messages_received'));
  setText('sent-rate', rate(s, previous, 'messages_sent'));

  const lag = s.reauth_lag;
  setText('lag-count', count(lag.count));
  setText('lag-mean', seconds(lag.mean_seconds));
  setText('lag-p90', seconds(lag.p90_seconds));
  setText('lag-p99', seconds(lag.p99_seconds));

  setText('queued-messages', count(s.outbound.messages));
  setText('queued-bytes', bytes(s.outbound.bytes));
  setText('overflows', count(s.overflows));
  setText('undelivered', count(s.undelivered));
  setText('resumed', count(s.resumed));

  fillTable('refused', byCountDesc(Object.entries(s.tokens_refused)).map(([r, n]) => [r, count(n)]), 'none');
  const accepted = Object.entries(s.tokens_accepted).map(([stage, n]) => `${stage} ${count(n)}`);
  setText('accepted', accepted.length ? accepted.join(' · ') : 'none yet');
  fillTable('closes', byCountDesc(Object.entries(s.closes))
    .map(([code, n]) => [code, count(n), closeMeanings[code]]), 'none');
  fillTable('upgrades', byCountDesc(s.refused_upgrades.map((u) => [`${u.reason} ${u.status}`, u.count]))
    .map(([key, n]) => [key, count(n)]), 'none');
  fillTable('verifier', s.verifier.map((is) => [
    is.issuer,
    is.keys ? `${is.keys} key${is.keys === 1 ? '' : 's'}` : 'no keys',
    is.error ? `last fetch failed ${new Date(is.failed_at).toLocaleTimeString()}: ${is.error}`
      : is.fetched ? `fetched ${new Date(is.fetched).toLocaleTimeString()}` : 'never fetched',
    is.keys && !is.error ? 'ok' : 'bad',
  ]), 'no issuer');
  fillTable('broker-calls', s.broker_calls.map((c) => [c.operation, `${count(c.ok)} ok`, c.error ? `${count(c.error)} failed` : '', c.error ? 'bad' : '']),
    s.broker === 'none' ? 'no broker' : 'none yet');
  previous = s;
}

function showReady(r) {
  const ready = $('ready');
  ready.textContent = r.status === 'ok' ? 'ready' : 'not ready';
  ready.dataset.state = r.status === 'ok' ? 'active' : 'reauthenticating';
  fillTable('checks', Object.entries(r.checks ?? {}).map(([name, v]) => [name, v === 'ok' ? 'ok' : 'failing', v === 'ok' ? '' : v, v === 'ok' ? 'ok' : 'bad']), 'no checks');
}

function showError(text) {
  $('error').textContent = text;
  $('error').hidden = !text;
}

async function poll() {
  try {
    const [status, ready] = await Promise.all([
      fetch('/status.json', { cache: 'no-store' }),
      fetch('/readyz', { cache: 'no-store' }),
    ]);
    if (!status.ok) throw new Error(`/status.json: HTTP ${status.status}`);
    show(await status.json());
    showReady(await ready.json()); // 503 has a body too
    showError('');
  } catch (err) {
    const ready = $('ready');
    ready.textContent = 'unreachable';
    ready.dataset.state = 'closed';
    showError(`cannot read the status: ${err.message}`);
  }
  setTimeout(poll, POLL_MS);
}

poll();
