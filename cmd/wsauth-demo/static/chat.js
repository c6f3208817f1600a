// The chat page: a WsauthClient whose token provider asks the demo's
// development IdP (POST /token) for a token of the chosen name and TTL.
// It signs in with the token in the first frame or, if chosen, with a
// ticket the client exchanges it for at POST /ticket. It keeps its
// position in the user's stream in sessionStorage, so that a reload
// resumes where the page left off: nothing secret is kept, neither tokens
// nor tickets.
import { WsauthClient } from '/wsauth.js';
import { TokenTimeline } from '/timeline.js';

const $ = (id) => document.getElementById(id);
const ui = {
  login: $('login'), name: $('name'), ttl: $('ttl'), credential: $('credential'), broken: $('break-provider'),
  late: $('late-reauth'), connect: $('connect'), disconnect: $('disconnect'), signout: $('signout'), state: $('state'), error: $('error'),
  node: $('node'), session: $('session'), via: $('via'), exp: $('exp'), reauths: $('reauths'), ticks: $('ticks'),
  lastTick: $('last-tick'), gaps: $('tick-gaps'), queued: $('queued'), position: $('position'),
  log: $('log'), composer: $('composer'), input: $('input'), send: $('send'),
};

let client = null;
let session = '';
// Each node numbers the ticks it sends a user 1, 2, 3…: the last one seen
// from each node, to tell a gap.
let lastTicks = new Map();
let lastTick = 0;
let ticks = 0;
let gaps = 0;
let reauths = 0;
// The last reauth_required's {exp, deadline} (Unix seconds).
let reauthRequired = null;
const timeline = new TokenTimeline($('timeline'));

// nodeOf is the node of a session id ("node.random").
const nodeOf = (id) => (id.includes('.') ? id.slice(0, id.indexOf('.')) : '');

const positionKey = () => `wsauth-demo-position:${ui.name.value.trim()}`;

function savedPosition() {
  try {
    const p = JSON.parse(sessionStorage.getItem(positionKey()));
    return p && typeof p.epoch === 'string' && Number.isSafeInteger(p.seq) ? p : null;
  } catch {
    return null;
  }
}

function wsURL() {
  const u = new URL('/ws', location.href);
  u.protocol = u.protocol === 'https:' ? 'wss:' : 'ws:';
  return u.href;
}

// answerLate waits, with "answer reauth late" checked, until the current
// token has expired and the session is halfway through its grace window
// (exp to the deadline of reauth_required): meanwhile the server holds
// the messages meant for this page, and delivers them after the fresh
// token's auth_ok. The timeline draws both.
async function answerLate() {
  if (!ui.late.checked || !client?.exp) return;
  const exp = client.exp * 1000;
  const deadline = reauthRequired?.exp === client.exp ? reauthRequired.deadline * 1000 : exp + 2000;
  const wait = (exp + deadline) / 2 - Date.now();
  if (wait > 0) await new Promise((res) => setTimeout(res, wait));
}

// tokenProvider reads the form at each call, so "break token provider" also
// breaks the next reauthentication of a running session. A request that
// fails on the network (a node of a cluster stopping under the load
// balancer) is tried again, a few times: the client ends for good on a
// token provider's failure.
async function tokenProvider({ reauth } = {}) {
  if (ui.broken.checked) throw new Error('the token provider is broken (checkbox)');
  if (reauth) await answerLate();
  const request = () => fetch('/token', {
    method: 'POST',
    headers: { 'Content-Type': 'application/json' },
    body: JSON.stringify({ sub: ui.name.value.trim(), ttl: ui.ttl.value }),
  });
  let resp;
  for (let attempt = 1; !resp; attempt++) {
    try {
      resp = await request();
    } catch (err) { // a TypeError: no answer at all
      if (attempt === 3) throw err;
      await new Promise((res) => setTimeout(res, 250 * attempt));
    }
  }
  const body = await resp.json().catch(() => ({}));
  if (!resp.ok) throw new Error(body.error || `POST /token: HTTP ${resp.status}`);
  return body.token;
}

/** The log shows the last MAX_LOG_LINES lines; a line shows at most MAX_LINE_CHARS. */
const MAX_LOG_LINES = 500;
const MAX_LINE_CHARS = 2000;

function logLine(text, cls, from) {
  if (text.length > MAX_LINE_CHARS) text = `${text.slice(0, MAX_LINE_CHARS)}…`;
  const li = document.createElement('li');
  if (cls) li.className = cls;
  if (from !== undefined) {
    const b = document.createElement('span');
    b.className = 'from';
    b.textContent = `${from}:`;
    li.append(b);
  }
  li.append(text);
  ui.log.append(li);
  // Keep the page's memory bounded, whatever others send.
  while (ui.log.childElementCount > MAX_LOG_LINES) ui.log.firstElementChild.remove();
  ui.log.scrollTop = ui.log.scrollHeight;
}

function showError(text) {
  ui.error.textContent = text;
  ui.error.hidden = !text;
}

// How the client authenticated its connection (client.credential).
const viaText = { '': '–', auth: 'auth frame', ticket: 'ticket' };

