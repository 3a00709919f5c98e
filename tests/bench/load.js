// Load generator for the broker benchmark (driven by bench_broker.py).
// Usage: node load.js '<json options>'  → prints one JSON result line.
// Modes:
//   throughput: P producers → P consumers on P queues, N messages each.
//   latency:    one producer at a fixed rate, one consumer; latency percentiles.
//   idle:       C connections, each with a session and a receiver; holds them open
//               (`open_spread_ms`: connection i opens at i * open_spread_ms / C ms).
//   stream:     one consumer per process reading N messages from `first` of a stream.
//   route:      one producer on any target (e.g. /exchanges/<x>/<key>) → one consumer per
//               queue in `queues` (each its own connection), N messages published; every
//               queue must get all N.  Queues in `watch` must get nothing (strays are
//               counted).  With `cpu_pid`, reports that process's utime+stime clock ticks
//               over the sending window.  Gives up after `stall_s` seconds without progress.
'use strict';
const rhea = require('rhea');
const opts = JSON.parse(process.argv[2]);
// where a queue's address starts: this broker's `/queues/NAME`, or RabbitMQ 3.10's
// v1 `/queue/NAME` (which declares the queue on attach)
const QUEUES = opts.address_prefix || '/queues/';

function connect(container) {
  // tls and wss trust the CA file in `opts.ca` (bench_tls.py makes one); `username`
  // and `password` (SASL PLAIN) for a broker that wants them (RabbitMQ)
  const ca = opts.ca ? [require('fs').readFileSync(opts.ca)] : undefined;
  const sasl = opts.username ? { username: opts.username, password: opts.password } : {};
  if (opts.transport === 'ws' || opts.transport === 'wss') {
    const ws = container.websocket_connect(require('ws'));
    const url = opts.transport === 'wss' ? opts.wss_url : opts.ws_url;
    return container.connect({
      connection_details: ws(url, ['amqp'], ca ? { ca } : {}),
      reconnect: false, idle_time_out: opts.idle_time_out || 0, ...sasl,
    });
  }
  if (opts.transport === 'tls') {
    return container.connect({ host: 'localhost', port: opts.tls_port, transport: 'tls', ca,
                               reconnect: false, idle_time_out: 0, tcp_no_delay: true });
  }
  // rhea turns Nagle off only on connections that open a receiver; a publisher's
  // connection would otherwise hold small writes back (latency runs show it)
  return container.connect({ host: opts.host, port: opts.port, reconnect: false,
                             idle_time_out: opts.idle_time_out || 0, tcp_no_delay: true,
                             ...sasl });
}

function done(result) {
  process.stdout.write(JSON.stringify(result) + '\n');
  process.exit(0);
}

function throughput() {
  const P = opts.pairs, N = opts.count, presettled = !!opts.presettled;
  const body = Buffer.alloc(opts.size, 120);
  let received = 0, start = 0;
  const total = P * N;
  for (let p = 0; p < P; p++) {
    const address = `${QUEUES}${opts.prefix}-${p}`;
    const rc = connect(rhea.create_container());
    const receiver = rc.open_receiver({
      // autoaccept also settles presettled deliveries locally, which frees rhea's session window
      source: { address }, credit_window: 500, autoaccept: true,
      snd_settle_mode: presettled ? 1 : 0,
    });
    receiver.on('message', () => {
      if (++received === total) done({ seconds: (Date.now() - start) / 1000, messages: total });
    });
    receiver.on('receiver_open', () => {
      const sc = connect(rhea.create_container());
      const sender = sc.open_sender({ target: { address }, snd_settle_mode: presettled ? 1 : 0 });
      let sent = 0;
      const pump = () => {
        if (!start) start = Date.now();
        while (sent < N && sender.sendable()) { sender.send({ body }); sent++; }
      };
      sender.on('sendable', pump);
    });
  }
}

function latency() {
  const N = opts.count, rate = opts.rate, address = `${QUEUES}${opts.prefix}`;
  const lat = [];
  const startMs = Date.now();
  const body = Buffer.alloc(opts.size, 120);
  const rc = connect(rhea.create_container());
  const receiver = rc.open_receiver({ source: { address }, credit_window: 500 });
  receiver.on('message', (ctx) => {
    const sentAt = ctx.message.application_properties.t;
    lat.push(Number(process.hrtime.bigint() - BigInt(sentAt)) / 1e6);
    if (lat.length === N) {
      lat.sort((a, b) => a - b);
      const q = (f) => lat[Math.min(lat.length - 1, Math.floor(f * lat.length))];
      done({ messages: N, seconds: (Date.now() - startMs) / 1000,
             p50_ms: q(0.5), p99_ms: q(0.99), max_ms: lat[lat.length - 1] });
    }
  });
  receiver.on('receiver_open', () => {
    const sc = connect(rhea.create_container());
    const sender = sc.open_sender({ target: { address } });
    sender.on('sendable', () => {
      if (sender._started) return;
      sender._started = true;
      let sent = 0;
      const t0 = process.hrtime.bigint();
      const tick = () => {  // keep to the schedule: send what is due, then sleep 1 ms
        const due = Math.min(N, Math.floor(Number(process.hrtime.bigint() - t0) / 1e9 * rate) + 1);
        while (sent < due && sender.sendable()) {
          sender.send({ body, application_properties: { t: process.hrtime.bigint().toString() } });
          sent++;
        }
        if (sent < N) setTimeout(tick, 1);
      };
      tick();
    });
  });
}

