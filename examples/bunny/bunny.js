// AMQP bunny: a shared drawing on a stream, with rhea's browser build.
//
// Each stroke goes out in chunks (every FLUSH_MS while drawing, and on release)
// as AMQP messages to the stream; each chunk's body is a map
//   {stroke: "tab-n", seq: 0, color: "#rrggbb", width: 8, points: [x0, y0, x1, y1, ...]}
// in canvas pixels (960 x 600), a chunk starting where the previous one ended.
// Every tab reads the stream from `first` (source filter
// rabbitmq:stream-offset-spec), so it replays the drawing and then follows live
// strokes.  Deliveries carry `x-stream-offset`; after a reconnect the tab
// resumes from the next offset instead of replaying everything again.
// The WebSocket is wss:// when config.json names a `wss_port` (serve.py
// --tls-cert) or the page itself came over https, ws:// otherwise; ?ws=URL wins.
// Both links desire `amqpws:reattach` (?reattach=0: not): through
// `amqpws-broker gateway`, a restart of the broker behind it then goes
// unnoticed here, the gateway attaching the links again and the stream read
// on from just past the last offset; a broker that does not offer it simply
// ends the links, and the tab reconnects.
(function () {
  'use strict';
  const rhea = require('rhea');
  const OFFSET_SPEC = 'rabbitmq:stream-offset-spec';
  const REATTACH = 'amqpws:reattach';
  const FLUSH_MS = 40;
  const RECONNECT_MS = 1000;

  const ink = document.getElementById('ink');
  const ctx = ink.getContext('2d', { willReadFrequently: true });
  const statusEl = document.getElementById('status');
  const tab = Math.random().toString(36).slice(2, 8);
  document.getElementById('tab').textContent = tab;

  // State, exposed for curious people and for the tests.
  const state = (window.bunny = {
    tab,
    url: null, // the WebSocket URL the tab connects to
    connected: false,
    ready: false, // connected, and both links attached
    connects: 0, // connections opened (more than one: it reconnected)
    reattach: false, // both links will be re-attached by a gateway (it offered amqpws:reattach)
    lastOffset: -1, // highest x-stream-offset seen
    received: 0, // stroke chunks taken from the stream
    published: 0, // own chunks the broker accepted
    mine: [], // ids of the strokes drawn in this tab
    sent: {}, // own stroke id -> points published so far
    strokes: {}, // stroke id -> {tab, color, width, points, chunks}
    errors: [],
    pixelAt(x, y) {
      return Array.from(ctx.getImageData(x, y, 1, 1).data);
    },
  });

  let color = '#222222';
  let width = 8;
  let address = '/queues/bunny';
  let url = null;
  let sender = null;
  let generation = 0;
  let reattach = true; // ?reattach=0: the links do not ask for it
  const outbox = [];

  // -- drawing -------------------------------------------------------------------

  function validColor(c) {
    return typeof c === 'string' && /^#[0-9a-fA-F]{6}$/.test(c) ? c : '#222222';
  }

  function drawChunk({ color: c, width: w, points }) {
    ctx.strokeStyle = ctx.fillStyle = validColor(c);
    ctx.lineWidth = Math.min(Math.max(Number(w) || 1, 1), 40);
    ctx.lineCap = 'round';
    ctx.lineJoin = 'round';
    ctx.beginPath();
    if (points.length === 2) {
      ctx.arc(points[0], points[1], ctx.lineWidth / 2, 0, 2 * Math.PI);
      ctx.fill();
      return;
    }
    ctx.moveTo(points[0], points[1]);
    for (let i = 2; i + 1 < points.length; i += 2) ctx.lineTo(points[i], points[i + 1]);
    ctx.stroke();
  }

  function drawGuide() {
    const g = document.getElementById('guide').getContext('2d');
    g.strokeStyle = '#d9d2c5';
    g.fillStyle = '#f7f3ec';
    g.lineWidth = 4;
    g.setLineDash([10, 8]);
    const shape = (f) => { g.beginPath(); f(); g.fill(); g.stroke(); };
    shape(() => g.ellipse(290, 150, 34, 105, -0.25, 0, 2 * Math.PI)); // ears
    shape(() => g.ellipse(372, 140, 34, 105, 0.18, 0, 2 * Math.PI));
    shape(() => g.ellipse(760, 395, 42, 42, 0, 0, 2 * Math.PI)); // tail
    shape(() => g.ellipse(540, 395, 225, 150, 0, 0, 2 * Math.PI)); // body
    shape(() => g.ellipse(340, 300, 105, 95, 0, 0, 2 * Math.PI)); // head
    shape(() => g.ellipse(420, 535, 60, 24, 0, 0, 2 * Math.PI)); // feet
    shape(() => g.ellipse(640, 540, 60, 24, 0, 0, 2 * Math.PI));
    g.setLineDash([]);
    g.fillStyle = '#d9d2c5';
    g.beginPath(); g.arc(300, 285, 9, 0, 2 * Math.PI); g.fill(); // eye
    g.beginPath(); g.arc(243, 318, 7, 0, 2 * Math.PI); g.fill(); // nose
  }

  // -- messaging -----------------------------------------------------------------

  function setStatus(text, kind) {
    statusEl.textContent = text;
    statusEl.className = `status ${kind}`;
  }

  function updateCounts() {
    const n = Object.keys(state.strokes).length;
    document.getElementById('counts').textContent = `${n} stroke${n === 1 ? '' : 's'}`;
    document.getElementById('offset').textContent =
      state.lastOffset < 0 ? 'no messages yet' : `stream offset ${state.lastOffset}`;
  }

  function flushOutbox() {
    while (sender && outbox.length && sender.sendable()) sender.send(outbox.shift());
  }

  function publish(chunk) {
    state.sent[chunk.stroke] = (state.sent[chunk.stroke] || 0) + chunk.points.length / 2;
    outbox.push({
      subject: 'stroke',
      content_type: 'application/x-bunny-stroke',
      application_properties: { tab, stroke: chunk.stroke },
      body: chunk,
    });
    flushOutbox();
  }

  function onMessage(m) {
    const ann = m.message_annotations || {};
    const offset = Number(ann['x-stream-offset']);
    if (!Number.isNaN(offset)) {
      if (offset <= state.lastOffset) return; // already seen before a reconnect
      state.lastOffset = offset;
    }
    const b = m.body;
    if (b && typeof b === 'object' && typeof b.stroke === 'string' && Array.isArray(b.points)
        && b.points.length >= 2) {
      const from = (m.application_properties || {}).tab;
      const s = state.strokes[b.stroke]
        || (state.strokes[b.stroke] = { tab: from, color: b.color, width: b.width, points: 0, chunks: 0 });
      s.points += b.points.length / 2;
      s.chunks += 1;
      state.received += 1;
      if (from !== tab) drawChunk(b); // our own strokes were drawn as they were made
    }
    updateCounts();
  }

  function connect() {
    const mine = ++generation;
    state.connects += 1;
    setStatus(state.lastOffset < 0 ? 'connecting…' : 'reconnecting…', 'connecting');
    const container = rhea.create_container({ id: `bunny-${tab}` });
    const ws = container.websocket_connect(WebSocket);
    const conn = container.connect({
      connection_details: ws(url, ['amqp']),
      reconnect: false,
      username: 'anonymous', // SASL ANONYMOUS
    });
    // From the start of the stream, or just past what we already have.
    const start = state.lastOffset < 0 ? 'first' : rhea.types.wrap_ulong(state.lastOffset + 1);
    let receiverOpen = false;
    let senderOpen = false;
    const asks = reattach ? { desired_capabilities: REATTACH } : {};
    const offered = (link) => [].concat((link.remote.attach || {}).offered_capabilities || [])
      .map(String).includes(REATTACH);
    const readiness = () => {
      state.ready = state.connected && receiverOpen && senderOpen;
      if (state.ready) {
        state.reattach = offered(receiver) && offered(s);
        setStatus('connected', 'connected');
      }
    };

    conn.on('connection_open', () => {
      state.connected = true;
      readiness();
    });
    const receiver = conn.open_receiver({
      source: { address, filter: { [OFFSET_SPEC]: rhea.types.wrap_described(start, OFFSET_SPEC) } },
      credit_window: 500,
      ...asks,
    });
    receiver.on('receiver_open', () => { receiverOpen = true; readiness(); });
    receiver.on('message', (context) => onMessage(context.message));
    const s = conn.open_sender({ target: { address }, ...asks });
    s.on('sender_open', () => { senderOpen = true; sender = s; readiness(); flushOutbox(); });
    s.on('sendable', flushOutbox);
    s.on('accepted', () => { state.published += 1; });
    s.on('rejected', (context) => state.errors.push(`rejected: ${JSON.stringify(context.delivery.remote_state)}`));

    const fail = (what) => (context) => {
      // rhea puts a link's error on the link (its remote detach), a connection's on it
      const err = context && (context.error || (context.receiver && context.receiver.error) ||
        (context.sender && context.sender.error) || (context.connection && context.connection.error));
      if (err) state.errors.push(`${what}: ${err.description || err.message || err}`);
    };
    // A link ended with an error while the connection stays (a gateway whose
    // upstream broker went away ends the links with amqp:connection:forced):
    // start again on a new connection, from just past the last stroke we have.
    const restart = (what) => (context) => {
      fail(what)(context);
      if (mine !== generation) return;
      generation += 1; // this connection's later events no longer count
      state.connected = state.ready = false;
      sender = null;
      setStatus(`${what} link lost, reconnecting…`, 'error');
      try { conn.close(); } catch (e) { /* already closing */ }
      setTimeout(connect, RECONNECT_MS);
    };
    conn.on('connection_error', fail('connection'));
    conn.on('receiver_error', restart('receiver'));
    conn.on('sender_error', restart('sender'));
    container.on('error', (err) => state.errors.push(`error: ${err}`));
    conn.on('disconnected', () => {
      if (mine !== generation) return;
      state.connected = state.ready = false;
      sender = null;
      setStatus('disconnected, retrying…', 'error');
      setTimeout(connect, RECONNECT_MS);
    });
  }

  // -- input ---------------------------------------------------------------------

  let current = null; // the stroke being drawn: {id, seq, pending: [x, y, ...], last: [x, y]}
  let timer = null;
  let strokeCount = 0;

  function pos(e) {
    const r = ink.getBoundingClientRect();
    const x = Math.round(((e.clientX - r.left) * ink.width) / r.width);
    const y = Math.round(((e.clientY - r.top) * ink.height) / r.height);
    return [Math.min(Math.max(x, 0), ink.width), Math.min(Math.max(y, 0), ink.height)];
  }

  function flushStroke() {
    if (timer) { clearTimeout(timer); timer = null; }
    if (!current) return;
    const first = current.seq === 0;
    if (current.pending.length >= 4 || (first && current.pending.length === 2)) {
      publish({ stroke: current.id, seq: current.seq++, color, width, points: current.pending });
      current.pending = current.last.slice();
    }
  }

  ink.addEventListener('pointerdown', (e) => {
    e.preventDefault();
    ink.setPointerCapture(e.pointerId);
    const p = pos(e);
    current = { id: `${tab}-${++strokeCount}`, seq: 0, pending: p.slice(), last: p };
    state.mine.push(current.id);
    drawChunk({ color, width, points: p });
  });
  ink.addEventListener('pointermove', (e) => {
    if (!current) return;
    const p = pos(e);
    if (p[0] === current.last[0] && p[1] === current.last[1]) return;
    drawChunk({ color, width, points: [...current.last, ...p] });
    current.pending.push(...p);
    current.last = p;
    if (!timer) timer = setTimeout(flushStroke, FLUSH_MS);
  });
  const end = () => {
    if (!current) return;
    flushStroke();
    current = null;
  };
  ink.addEventListener('pointerup', end);
  ink.addEventListener('pointercancel', end);

  for (const el of document.querySelectorAll('.swatch')) {
    el.addEventListener('click', () => {
      color = el.dataset.color;
      document.querySelectorAll('.swatch').forEach((s) => s.classList.toggle('selected', s === el));
    });
  }
  for (const el of document.querySelectorAll('.width')) {
    el.addEventListener('click', () => {
      width = Number(el.dataset.width);
      document.querySelectorAll('.width').forEach((s) => s.classList.toggle('selected', s === el));
    });
  }

  // -- start ---------------------------------------------------------------------

  async function start() {
    drawGuide();
    updateCounts();
    const params = new URLSearchParams(location.search);
    let config = {};
    try {
      const res = await fetch('config.json', { cache: 'no-store' });
      if (res.ok) config = await res.json();
    } catch (err) {
      // served without serve.py: fall back to the defaults below
    }
    address = params.get('address') || config.address || address;
    reattach = params.get('reattach') !== '0';
    const host = location.hostname || '127.0.0.1';
    const path = config.ws_path || '/ws';
    const secure = Boolean(config.wss_port) || location.protocol === 'https:';
    url = params.get('ws')
      || (secure ? `wss://${host}:${config.wss_port || 15679}${path}`
                 : `ws://${host}:${config.ws_port || 15678}${path}`);
    state.url = url;
    document.getElementById('address').textContent = address;
    connect();
  }

  start();
})();