function render() {
  const st = client ? client.state : 'closed';
  ui.state.textContent = st;
  ui.state.dataset.state = st;
  const closed = st === 'closed';
  ui.connect.disabled = !closed;
  ui.disconnect.disabled = ui.signout.disabled = closed;
  ui.name.disabled = ui.ttl.disabled = ui.credential.disabled = !closed;
  ui.input.disabled = ui.send.disabled = closed;
  ui.node.textContent = nodeOf(client?.session ?? '') || '–';
  ui.session.textContent = client?.session || '–';
  ui.via.textContent = viaText[client?.credential ?? ''];
  ui.exp.textContent = client?.exp ? new Date(client.exp * 1000).toLocaleTimeString() : '–';
  ui.reauths.textContent = String(reauths);
  ui.ticks.textContent = String(ticks);
  ui.lastTick.textContent = lastTick ? String(lastTick) : '–';
  ui.gaps.textContent = String(gaps);
  ui.queued.textContent = String(client?.queued ?? 0);
  const pos = client?.position;
  ui.position.textContent = pos ? `${pos.epoch || '(empty)'} #${pos.seq}` : '–';
}

// onTick counts tick n from node. A tick 1 starts a new count: that node
// had no session of this user for a while.
function onTick(n, node) {
  const last = lastTicks.get(node);
  if (last !== undefined && n !== 1 && n !== last + 1) {
    gaps++;
    logLine(`tick gap from node ${node}: ${last} then ${n}`, 'system');
  }
  lastTicks.set(node, n);
  lastTick = n;
  ticks++;
}

function onMessage(data) {
  timeline.message(Date.now());
  if (data && typeof data === 'object' && typeof data.tick === 'number') {
    onTick(data.tick, String(data.node ?? ''));
  } else if (data && typeof data === 'object' && 'from' in data) {
    const d = data.data;
    let text = d && typeof d === 'object' && typeof d.text === 'string' ? d.text : JSON.stringify(d);
    if (typeof d?.to === 'string') text = `@${d.to} ${text}`; // a direct message, as typed
    logLine(text, '', String(data.from));
  } else {
    logLine(JSON.stringify(data), 'system');
  }
  render();
}

function connect() {
  showError('');
  let previous = 'closed';
  // With a ticket, a connection that resumes (a reconnection, or a reload
  // with a saved position) still authenticates with the auth frame: only
  // that can carry the position.
  const ticketUrl = ui.credential.value === 'ticket' ? '/ticket' : null;
  client = new WsauthClient(wsURL(), { tokenProvider, ticketUrl, resume: savedPosition() });
  client.addEventListener('state', (ev) => {
    const st = ev.detail;
    if (st === 'active') {
      timeline.authOK(Date.now(), client.exp, client.session);
      timeline.render();
      if (client.session !== session) {
        session = client.session;
        logLine(`connected as ${client.subject} to node ${nodeOf(session)}, session ${session}, with ${client.credential === 'ticket' ? 'a ticket' : 'an auth frame'}`, 'system');
      } else if (previous === 'reauthenticating') {
        reauths++;
        logLine(`reauthenticated, token valid until ${new Date(client.exp * 1000).toLocaleTimeString()}`, 'system');
      }
    }
    previous = st;
    render();
  });
  client.addEventListener('message', (ev) => onMessage(ev.detail));
  client.addEventListener('reauthrequired', (ev) => {
    reauthRequired = ev.detail;
    timeline.reauthRequired(Date.now(), ev.detail.exp, ev.detail.deadline);
    timeline.render();
  });
  client.addEventListener('position', (ev) => {
    sessionStorage.setItem(positionKey(), JSON.stringify(ev.detail));
    render();
  });
  client.addEventListener('resumelost', () => {
    // What was sent while the page was away may be gone: count afresh.
    lastTicks = new Map();
    logLine('could not resume: messages sent while disconnected may be missing', 'system');
  });
  client.addEventListener('error', (ev) => {
    const { code, message, ref } = ev.detail;
    showError(code ? `error ${code}: ${message}${ref ? ` (message ${ref})` : ''}` : message);
  });
  client.addEventListener('close', (ev) => {
    const { code, reason, retrying } = ev.detail;
    timeline.closed(Date.now(), code);
    timeline.render();
    logLine(`connection closed: ${code} ${reason || ''}${retrying ? ', reconnecting' : ''}`, 'system');
    if (!retrying && code !== 1000) showError(`closed ${code}: ${reason || 'connection lost'}`);
    render();
  });
  client.connect();
  render();
}

ui.login.addEventListener('submit', (ev) => {
  ev.preventDefault();
  if (!client || client.state === 'closed') connect();
});
ui.disconnect.addEventListener('click', () => client?.close());
// The demo revokes every session of the sender, on every node.
ui.signout.addEventListener('click', () => client?.send({ revoke: true }));
ui.composer.addEventListener('submit', (ev) => {
  ev.preventDefault();
  const text = ui.input.value;
  if (!text || !client) return;
  // "@bob hi" is a direct message to bob (and to this user's own pages).
  const direct = /^@(\S+)\s+(.+)$/s.exec(text);
  try {
    client.send(direct ? { to: direct[1], text: direct[2] } : { text });
    ui.input.value = '';
  } catch (err) {
    showError(err.message);
  }
  render();
});
render();
// The timeline moves with time, not only with the events that redraw it.
timeline.render();
setInterval(() => timeline.render(), 250);