function idle() {
  const C = opts.connections;
  const started = Date.now();
  let open = 0;
  const container = rhea.create_container();
  const spread = opts.open_spread_ms || 0;  // connection i opens at i * spread / C ms
  const one = () => {
    const c = connect(container);
    const r = c.open_receiver({ source: { address: `${QUEUES}${opts.prefix}` },
                                credit_window: 10 });
    r.on('receiver_open', () => {
      if (++open === C) {  // bench reads RSS now
        process.stdout.write(JSON.stringify({ open, seconds: (Date.now() - started) / 1000 }) +
                             '\n');
      }
    });
  };
  for (let i = 0; i < C; i++) {
    if (spread) setTimeout(one, i * spread / C); else one();
  }
  process.stdin.on('data', () => process.exit(0));  // hold until told to stop
}

function stream() {
  const N = opts.count;
  let received = 0;
  const start = Date.now();
  const c = connect(rhea.create_container());
  const r = c.open_receiver({
    source: {
      address: `/queues/${opts.stream}`,
      filter: { 'rabbitmq:stream-offset-spec':
        rhea.types.wrap_described('first', 'rabbitmq:stream-offset-spec') },
    },
    credit_window: 1000,
  });
  r.on('message', () => {
    if (++received === N) done({ seconds: (Date.now() - start) / 1000, messages: N });
  });
}

function cpuTicks(pid) {
  if (!pid) return 0;
  const stat = require('fs').readFileSync(`/proc/${pid}/stat`, 'utf8');
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return Number(fields[11]) + Number(fields[12]);  // utime, stime (fields 14 and 15)
}

function route() {
  const N = opts.count, queues = opts.queues, watch = opts.watch || [];
  const body = Buffer.alloc(opts.size, 120);
  const perQueue = queues.map(() => 0);
  const outcomes = { accepted: 0, released: 0, rejected: 0, modified: 0 };
  let strays = 0, delivered = 0, settled = 0, opened = 0, sent = 0;
  let start = 0, ticks0 = 0, seconds = 0, ticks = 0, finished = false;
  let lastProgress = Date.now();
  const result = (extra) => ({
    messages: N, delivered, seconds, cpu_ticks: ticks, per_queue_min: Math.min(...perQueue),
    per_queue_max: Math.max(...perQueue), strays, ...outcomes, ...extra,
  });
  const complete = () => perQueue.every((n) => n >= N) && settled === N;
  const check = () => {
    lastProgress = Date.now();
    if (finished || !complete()) return;
    finished = true;
    seconds = (Date.now() - start) / 1000;
    ticks = cpuTicks(opts.cpu_pid) - ticks0;
    // a message routed to a watched queue arrives with the others: a short grace catches it
    setTimeout(() => done(result({})), watch.length ? 200 : 0);
  };
  const stall = setInterval(() => {
    if (!finished && Date.now() - lastProgress > (opts.stall_s || 10) * 1000) {
      clearInterval(stall);
      done(result({ stalled: true, sent, per_queue: perQueue }));
    }
  }, 500);
  const startSender = () => {
    const sc = connect(rhea.create_container());
    // `to`: the anonymous relay, each message addressed by `to` with {i} → its index
    const to = opts.to;
    const sender = sc.open_sender({ target: { address: to ? null : opts.target } });
    for (const outcome of Object.keys(outcomes)) {
      sender.on(outcome, () => { outcomes[outcome]++; settled++; check(); });
    }
    sender.on('sendable', () => {
      if (!start) { start = Date.now(); ticks0 = cpuTicks(opts.cpu_pid); }
      while (sent < N && sender.sendable()) {
        sender.send(to ? { body, to: to.replace('{i}', String(sent)) } : { body });
        sent++;
      }
    });
    sender.on('sender_error', (ctx) => done(result({ error: String(ctx.sender.error) })));
  };
  const opening = () => { if (++opened === queues.length + (watch.length ? 1 : 0)) startSender(); };
  queues.forEach((name, i) => {
    const rc = connect(rhea.create_container());
    const receiver = rc.open_receiver({
      source: { address: `/queues/${encodeURIComponent(name)}` }, credit_window: 500,
      autoaccept: true,
    });
    receiver.on('message', () => { perQueue[i]++; delivered++; check(); });
    receiver.on('receiver_open', opening);
  });
  if (watch.length) {
    const wc = connect(rhea.create_container());
    let open = 0;
    for (const name of watch) {
      const r = wc.open_receiver({ source: { address: `/queues/${encodeURIComponent(name)}` },
                                   credit_window: 100, autoaccept: true });
      r.on('message', () => { strays++; });
      r.on('receiver_open', () => { if (++open === watch.length) opening(); });
    }
  }
}

({ throughput, latency, idle, stream, route })[opts.mode]();
