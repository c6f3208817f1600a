// timeline.js: the chat page's token timeline, an SVG that draws what the
// session's tokens do (docs/protocol.md, section 4): each token's lifetime
// from its auth_ok to its exp, the reauth_required marks, the grace window
// from exp to the deadline, the time the session spent expired, and the
// messages the server held meanwhile and released at the next auth_ok.
// The page feeds it the client's events; it keeps nothing secret (no token
// ever reaches it: only times).

const SVG = 'http://www.w3.org/2000/svg';

// A message that arrives within RELEASE_MS of an auth_ok that ended an
// expired stretch, or within BURST_MS of the previous such message, is one
// the server held: it writes them all at once, right after auth_ok. (A
// live message that happens to arrive in that window is counted too.)
// The times are those at which the page handles the events, so the
// windows leave room for a busy page: a redraw between two messages of
// the burst, on a loaded machine, took over 20 ms.
const RELEASE_MS = 400;
const BURST_MS = 100;

// The layout, in px: lanes from the top, the axis at the bottom.
const HEIGHT = 150;
const LEFT = 78; // lane labels
const RIGHT = 12;
const LANES = [20, 46]; // token lanes: consecutive tokens alternate, so that overlaps show
const LANE_H = 22;
const MSG_Y = 84; // the message lane
const MSG_H = 20;
const AXIS_Y = 126;

// The window: about four token lifetimes, 60% past and 40% future, so that
// the current token's exp and grace window are in view.
const MIN_SPAN = 40_000;
const MAX_SPAN = 30 * 60_000;
const PAST = 0.6;

// Axis steps to choose from, in seconds: the first that gives at most 12
// labels.
const STEPS = [1, 2, 5, 10, 15, 30, 60, 120, 300, 600];

const clock = (ms) => new Date(ms).toLocaleTimeString();

export class TokenTimeline {
  #svg;
  #tokens = []; // {n, session, start, exp, deadline, replacedAt, closedAt, lane} (ms)
  #reauths = []; // {at}
  #messages = []; // {at}: delivered live
  #releases = []; // {from, at, last, count}: held while expired, released at auth_ok
  #closes = []; // {at, code}
  #release = null; // the release that messages may still join
  #n = 0;

  /** @param {SVGSVGElement} svg */
  constructor(svg) {
    this.#svg = svg;
  }

