// Type declarations of wsauth.js, the client of the wsauth wire protocol v1.

/** The WebSocket subprotocol of wire protocol v1: "wsauth.v1". */
export declare const SUBPROTOCOL: 'wsauth.v1';

/**
 * Close codes after which the client reconnects with backoff: 1001, 1005 (a
 * close frame without a status code), 1006, 1011, 1013, 4408, 4413, 4429, 4440.
 */
export declare const RETRYABLE_CLOSE_CODES: readonly number[];

/** Code of the error events the client raises itself (never sent by a server). */
export declare const CLIENT_ERROR: 0;

/** Error-frame code: the message was not processed because the token expired. */
export declare const ERROR_REAUTH_REQUIRED: 4401;
/** Error code refusing an auth frame sent too soon after the previous one. */
export declare const ERROR_TOO_MANY_REQUESTS: 4429;

/** Longest message id, in UTF-8 bytes. */
export declare const MAX_ID_BYTES: 64;
/** Longest stream epoch, in UTF-8 bytes. */
export declare const MAX_EPOCH_BYTES: 64;

/** Reports whether the client reconnects after a close with this code. */
export declare function isRetryable(code: number): boolean;

/**
 * connecting: opening a socket (with a ticket: getting the token and the
 * ticket first), or waiting to reconnect.
 * authenticating: the socket is open, the first auth frame is on its way
 * (with a ticket: the server's auth_ok is).
 * active: auth_ok received; messages are sent at once.
 * reauthenticating: a fresh token is on its way on the same socket.
 * closed: not connected and not reconnecting (before connect(), after
 * close(), after a terminal close code or a token provider failure).
 */
export type WsauthState = 'connecting' | 'authenticating' | 'active' | 'reauthenticating' | 'closed';

/** What the token provider is called with. */
export interface TokenRequest {
  /**
   * true when the token replaces one on a live socket; false for a new
   * connection (in ticket mode, the token to exchange for its ticket).
   */
  reauth: boolean;
}

/**
 * How a connection authenticates: 'ticket' (options.ticketUrl: a ticket in
 * the URL, the server's auth_ok first) or 'auth' (the first auth frame).
 */
export type WsauthCredential = 'auth' | 'ticket';

/** The minimal WebSocket constructor the client needs (browsers' and ws's fit). */
export interface WebSocketConstructor {
  new (url: string, protocols?: string | string[]): WebSocketLike;
}

export interface WebSocketLike {
  readonly readyState: number;
  readonly protocol: string;
  onopen: ((ev: any) => void) | null;
  onmessage: ((ev: { data: any }) => void) | null;
  onclose: ((ev: { code: number; reason: string }) => void) | null;
  onerror: ((ev: any) => void) | null;
  send(data: string): void;
  close(code?: number, reason?: string): void;
}

/**
 * A position in the user's stream (docs/protocol.md, section 5): the
 * stream's epoch and the seq of the last stream message received (or where
 * the session started).
 */
export interface StreamPosition {
  readonly epoch: string;
  readonly seq: number;
}

