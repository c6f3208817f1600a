// wsauth.js: a dependency-free client of the wsauth wire protocol v1
// (docs/protocol.md) for browsers and Node >= 20.
//
//   import { WsauthClient } from '/wsauth.js';
//   const client = new WsauthClient('wss://chat.example.com/ws', {
//     tokenProvider: async () => (await fetch('/token', { method: 'POST' })).json().then((r) => r.token),
//   });
//   client.addEventListener('message', (ev) => console.log(ev.detail));
//   client.connect();
//   client.send({ text: 'hello' });
//
// The client authenticates with the first frame, answers reauth_required
// (and refreshes on its own shortly before exp) on the same socket, queues
// what is sent while it is not active and flushes it, in order, after
// auth_ok, resends messages the server refused with error 4401, and
// reconnects with jittered exponential backoff after retryable closes.

/** The WebSocket subprotocol of wire protocol v1. */
export const SUBPROTOCOL = 'wsauth.v1';

/** Close codes after which the client reconnects (docs/protocol.md, section 6). */
export const RETRYABLE_CLOSE_CODES = Object.freeze([1001, 1006, 1011, 4408, 4413, 4429, 4440]);

/** Code of the error events the client raises itself (not sent by a server). */
export const CLIENT_ERROR = 0;

/** Error-frame code: the message was not processed because the token expired. */
export const ERROR_REAUTH_REQUIRED = 4401;
/** Error code refusing an auth frame sent too soon after the previous one. */
export const ERROR_TOO_MANY_REQUESTS = 4429;
// The server verifies at most one auth frame a second per session, besides
// its answer to each reauth_required (docs/protocol.md).
const REAUTH_INTERVAL_MS = 1000;

/** Longest message id, in UTF-8 bytes. */
export const MAX_ID_BYTES = 64;

/** Reports whether the client reconnects after a close with this code. */
export function isRetryable(code) {
  return RETRYABLE_CLOSE_CODES.includes(code);
}

const OPEN = 1; // WebSocket.OPEN, the same in browsers and in ws
const MIN_REFRESH_DELAY_MS = 1000; // bounds a refresh loop when clocks disagree
const MAX_REASON_BYTES = 123;
const encoder = new TextEncoder();

/**
 * A wsauth client: one logical session that survives token refreshes and,
 * for retryable close codes, reconnects.
 *
 * States: connecting, authenticating, active, reauthenticating, closed.
 * Events (CustomEvent, payload in `detail`): `state` (the new state),
 * `message` (the data of a server message frame), `error`
 * ({code, message, ref?, cause?}), `close` ({code, reason, retrying}).
 */
export class WsauthClient extends EventTarget {
  #url;
  #tokenProvider;
  #protocols;
  #maxQueue;
  #backoffInitial;
  #backoffMax;
  #refreshLead;
  #WebSocket;

  #state = 'closed';
  #ws = null; // the current socket; events of any other are ignored
  #userClosed = true;
  #attempt = 0; // reconnects since the last auth_ok
  #reconnectTimer = undefined;
  #refreshTimer = undefined;

  #seq = 0; // message sequence: orders the queue and the sent set
  #queue = []; // entries waiting for an active session, by seq
  #sent = new Map(); // id -> entry sent since the last auth_ok: may come back with 4401
  #authSeq = 0; // #seq when the last auth frame went out

  #session = '';
  #subject = '';
  #exp = 0;

  /**
   * @param {string|URL} url the ws:// or wss:// URL of the endpoint
   * @param {object} options see wsauth.d.ts
   */
  constructor(url, options = {}) {
    super();
    const {
      tokenProvider,
      protocols = [SUBPROTOCOL],
      maxQueue = 256,
      backoff = {},
      refreshLead = 10_000,
      WebSocket: WS = globalThis.WebSocket,
    } = options;
    if (typeof tokenProvider !== 'function') {
      throw new TypeError('wsauth: options.tokenProvider must be a function returning a token');
    }
    if (typeof WS !== 'function') {
      throw new TypeError('wsauth: no WebSocket implementation: pass options.WebSocket (e.g. from the ws package)');
    }
    if (refreshLead !== null && !(refreshLead >= 0)) {
      throw new RangeError('wsauth: options.refreshLead must be a non-negative number of ms, or null');
    }
    if (!Number.isInteger(maxQueue) || maxQueue < 1) {
      throw new RangeError('wsauth: options.maxQueue must be a positive integer');
    }
    this.#url = String(url);
    this.#tokenProvider = tokenProvider;
    this.#protocols = protocols;
    this.#maxQueue = maxQueue;
    this.#backoffInitial = backoff.initial ?? 250;
    this.#backoffMax = backoff.max ?? 10_000;
    this.#refreshLead = refreshLead;
    this.#WebSocket = WS;
  }

