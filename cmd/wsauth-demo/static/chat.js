// The chat page: a WsauthClient whose token provider asks the demo's
// development IdP (POST /token) for a token of the chosen name and TTL.
import { WsauthClient } from '/wsauth.js';

const $ = (id) => document.getElementById(id);
const ui = {
  login: $('login'), name: $('name'), ttl: $('ttl'), broken: $('break-provider'),
  connect: $('connect'), disconnect: $('disconnect'), state: $('state'), error: $('error'),
  session: $('session'), exp: $('exp'), reauths: $('reauths'), ticks: $('ticks'),
  lastTick: $('last-tick'), gaps: $('tick-gaps'), queued: $('queued'),
  log: $('log'), composer: $('composer'), input: $('input'), send: $('send'),
};

let client = null;
let session = ''; // ticks are numbered per session
let lastTick = 0;
let ticks = 0;
let gaps = 0;
let reauths = 0;

function wsURL() {
  const u = new URL('/ws', location.href);
  u.protocol = u.protocol === 'https:' ? 'wss:' : 'ws:';
  return u.href;
}

// tokenProvider reads the form at each call, so "break token provider" also
// breaks the next reauthentication of a running session.
async function tokenProvider() {
  if (ui.broken.checked) throw new Error('the token provider is broken (checkbox)');
  const resp = await fetch('/token', {
    method: 'POST',
    headers: { 'Content-Type': 'application/json' },
    body: JSON.stringify({ sub: ui.name.value.trim(), ttl: ui.ttl.value }),
  });
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

function render() {
  const st = client ? client.state : 'closed';
  ui.state.textContent = st;
  ui.state.dataset.state = st;
  const closed = st === 'closed';
  ui.connect.disabled = !closed;
  ui.disconnect.disabled = closed;
  ui.name.disabled = ui.ttl.disabled = !closed;
  ui.input.disabled = ui.send.disabled = closed;
  ui.session.textContent = client?.session || '–';
  ui.exp.textContent = client?.exp ? new Date(client.exp * 1000).toLocaleTimeString() : '–';
  ui.reauths.textContent = String(reauths);
  ui.ticks.textContent = String(ticks);
  ui.lastTick.textContent = lastTick ? String(lastTick) : '–';
  ui.gaps.textContent = String(gaps);
  ui.queued.textContent = String(client?.queued ?? 0);
}

function onTick(n) {
  if (lastTick && n !== lastTick + 1) {
    gaps++;
    logLine(`tick gap: ${lastTick} then ${n}`, 'system');
  }
  lastTick = n;
  ticks++;
}

function onMessage(data) {
  if (data && typeof data === 'object' && typeof data.tick === 'number') {
    onTick(data.tick);
  } else if (data && typeof data === 'object' && 'from' in data) {
    const d = data.data;
    const text = d && typeof d === 'object' && typeof d.text === 'string' ? d.text : JSON.stringify(d);
    logLine(text, '', String(data.from));
  } else {
    logLine(JSON.stringify(data), 'system');
  }
  render();
}

function connect() {
  showError('');
  let previous = 'closed';
  client = new WsauthClient(wsURL(), { tokenProvider });
  client.addEventListener('state', (ev) => {
    const st = ev.detail;
    if (st === 'active') {
      if (client.session !== session) {
        session = client.session;
        lastTick = 0;
        logLine(`connected as ${client.subject}, session ${session}`, 'system');
      } else if (previous === 'reauthenticating') {
        reauths++;
        logLine(`reauthenticated, token valid until ${new Date(client.exp * 1000).toLocaleTimeString()}`, 'system');
      }
    }
    previous = st;
    render();
  });
  client.addEventListener('message', (ev) => onMessage(ev.detail));
  client.addEventListener('error', (ev) => {
    const { code, message, ref } = ev.detail;
    showError(code ? `error ${code}: ${message}${ref ? ` (message ${ref})` : ''}` : message);
  });
  client.addEventListener('close', (ev) => {
    const { code, reason, retrying } = ev.detail;
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
ui.composer.addEventListener('submit', (ev) => {
  ev.preventDefault();
  const text = ui.input.value;
  if (!text || !client) return;
  try {
    client.send({ text });
    ui.input.value = '';
  } catch (err) {
    showError(err.message);
  }
  render();
});
render();
