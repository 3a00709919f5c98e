// Load generator for the scale benchmark (driven by bench_scale.py).
// Usage: node scale.js '<json options>'  → prints one JSON result line.
// Every mode measures a window that starts once all links are attached (receivers are
// attached without credit and given it at the start) and ends when the last message is
// received (and, for at-least-once producers, accepted).  With `cpu_pid`, it reports that
// process's utime+stime clock ticks over the window (`cpu_ticks`).  Gives up with
// `stalled: true` after `stall_s` seconds without progress.
// Modes:
//   queues:  Q queues, each with its own producer and consumer link; the producer links
//            are spread over `connections` connections and the consumer links over as
//            many others, at most `links_per_session` links in a session; `count`
//            at-least-once messages of `size` bytes per queue.
//   publish: one producer, `count` at-least-once messages of `size` bytes to `address`.
//   drain:   one consumer takes `count` messages from `address`.
//   fanout:  `consumers` receivers (over `connections` connections, default one each)
//            read `count` messages each from `first` of the stream `stream`.
'use strict';
const fs = require('fs');
const rhea = require('rhea');
const opts = JSON.parse(process.argv[2]);
// where a queue's address starts: this broker's `/queues/NAME`, or RabbitMQ 3.10's
// v1 `/queue/NAME` (which declares the queue on attach)
const QUEUES = opts.address_prefix || '/queues/';
// SASL PLAIN for a broker that wants it (RabbitMQ), else anonymous
const SASL = opts.username ? { username: opts.username, password: opts.password } : {};

const connections = [];
function connect() {
  const container = rhea.create_container();
  let c;
  if (opts.transport === 'ws') {
    const ws = container.websocket_connect(require('ws'));
    c = container.connect({ connection_details: ws(opts.ws_url, ['amqp'], {}),
                            reconnect: false, idle_time_out: 0, ...SASL });
  } else {
    c = container.connect({ host: opts.host, port: opts.port, reconnect: false,
                            idle_time_out: 0, tcp_no_delay: true, ...SASL });
  }
  connections.push(c);
  return c;
}

function cpuTicks() {
  if (!opts.cpu_pid) return 0;
  const stat = fs.readFileSync(`/proc/${opts.cpu_pid}/stat`, 'utf8');
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return Number(fields[11]) + Number(fields[12]);  // utime, stime
}

// The measuring window, with the stall guard.
const win = { start: 0, ticks0: 0, last: Date.now(), finished: false };
function begin() { win.ticks0 = cpuTicks(); win.start = Date.now(); win.last = win.start; }
function progress() { win.last = Date.now(); }
function finish(extra) {
  if (win.finished) return;
  win.finished = true;
  const ticks = cpuTicks() - win.ticks0;
  const seconds = (Date.now() - win.start) / 1000;
  process.stdout.write(JSON.stringify({ seconds, cpu_ticks: ticks, ...extra }) + '\n');
  // close cleanly, so the broker gets the last dispositions (nothing is released back to
  // a queue that the next run reuses)
  const open = new Set(connections);
  const closed = (c) => { open.delete(c); if (open.size === 0) process.exit(0); };
  for (const c of connections) {
    c.on('connection_close', () => closed(c));
    c.on('disconnected', () => closed(c));
    c.close();
  }
  setTimeout(() => process.exit(0), 5000);
}
let status = null;  // a mode's counters, reported when it stalls
const stallS = opts.stall_s || 60;
setInterval(() => {
  if (!win.finished && Date.now() - win.last > stallS * 1000) {
    process.stdout.write(JSON.stringify({ stalled: true, phase: win.start ? 'run' : 'setup',
                                          ...(status ? status() : {}) }) + '\n');
    process.exit(2);
  }
}, 500).unref();

// Credit for a receiver attached with none: `window` now, topped up as messages arrive.
function giveCredit(receiver, window) {
  receiver.set_credit_window(window);
  receiver.add_credit(window);
}

// Exactly `total` credit in all, at most `window` outstanding, topped up at half.
function pullN(receiver, total, window) {
  let granted = Math.min(total, window), got = 0;
  receiver.add_credit(granted);
  receiver.on('message', () => {
    got++;
    if (granted < total && granted - got <= window / 2) {
      const more = Math.min(total - granted, window - (granted - got));
      granted += more;
      receiver.add_credit(more);
    }
  });
}

