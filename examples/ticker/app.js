// A live price board on a last-value queue, with rhea's browser build.
//
// serve.py declares the queue `ticker` with x-last-value-key=symbol: the broker
// keeps only the newest message per value of the application property
// `symbol`, at the tail, and drops the one it replaces.  So the queue always
// holds the board: one message per symbol, its latest price.
//
// Every tab browses the queue: its receiver's source asks
// `distribution_mode: 'copy'`.  The broker answers `copy` in its attach, sends
// what is queued (the board, at once), then every later message, each settled,
// and takes nothing: the queue's depth stays one message per symbol however
// many tabs watch it, and a tab opened at any time starts with the whole board.
//
// The feed is in the page, so nothing but the broker is needed: "Start feed"
// opens a sender on the same queue and publishes a random-walk price for one or
// two symbols every FEED_INTERVAL_MS (all of them on the first tick), going on
// from the newest price it knows (the board's, or its own last one), so any
// tab can take over from another.  A message: application property `symbol`;
// properties message_id `<tab>-<seq>`, subject the symbol, creation_time; body
// an AMQP map {symbol, price, prev (doubles), from (the tab), seq}.
//
// `window.ticker` holds the tab's state (the board in `prices`, counters, the
// distribution mode the broker answered) and `startFeed()`, `stopFeed()`,
// `snapshot()` for the console and the tests.  `?ws=URL` overrides the
// WebSocket URL, `?feed=1` starts the feed once connected.
(function () {
  'use strict';
  const rhea = require('rhea');
  // Made-up symbols and their opening prices.
  const SYMBOLS = { AMQP: 101.25, BNNY: 42.1, QPID: 230.0, RHEA: 17.8, TRIO: 63.4, WSKT: 8.95 };
  const FEED_INTERVAL_MS = 250;
  const VOLATILITY = 0.004; // one tick's standard deviation, relative
  const RECONNECT_MS = 1000;

  const $ = (id) => document.getElementById(id);
  const tab = Math.random().toString(36).slice(2, 8);
  $('tab').textContent = tab;

  let address = '/queues/ticker';
  let url = null;
  let generation = 0;
  let session = null; // {conn, sender} of the live connection; null while down
  let seq = 0;
  let timer = null;
  let needAll = false; // the feed's next tick publishes every symbol
  const lastSent = {}; // symbol -> {price, time} this tab published

  const state = (window.ticker = {
    tab,
    url: null,
    address,
    connected: false,
    ready: false, // connected and browsing
    mode: null, // the distribution mode in the broker's attach: 'copy' when browsing
    received: 0, // messages this tab got from the queue
    ignored: 0, // messages without a symbol and a price
    prices: {}, // symbol -> {symbol, price, prev, time, from, seq, id, updates}
    feed: { running: false, published: 0, accepted: 0, refused: 0, unsettled: 0 },
    errors: [],
  });

  const round2 = (x) => Math.round(x * 100) / 100;
  const pad = (n, w) => String(n).padStart(w || 2, '0');
  const clock = (ms) => {
    const d = new Date(ms);
    return `${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}.${pad(d.getMilliseconds(), 3)}`;
  };
  // A standard normal deviate (Box-Muller).
  const gauss = () => Math.sqrt(-2 * Math.log(1 - Math.random())) * Math.cos(2 * Math.PI * Math.random());

  function setStatus(text, kind) {
    const el = $('status');
    el.textContent = text;
    el.className = `status ${kind}`;
  }

  function linkError(link, what) {
    const err = link && (link.error || (link.remote && link.remote.detach && link.remote.detach.error));
    return `${what}: ${err ? `${err.condition || ''} ${err.description || ''}`.trim() : 'closed'}`;
  }

  // -- the connection ------------------------------------------------------------

  function connect() {
    const mine = ++generation;
    setStatus('connecting…', 'connecting');
    const container = rhea.create_container({ id: `ticker-${tab}` });
    const ws = container.websocket_connect(WebSocket);
    const conn = container.connect({
      connection_details: ws(url, ['amqp']),
      reconnect: false,
      username: 'anonymous', // SASL ANONYMOUS
    });
    const s = { conn, sender: null };
    session = s;
    conn.on('connection_open', () => { state.connected = true; });

    // The browser: distribution-mode copy.  Its deliveries come settled; it
    // never accepts anything (an outcome on a copy would change nothing anyway).
    const browser = conn.open_receiver({
      source: { address, distribution_mode: 'copy' },
      credit_window: 200,
      autoaccept: false,
    });
    browser.once('receiver_open', () => {
      const source = browser.remote.attach && browser.remote.attach.source;
      const mode = source && source.distribution_mode;
      state.mode = mode === undefined || mode === null ? 'move' : String(mode);
      state.ready = true;
      if (state.mode === 'copy') setStatus('connected', 'connected');
      else setStatus(`the broker answered ${state.mode}: this tab takes what it shows`, 'error');
      if (state.feed.running) openSender(s); // a reconnect: the feed goes on
      renderMeta();
      renderFeed();
    });
    browser.on('message', (context) => {
      if (mine !== generation) return;
      show(context.message);
    });
    browser.on('receiver_error', () => state.errors.push(linkError(browser, 'browser')));

    const fail = (what) => (context) => {
      const err = context && (context.error || (context.connection && context.connection.error));
      if (err) state.errors.push(`${what}: ${err.description || err.message || err}`);
    };
    conn.on('connection_error', fail('connection'));
    container.on('error', (err) => state.errors.push(`error: ${err}`));
    conn.on('disconnected', () => {
      if (mine !== generation) return;
      session = null;
      state.connected = state.ready = false;
      state.mode = null;
      state.feed.unsettled = 0; // their outcomes went with the connection
      setStatus('disconnected, retrying…', 'error');
      renderMeta();
      renderFeed();
      setTimeout(connect, RECONNECT_MS);
    });
  }

  // -- the board ---------------------------------------------------------------------

  function show(m) {
    const props = m.application_properties || {};
    const body = m.body || {};
    const symbol = props.symbol;
    if (typeof symbol !== 'string' || typeof body.price !== 'number') {
      state.ignored++;
      return;
    }
    state.received++;
    const old = state.prices[symbol];
    const id = m.message_id === undefined ? null : String(m.message_id);
    const entry = {
      symbol,
      price: body.price,
      prev: typeof body.prev === 'number' ? body.prev : body.price,
      time: m.creation_time instanceof Date ? m.creation_time.getTime() : Date.now(),
      from: body.from === undefined ? null : String(body.from),
      seq: body.seq === undefined ? null : Number(body.seq),
      id,
      updates: (old ? old.updates : 0) + 1,
    };
    const again = Boolean(old && id !== null && old.id === id); // the same message, after a reconnect
    if (again) entry.updates = old.updates;
    state.prices[symbol] = entry;
    renderRow(entry, !again);
    renderMeta();
  }

  function rowFor(symbol) {
    const rows = $('rows');
    let row = rows.querySelector(`tr[data-symbol="${symbol}"]`);
    if (row) return row;
    row = document.createElement('tr');
    row.dataset.symbol = symbol;
    for (const field of ['symbol', 'price', 'change', 'pct', 'time', 'from']) {
      const cell = document.createElement(field === 'symbol' ? 'th' : 'td');
      if (field === 'symbol') cell.scope = 'row';
      cell.dataset.field = field;
      if (['price', 'change', 'pct'].includes(field)) cell.className = 'num';
      row.append(cell);
    }
    const after = [...rows.children].find((r) => r.dataset.symbol > symbol);
    rows.insertBefore(row, after || null);
    $('empty').hidden = true;
    return row;
  }

  function renderRow(e, flash) {
    const row = rowFor(e.symbol);
    const change = round2(e.price - e.prev);
    const pct = e.prev ? (100 * (e.price - e.prev)) / e.prev : 0;
    const dir = change > 0 ? 'up' : change < 0 ? 'down' : 'flat';
    const cell = (field) => row.querySelector(`[data-field="${field}"]`);
    cell('symbol').textContent = e.symbol;
    cell('price').textContent = e.price.toFixed(2);
    cell('change').textContent = `${change > 0 ? '▲ +' : change < 0 ? '▼ −' : ''}${Math.abs(change).toFixed(2)}`;
    cell('pct').textContent = `${pct > 0 ? '+' : pct < 0 ? '−' : ''}${Math.abs(pct).toFixed(2)}%`;
    cell('time').textContent = clock(e.time);
    cell('from').textContent = e.from || '';
    row.classList.remove('up', 'down', 'flat');
    row.classList.add(dir);
    row.dataset.id = e.id || '';
    if (flash) {
      row.classList.remove('flash-up', 'flash-down', 'flash-flat');
      void row.offsetWidth; // restart the animation
      row.classList.add(`flash-${dir}`);
    }
  }

  function renderMeta() {
    $('received').textContent = String(state.received);
    $('mode').textContent = state.mode ? `distribution-mode ${state.mode}` : '…';
    $('mode').className = state.mode && state.mode !== 'copy' ? 'bad' : '';
  }

  // -- the feed ----------------------------------------------------------------------

  function openSender(s) {
    if (s.sender) return;
    const sender = s.conn.open_sender({ target: { address } });
    s.sender = sender;
    const settled = (ok) => () => {
      state.feed.unsettled = Math.max(0, state.feed.unsettled - 1);
      if (ok) state.feed.accepted++;
      else state.feed.refused++;
      renderFeed();
    };
    sender.on('accepted', settled(true));
    for (const outcome of ['released', 'rejected', 'modified']) sender.on(outcome, settled(false));
    sender.on('sender_error', () => state.errors.push(linkError(sender, 'feed')));
  }

  // The newest price this tab knows for a symbol: on the board or its own last one.
  function lastPrice(symbol) {
    const board = state.prices[symbol];
    const mine = lastSent[symbol];
    if (board && (!mine || board.time >= mine.time)) return board.price;
    return mine ? mine.price : SYMBOLS[symbol];
  }

  function publish(sender, symbol) {
    const prev = lastPrice(symbol);
    const price = Math.max(0.01, round2(prev * (1 + VOLATILITY * gauss())));
    const n = ++seq;
    const now = new Date();
    sender.send({
      message_id: `${tab}-${n}`,
      subject: symbol,
      creation_time: now,
      application_properties: { symbol },
      body: {
        symbol,
        price: rhea.types.wrap_double(price),
        prev: rhea.types.wrap_double(prev),
        from: tab,
        seq: n,
      },
    });
    lastSent[symbol] = { price, time: now.getTime() };
    state.feed.published++;
    state.feed.unsettled++;
  }

  function tick() {
    const sender = session && session.sender;
    if (!sender || !sender.sendable()) return; // attaching, or no credit yet: next tick
    const names = Object.keys(SYMBOLS);
    let todo = names;
    if (!needAll) {
      todo = [names[Math.floor(Math.random() * names.length)]];
      if (Math.random() < 0.4) todo.push(names[Math.floor(Math.random() * names.length)]);
    }
    for (const symbol of todo) {
      if (!sender.sendable()) return;
      publish(sender, symbol);
    }
    needAll = false;
    renderFeed();
  }

  function startFeed() {
    if (state.feed.running) return;
    state.feed.running = true;
    needAll = true;
    if (session && state.ready) openSender(session);
    timer = setInterval(tick, FEED_INTERVAL_MS);
    tick();
    renderFeed();
  }

  function stopFeed() {
    state.feed.running = false;
    clearInterval(timer);
    timer = null;
    renderFeed();
  }

  function renderFeed() {
    const f = state.feed;
    const button = $('feed');
    button.textContent = f.running ? 'Pause feed' : 'Start feed';
    button.disabled = !state.ready && !f.running;
    const status = $('feed-status');
    status.textContent = f.running ? (state.ready ? 'publishing from this tab' : 'waiting for the broker') : 'paused';
    status.className = `status ${f.running ? 'connected' : 'idle'}`;
    $('feed-counts').textContent = f.published
      ? `${f.published} published, ${f.accepted} accepted` + (f.refused ? `, ${f.refused} refused` : '')
      : '';
  }

  /** The board as plain data, by symbol (for the tests and the console). */
  function snapshot() {
    const out = {};
    for (const symbol of Object.keys(state.prices).sort()) {
      const { price, prev, time, from, seq: n, id } = state.prices[symbol];
      out[symbol] = { price, prev, time, from, seq: n, id };
    }
    return out;
  }

  $('feed').addEventListener('click', () => (state.feed.running ? stopFeed() : startFeed()));
  window.addEventListener('pagehide', () => { if (session) session.conn.close(); });
  Object.assign(state, { startFeed, stopFeed, snapshot });

  // -- start ---------------------------------------------------------------------

  async function start() {
    renderFeed();
    const params = new URLSearchParams(location.search);
    let config = {};
    try {
      const res = await fetch('config.json', { cache: 'no-store' });
      if (res.ok) config = await res.json();
    } catch (err) {
      // served without serve.py: fall back to the defaults below
    }
    address = config.address || address;
    state.address = address;
    $('address').textContent = address;
    $('feed-address').textContent = address;
    const host = location.hostname || '127.0.0.1';
    const scheme = location.protocol === 'https:' ? 'wss' : 'ws';
    url = params.get('ws') || `${scheme}://${host}:${config.ws_port || 15678}${config.ws_path || '/ws'}`;
    state.url = url;
    connect();
    if (params.get('feed') === '1') startFeed();
  }

  start();
})();