  /** The current state. */
  get state() { return this.#state; }
  /** The session id of the last auth_ok ('' before the first). */
  get session() { return this.#session; }
  /** The subject of the last auth_ok. */
  get subject() { return this.#subject; }
  /** The token expiry of the last auth_ok, in Unix seconds (0: none). */
  get exp() { return this.#exp; }
  /** How many messages wait for an active session. */
  get queued() { return this.#queue.length; }

  /** Opens the connection. Does nothing unless the client is closed. */
  connect() {
    if (this.#state !== 'closed') return;
    this.#userClosed = false;
    this.#attempt = 0;
    this.#open();
  }

  /**
   * Sends data (any JSON-serializable value) as a message frame, now if the
   * session is active, otherwise after the next auth_ok. Returns the
   * message id. Throws if the client is closed, if data is not
   * serializable, if id is not a string of at most 64 bytes, or if the
   * queue is full.
   */
  send(data, id) {
    if (this.#state === 'closed') throw new Error('wsauth: client is closed');
    const json = JSON.stringify(data);
    if (json === undefined) throw new TypeError('wsauth: data is not JSON-serializable');
    if (id !== undefined && (typeof id !== 'string' || id === '' || encoder.encode(id).length > MAX_ID_BYTES)) {
      throw new TypeError(`wsauth: id must be a non-empty string of at most ${MAX_ID_BYTES} bytes`);
    }
    if (this.#queue.length >= this.#maxQueue) {
      throw new Error(`wsauth: send queue full (${this.#maxQueue} messages)`);
    }
    const seq = ++this.#seq;
    id ??= String(seq);
    const entry = { seq, id, frame: `{"type":"message","id":${JSON.stringify(id)},"data":${json}}` };
    this.#queue.push(entry);
    this.#flush(); // at once if the session is active
    return id;
  }

  /**
   * Closes the connection with 1000 and stops reconnecting. Queued messages
   * stay queued for a later connect(). The close event fires at once.
   */
  close() {
    this.#userClosed = true;
    this.#terminate(1000, 'client closed');
  }

  #open() {
    clearTimeout(this.#reconnectTimer);
    this.#setState('connecting');
    let ws;
    try {
      ws = new this.#WebSocket(this.#url, this.#protocols);
    } catch (err) { // e.g. a malformed URL: retrying cannot help
      this.#fail(`cannot open WebSocket: ${messageOf(err)}`, err);
      return;
    }
    this.#ws = ws;
    ws.onopen = () => {
      if (this.#ws === ws) this.#authenticate(ws, 'authenticating');
    };
    ws.onmessage = (ev) => {
      if (this.#ws === ws) this.#onFrame(ev.data);
    };
    ws.onclose = (ev) => {
      if (this.#ws === ws) this.#onClose(ev.code, ev.reason);
    };
    ws.onerror = () => {}; // a close event always follows
  }

  // #authenticate fetches a token and sends an auth frame on ws, the first
  // (state authenticating) or a reauth (state reauthenticating).
  async #authenticate(ws, state) {
    clearTimeout(this.#refreshTimer);
    this.#setState(state);
    let token;
    try {
      token = await this.#tokenProvider({ reauth: state === 'reauthenticating' });
      if (typeof token !== 'string' || token === '') {
        throw new TypeError('tokenProvider must resolve to a non-empty string');
      }
    } catch (err) {
      if (this.#ws === ws) this.#fail(`token provider failed: ${messageOf(err)}`, err);
      return;
    }
    if (this.#ws !== ws || ws.readyState !== OPEN) return; // closed meanwhile: onclose decides
    this.#authSeq = this.#seq;
    ws.send(JSON.stringify({ type: 'auth', token }));
  }

  #reauth() {
    if (this.#state === 'active') this.#authenticate(this.#ws, 'reauthenticating');
  }

  #onFrame(raw) {
    let f;
    try {
      f = typeof raw === 'string' ? JSON.parse(raw) : undefined;
    } catch {
      f = undefined;
    }
    if (f === null || typeof f !== 'object' || Array.isArray(f) || typeof f.type !== 'string') {
      this.#fail('malformed server frame', undefined, 4400);
      return;
    }
    switch (f.type) {
      case 'auth_ok':
        this.#onAuthOK(f);
        break;
      case 'reauth_required':
        this.#reauth();
        break;
      case 'message':
        this.#emit('message', f.data);
        break;
      case 'error':
        this.#onErrorFrame(f);
        break;
      default: // a newer server's frame: ignore it
    }
  }

  #onAuthOK(f) {
    this.#session = String(f.session ?? '');
    this.#subject = String(f.sub ?? '');
    this.#exp = Number(f.exp) || 0;
    this.#attempt = 0;
    // The server handles frames in order and answers each before the next:
    // a message sent before this auth frame was processed, or refused with
    // an error frame that already arrived.
    for (const [id, e] of this.#sent) {
      if (e.seq <= this.#authSeq) this.#sent.delete(id);
    }
    this.#setState('active');
    this.#scheduleRefresh();
    this.#flush();
  }

  #onErrorFrame(f) {
    const ref = typeof f.ref === 'string' ? f.ref : undefined;
    if (ref === undefined && this.#state === 'reauthenticating') {
      if (f.code === ERROR_TOO_MANY_REQUESTS) {
        // Refreshed too soon: the session keeps its token. Try again once
        // the server's interval has passed.
        this.#setState('active');
        clearTimeout(this.#refreshTimer);
        this.#refreshTimer = setTimeout(() => this.#reauth(), REAUTH_INTERVAL_MS);
        this.#flush();
        return;
      }
      if (f.code === ERROR_REAUTH_REQUIRED) {
        // The fresh token was refused: as at connect, that is terminal.
        this.#userClosed = true;
        this.#terminate(4401, String(f.message ?? ''));
        return;
      }
    }
    const entry = ref === undefined ? undefined : this.#sent.get(ref);
    if (f.code === ERROR_REAUTH_REQUIRED && entry) {
      // Not processed: the token had expired. Resend after the next auth_ok,
      // ahead of anything sent later.
      this.#sent.delete(ref);
      const at = this.#queue.findIndex((e) => e.seq > entry.seq);
      this.#queue.splice(at < 0 ? this.#queue.length : at, 0, entry);
      this.#reauth(); // the server saw an expired token before we did
      return;
    }
    this.#emit('error', { code: Number(f.code), message: String(f.message ?? ''), ref });
  }

  #flush() {
    while (this.#queue.length > 0 && this.#state === 'active' && this.#ws?.readyState === OPEN) {
      this.#transmit(this.#queue.shift());
    }
  }

  #transmit(entry) {
    this.#ws.send(entry.frame);
    this.#sent.set(entry.id, entry);
    // Bound the set on long-lived tokens: the oldest entries are the least
    // likely to be refused.
    if (this.#sent.size > this.#maxQueue) this.#sent.delete(this.#sent.keys().next().value);
  }

  // #scheduleRefresh refreshes the token on the client's own initiative
  // shortly before exp, in case the server never asks (its reauth_required
  // normally comes first): at exp - refreshLead, but no earlier than 80% of
  // the remaining lifetime. refreshLead null: never.
  #scheduleRefresh() {
    clearTimeout(this.#refreshTimer);
    if (!this.#exp || this.#refreshLead === null) return;
    const remaining = this.#exp * 1000 - Date.now();
    const delay = Math.max(MIN_REFRESH_DELAY_MS, remaining - Math.min(this.#refreshLead, remaining * 0.2));
    this.#refreshTimer = setTimeout(() => this.#reauth(), delay);
  }

  #onClose(code, reason) {
    this.#ws = null;
    clearTimeout(this.#refreshTimer);
    // Messages in flight when the socket died may or may not have been
    // processed: they are not resent, so none is ever processed twice.
    this.#sent.clear();
    const retrying = !this.#userClosed && isRetryable(code);
    if (retrying) {
      this.#setState('connecting');
      this.#emit('close', { code, reason, retrying });
      this.#scheduleReconnect(code);
    } else {
      this.#setState('closed');
      this.#emit('close', { code, reason, retrying });
    }
  }

  #scheduleReconnect(code) {
    // 4429: the server is shedding load; back off harder.
    if (code === 4429) this.#attempt += 2;
    const base = Math.min(this.#backoffMax, this.#backoffInitial * 2 ** this.#attempt);
    this.#attempt++;
    const delay = base * (0.8 + 0.4 * Math.random()); // +-20% jitter
    this.#reconnectTimer = setTimeout(() => {
      if (!this.#userClosed && this.#state === 'connecting' && this.#ws === null) this.#open();
    }, delay);
  }

  // #fail ends the client for a reason of its own (the token provider
  // failed, the server sent garbage): an error event, then close.
  #fail(message, cause, code = 1000) {
    this.#userClosed = true;
    this.#emit('error', { code: CLIENT_ERROR, message, cause });
    this.#terminate(code, message);
  }

  #terminate(code, reason) {
    clearTimeout(this.#reconnectTimer);
    clearTimeout(this.#refreshTimer);
    const ws = this.#ws;
    this.#ws = null;
    this.#sent.clear();
    if (ws) {
      try {
        ws.close(code, truncate(reason, MAX_REASON_BYTES));
      } catch { /* already closing */ }
    }
    if (this.#state !== 'closed') {
      this.#setState('closed');
      this.#emit('close', { code, reason, retrying: false });
    }
  }

  #setState(s) {
    if (this.#state === s) return;
    this.#state = s;
    this.#emit('state', s);
  }

  #emit(type, detail) {
    this.dispatchEvent(new CustomEvent(type, { detail }));
  }
}

function messageOf(err) {
  return err instanceof Error ? err.message : String(err);
}

function truncate(s, maxBytes) {
  while (encoder.encode(s).length > maxBytes) s = s.slice(0, -1);
  return s;
}