function sessions(count, perSession) {
  // `count` connections; link k of a connection goes into its session floor(k / perSession)
  const conns = [];
  for (let i = 0; i < count; i++) conns.push({ conn: connect(), sessions: [], links: 0 });
  return (i) => {
    const c = conns[i % count];
    const s = Math.floor(c.links++ / perSession);
    if (!c.sessions[s]) { c.sessions[s] = c.conn.create_session(); c.sessions[s].begin(); }
    return c.sessions[s];
  };
}

function queues() {
  const Q = opts.queues, N = opts.count, C = Math.min(Q, opts.connections || 4);
  const perSession = opts.links_per_session || 200, credit = opts.credit || 200;
  const body = Buffer.alloc(opts.size, 120);
  const total = Q * N;
  let recvOpen = 0, sendReady = 0, received = 0, accepted = 0;
  const receivers = [], senders = [], sent = new Array(Q).fill(0);
  status = () => ({ received, accepted, recvOpen, sendReady });
  const check = () => {
    progress();
    if (received >= total && accepted >= total) finish({ messages: total, received });
  };
  const pump = (q) => {
    const s = senders[q];
    while (sent[q] < N && s.sendable()) { s.send({ body }); sent[q]++; }
  };
  const start = () => {
    begin();
    for (const r of receivers) giveCredit(r, credit);
    for (let q = 0; q < Q; q++) pump(q);
  };
  const openSenders = () => {
    const producer = sessions(C, perSession);
    for (let q = 0; q < Q; q++) {
      const s = producer(q).open_sender({
        target: { address: `${QUEUES}${opts.prefix}-${q}` } });
      senders.push(s);
      let ready = false;
      s.on('sendable', () => {
        if (!ready) { ready = true; progress(); if (++sendReady === Q) start(); return; }
        if (win.start) pump(q);
      });
      s.on('accepted', () => { accepted++; check(); });
      s.on('rejected', (ctx) => finish({ error: 'rejected', detail: String(ctx.delivery) }));
    }
  };
  const consumer = sessions(C, perSession);
  for (let q = 0; q < Q; q++) {
    const r = consumer(q).open_receiver({ source: { address: `${QUEUES}${opts.prefix}-${q}` },
                                          credit_window: 0, autoaccept: true });
    receivers.push(r);
    r.on('message', () => { received++; check(); });
    r.on('receiver_open', () => { progress(); if (++recvOpen === Q) openSenders(); });
  }
}

function publish() {
  const N = opts.count, body = Buffer.alloc(opts.size, 120);
  let sent = 0, accepted = 0;
  status = () => ({ sent, accepted });
  const s = connect().open_sender({ target: { address: opts.address } });
  s.on('sendable', () => {
    if (!win.start) begin();
    while (sent < N && s.sendable()) { s.send({ body }); sent++; }
  });
  s.on('accepted', () => { progress(); if (++accepted === N) finish({ messages: N }); });
  s.on('rejected', (ctx) => finish({ error: 'rejected', sent, accepted }));
  s.on('released', () => finish({ error: 'released', sent, accepted }));
}

function drain() {
  const N = opts.count;
  let received = 0;
  status = () => ({ received });
  const r = connect().open_receiver({ source: { address: opts.address }, credit_window: 0,
                                      autoaccept: true });
  r.on('receiver_open', () => { begin(); pullN(r, N, opts.credit || 1000); });
  r.on('message', () => { progress(); if (++received === N) finish({ messages: N }); });
}

function fanout() {
  const K = opts.consumers, N = opts.count, C = Math.min(K, opts.connections || K);
  const total = K * N, receivers = [];
  let open = 0, received = 0;
  status = () => ({ open, received });
  const session = sessions(C, opts.links_per_session || 200);
  for (let k = 0; k < K; k++) {
    const r = session(k).open_receiver({
      source: {
        address: `/queues/${opts.stream}`,
        filter: { 'rabbitmq:stream-offset-spec':
          rhea.types.wrap_described('first', 'rabbitmq:stream-offset-spec') },
      },
      credit_window: 0, autoaccept: true,
    });
    receivers.push(r);
    r.on('message', () => { progress(); if (++received === total) finish({ messages: total }); });
    r.on('receiver_open', () => {
      progress();
      if (++open === K) { begin(); for (const x of receivers) pullN(x, N, opts.credit || 1000); }
    });
  }
}

({ queues, publish, drain, fanout })[opts.mode]();
