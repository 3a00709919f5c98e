// Keeping the page live: the poller, and what the page remembers between
// polls (the API gives totals; rates and history are the page's own).

export const POLL_MS = 2000;
export const WINDOW_MS = 5 * 60 * 1000; // how much history the page keeps
const MIN_SPAN_MS = 60 * 1000; // the shortest time a chart spans

// Calls `tick` every `intervalMs` while the tab is visible, one at a time;
// `now()` polls at once (after the one running, if any).
export class Poller {
  constructor(tick, intervalMs, onPause) {
    this.tick = tick;
    this.intervalMs = intervalMs;
    this.onPause = onPause;
    this.timer = null;
    this.running = false;
    this.again = false;
  }

  // Pauses while the tab is hidden and polls again when it shows.
  start() {
    document.addEventListener('visibilitychange', () => this.visibilityChanged());
  }

  visibilityChanged() {
    if (!document.hidden) {
      this.now();
      return;
    }
    clearTimeout(this.timer);
    this.timer = null;
    this.onPause();
  }

  async now() {
    clearTimeout(this.timer);
    if (this.running) {
      this.again = true;
      return;
    }
    this.running = true;
    try {
      await this.tick();
    } finally {
      this.running = false;
    }
    if (document.hidden) {
      this.onPause(); // the tab hid while that poll was under way
      return;
    }
    if (this.again) {
      this.again = false;
      this.now();
      return;
    }
    this.timer = setTimeout(() => this.now(), this.intervalMs);
  }
}

// Points [t, value] (t in ms, performance.now()) of the last WINDOW_MS.
class Series {
  constructor() {
    this.points = [];
  }

  push(t, value) {
    this.points.push([t, value]);
    while (this.points.length && this.points[0][0] < t - WINDOW_MS) this.points.shift();
  }
}

// Per second, from two samples of counters.  A counter that went down was
// reset (the queue was deleted and declared again): then all of it is new.
export function rates(before, after, seconds, fields) {
  const out = {};
  for (const [name, field] of Object.entries(fields)) {
    if (!before || seconds <= 0) {
      out[name] = null;
      continue;
    }
    const was = before[field] || 0;
    const now = after[field] || 0;
    out[name] = (now >= was ? now - was : now) / seconds;
  }
  return out;
}

const QUEUE_FIELDS = { in: 'published', out: 'delivered', ack: 'acked' };
const BYTE_FIELDS = { in: 'bytes_in', out: 'bytes_out' };

// Everything the views show: the last answers and what follows from them.
export class Store {
  constructor() {
    this.polls = 0; // successful samples of /api/queues, for tests and the status line
    this.overview = null;
    this.queues = null;
    this.exchanges = null;
    this.bindings = null;
    this.connections = null;
    this.queueRates = new Map(); // name → {in, out, ack} msg/s
    this.depth = new Map(); // name → Series of ready messages
    this.totals = { in: null, out: null, ack: null }; // msg/s over all queues
    this.totalSeries = { in: new Series(), out: new Series() };
    this.traffic = { in: null, out: null }; // bytes/s over all connections
    this.connectionRates = new Map(); // name → {in, out} bytes/s
    this.sampled = {}; // kind → [t, answer] of the previous sample
    this.since = null; // performance.now() of the first sample
  }

  // How far back the charts reach: the history there is, at least a minute.
  span(now = performance.now()) {
    const known = this.since === null ? 0 : now - this.since;
    return Math.min(WINDOW_MS, Math.max(MIN_SPAN_MS, known));
  }

  absorb(kind, answer, t) {
    const previous = this.sampled[kind];
    this.sampled[kind] = [t, answer];
    this[kind] = answer;
    const seconds = previous ? (t - previous[0]) / 1000 : 0;
    const before = previous ? previous[1] : null;
    if (kind === 'queues') this.queuesSampled(before, answer, seconds, t);
    if (kind === 'overview') this.traffic = rates(before, answer, seconds, BYTE_FIELDS);
    if (kind === 'connections') this.connectionsSampled(before, answer, seconds);
  }

  // Total rates add up the queues seen in both samples, so a queue deleted
  // between them does not look like a negative rate.
  queuesSampled(before, queues, seconds, t) {
    const previous = new Map((before || []).map((q) => [q.name, q]));
    const totals = { in: 0, out: 0, ack: 0 };
    this.queueRates = new Map();
    for (const q of queues) {
      const r = rates(previous.get(q.name), q, seconds, QUEUE_FIELDS);
      this.queueRates.set(q.name, r);
      for (const name of Object.keys(totals)) totals[name] += r[name] || 0;
      this.depthOf(q.name).push(t, q.message_count);
    }
    for (const name of this.depth.keys()) {
      if (!queues.some((q) => q.name === name)) this.depth.delete(name);
    }
    this.polls += 1;
    if (this.since === null) this.since = t;
    if (!before) return;
    this.totals = totals;
    this.totalSeries.in.push(t, totals.in);
    this.totalSeries.out.push(t, totals.out);
  }

  depthOf(name) {
    if (!this.depth.has(name)) this.depth.set(name, new Series());
    return this.depth.get(name);
  }

  connectionsSampled(before, connections, seconds) {
    const previous = new Map((before || []).map((c) => [c.name, c]));
    this.connectionRates = new Map(connections.map(
      (c) => [c.name, rates(previous.get(c.name), c, seconds, BYTE_FIELDS)]));
  }

  queue(name) {
    return (this.queues || []).find((q) => q.name === name) || null;
  }
}