  /**
   * An auth_ok at `at` (ms) for session, with a token that expires at exp
   * (Unix seconds). A token the session already has (a refused early
   * reauth that left it active) draws nothing new.
   */
  authOK(at, exp, session) {
    const prev = this.#tokens.at(-1);
    const live = prev && prev.session === session && prev.closedAt === null;
    if (live && prev.exp === exp * 1000) return;
    if (live) {
      prev.replacedAt = at;
      if (at > prev.exp) {
        // The session was expired: the server held its messages, and
        // writes them right after this auth_ok.
        this.#release = { from: prev.exp, at, last: at, count: 0 };
        this.#releases.push(this.#release);
      }
    }
    this.#n++;
    this.#tokens.push({
      n: this.#n, session, start: at, exp: exp * 1000, deadline: null, replacedAt: null, closedAt: null,
      lane: (this.#n - 1) % LANES.length,
    });
  }

  /** reauth_required at `at`: the current token's deadline (Unix seconds). */
  reauthRequired(at, exp, deadline) {
    this.#reauths.push({ at });
    const tok = this.#tokens.at(-1);
    if (tok && tok.closedAt === null && tok.exp === exp * 1000 && deadline) tok.deadline = deadline * 1000;
  }

  /** A message arrived at `at`. */
  message(at) {
    const r = this.#release;
    if (r && (at - r.at <= RELEASE_MS || at - r.last <= BURST_MS)) {
      r.count++;
      r.last = at;
      return;
    }
    this.#release = null;
    this.#messages.push({ at });
  }

  /** The connection closed at `at` with code. */
  closed(at, code) {
    const tok = this.#tokens.at(-1);
    if (tok && tok.closedAt === null) tok.closedAt = at;
    this.#release = null;
    this.#closes.push({ at, code });
  }

  /** Draws the timeline as of now (ms). */
  render(now = Date.now()) {
    const width = Math.max(this.#svg.clientWidth || 0, 320);
    const cur = this.#tokens.at(-1);
    const ttl = cur ? cur.exp - cur.start : MIN_SPAN / 4;
    const span = Math.min(Math.max(4 * ttl, MIN_SPAN), MAX_SPAN);
    const t0 = now - PAST * span;
    const t1 = t0 + span;
    const x = (t) => LEFT + ((Math.min(Math.max(t, t0), t1) - t0) / span) * (width - LEFT - RIGHT);
    this.#prune(t0);

    const els = [defs()];
    const labels = []; // drawn last, over the marks
    els.push(text(4, LANES[0] + LANE_H + 3, 'tokens', 'lane-label'), text(4, MSG_Y + 14, 'messages', 'lane-label'));
    els.push(...axis(now, t0, span, x));
    for (const tok of this.#tokens) els.push(...this.#drawToken(tok, now, t1, x, labels));
    for (const r of this.#releases) els.push(...drawRelease(r, x));
    for (const m of this.#messages) {
      if (m.at >= t0) els.push(line(x(m.at), MSG_Y, x(m.at), MSG_Y + MSG_H, 'msg'));
    }
    const shown = this.#reauths.filter((r) => r.at >= t0);
    for (const [i, r] of shown.entries()) {
      els.push(line(x(r.at), 8, x(r.at), MSG_Y + MSG_H + 2, 'reauth-mark'));
      // Only the latest is named: they may come every few seconds.
      if (i === shown.length - 1) els.push(text(x(r.at) + 3, 10, 'reauth_required', 'reauth-label'));
    }
    for (const c of this.#closes) {
      if (c.at < t0) continue;
      els.push(line(x(c.at), 14, x(c.at), MSG_Y + MSG_H, 'close-mark'));
      els.push(text(x(c.at) + 3, MSG_Y + MSG_H + 12, `closed ${c.code}`, 'close-label'));
    }
    els.push(line(x(now), 4, x(now), AXIS_Y - 8, 'now'), ...labels);
    this.#svg.setAttribute('viewBox', `0 0 ${width} ${HEIGHT}`);
    this.#svg.replaceChildren(...els);
  }

  #drawToken(tok, now, t1, x, labels) {
    const y = LANES[tok.lane];
    const end = Math.min(tok.exp, tok.closedAt ?? Infinity);
    const out = [];
    // Expired: exp passed on a live session before any fresh token.
    const expiredUntil = Math.min(tok.replacedAt ?? now, tok.closedAt ?? now, tok.deadline ?? Infinity);
    const expired = expiredUntil > tok.exp;
    if (tok.deadline && (tok.closedAt === null || tok.closedAt > tok.exp)) {
      // A token that a fresher one took over keeps its window, faded.
      const cls = tok.replacedAt === null ? 'grace' : 'grace past';
      out.push(rect(x(tok.exp), y, x(tok.deadline) - x(tok.exp), LANE_H, cls));
      if (!expired && x(tok.deadline) - x(tok.exp) > 40) out.push(text(x(tok.exp) + 3, y + LANE_H - 6, 'grace', 'grace-label'));
    }
    if (expired) {
      out.push(rect(x(tok.exp), y, x(expiredUntil) - x(tok.exp), LANE_H, 'expired'));
      if (x(expiredUntil) - x(tok.exp) > 150) out.push(text(x(tok.exp) + 3, y + LANE_H - 6, 'expired: server holds messages', 'expired-label'));
    }
    const bar = rect(x(tok.start), y, Math.max(x(end) - x(tok.start), 1), LANE_H, 'token-bar');
    bar.append(title(`token ${tok.n}: auth_ok ${clock(tok.start)}, exp ${clock(tok.exp)}`));
    out.push(bar);
    if (tok.replacedAt !== null && tok.replacedAt < end) {
      out.push(rect(x(tok.replacedAt), y, x(end) - x(tok.replacedAt), LANE_H, 'superseded'));
    }
    out.push(line(x(tok.start), y - 3, x(tok.start), y + LANE_H + 3, 'auth-ok-mark'));
    // The label stays on the bar's own colour, before a fresher token.
    const w = x(Math.min(end, tok.replacedAt ?? end)) - x(tok.start);
    const label = w > 150 ? `token ${tok.n} · exp ${clock(tok.exp)}` : w > 24 ? String(tok.n) : '';
    if (label && x(tok.start) < x(t1) - 20) labels.push(text(x(tok.start) + 4, y + LANE_H - 7, label, 'token-label'));
    return out;
  }

  #prune(t0) {
    const gone = (t) => t < t0 - 1000;
    this.#tokens = this.#tokens.filter((t, i, all) => i === all.length - 1 || !gone(Math.max(t.deadline ?? 0, t.exp)));
    this.#reauths = this.#reauths.filter((r) => !gone(r.at));
    this.#messages = this.#messages.filter((m) => !gone(m.at));
    this.#releases = this.#releases.filter((r) => !gone(r.at));
    this.#closes = this.#closes.filter((c) => !gone(c.at));
  }
}