export interface WsauthClientOptions {
  /**
   * Returns a fresh token (a compact JWS). Called on every connection and
   * every reauthentication; it must not return a cached token close to
   * expiry. A rejection closes the client for good (state closed, an error
   * event with code CLIENT_ERROR).
   */
  tokenProvider: (req: TokenRequest) => string | Promise<string>;
  /** Subprotocols to offer. Default ["wsauth.v1"]. */
  protocols?: string | string[];
  /** Messages queued while not active, at most. send() throws past it. Default 256. */
  maxQueue?: number;
  /**
   * Reconnect backoff in ms: initial, doubling up to max, +-20% jitter.
   * The count starts again only after a connection stayed authenticated for
   * max ms (or on connect()), so a server that closes right after auth_ok
   * is retried ever more slowly. Default {initial: 250, max: 10000}.
   */
  backoff?: { initial?: number; max?: number };
  /**
   * How long before exp, in ms, the client refreshes its token on its own if
   * the server has not sent reauth_required by then; at most 20% of the
   * token's remaining lifetime. null: only when the server asks. Default 10000.
   */
  refreshLead?: number | null;
  /**
   * ms from opening a socket to its first auth_ok (the upgrade, the token
   * provider and the server's answer; with a ticket, from the token
   * provider's call: the exchange counts too); then the client closes the
   * socket (or aborts the exchange) and reconnects (a close event {code:
   * 1006, reason: 'auth timeout'}). Default 10000.
   */
  authTimeout?: number;
  /**
   * ms from sending a reauth's auth frame to the server's answer (auth_ok,
   * or an error refusing it); then the client closes the socket and
   * reconnects ({code: 1006, reason: 'reauth timeout'}). Default 10000.
   */
  reauthTimeout?: number;
  /**
   * ms between keepalive pings once authenticated, or null for none. Only
   * WebSocket implementations with ping() and a 'pong' event (ws in Node)
   * can ping; browsers' cannot (nor can the protocol, which has no ping
   * frame), so in a browser the network stack's own keepalive applies and
   * authTimeout/reauthTimeout bound what the client waits for. When nothing
   * at all arrives within pongTimeout of a ping, the client drops the
   * socket and reconnects ({code: 1006, reason: 'keepalive timeout'}).
   * Default 30000.
   */
  pingInterval?: number | null;
  /** ms within which something must arrive after a ping. Default 10000. */
  pongTimeout?: number;
  /**
   * The largest server message accepted, in bytes of UTF-8. A larger one
   * closes the client for good with 1009 (in browsers, which cannot send
   * 1009, the close frame says 1000 with the same reason). Default 1048576
   * (1 MiB, the server's own frame cap).
   */
  readLimit?: number;
  /**
   * The position to start from, e.g. one the application saved from
   * `position` events before a page reload: presented as `resume` in the
   * first auth. An epoch of at most 64 bytes and an integer seq >= 0, or
   * null (the constructor throws a TypeError otherwise). Default null: the
   * first connection starts at the stream's head.
   */
  resume?: StreamPosition | null;
  /**
   * The URL of the server's ticket exchange (docs/protocol.md, section
   * 1.1; wsauth.Server.TicketHandler), e.g. '/ticket': then, before each
   * connection, the client gets a fresh token from tokenProvider, POSTs it
   * there as "Authorization: Bearer <token>" (fetch: no cookies, no cache,
   * no redirect followed), and opens the socket at the endpoint's URL with
   * ticket=<ticket> added to its query. The server refuses a bad token
   * before the socket exists; the session starts authenticated (auth_ok
   * first) and reauthenticates in-band as always.
   *
   * A session a ticket starts begins at the head of the user's stream, so
   * a connection made while the client holds a position (every
   * reconnection to a server that keeps streams, or a first connection
   * given options.resume) authenticates with the auth frame, resume and
   * all, instead.
   *
   * The exchange's 401 ends the client like a 4401 close (the user must
   * sign in again): a close event {code: 4401, reason: the server's check,
   * retrying: false, status: 401}. Its 403 and other 4xx, a redirect and
   * an answer without a ticket end it too (an error event, then {code:
   * 1000, reason: 'ticket exchange refused' or 'malformed ticket answer',
   * status}). Its 408, 429 and 5xx (waiting at least Retry-After, at most
   * backoff.max) and no answer at all (a network error; a CORS refusal
   * looks the same) are retried with the backoff: {code: 1006, reason:
   * 'ticket exchange failed', retrying: true, status?}. A relative URL is
   * resolved against the page; it must be http or https, and https for a
   * wss endpoint (the constructor throws a TypeError otherwise). Neither
   * the token nor the ticket appears in any event. Default null: the token
   * goes in the first auth frame.
   */
  ticketUrl?: string | URL | null;
  /**
   * Put a token in every message frame ({"type":"message","id",…,"token",
   * "data"}), for a server that wants a token per message
   * (wsauth.Options.TokenPerMessage; docs/protocol.md, section 2): the
   * token the server last accepted for this session, that of the auth
   * frame (or of the ticket exchange) whose auth_ok made the session
   * active, then of each reauthentication's auth_ok. The token is added
   * when the frame is sent, not at send(): a message queued while
   * (re)authenticating carries the fresh token. Such a server refuses a
   * message without one with error 4401 ('token required'): a client
   * without this option resends it once after a fresh token, then reports
   * it as an error event {code: 4401, ref}. Other servers ignore the
   * token. It is never put into an event. A boolean (the constructor
   * throws a TypeError otherwise). Default false.
   */
  tokenPerMessage?: boolean;
  /** The WebSocket implementation. Default globalThis.WebSocket; in Node 20 pass ws's. */
  WebSocket?: WebSocketConstructor;
}

/** Detail of an error event. */
export interface WsauthErrorDetail {
  /** The server's error code (e.g. 4405, 4500, an application code), or CLIENT_ERROR. */
  code: number;
  message: string;
  /** The id of the refused message, when the server named it. */
  ref?: string;
  /** For CLIENT_ERROR: what the token provider threw, or the like. */
  cause?: unknown;
}

/**
 * Detail of a close event. code and reason are the server's, or, when the
 * client closed or gave up on the socket itself, its own: 1006 with 'auth
 * timeout', 'reauth timeout', 'keepalive timeout' or 'ticket exchange
 * failed' (retrying); 1009 'message too large', 4400 'malformed server
 * frame' or 'subject changed', 1000 'token provider failed', 'ticket
 * exchange refused' or 'malformed ticket answer', 4401 with the reason of
 * a 401 from the ticket exchange (not retrying); 1000 'client closed' for
 * close().
 */
export interface WsauthCloseDetail {
  code: number;
  reason: string;
  /** true when the client reconnects (state connecting), false when it stays closed. */
  retrying: boolean;
  /**
   * The HTTP status of the ticket exchange's answer, when that answer
   * ended the connection attempt (options.ticketUrl); absent otherwise.
   */
  status?: number;
}

/** Detail of a resumelost event. */
export interface WsauthResumeLostDetail {
  /** The position the client presented. */
  presented: StreamPosition;
  /** The stream's head, where the new session starts: the client's position now. */
  position: StreamPosition;
}

