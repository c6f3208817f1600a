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
// auth_ok, resends messages the server refused with error 4401, gives up on
// a server that does not answer an auth frame in time (and, in Node with
// the ws package, on a connection that does not answer pings), reconnects
// with jittered exponential backoff after retryable closes, and on a server
// that keeps users' streams resumes where it left off (docs/protocol.md,
// section 5). With options.ticketUrl it exchanges its token for a
// single-use ticket before connecting (docs/protocol.md, section 1.1), so
// that the server refuses a bad token before the socket exists. With
// options.tokenPerMessage every message frame carries the token the server
// last accepted, for a server that wants a token per message.

/** The WebSocket subprotocol of wire protocol v1. */
export const SUBPROTOCOL = 'wsauth.v1';

/**
 * Close codes after which the client reconnects (docs/protocol.md, section
 * 7). 1005 is a close frame without a status code, which a proxy may send:
 * retried like 1006.
 */
export const RETRYABLE_CLOSE_CODES = Object.freeze([1001, 1005, 1006, 1011, 1013, 4408, 4413, 4429, 4440]);

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
/** Longest stream epoch, in UTF-8 bytes. */
export const MAX_EPOCH_BYTES = 64;

/** Reports whether the client reconnects after a close with this code. */
export function isRetryable(code) {
  return RETRYABLE_CLOSE_CODES.includes(code);
}

const CONNECTING = 0; // WebSocket.CONNECTING
const OPEN = 1; // WebSocket.OPEN, the same in browsers and in ws
const MIN_REFRESH_DELAY_MS = 1000; // bounds a refresh loop when clocks disagree
const MAX_REASON_BYTES = 123;
// What the client reads of the ticket exchange's answer: the server's are
// about 100 bytes.
const MAX_ANSWER_BYTES = 4096;
// setTimeout fires at once for a delay above 2^31-1 ms (24.8 days): longer
// waits are made of chunks of at most this.
const MAX_TIMEOUT_MS = 2 ** 31 - 1;
const encoder = new TextEncoder();

/**
 * A wsauth client: one logical session that survives token refreshes and,
 * for retryable close codes, reconnects.
 *
 * States: connecting, authenticating, active, reauthenticating, closed.
 * Events (CustomEvent, payload in `detail`): `state` (the new state),
 * `message` (the data of a server message frame), `reauthrequired` ({exp,
 * deadline}: the server asked for a fresh token), `position` ({epoch, seq}:
 * the client's new position in the user's stream), `resumelost`
 * ({presented, position}: the server could not resume from the position
 * presented), `error` ({code, message, ref?, cause?}), `close` ({code,
 * reason, retrying}).
 */
export class WsauthClient extends EventTarget {
  #url;
  #tokenProvider;
  #protocols;
  #maxQueue;
  #backoffInitial;
  #backoffMax;
  #refreshLead;
  #authTimeout;
  #reauthTimeout;
  #pingInterval;
  #pongTimeout;
  #readLimit;
  #ticketUrl; // the ticket exchange's absolute URL, or null: the auth frame
  #tokenPerMessage;
  #WebSocket;

  #state = 'closed';
  #ws = null; // the current socket; events of any other are ignored
  #userClosed = true;
  #attempt = 0; // reconnects since a connection stayed up for backoff.max
  #reconnectTimer = undefined;
  #refreshTimer = undefined;
  #authTimer = undefined; // authTimeout or reauthTimeout of the current socket
  #keepaliveTimer = undefined;
  #activeSince = 0; // Date.now() of the current socket's first auth_ok; 0 before
  #lastAuthAt = 0; // Date.now() of the last auth frame sent on the current socket
  #reads = 0; // frames (and pongs) read on the current socket

  #seq = 0; // message sequence: orders the queue and the sent set
  #queue = []; // entries waiting for an active session, by seq
  #sent = new Map(); // id -> entry sent since the last auth_ok: may come back with 4401
  #authSeq = 0; // #seq when the last auth frame went out
  #authGen = 0; // auth_oks received, on any socket: which token a message went out under

