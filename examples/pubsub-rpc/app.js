// WAMP's two patterns, topic pub/sub and routed RPC, over AMQP 1.0 with rhea's
// browser build and nothing but the broker.
//
// Each tab has one connection (one session) with these links:
//   - a /management link pair (RabbitMQ 4's HTTP over AMQP) to bind queues;
//   - one anonymous-relay sender (null target): every message names its
//     destination in `to` (publications, calls, answers);
//   - a dynamic receiver for the answers to this tab's calls (`reply_to`);
//   - per subscription, a dynamic receiver whose temporary queue is bound to
//     amq.topic with the pattern (`*` one word, `#` zero or more);
//   - while registered, a receiver on the procedure's queue.
//
// Pub/sub.  Publishing is a message to /exchanges/amq.topic/<routing key>.
// Subscribing attaches a dynamic receiver (the broker answers with the address
// /queues/<generated>) and binds that queue: POST /bindings {source, destination_queue,
// binding_key, arguments}, answered 204.  The queue, and its binding, go with
// the link: unsubscribing is closing the receiver.
//
// RPC.  Registering `rpc.add` declares an exclusive queue `rpc.add` (PUT
// /queues/rpc.add {exclusive: true}), consumes it, then binds it to amq.direct
// with the key `rpc.add`.  A call is a message to /exchanges/amq.direct/rpc.add
// with `message_id` and `reply_to`; the callee answers to `reply_to` with
// `correlation_id` = the call's `message_id`.  Why this shape:
//   - no callee, no route: the queue is exclusive to the callee's connection,
//     so it is deleted (with its binding) when the callee unregisters or its tab
//     goes away.  A call then routes nowhere and the broker settles it
//     `released` at once: the caller reports "no callee" without waiting.  (A
//     call sent straight to /queues/rpc.add would be queued for nobody instead.)
//   - one callee per procedure, as WAMP's default: a second tab's PUT of the
//     same exclusive queue is refused ("cannot obtain exclusive access to
//     locked queue"): "already registered".
//   - a callee that vanishes with calls in flight takes them with it; those
//     calls time out (CALL_TIMEOUT_MS), and carry that as their `ttl`.
//
// `window.pubsub` holds the tab's state and its operations (publish,
// subscribe, unsubscribe, register, unregister, call, manage) for the console
// and for the tests.  `?ws=URL` overrides the WebSocket URL.
(function () {
  'use strict';
  const rhea = require('rhea');
  const CALL_TIMEOUT_MS = 5000;
  const MANAGEMENT_TIMEOUT_MS = 10000;
  const RECONNECT_MS = 1000;
  const KEEP = 50; // lines kept in each list

  const $ = (id) => document.getElementById(id);
  const tab = Math.random().toString(36).slice(2, 8);
  $('tab').textContent = tab;

  let topicExchange = 'amq.topic';
  let rpcExchange = 'amq.direct';
  let url = null;
  let generation = 0;
  let session = null; // the live connection's links and bookkeeping; null while down
  let seq = 0;

  // State, exposed for curious people and for the tests.
  const state = (window.pubsub = {
    tab,
    url: null, // the WebSocket URL
    connected: false,
    ready: false, // connected, and the management pair, relay and reply links attached
    replyTo: null, // the address answers to our calls come to
    published: [], // {id, key, payload, outcome, error}
    subscriptions: {}, // pattern -> {pattern, queue, state, error, received, messages}
    registration: null, // {procedure, state, error, invocations}
    calls: [], // {id, procedure, args, state: pending|ok|error, result, code, error, ms}
    errors: [],
  });

  // RFC 3986 percent-encoding of one address segment (all but the unreserved
  // characters), as RabbitMQ's v2 addresses want it.
  const enc = (s) => encodeURIComponent(s).replace(/[!'()*]/g,
    (c) => '%' + c.charCodeAt(0).toString(16).toUpperCase());
  const queueName = (address) => decodeURIComponent(address.replace(/^\/queues\//, ''));
  const text = (v) => (typeof v === 'string' ? v : JSON.stringify(v));
  const nextId = (kind) => `${tab}-${kind}${++seq}`;
  const keep = (list) => { while (list.length > KEEP) list.shift(); };

  function linkError(link, what) {
    const err = link && (link.error || (link.remote && link.remote.detach && link.remote.detach.error));
    return `${what}: ${err ? `${err.condition || ''} ${err.description || ''}`.trim() : 'closed'}`;
  }

  // -- the connection ------------------------------------------------------------

  function connect() {
    const mine = ++generation;
    setStatus('connecting…', 'connecting');
    const container = rhea.create_container({ id: `pubsub-${tab}` });
    const ws = container.websocket_connect(WebSocket);
    const conn = container.connect({
      connection_details: ws(url, ['amqp']),
      reconnect: false,
      username: 'anonymous', // SASL ANONYMOUS
    });
    const s = {
      conn,
      relay: null, // the relay sender, once attached
      outbox: [], // {message, resolve, reject} waiting for credit
      unsettled: new Map(), // delivery -> {resolve, reject}
      mgmt: null, // the request half of the pair, once both halves are attached
      mgmtOutbox: [],
      mgmtPending: new Map(), // request id -> {resolve, reject, timer}
      calls: new Map(), // call id -> function(answer message)
      down: new Set(), // called with an Error when the connection goes
      restored: false,
    };
    session = s;
    const readiness = () => {
      state.ready = state.connected && Boolean(s.relay && s.mgmt && state.replyTo);
      if (!state.ready || s.restored) return;
      s.restored = true;
      setStatus('connected', 'connected');
      restore();
      render();
    };

    conn.on('connection_open', () => { state.connected = true; readiness(); });

    // The management pair.  rhea keys a session's links by name, and both halves
    // must share one: open the request sender, and only once the broker has
    // answered its attach, the reply receiver.  (Opened together, the broker's
    // answer to the sender's attach would reach the receiver.)
    const pairName = `mgmt-${tab}`;
    const terminus = { address: '/management' };
    const requests = conn.open_sender({
      name: pairName, source: terminus, target: terminus,
      properties: { paired: true }, snd_settle_mode: 1, // requests go pre-settled
    });
    requests.on('sender_error', () => state.errors.push(linkError(requests, 'management')));
    requests.once('sender_open', () => {
      const answers = conn.open_receiver({
        name: pairName, source: terminus, target: terminus,
        properties: { paired: true }, snd_settle_mode: 1, autoaccept: false, credit_window: 100,
      });
      answers.on('message', (context) => {
        const m = context.message;
        const waiter = s.mgmtPending.get(m.correlation_id);
        if (!waiter) return;
        s.mgmtPending.delete(m.correlation_id);
        clearTimeout(waiter.timer);
        waiter.resolve({ status: Number(m.subject), body: m.body === undefined ? null : m.body });
      });
      answers.on('receiver_error', () => state.errors.push(linkError(answers, 'management')));
      answers.once('receiver_open', () => { s.mgmt = requests; flushManagement(s); readiness(); });
    });
    requests.on('sendable', () => flushManagement(s));

    // The anonymous relay: one sender for everything this tab sends.
    const relay = conn.open_sender({ target: {} });
    relay.once('sender_open', () => { s.relay = relay; flush(s); readiness(); });
    relay.on('sendable', () => flush(s));
    for (const outcome of ['accepted', 'released', 'rejected', 'modified']) {
      relay.on(outcome, (context) => {
        const waiter = s.unsettled.get(context.delivery);
        if (!waiter) return;
        s.unsettled.delete(context.delivery);
        const remote = context.delivery.remote_state || {};
        waiter.resolve({ outcome, error: remote.error || null });
      });
    }
    relay.on('sender_error', () => state.errors.push(linkError(relay, 'relay')));

    // Answers to our calls, on a temporary queue of our own.
    const replies = conn.open_receiver({
      source: { dynamic: true, capabilities: ['temporary-queue'] }, credit_window: 100,
    });
    replies.once('receiver_open', () => {
      state.replyTo = replies.source && replies.source.address;
      $('reply-to').textContent = state.replyTo || '?';
      readiness();
    });
    replies.on('message', (context) => {
      const m = context.message;
      const answer = s.calls.get(m.correlation_id);
      if (answer) answer(m);
      else console.log(`an answer to no pending call: ${m.correlation_id}`);
    });
    replies.on('receiver_error', () => state.errors.push(linkError(replies, 'replies')));

    const fail = (what) => (context) => {
      const err = context && (context.error || (context.connection && context.connection.error));
      if (err) state.errors.push(`${what}: ${err.description || err.message || err}`);
    };
    conn.on('connection_error', fail('connection'));
    conn.on('sender_error', fail('sender'));
    conn.on('receiver_error', fail('receiver'));
    container.on('error', (err) => state.errors.push(`error: ${err}`));
    conn.on('disconnected', () => {
      if (mine !== generation) return;
      session = null;
      state.connected = state.ready = false;
      state.replyTo = null;
      const gone = new Error('disconnected');
      for (const w of s.outbox) w.reject(gone);
      for (const w of s.unsettled.values()) w.reject(gone);
      for (const w of s.mgmtPending.values()) { clearTimeout(w.timer); w.reject(gone); }
      for (const f of s.down) f(gone);
      for (const sub of Object.values(state.subscriptions)) sub.state = 'lost';
      if (state.registration) state.registration.state = 'lost';
      setStatus('disconnected, retrying…', 'error');
      render();
      setTimeout(connect, RECONNECT_MS);
    });
  }

  // After a reconnect: subscribe and register again.
  function restore() {
    for (const sub of Object.values(state.subscriptions)) {
      if (sub.state === 'lost') bindSubscription(sub).catch(() => {});
    }
    const reg = state.registration;
    if (reg && reg.state === 'lost') {
      state.registration = null;
      register(reg.procedure).catch(() => {});
    }
  }

  function flush(s) {
    while (s.relay && s.outbox.length && s.relay.sendable()) {
      const w = s.outbox.shift();
      s.unsettled.set(s.relay.send(w.message), w);
    }
  }

  /** Send one message through the relay; resolves with {outcome, error}. */
  function send(message) {
    const s = session;
    if (!s) return Promise.reject(new Error('not connected'));
    return new Promise((resolve, reject) => {
      s.outbox.push({ message, resolve, reject });
      flush(s);
    });
  }

  function flushManagement(s) {
    while (s.mgmt && s.mgmtOutbox.length && s.mgmt.sendable()) s.mgmt.send(s.mgmtOutbox.shift());
  }

  /** One management request; resolves with {status, body}. */
  function manage(method, path, body) {
    const s = session;
    if (!s || !s.mgmt) return Promise.reject(new Error('not connected'));
    const id = nextId('m');
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        s.mgmtPending.delete(id);
        reject(new Error(`management ${method} ${path}: no answer`));
      }, MANAGEMENT_TIMEOUT_MS);
      s.mgmtPending.set(id, { resolve, reject, timer });
      s.mgmtOutbox.push({ to: path, subject: method, message_id: id, reply_to: '$me', body });
      flushManagement(s);
    });
  }

  function bind(exchange, queue, key) {
    return manage('POST', '/bindings',
      { source: exchange, destination_queue: queue, binding_key: key, arguments: {} })
      .then((r) => {
        if (r.status !== 204) throw new Error(`binding refused: ${r.status} ${text(r.body)}`);
      });
  }

  /** Resolves when the broker has answered the link's attach; rejects if it refuses it. */
  function attached(link) {
    const s = session;
    const [open, error] = link.is_sender() ? ['sender_open', 'sender_error'] : ['receiver_open', 'receiver_error'];
    return new Promise((resolve, reject) => {
      const done = (f) => (arg) => { if (s) s.down.delete(reject); f(arg); };
      link.once(open, done(() => resolve(link)));
      link.once(error, done(() => reject(new Error(linkError(link, 'attach refused')))));
      if (s) s.down.add(reject);
    });
  }

  // -- pub/sub -------------------------------------------------------------------

  async function publish(key, payload) {
    const entry = { id: nextId('p'), key, payload, outcome: 'sending', error: null };
    state.published.push(entry);
    keep(state.published);
    render();
    try {
      const r = await send({
        to: `/exchanges/${enc(topicExchange)}/${enc(key)}`,
        subject: key,
        application_properties: { from: tab },
        body: payload,
      });
      entry.outcome = r.outcome;
      if (r.error) entry.error = r.error.description || r.error.condition;
    } catch (err) {
      entry.outcome = 'error';
      entry.error = err.message;
    }
    render();
    return entry.outcome;
  }

  async function subscribe(pattern) {
    pattern = String(pattern).trim();
    if (!pattern) throw new Error('a pattern, please');
    const existing = state.subscriptions[pattern];
    if (existing && existing.state !== 'error') throw new Error(`already subscribed to ${pattern}`);
    const sub = { pattern, queue: null, state: 'binding', error: null, received: 0, messages: [] };
    state.subscriptions[pattern] = sub;
    render();
    await bindSubscription(sub);
    return sub.queue;
  }

  async function bindSubscription(sub) {
    const s = session;
    sub.state = 'binding';
    sub.error = null;
    render();
    try {
      if (!s) throw new Error('not connected');
      const receiver = s.conn.open_receiver({
        source: { dynamic: true, capabilities: ['temporary-queue'] }, credit_window: 100,
      });
      sub.receiver = receiver;
      receiver.on('message', (context) => {
        const m = context.message;
        const ann = m.message_annotations || {};
        sub.received += 1;
        sub.messages.push({
          key: ann['x-routing-key'] || m.subject || '',
          payload: m.body,
          from: (m.application_properties || {}).from || null,
        });
        keep(sub.messages);
        render();
      });
      receiver.on('receiver_error', () => {
        if (sub.state !== 'closing') state.errors.push(linkError(receiver, `subscription ${sub.pattern}`));
      });
      receiver.on('receiver_close', () => {
        if (state.subscriptions[sub.pattern] === sub && sub.state === 'closing') {
          delete state.subscriptions[sub.pattern];
          render();
        }
      });
      await attached(receiver);
      if (!receiver.source || !receiver.source.address) throw new Error('no temporary queue');
      sub.queue = queueName(receiver.source.address);
      await bind(topicExchange, sub.queue, sub.pattern);
      sub.state = 'active';
    } catch (err) {
      sub.state = 'error';
      sub.error = err.message;
      if (sub.receiver) sub.receiver.close();
      throw err;
    } finally {
      render();
    }
  }

  /** Closing the receiver deletes its temporary queue, and the binding with it. */
  function unsubscribe(pattern) {
    const sub = state.subscriptions[pattern];
    if (!sub) return Promise.resolve(false);
    if (!session || !sub.receiver || sub.state === 'error' || sub.state === 'lost') {
      delete state.subscriptions[pattern];
      render();
      return Promise.resolve(true);
    }
    sub.state = 'closing';
    render();
    return new Promise((resolve) => {
      sub.receiver.once('receiver_close', () => resolve(true));
      sub.receiver.close();
    });
  }

  // -- RPC: the callee -----------------------------------------------------------

  async function register(procedure) {
    procedure = String(procedure).trim();
    if (!procedure) throw new Error('a procedure name, please');
    const current = state.registration;
    if (current && current.state !== 'error') throw new Error(`this tab already registered ${current.procedure}`);
    const reg = { procedure, state: 'registering', error: null, invocations: [], receiver: null };
    state.registration = reg;
    render();
    const path = `/queues/${enc(procedure)}`;
    let created = false;
    try {
      const declared = await manage('PUT', path,
        { durable: false, exclusive: true, auto_delete: false, arguments: {} });
      // 409 here, 400 from RabbitMQ 4.0.5: "cannot obtain exclusive access to locked queue"
      if (declared.status >= 400 && /exclusive access to locked queue/.test(text(declared.body))) {
        throw new Error(`${procedure} is already registered by another tab`);
      }
      if (declared.status !== 200 && declared.status !== 201) {
        throw new Error(`cannot declare queue ${procedure}: ${declared.status} ${text(declared.body)}`);
      }
      created = true;
      if (!session) throw new Error('not connected');
      // Consume first, then bind: a call that routes always finds its callee.
      const receiver = session.conn.open_receiver({
        source: { address: path }, credit_window: 20, autoaccept: false,
      });
      reg.receiver = receiver;
      receiver.on('message', (context) => invoke(reg, context));
      receiver.on('receiver_error', () => {
        if (reg.state !== 'unregistering') state.errors.push(linkError(receiver, `procedure ${procedure}`));
      });
      await attached(receiver);
      await bind(rpcExchange, procedure, procedure);
      reg.state = 'registered';
    } catch (err) {
      reg.state = 'error';
      reg.error = err.message;
      if (reg.receiver) reg.receiver.close();
      if (created) manage('DELETE', path, null).catch(() => {});
      throw err;
    } finally {
      render();
    }
    return procedure;
  }

  function invoke(reg, context) {
    const m = context.message;
    const args = m.body && typeof m.body === 'object' ? m.body : {};
    const from = (m.application_properties || {}).from || '?';
    const entry = { id: m.message_id, from, args: { a: args.a, b: args.b }, result: null, error: null, outcome: null };
    reg.invocations.push(entry);
    keep(reg.invocations);
    context.delivery.accept();
    let answer;
    if (typeof args.a === 'number' && typeof args.b === 'number') {
      entry.result = args.a + args.b;
      answer = { subject: 'result', body: { result: entry.result } };
    } else {
      entry.error = 'invalid_argument: a and b must be numbers';
      answer = { subject: 'error', application_properties: { error: 'invalid_argument' }, body: entry.error };
    }
    if (!m.reply_to) {
      entry.outcome = 'no reply_to';
      render();
      return;
    }
    answer.to = m.reply_to;
    answer.correlation_id = m.message_id;
    send(answer).then(
      (r) => { entry.outcome = r.outcome === 'rejected' ? 'caller gone' : r.outcome; render(); },
      (err) => { entry.outcome = err.message; render(); });
    render();
  }

  /** Deleting the queue first: from then on calls are `released` (no callee), not queued. */
  async function unregister() {
    const reg = state.registration;
    if (!reg) return false;
    if (reg.state === 'registered' && session) {
      reg.state = 'unregistering';
      render();
      try {
        await manage('DELETE', `/queues/${enc(reg.procedure)}`, null);
      } finally {
        if (reg.receiver) reg.receiver.close();
      }
    }
    if (state.registration === reg) state.registration = null;
    render();
    return true;
  }

  // -- RPC: the caller -----------------------------------------------------------

  /** Call a procedure with {a, b}; resolves (never rejects) with the call's entry. */
  function call(procedure, args) {
    const entry = {
      id: nextId('c'), procedure, args, state: 'pending', result: null, code: null, error: null, ms: null,
    };
    state.calls.push(entry);
    keep(state.calls);
    render();
    const s = session;
    const started = performance.now();
    return new Promise((resolve) => {
      let timer = null;
      const disconnected = () => finish({ state: 'error', code: 'disconnected', error: 'disconnected' });
      const finish = (fields) => {
        if (entry.state !== 'pending') return;
        Object.assign(entry, fields);
        entry.ms = Math.round(performance.now() - started);
        clearTimeout(timer);
        if (s) { s.calls.delete(entry.id); s.down.delete(disconnected); }
        render();
        resolve(entry);
      };
      if (!s || !state.replyTo) {
        finish({ state: 'error', code: 'disconnected', error: 'not connected' });
        return;
      }
      s.calls.set(entry.id, (m) => {
        if (m.subject === 'error') {
          const code = (m.application_properties || {}).error || 'error';
          finish({ state: 'error', code, error: text(m.body) });
        } else {
          finish({ state: 'ok', result: m.body && typeof m.body === 'object' ? m.body.result : m.body });
        }
      });
      s.down.add(disconnected);
      timer = setTimeout(() => finish({
        state: 'error', code: 'timeout', error: `no answer from ${procedure} within ${CALL_TIMEOUT_MS / 1000} s`,
      }), CALL_TIMEOUT_MS);
      send({
        to: `/exchanges/${enc(rpcExchange)}/${enc(procedure)}`,
        subject: procedure,
        message_id: entry.id,
        reply_to: state.replyTo,
        ttl: CALL_TIMEOUT_MS, // a call nobody takes in time is dropped, not answered late
        application_properties: { from: tab },
        body: args,
      }).then((r) => {
        if (r.outcome === 'released') {
          finish({ state: 'error', code: 'no_callee', error: `no callee: nothing is registered for ${procedure}` });
        } else if (r.outcome !== 'accepted') {
          const why = r.error ? `: ${r.error.description || r.error.condition}` : '';
          finish({ state: 'error', code: r.outcome, error: `call ${r.outcome}${why}` });
        }
      }, (err) => finish({ state: 'error', code: 'disconnected', error: err.message }));
    });
  }

  // -- the page ------------------------------------------------------------------

  function setStatus(label, kind) {
    $('status').textContent = label;
    $('status').className = `status ${kind}`;
  }

  function el(tag, className, content) {
    const node = document.createElement(tag);
    if (className) node.className = className;
    if (content !== undefined) node.textContent = content;
    return node;
  }

  function fill(list, entries, line) {
    list.replaceChildren(...entries.slice().reverse().map(line));
  }

  function render() {
    fill($('pub-log'), state.published, (p) => el('li', p.outcome === 'accepted' ? 'ok' : 'warn',
      `${p.key} ← ${text(p.payload)}: ${p.outcome === 'released' ? 'released (no subscriber)' : p.outcome}`
      + (p.error ? ` (${p.error})` : '')));

    const subs = $('subs');
    subs.replaceChildren(...Object.values(state.subscriptions).map((sub) => {
      const card = el('div', `sub ${sub.state}`);
      card.dataset.pattern = sub.pattern;
      const head = el('div', 'sub-head');
      head.append(el('code', 'pattern', sub.pattern),
        el('span', 'sub-state', sub.error ? `${sub.state}: ${sub.error}` : sub.state));
      const off = el('button', 'unsubscribe', 'Unsubscribe');
      off.type = 'button';
      off.dataset.pattern = sub.pattern;
      off.disabled = sub.state === 'closing' || sub.state === 'binding';
      off.addEventListener('click', () => unsubscribe(sub.pattern));
      head.append(off);
      card.append(head);
      if (sub.queue) card.append(el('p', 'hint', `queue ${sub.queue} · ${sub.received} received`));
      const list = el('ol', 'log');
      list.reversed = true;
      fill(list, sub.messages, (m) => {
        const li = el('li');
        li.append(el('code', 'key', m.key), document.createTextNode(` ${text(m.payload)}`),
          el('span', 'from', m.from ? ` from ${m.from}` : ''));
        return li;
      });
      card.append(list);
      return card;
    }));

    const reg = state.registration;
    const regStatus = $('reg-status');
    if (!reg) {
      regStatus.textContent = 'not registered';
      regStatus.className = 'status idle';
    } else {
      regStatus.textContent = reg.state === 'registered' ? `registered ${reg.procedure}`
        : reg.error ? `${reg.state}: ${reg.error}` : `${reg.state} ${reg.procedure}`;
      regStatus.className = `status ${reg.state === 'registered' ? 'connected' : reg.state === 'error' ? 'error' : 'connecting'}`;
    }
    $('register').disabled = Boolean(reg && reg.state !== 'error');
    $('unregister').disabled = !(reg && reg.state === 'registered');
    fill($('inv-log'), reg ? reg.invocations : [], (i) => el('li', i.error ? 'warn' : 'ok',
      `${i.from}: add(${JSON.stringify(i.args.a)}, ${JSON.stringify(i.args.b)}) → ${i.error || i.result}`
      + (i.outcome && i.outcome !== 'accepted' ? ` (${i.outcome})` : '')));

    fill($('call-log'), state.calls, (c) => {
      const call = `${c.procedure}(${JSON.stringify(c.args && c.args.a)}, ${JSON.stringify(c.args && c.args.b)})`;
      if (c.state === 'pending') return el('li', 'pending', `${call} …`);
      return el('li', c.state === 'ok' ? 'ok' : 'error',
        c.state === 'ok' ? `${call} = ${text(c.result)} (${c.ms} ms)` : `${call} failed: ${c.error} (${c.ms} ms)`);
    });
  }

  const number = (v) => (v.trim() !== '' && Number.isFinite(Number(v)) ? Number(v) : v);
  const shown = (err) => console.log(err.message); // the panels show errors themselves

  $('publish-form').addEventListener('submit', (e) => {
    e.preventDefault();
    publish($('pub-key').value.trim(), $('pub-body').value);
  });
  $('subscribe-form').addEventListener('submit', (e) => {
    e.preventDefault();
    subscribe($('sub-pattern').value).catch(shown);
  });
  $('register-form').addEventListener('submit', (e) => {
    e.preventDefault();
    register($('reg-proc').value).catch(shown);
  });
  $('unregister').addEventListener('click', () => unregister().catch(shown));
  $('call-form').addEventListener('submit', (e) => {
    e.preventDefault();
    call($('call-proc').value.trim(), { a: number($('call-a').value), b: number($('call-b').value) });
  });
  window.addEventListener('pagehide', () => { if (session) session.conn.close(); });

  Object.assign(state, { publish, subscribe, unsubscribe, register, unregister, call, manage });

  // -- start ---------------------------------------------------------------------

  async function start() {
    render();
    const params = new URLSearchParams(location.search);
    let config = {};
    try {
      const res = await fetch('config.json', { cache: 'no-store' });
      if (res.ok) config = await res.json();
    } catch (err) {
      // served without serve.py: fall back to the defaults below
    }
    topicExchange = config.topic_exchange || topicExchange;
    rpcExchange = config.rpc_exchange || rpcExchange;
    const host = location.hostname || '127.0.0.1';
    const scheme = location.protocol === 'https:' ? 'wss' : 'ws';
    url = params.get('ws') || `${scheme}://${host}:${config.ws_port || 15678}${config.ws_path || '/ws'}`;
    state.url = url;
    connect();
  }

  start();
})();