/** Detail of a reauthrequired event: the server's reauth_required frame. */
export interface WsauthReauthRequiredDetail {
  /** The current token's expiry, in Unix seconds (0 if the frame had none). */
  exp: number;
  /**
   * The last moment a fresh token is accepted, in Unix seconds: exp plus
   * the server's grace; past it the server closes with 4440 (0 if the
   * frame had none).
   */
  deadline: number;
}

export interface WsauthClientEventMap {
  state: CustomEvent<WsauthState>;
  /**
   * The data of a server message frame. A stream message's position
   * follows in a position event, once every listener of this one returned.
   */
  message: CustomEvent<unknown>;
  /**
   * The server sent reauth_required: it wants a fresh token by deadline.
   * Fired before the client starts reauthenticating (its state event
   * follows, unless the client waits out the one-second interval between
   * auth frames first). For display, e.g. a timeline of the token; the
   * client answers on its own.
   */
  reauthrequired: CustomEvent<WsauthReauthRequiredDetail>;
  /**
   * The client's position changed: after the message event of each stream
   * message, and at the first auth_ok of a connection that starts elsewhere
   * (the first connection, a lost resume). Save it to resume after a reload.
   */
  position: CustomEvent<StreamPosition>;
  /**
   * The server answered the first auth's resume with "lost": messages of
   * the user's stream since the position presented may be missing (too
   * old, or the stream's history is gone). The session goes on from the
   * stream's head; resynchronise from the application. Fired after the
   * position event of that auth_ok, before its state event.
   */
  resumelost: CustomEvent<WsauthResumeLostDetail>;
  error: CustomEvent<WsauthErrorDetail>;
  close: CustomEvent<WsauthCloseDetail>;
}

/**
 * A client of a wsauth endpoint. It authenticates with the first frame,
 * reauthenticates on the same socket when the server asks (and on its own
 * shortly before exp), queues messages while not active and sends them in
 * order after auth_ok, resends messages the server refused with error 4401
 * (once after a fresh token: refused again, they are error events), gives up on a server that does not answer (authTimeout, reauthTimeout,
 * and in Node with ws pingInterval/pongTimeout), and reconnects with
 * jittered exponential backoff after retryable closes (1001, 1005, 1006,
 * 1011, 1013, 4408, 4413, 4429, 4440), never after terminal ones. With
 * options.ticketUrl it authenticates the upgrade with a single-use ticket
 * instead of the first frame; with options.tokenPerMessage every message
 * frame carries the session's token.
 *
 * Delivery is at most once: a message sent just before the connection
 * dropped is not resent, since the server may have processed it. Server
 * messages of the user's stream (on a server that keeps streams) are
 * exactly once across reconnects: the client presents its position in the
 * first auth of every connection and the server resumes after it, or says
 * it cannot (a resumelost event).
 */
export declare class WsauthClient extends EventTarget {
  constructor(url: string | URL, options: WsauthClientOptions);

  /** The current state. */
  readonly state: WsauthState;
  /** The session id of the last auth_ok ("" before the first). */
  readonly session: string;
  /** The subject ("sub") of the last auth_ok. */
  readonly subject: string;
  /** The token expiry of the last auth_ok, in Unix seconds (0: none). */
  readonly exp: number;
  /** Messages waiting for an active session. */
  readonly queued: number;
  /**
   * The client's position in the user's stream: from the first auth_ok of
   * each connection, then from every stream message once the message event
   * returned; presented as resume in the first auth of every connection,
   * kept across close() and connect(). null until a server that keeps
   * streams said one (or options.resume gave one).
   */
  readonly position: StreamPosition | null;
  /**
   * How the current connection (or the last one) authenticates: 'ticket'
   * or 'auth'; '' before the first connection. In ticket mode, 'auth' when
   * the connection resumes from a position.
   */
  readonly credential: WsauthCredential | '';

  /** Opens the connection; does nothing unless the state is closed. */
  connect(): void;
  /**
   * Sends data as a message frame now if active, otherwise after the next
   * auth_ok. Returns the message's id (id, or one the client assigns).
   * Throws if closed, if data is not JSON-serializable, if id is not a
   * non-empty string of at most 64 bytes, or if the queue is full.
   */
  send(data: unknown, id?: string): string;
  /** Closes with 1000 and stops reconnecting; the close event fires at once. */
  close(): void;

  addEventListener<K extends keyof WsauthClientEventMap>(
    type: K,
    listener: (ev: WsauthClientEventMap[K]) => void,
    options?: boolean | AddEventListenerOptions,
  ): void;
  addEventListener(
    type: string,
    listener: EventListenerOrEventListenerObject | null,
    options?: boolean | AddEventListenerOptions,
  ): void;
  removeEventListener<K extends keyof WsauthClientEventMap>(
    type: K,
    listener: (ev: WsauthClientEventMap[K]) => void,
    options?: boolean | EventListenerOptions,
  ): void;
  removeEventListener(
    type: string,
    listener: EventListenerOrEventListenerObject | null,
    options?: boolean | EventListenerOptions,
  ): void;
}