  // With tokenPerMessage only (held no longer than needed otherwise, and
  // never put into an event): the token of the last auth frame or ticket
  // exchange, and the token of the last one the server accepted (auth_ok),
  // which message frames carry.
  #offeredToken = '';
  #sessionToken = '';

  #session = '';
  #subject = '';
  #exp = 0;
  #position = null; // {epoch, seq}, frozen: where the client is in the user's stream
  #presented = null; // #position as sent in the current socket's first auth
  #credential = ''; // how the current (or last) connection authenticates: 'auth' or 'ticket'

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
      authTimeout = 10_000,
      reauthTimeout = 10_000,
      pingInterval = 30_000,
      pongTimeout = 10_000,
      readLimit = 1_048_576,
      resume = null,
      ticketUrl = null,
      tokenPerMessage = false,
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
    for (const [name, v] of Object.entries({ authTimeout, reauthTimeout, pongTimeout, pingInterval })) {
      if (!(v === null && name === 'pingInterval') && !(v > 0 && v <= MAX_TIMEOUT_MS)) {
        throw new RangeError(`wsauth: options.${name} must be a number of ms from 1 to 2^31-1${name === 'pingInterval' ? ', or null' : ''}`);
      }
    }
    if (!Number.isInteger(readLimit) || readLimit < 1) {
      throw new RangeError('wsauth: options.readLimit must be a positive integer (bytes)');
    }
    if (typeof tokenPerMessage !== 'boolean') {
      throw new TypeError('wsauth: options.tokenPerMessage must be a boolean');
    }
    if (resume !== null && !positionOf(resume)) {
      throw new TypeError(`wsauth: options.resume must be null or {epoch, seq}: a string of at most ${MAX_EPOCH_BYTES} bytes and an integer >= 0`);
    }
    this.#url = String(url);
    this.#ticketUrl = ticketUrl === null || ticketUrl === undefined ? null : ticketURLOf(ticketUrl, this.#url);
    this.#tokenProvider = tokenProvider;
    this.#tokenPerMessage = tokenPerMessage;
    this.#protocols = protocols;
    this.#maxQueue = maxQueue;
    this.#backoffInitial = backoff.initial ?? 250;
    this.#backoffMax = backoff.max ?? 10_000;
    this.#refreshLead = refreshLead;
    this.#authTimeout = authTimeout;
    this.#reauthTimeout = reauthTimeout;
    this.#pingInterval = pingInterval;
    this.#pongTimeout = pongTimeout;
    this.#readLimit = readLimit;
    this.#position = resume === null ? null : positionOf(resume);
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
  /**
   * The client's position in the user's stream, {epoch, seq} (frozen), or
   * null before the first auth_ok of a server that keeps streams (unless
   * options.resume gave one). It is presented as `resume` in the first auth
   * of every connection.
   */
  get position() { return this.#position; }
  /**
   * How the current connection (or the last one) authenticates: 'ticket'
   * (options.ticketUrl: the server's auth_ok comes first) or 'auth' (the
   * first auth frame); '' before the first connection.
   */
  get credential() { return this.#credential; }

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
    // The frame is made at transmit time: with tokenPerMessage it carries
    // the token of the session as it is then, after any reauth meanwhile.
    const entry = { seq, id, json };
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
    // A session that a ticket starts begins at the head of the user's
    // stream: resuming takes the auth frame's resume. So a client that
    // holds a position (it talked to a server that keeps streams, or was
    // given options.resume) authenticates with the auth frame, which every
    // wsauth server accepts.
    if (this.#ticketUrl !== null && this.#position === null) {
      this.#credential = 'ticket';
      this.#openWithTicket();
    } else {
      this.#credential = 'auth';
      this.#openSocket(this.#url, this.#authTimeout, false);
    }
  }

  // #openSocket opens the socket at url and gives it ms to reach auth_ok.
  // ticketed: url carries a ticket, so the server's auth_ok comes first and
  // the client sends no auth frame.
  #openSocket(url, ms, ticketed) {
    let ws;
    try {
      ws = new this.#WebSocket(url, this.#protocols);
    } catch (err) { // e.g. a malformed URL: retrying cannot help
      // A URL with a ticket stays out of the error: the implementation's
      // text may quote it.
      this.#fail('cannot open WebSocket', ticketed ? {} : { message: `cannot open WebSocket: ${messageOf(err)}`, cause: err });
      return;
    }
    this.#ws = ws;
    this.#activeSince = 0;
    this.#reads = 0;
    // authTimeout runs from here (with a ticket: from the ticket's
    // request) to auth_ok: the upgrade, the token provider and the
    // server's answer.
    this.#armAuthTimer(ws, 'auth timeout', ms);
    ws.onopen = () => {
      if (this.#ws !== ws) return;
      if (!ticketed) {
        this.#authenticate(ws, 'authenticating');
        return;
      }
      // The ticket authenticated the upgrade: the server's auth_ok is on
      // its way, and no auth frame went out on this socket yet.
      this.#authSeq = this.#seq;
      this.#lastAuthAt = 0;
      this.#presented = null;
      this.#setState('authenticating');
    };
    ws.onmessage = (ev) => {
      if (this.#ws !== ws) return;
      this.#reads++;
      if (tooLarge(ev.data, this.#readLimit)) {
        this.#fail('message too large', {
          message: `server message larger than readLimit (${this.#readLimit} bytes)`, code: 1009,
        });
        return;
      }
      this.#onFrame(ev.data);
    };
    ws.onclose = (ev) => {
      if (this.#ws === ws) this.#onClose(ev.code, ev.reason);
    };
    ws.onerror = () => {}; // a close event always follows
  }

  // #openWithTicket fetches a token, exchanges it for a ticket at
  // options.ticketUrl and opens the socket with ?ticket=. Until the socket
  // exists, a stand-in for it is the current socket: closing it (close(),
  // the auth timeout) aborts the exchange, and a stale exchange sees that
  // it is no longer current.
  async #openWithTicket() {
    const abort = new AbortController();
    const pending = { readyState: CONNECTING, close: () => abort.abort() };
    this.#ws = pending;
    this.#activeSince = 0;
    this.#reads = 0;
    const deadline = Date.now() + this.#authTimeout;
    this.#armAuthTimer(pending, 'auth timeout', this.#authTimeout);
    const token = await this.#fetchToken(pending, false);
    if (token === undefined || this.#ws !== pending) return;
    let answer;
    try {
      answer = await exchangeTicket(this.#ticketUrl, token, abort.signal);
    } catch {
      // No answer (a network error, a CORS refusal): retried. Aborted:
      // whoever aborted decided already.
      if (this.#ws === pending) this.#onClose(1006, 'ticket exchange failed');
      return;
    }
    if (this.#ws !== pending) return;
    const { status, retryAfter, body } = answer;
    if (status === 200) {
      const ticket = body?.ticket;
      if (typeof ticket !== 'string' || ticket === '') {
        this.#fail('malformed ticket answer', { message: 'the ticket exchange answered no ticket', status });
        return;
      }
      let url;
      try {
        url = withTicket(this.#url, ticket);
      } catch { // not a URL: retrying cannot help
        this.#fail('cannot open WebSocket');
        return;
      }
      if (this.#tokenPerMessage) this.#offeredToken = token; // the ticket's auth_ok accepts it
      this.#openSocket(url, Math.max(deadline - Date.now(), 1), true);
      return;
    }
    if (status === 401) {
      // A refused token, as a 4401 close is: the user must sign in again.
      this.#userClosed = true;
      const reason = refusalReason(body, token) || 'unauthorized';
      this.#terminate(4401, reason, reason, { status });
      return;
    }
    if (status === 408 || status === 429 || status >= 500) {
      this.#onClose(1006, 'ticket exchange failed', { status }, Math.min(retryAfter * 1000, this.#backoffMax));
      return;
    }
    // 403 (an Origin the server does not allow), another 4xx, a redirect
    // (followed nowhere: the token goes to ticketUrl only): retrying
    // cannot help.
    this.#fail('ticket exchange refused', {
      message: `ticket exchange refused: ${status ? `HTTP ${status}` : 'a redirect'}`, status,
    });
  }

  // #authenticate fetches a token and sends an auth frame on ws, the first
  // (state authenticating) or a reauth (state reauthenticating).
  async #authenticate(ws, state) {
    clearTimeout(this.#refreshTimer);
    this.#setState(state);
    const token = await this.#fetchToken(ws, state === 'reauthenticating');
    if (token === undefined) return;
    if (this.#ws !== ws || ws.readyState !== OPEN) return; // closed meanwhile: onclose decides
    this.#authSeq = this.#seq;
    this.#lastAuthAt = Date.now();
    const frame = { type: 'auth', token };
    if (state === 'authenticating') { // only the first auth of a connection resumes
      this.#presented = this.#position;
      if (this.#position) frame.resume = this.#position;
    }
    if (this.#tokenPerMessage) this.#offeredToken = token;
    ws.send(JSON.stringify(frame));
    if (state === 'reauthenticating') this.#armAuthTimer(ws, 'reauth timeout', this.#reauthTimeout);
  }

  // #fetchToken asks the token provider for a token for ws (the current
  // socket, or the exchange standing in for it). A failure ends the client
  // if ws is still current, and resolves undefined.
  async #fetchToken(ws, reauth) {
    try {
      const token = await this.#tokenProvider({ reauth });
      if (typeof token !== 'string' || token === '') {
        throw new TypeError('tokenProvider must resolve to a non-empty string');
      }
      return token;
    } catch (err) {
      // The provider's text goes to the error event, never to the server.
      if (this.#ws === ws) {
        this.#fail('token provider failed', { message: `token provider failed: ${messageOf(err)}`, cause: err });
      }
      return undefined;
    }
  }

  // #reauth refreshes the token on the current socket, at least a second
  // after the previous auth frame (the server verifies no more than one a
  // second, and a server asking again and again must not make the client
  // hammer its token provider): sooner, it waits on the refresh timer.
  #reauth() {
    if (this.#state !== 'active') return;
    const wait = this.#lastAuthAt + REAUTH_INTERVAL_MS - Date.now();
    if (wait > 0) {
      this.#refreshAt(Date.now() + wait);
      return;
    }
    this.#authenticate(this.#ws, 'reauthenticating');
  }

  // #armAuthTimer gives the server ms to answer on ws; then the client
  // gives up on the socket and reconnects.
  #armAuthTimer(ws, reason, ms) {
    clearTimeout(this.#authTimer);
    this.#authTimer = setTimeout(() => {
      if (this.#ws === ws) this.#drop(ws, reason);
    }, ms);
  }

  #onFrame(raw) {
    let f;
    try {
      f = typeof raw === 'string' ? JSON.parse(raw) : undefined;
    } catch {
      f = undefined;
    }
    if (f === null || typeof f !== 'object' || Array.isArray(f) || typeof f.type !== 'string') {
      this.#fail('malformed server frame', { code: 4400 });
      return;
    }
    switch (f.type) {
      case 'auth_ok':
        this.#onAuthOK(f);
        break;
      case 'reauth_required':
        // Before the reauthentication it starts: a listener sees the
        // deadline first, then the state reauthenticating.
        this.#emit('reauthrequired', { exp: Number(f.exp) || 0, deadline: Number(f.deadline) || 0 });
        this.#reauth();
        break;
      case 'message': {
        const pos = positionOf(f);
        const cur = this.#position;
        if (pos && cur && pos.epoch === cur.epoch && pos.seq <= cur.seq) {
          // A stream message at or before the position: handed over
          // already. A server that resumes correctly never sends one;
          // dropped rather than delivered twice, as the Go client does.
          this.#emit('error', {
            code: CLIENT_ERROR, message: `the server repeated stream message ${pos.seq} (at ${cur.seq}); dropped`,
          });
          break;
        }
        this.#emit('message', f.data);
        // After the application has it: a position is a promise that
        // everything up to it was handed over.
        this.#advance(pos);
        break;
      }
      case 'error':
        this.#onErrorFrame(f);
        break;
      default: // a newer server's frame: ignore it
    }
  }

  #onAuthOK(f) {
    const sub = String(f.sub ?? '');
    if (this.#activeSince && sub !== this.#subject) {
      // A reauth that swaps the identity of a live session: the server
      // broke the protocol, and nothing queued is meant for that user.
      this.#fail('subject changed', {
        message: `the server changed the subject of the session on reauth: ${this.#subject} to ${sub}`, code: 4400,
      });
      return;
    }
    clearTimeout(this.#authTimer);
    this.#authGen++;
    // auth_ok answers the last auth frame (or the ticket): its token is the
    // session's from now on.
    this.#sessionToken = this.#offeredToken;
    this.#session = String(f.session ?? '');
    this.#subject = sub;
    this.#exp = Number(f.exp) || 0;
    if (!this.#activeSince) {
      // The first auth_ok of a connection: where its session starts in the
      // user's stream (the position presented, when resumed).
      this.#activeSince = Date.now();
      this.#startKeepalive(this.#ws);
      const presented = this.#presented;
      this.#presented = null;
      this.#advance(positionOf(f));
      if (f.resume === 'lost' && presented) {
        this.#emit('resumelost', { presented, position: this.#position });
      }
    }
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
        // Refreshed too soon (by the server's clock): the session keeps its
        // token. Try again once the server's interval has passed.
        clearTimeout(this.#authTimer);
        this.#offeredToken = this.#sessionToken;
        this.#setState('active');
        this.#refreshAt(Date.now() + REAUTH_INTERVAL_MS);
        this.#flush();
        return;
      }
      if (f.code === ERROR_REAUTH_REQUIRED) {
        // The fresh token was refused: as at connect, that is terminal.
        this.#userClosed = true;
        this.#terminate(4401, String(f.message ?? ''), 'reauth refused');
        return;
      }
    }
    const entry = ref === undefined ? undefined : this.#sent.get(ref);
    // A message refused again after it went out under a fresh token (a
    // server that wants a token per message, to a client without
    // tokenPerMessage, refuses every one) is reported, not resent for ever.
    if (f.code === ERROR_REAUTH_REQUIRED && entry && !(entry.refusedGen < entry.gen)) {
      // Not processed: the token had expired. Resend after the next auth_ok,
      // ahead of anything sent later.
      this.#sent.delete(ref);
      entry.refusedGen = entry.gen;
      const at = this.#queue.findIndex((e) => e.seq > entry.seq);
      this.#queue.splice(at < 0 ? this.#queue.length : at, 0, entry);
      this.#reauth(); // the server saw an expired token before we did
      return;
    }
    this.#emit('error', { code: Number(f.code), message: this.#scrub(String(f.message ?? '')), ref });
  }