// drawRelease draws the messages the server held from r.from (exp) to r.at
// (the auth_ok): hollow marks spread over the expired stretch, an arrow to
// the auth_ok, and the column of what arrived at once.
function drawRelease(r, x) {
  if (r.count === 0) return [];
  const out = [];
  const y = MSG_Y + MSG_H / 2;
  for (let i = 0; i < r.count; i++) {
    const hx = x(r.from + ((i + 0.5) / r.count) * (r.at - r.from));
    out.push(line(hx, MSG_Y + 4, hx, MSG_Y + MSG_H - 4, 'held'));
  }
  out.push(line(x(r.from), y, x(r.at) - 3, y, 'held-arrow'));
  const h = Math.min(4 + r.count * 2, MSG_H + 8);
  const col = rect(x(r.at) - 2, MSG_Y + MSG_H - h, 5, h, 'released');
  col.append(title(`${r.count} message${r.count === 1 ? '' : 's'} held while expired, released at auth_ok ${clock(r.at)}`));
  out.push(col, text(x(r.at) + 6, MSG_Y + MSG_H + 12, `${r.count} released at auth_ok`, 'released-label'));
  return out;
}

function axis(now, t0, span, x) {
  const step = STEPS.find((s) => span / 1000 / s <= 12) ?? STEPS.at(-1);
  const out = [line(LEFT, AXIS_Y - 8, x(t0 + span), AXIS_Y - 8, 'axis')];
  const first = Math.ceil((t0 - now) / 1000 / step) * step;
  for (let s = first; now + s * 1000 <= t0 + span; s += step) {
    if (x(now + s * 1000) < LEFT + 20) continue; // under the lane labels
    const label = s === 0 ? 'now' : `${s > 0 ? '+' : '−'}${fmtSeconds(Math.abs(s))}`;
    out.push(line(x(now + s * 1000), AXIS_Y - 11, x(now + s * 1000), AXIS_Y - 5, 'axis'));
    out.push(text(x(now + s * 1000), AXIS_Y + 6, label, s === 0 ? 'axis-label now-label' : 'axis-label'));
  }
  return out;
}

const fmtSeconds = (s) => (s % 60 === 0 ? `${s / 60} min` : `${s} s`);

// defs holds the grace window's hatching.
function defs() {
  const d = el('defs');
  const p = el('pattern', { id: 'hatch', width: 6, height: 6, patternUnits: 'userSpaceOnUse', patternTransform: 'rotate(45)' });
  p.append(el('rect', { width: 6, height: 6, class: 'hatch-bg' }), el('line', { x1: 0, y1: 0, x2: 0, y2: 6, class: 'hatch-line' }));
  d.append(p);
  return d;
}

function el(name, attrs = {}) {
  const e = document.createElementNS(SVG, name);
  for (const [k, v] of Object.entries(attrs)) e.setAttribute(k, String(v));
  return e;
}

const rect = (x, y, width, height, cls) => el('rect', { x, y, width: Math.max(width, 0), height, class: cls });
const line = (x1, y1, x2, y2, cls) => el('line', { x1, y1, x2, y2, class: cls });

function text(x, y, s, cls) {
  const t = el('text', { x, y, class: cls });
  t.textContent = s;
  return t;
}

function title(s) {
  const t = el('title');
  t.textContent = s;
  return t;
}