  // #advance moves the client to pos ({epoch, seq}, or undefined for a
  // frame without one) and reports a change.
  #advance(pos) {
    const cur = this.#position;
    if (!pos || (cur && cur.epoch === pos.epoch && cur.seq === pos.seq)) return;
    this.#position = pos;
    this.#emit('position', pos);
  }

  #flush() {
    while (this.#queue.length > 0 && this.#state === 'active' && this.#ws?.readyState === OPEN) {
      this.#transmit(this.#queue.shift());
    }
  }

  #transmit(entry) {
    entry.gen = this.#authGen;
    const token = this.#tokenPerMessage ? `,"token":${JSON.stringify(this.#sessionToken)}` : '';
    this.#ws.send(`{"type":"message","id":${JSON.stringify(entry.id)}${token},"data":${entry.json}}`);
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
    this.#refreshAt(Date.now() + delay);
  }

  // #refreshAt reauthenticates at the time at (ms since the epoch), waiting
  // in chunks of at most 2^31-1 ms: a longer setTimeout fires at once.
  #refreshAt(at) {
    clearTimeout(this.#refreshTimer);
    const delay = Math.min(Math.max(at - Date.now(), 0), MAX_TIMEOUT_MS);
    this.#refreshTimer = setTimeout(() => {
      if (Date.now() < at) this.#refreshAt(at);
      else this.#reauth();
    }, delay);
  }

  // #startKeepalive pings the server every pingInterval ms, if the
  // WebSocket implementation can (ws in Node: ping() and a 'pong' event;
  // browsers' WebSocket cannot, and the protocol has no ping frame of its
  // own), and gives up on the socket when nothing at all arrives within
  // pongTimeout of a ping.
  #startKeepalive(ws) {
    if (this.#pingInterval === null || typeof ws?.ping !== 'function' || typeof ws.on !== 'function') return;
    ws.on('pong', () => {
      if (this.#ws === ws) this.#reads++;
    });
    const ping = () => {
      if (this.#ws !== ws) return;
      const reads = this.#reads;
      try {
        ws.ping();
      } catch {
        return; // closing: onclose follows
      }
      this.#keepaliveTimer = setTimeout(() => {
        if (this.#ws !== ws) return;
        if (this.#reads === reads) {
          this.#drop(ws, 'keepalive timeout', true);
          return;
        }
        this.#keepaliveTimer = setTimeout(ping, Math.max(this.#pingInterval - this.#pongTimeout, 0));
      }, this.#pongTimeout);
    };
    this.#keepaliveTimer = setTimeout(ping, this.#pingInterval);
  }

  // #drop gives up on ws, which does not answer (reason: auth timeout,
  // reauth timeout, keepalive timeout): its events are ignored from now on,
  // and the client goes on as for a connection lost without a close frame
  // (1006), reconnecting. hard: the connection is presumed dead, so it is
  // torn down at once where the implementation can (ws's terminate).
  #drop(ws, reason, hard = false) {
    this.#ws = null;
    if (hard && typeof ws.terminate === 'function') {
      ws.terminate();
    } else {
      closeSocket(ws, 1000, reason);
    }
    this.#onClose(1006, reason);
  }

  #clearTimers() {
    clearTimeout(this.#refreshTimer);
    clearTimeout(this.#authTimer);
    clearTimeout(this.#keepaliveTimer);
  }

  // #onClose ends the current connection (or connection attempt) with code
  // and reason; extra goes into the close event; minDelay (ms) is the
  // least wait before a reconnect (a server's Retry-After).
  #onClose(code, reason, extra = {}, minDelay = 0) {
    this.#ws = null;
    this.#clearTimers();
    // The backoff starts again only after a connection that stayed up for
    // backoff.max: a server that authenticates and then closes at once is
    // retried ever more slowly, not every backoff.initial.
    if (this.#activeSince && Date.now() - this.#activeSince >= this.#backoffMax) this.#attempt = 0;
    this.#activeSince = 0;
    // Messages in flight when the socket died may or may not have been
    // processed: they are not resent, so none is ever processed twice.
    this.#sent.clear();
    this.#forgetTokens();
    const retrying = !this.#userClosed && isRetryable(code);
    if (retrying) {
      this.#setState('connecting');
      this.#emit('close', { code, reason, retrying, ...extra });
      this.#scheduleReconnect(code, minDelay);
    } else {
      this.#setState('closed');
      this.#emit('close', { code, reason, retrying, ...extra });
    }
  }

  #scheduleReconnect(code, minDelay = 0) {
    // 4429: the server is shedding load; back off harder.
    if (code === 4429) this.#attempt += 2;
    const base = Math.min(this.#backoffMax, this.#backoffInitial * 2 ** this.#attempt);
    this.#attempt = Math.min(this.#attempt + 1, 64);
    const delay = Math.min(Math.max(base * (0.8 + 0.4 * Math.random()), minDelay), MAX_TIMEOUT_MS); // +-20% jitter
    this.#reconnectTimer = setTimeout(() => {
      if (!this.#userClosed && this.#state === 'connecting' && this.#ws === null) this.#open();
    }, delay);
  }

  // #fail ends the client for a reason of its own (the token provider
  // failed, the server broke the protocol): an error event with message,
  // then close with code and reason, a fixed text that is also the close
  // frame's reason (never the provider's error text: it could say anything).
  // status: the ticket exchange's HTTP status, for the close event.
  #fail(reason, { message = reason, cause, code = 1000, status } = {}) {
    this.#userClosed = true;
    this.#emit('error', { code: CLIENT_ERROR, message, cause });
    this.#terminate(code, reason, reason, status === undefined ? {} : { status });
  }

  // #terminate closes the socket with code and wireReason, and the client
  // for good with a close event of code and reason, and extra.
  #terminate(code, reason, wireReason = reason, extra = {}) {
    clearTimeout(this.#reconnectTimer);
    this.#clearTimers();
    const ws = this.#ws;
    this.#ws = null;
    this.#activeSince = 0;
    this.#sent.clear();
    this.#forgetTokens();
    if (ws) closeSocket(ws, code, wireReason);
    if (this.#state !== 'closed') {
      this.#setState('closed');
      this.#emit('close', { code, reason, retrying: false, ...extra });
    }
  }

  // #forgetTokens drops the tokens of a connection that ended: the next
  // one authenticates afresh.
  #forgetTokens() {
    this.#offeredToken = '';
    this.#sessionToken = '';
  }

  // #scrub returns a server's text, or '' if it repeats a token the client
  // holds (a hostile server echoing a message's token must not get it into
  // the application's logs).
  #scrub(text) {
    for (const t of [this.#sessionToken, this.#offeredToken]) {
      if (t !== '' && text.includes(t)) return '';
    }
    return text;
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

// positionOf returns v's position, {epoch, seq} (frozen), if v has a valid
// one (a string epoch of at most MAX_EPOCH_BYTES bytes, an integer seq >=
// 0), else undefined.
function positionOf(v) {
  const { epoch, seq } = v ?? {};
  if (typeof epoch !== 'string' || !Number.isSafeInteger(seq) || seq < 0) return undefined;
  if (epoch.length * 3 > MAX_EPOCH_BYTES && encoder.encode(epoch).length > MAX_EPOCH_BYTES) return undefined;
  return Object.freeze({ epoch, seq });
}

function messageOf(err) {
  return err instanceof Error ? err.message : String(err);
}

// closeSocket closes ws with code and reason. Browsers let page code close
// only with 1000 or 3000-4999 (a 1009 throws): then it closes with 1000 and
// the same reason.
function closeSocket(ws, code, reason) {
  reason = truncate(reason, MAX_REASON_BYTES);
  try {
    ws.close(code, reason);
  } catch {
    try {
      ws.close(1000, reason);
    } catch { /* already closing */ }
  }
}

// truncate cuts s to at most maxBytes of UTF-8, between characters, in
// time linear in maxBytes.
function truncate(s, maxBytes) {
  if (s.length * 3 <= maxBytes) return s;
  const { read } = encoder.encodeInto(s, new Uint8Array(maxBytes));
  return s.slice(0, read);
}

// ticketURLOf returns options.ticketUrl as an absolute URL (a relative one
// resolved against the page, as fetch would): http or https, and https
// unless the endpoint itself is plain ws, so that the token never travels
// in the clear where the socket would not.
function ticketURLOf(raw, endpoint) {
  const base = globalThis.location?.href;
  let u;
  try {
    u = new URL(String(raw), base);
  } catch {
    throw new TypeError(`wsauth: options.ticketUrl is not a URL${base ? '' : ' (a relative one needs a page to resolve against)'}`);
  }
  if (typeof globalThis.fetch !== 'function') throw new TypeError('wsauth: options.ticketUrl needs fetch');
  let plain = false;
  try {
    plain = ['ws:', 'http:'].includes(new URL(endpoint, base).protocol);
  } catch { /* the WebSocket constructor will say */ }
  if (u.protocol === 'https:' || (u.protocol === 'http:' && plain)) return u.href;
  throw new TypeError(u.protocol === 'http:'
    ? 'wsauth: options.ticketUrl must be https unless the endpoint is a ws:// URL'
    : 'wsauth: options.ticketUrl must be an http or https URL');
}

// exchangeTicket trades token for a ticket at url (docs/protocol.md,
// section 1.1): POST, the token as a bearer, no cookies, no cache, no
// redirect followed. It resolves with the answer's status, Retry-After
// (seconds, 0 if none) and JSON body (null if none), and rejects when
// there is no answer (a network error, signal aborted).
async function exchangeTicket(url, token, signal) {
  const resp = await fetch(url, {
    method: 'POST',
    headers: { Authorization: `Bearer ${token}` },
    credentials: 'omit',
    cache: 'no-store',
    redirect: 'manual',
    referrerPolicy: 'no-referrer',
    signal,
  });
  const text = await readText(resp, MAX_ANSWER_BYTES); // a body cut short is no answer either
  let body = null;
  try {
    body = JSON.parse(text);
  } catch { /* not JSON: no ticket, no reason */ }
  const retryAfter = Number.parseInt(resp.headers.get('Retry-After') ?? '', 10);
  // An opaque redirect (browsers) has status 0.
  return { status: resp.status, retryAfter: retryAfter > 0 ? retryAfter : 0, body };
}

// readText reads at most maxBytes of resp's body as UTF-8.
async function readText(resp, maxBytes) {
  if (!resp.body) return '';
  const reader = resp.body.getReader();
  const chunks = [];
  let n = 0;
  try {
    while (n < maxBytes) {
      const { done, value } = await reader.read();
      if (done) break;
      chunks.push(value);
      n += value.byteLength;
    }
  } finally {
    reader.cancel().catch(() => {});
  }
  const all = new Uint8Array(n);
  let at = 0;
  for (const c of chunks) {
    all.set(c, at);
    at += c.byteLength;
  }
  return new TextDecoder().decode(all.subarray(0, maxBytes));
}

// refusalReason returns the "error" member of a refusal's body (the check
// that failed, e.g. "token expired"), cut to a close reason's length; ''
// if there is none, or if it repeats secret (a hostile server echoing the
// token must not get it into the application's logs).
function refusalReason(body, secret) {
  const r = body?.error;
  if (typeof r !== 'string' || r.includes(secret)) return '';
  return truncate(r, MAX_REASON_BYTES);
}

// withTicket returns url with ticket=<ticket> in its query, the other
// parameters as they were (a ticket already there is replaced).
function withTicket(url, ticket) {
  const u = new URL(url, globalThis.location?.href);
  if (u.searchParams.has('ticket')) {
    u.searchParams.set('ticket', ticket);
  } else {
    u.search = `${u.search ? `${u.search}&` : '?'}ticket=${encodeURIComponent(ticket)}`;
  }
  return u.href;
}

// tooLarge reports whether a message's data is over limit bytes (UTF-8
// for text), encoding it only when its length leaves a doubt.
function tooLarge(data, limit) {
  if (typeof data !== 'string') return (data?.byteLength ?? data?.size ?? data?.length ?? 0) > limit;
  if (data.length > limit) return true; // at least a byte per UTF-16 unit
  if (data.length * 3 <= limit) return false; // at most three
  return encoder.encode(data).length > limit;
}
