// Conformance harness: rhea's browser build over the browser's own WebSocket.
//
// The Python tests call `harness.<case>(args)` through the driver; every
// function returns a promise of plain JSON.  AMQP values that JSON cannot
// carry travel as one-key objects, both ways:
//   {"$binary": "hex"}  {"$timestamp": ms}  {"$symbol": "s"}  {"$long": n}
//   {"$ulong": n}  {"$ubyte": n}  {"$double": x}  {"$described": [descriptor, value]}
// and bodies other than an amqp-value as {"$data": ...} / {"$sequence": [...]}.
(function () {
  'use strict';
  const rhea = require('rhea');
  const types = rhea.types;
  // The bundle keeps its Buffer polyfill private; take the class from a value it makes.
  const Buffer = rhea.message.encode({ body: '' }).constructor;
  // What rhea's own browser examples offer; the broker must pick `amqp`.
  const PROTOCOLS = ['binary', 'AMQPWSB10', 'amqp'];
  const OFFSET_SPEC = 'rabbitmq:stream-offset-spec';
  const DEFAULT_TIMEOUT = 20000;

  function hex(bytes) {
    return Array.from(bytes, (b) => b.toString(16).padStart(2, '0')).join('');
  }

  function unhex(s) {
    const out = Buffer.alloc(s.length / 2);
    for (let i = 0; i < out.length; i++) out[i] = parseInt(s.substr(2 * i, 2), 16);
    return out;
  }

  function isTyped(v) {
    return v !== null && typeof v === 'object' && typeof v.toRheaTyped === 'function' && 'type' in v;
  }

  // JSON (from Python) -> values rhea encodes with the intended AMQP type.
  function fromWire(v) {
    if (Array.isArray(v)) return v.map(fromWire);
    if (v === null || typeof v !== 'object') return v;
    const keys = Object.keys(v);
    if (keys.length === 1 && keys[0].startsWith('$')) {
      const x = v[keys[0]];
      switch (keys[0]) {
        case '$binary': return unhex(x);
        case '$timestamp': return new Date(x);
        case '$symbol': return types.wrap_symbol(x);
        case '$long': return types.wrap_long(x);
        case '$ulong': return types.wrap_ulong(x);
        case '$ubyte': return types.wrap_ubyte(x);
        case '$double': return types.wrap_double(x);
        case '$described': return types.wrap_described(fromWire(x[1]), x[0]);
        case '$data': return rhea.message.data_section(fromWire(x));
        case '$sequence': return rhea.message.sequence_section(fromWire(x));
        default: throw new Error(`unknown wire tag ${keys[0]}`);
      }
    }
    const out = {};
    for (const k of keys) out[k] = fromWire(v[k]);
    return out;
  }

  // rhea values -> JSON for Python.
  function toWire(v) {
    if (v === undefined || v === null) return null;
    if (v instanceof Uint8Array) return { $binary: hex(v) };
    if (v instanceof Date) return { $timestamp: v.getTime() };
    if (Array.isArray(v)) return v.map(toWire);
    if (typeof v === 'bigint') return Number(v);
    if (typeof v !== 'object') return v;
    if (v.constructor && v.constructor.name === 'Section' && 'typecode' in v) {
      const tag = v.typecode === 0x75 ? '$data' : v.typecode === 0x76 ? '$sequence' : '$section';
      return { [tag]: toWire(v.content) };
    }
    if (isTyped(v)) {
      if (v.descriptor) return { $described: [toWire(v.descriptor), toWire(v.value)] };
      return toWire(v.value);
    }
    const out = {};
    for (const k of Object.keys(v)) {
      if (typeof v[k] !== 'function') out[k] = toWire(v[k]);
    }
    return out;
  }

  const MESSAGE_FIELDS = [
    'durable', 'priority', 'ttl', 'first_acquirer', 'delivery_count',
    'message_id', 'user_id', 'to', 'subject', 'reply_to', 'correlation_id', 'content_type',
    'content_encoding', 'absolute_expiry_time', 'creation_time', 'group_id', 'group_sequence',
    'reply_to_group_id', 'delivery_annotations', 'message_annotations', 'application_properties',
    'footer', 'body',
  ];

  function messageToWire(m) {
    const out = {};
    for (const f of MESSAGE_FIELDS) if (m[f] !== undefined) out[f] = toWire(m[f]);
    return out;
  }

  function errorToWire(e) {
    if (!e) return null;
    if (typeof e === 'string') return { description: e };
    return {
      condition: e.condition ? String(e.condition) : null,
      description: e.description || e.message || String(e),
    };
  }

  function withTimeout(promise, ms, what) {
    let timer;
    const timeout = new Promise((_, reject) => {
      timer = setTimeout(() => reject(new Error(`timed out after ${ms} ms: ${what}`)), ms);
    });
    return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
  }

  // One rhea connection over a browser WebSocket, with an inbox per receiver.
  class Client {
    static open({ url, username, password, anonymous = true, protocols = PROTOCOLS, timeout = DEFAULT_TIMEOUT }) {
      const container = rhea.create_container({ id: 'rhea-browser-' + Math.random().toString(16).slice(2) });
      const ws = container.websocket_connect(WebSocket);
      const options = { connection_details: ws(url, protocols), reconnect: false };
      if (username) {
        options.username = username;
        if (password !== undefined) options.password = password;
      } else if (anonymous) {
        options.username = 'anonymous'; // rhea offers ANONYMOUS for a username without password
      }
      const client = new Client(container);
      const opened = new Promise((resolve, reject) => {
        client.failOpen = reject;
        const conn = container.connect(options);
        client.conn = conn;
        conn.on('connection_open', () => resolve(client));
        conn.on('connection_error', (ctx) => client.fail(ctx.connection.error || ctx.error));
        conn.on('connection_close', (ctx) => {
          client.remoteClose = ctx.connection.error || null;
          client.closedWaiters.forEach((w) => w());
        });
        conn.on('disconnected', (ctx) => {
          client.disconnected = true;
          client.fail(ctx.error || 'disconnected');
          client.closedWaiters.forEach((w) => w());
        });
      });
      container.on('error', (err) => client.fail(err));
      return withTimeout(opened, timeout, `connect ${url}`);
    }

    constructor(container) {
      this.container = container;
      this.conn = null;
      this.errors = [];
      this.closedWaiters = [];
      this.remoteClose = undefined;
      this.disconnected = false;
    }

    fail(err) {
      this.errors.push(errorToWire(err));
      if (this.failOpen) this.failOpen(Object.assign(new Error('connection failed'), { amqp: errorToWire(err) }));
    }

    remoteOpen() {
      const o = this.conn.remote.open || {};
      return toWire({
        container_id: o.container_id, max_frame_size: o.max_frame_size, channel_max: o.channel_max,
        idle_time_out: o.idle_time_out, offered_capabilities: o.offered_capabilities,
        properties: o.properties,
      });
    }

    link(kind, options, timeout = DEFAULT_TIMEOUT) {
      const link = kind === 'sender' ? this.conn.open_sender(options) : this.conn.open_receiver(options);
      if (kind === 'receiver') {
        link.inbox = [];
        link.watchers = [];
        link.on('message', (ctx) => {
          link.inbox.push(ctx.message);
          link.watchers.forEach((w) => w(ctx.message));
        });
      }
      const opened = new Promise((resolve, reject) => {
        link.on(`${kind}_open`, () => resolve(link));
        link.on(`${kind}_error`, (ctx) => reject(new Error(JSON.stringify(errorToWire(ctx[kind].error)))));
        link.on(`${kind}_close`, () => reject(new Error(`${kind} closed`)));
      });
      return withTimeout(opened, timeout, `attach ${kind} ${JSON.stringify(toWire(options))}`);
    }

    sender(address, extra = {}) {
      return this.link('sender', Object.assign({ target: { address } }, extra));
    }

    receiver(source, extra = {}) {
      if (typeof source === 'string') source = { address: source };
      return this.link('receiver', Object.assign({ source }, extra));
    }

    // Send all messages as credit allows; resolve with each one's outcome, in order.
    sendAll(sender, messages, timeout = DEFAULT_TIMEOUT) {
      const outcomes = new Array(messages.length).fill(null);
      const index = new Map();
      let next = 0;
      let settled = 0;
      const done = new Promise((resolve) => {
        const record = (state) => (ctx) => {
          const i = index.get(ctx.delivery);
          if (i === undefined || outcomes[i] !== null) return;
          const remote = ctx.delivery.remote_state;
          outcomes[i] = state === 'rejected' ? { rejected: errorToWire(remote && remote.error) } : state;
          if (++settled === messages.length) resolve(outcomes);
        };
        ['accepted', 'rejected', 'released', 'modified'].forEach((s) => sender.on(s, record(s)));
        const pump = () => {
          while (next < messages.length && sender.sendable()) {
            const i = next++;
            index.set(sender.send(messages[i]), i);
          }
        };
        sender.on('sendable', pump);
        pump();
        if (messages.length === 0) resolve(outcomes);
      });
      return withTimeout(done, timeout, `send ${messages.length} messages (${settled} settled)`);
    }

    // Wait until `count` messages satisfying `match` have arrived (counting those
    // already in the receiver's inbox); resolve with the first `count` of them.
    collect(receiver, count, match = () => true, timeout = DEFAULT_TIMEOUT) {
      const got = receiver.inbox.filter(match);
      let watcher;
      const done = new Promise((resolve) => {
        watcher = (m) => {
          if (match(m)) got.push(m);
          if (got.length >= count) resolve(got.slice(0, count));
        };
        receiver.watchers.push(watcher);
        if (got.length >= count) resolve(got.slice(0, count));
      });
      return withTimeout(done, timeout, `receive ${count} messages (have ${got.length})`)
        .finally(() => receiver.watchers.splice(receiver.watchers.indexOf(watcher), 1));
    }

    close(timeout = DEFAULT_TIMEOUT) {
      if (this.disconnected) return Promise.resolve();
      const closed = new Promise((resolve) => this.closedWaiters.push(resolve));
      this.conn.close();
      return withTimeout(closed, timeout, 'close');
    }
  }

  function offsetFilter(spec) {
    return { [OFFSET_SPEC]: types.wrap_described(fromWire(spec), OFFSET_SPEC) };
  }

  function tagOf(m) {
    return m.application_properties ? m.application_properties.tag : undefined;
  }

  function streamDelivery(m) {
    const ann = m.message_annotations || {};
    return {
      offset: toWire(ann['x-stream-offset']),
      tag: tagOf(m) === undefined ? null : tagOf(m),
      body: toWire(m.body),
      message_annotations: toWire(ann),
    };
  }

  const harness = {
    // Open with the given credentials, report the peer's open, close.
    async connect(args) {
      let client;
      try {
        client = await Client.open(args);
      } catch (err) {
        return { ok: false, error: err.amqp || errorToWire(err) };
      }
      const remote = client.remoteOpen();
      await client.close();
      return { ok: true, remote, remote_close_error: errorToWire(client.remoteClose), errors: client.errors };
    },

    // Publish messages (wire JSON) and report the outcomes.
    async publish({ url, address, messages, username, password }) {
      const client = await Client.open({ url, username, password });
      const sender = await client.sender(address);
      const outcomes = await client.sendAll(sender, messages.map(fromWire));
      await client.close();
      return outcomes;
    },

    // Receive `count` messages from a source (optionally with an offset spec).
    async consume({ url, address, count, offset, username, password }) {
      const client = await Client.open({ url, username, password });
      const source = { address };
      if (offset !== undefined) source.filter = offsetFilter(offset);
      const receiver = await client.receiver(source);
      const got = await client.collect(receiver, count);
      await client.close();
      return got.map(messageToWire);
    },

    // Receiver first, then publish the messages on the same connection; return what arrived.
    async roundtrip({ url, address, messages }) {
      const client = await Client.open({ url });
      const receiver = await client.receiver(address);
      const sender = await client.sender(address);
      const outcomes = await client.sendAll(sender, messages.map(fromWire));
      const got = await client.collect(receiver, messages.length);
      await client.close();
      return { outcomes, received: got.map(messageToWire) };
    },

    // `count` numbered messages through a queue; report outcomes and the bodies in arrival order.
    async many({ url, address, count }) {
      const client = await Client.open({ url });
      const receiver = await client.receiver(address);
      const sender = await client.sender(address);
      const messages = Array.from({ length: count }, (_, i) => ({ body: i, application_properties: { i } }));
      const started = performance.now();
      const outcomes = await client.sendAll(sender, messages, 60000);
      const got = await client.collect(receiver, count, () => true, 60000);
      const elapsed = performance.now() - started;
      await client.close();
      const tally = {};
      outcomes.forEach((o) => { const k = typeof o === 'string' ? o : 'rejected'; tally[k] = (tally[k] || 0) + 1; });
      return { outcomes: tally, bodies: got.map((m) => m.body), elapsed_ms: Math.round(elapsed) };
    },

    // Publish `count` messages tagged `tag` to a stream, then read it from `offset`
    // until all of them have arrived.
    async streamRead({ url, address, tag, count, offset }) {
      const client = await Client.open({ url });
      const sender = await client.sender(address);
      const messages = Array.from({ length: count }, (_, i) => ({
        body: `${tag}-${i}`, application_properties: { tag, i },
      }));
      const outcomes = await client.sendAll(sender, messages);
      const receiver = await client.receiver({ address, filter: offsetFilter(offset) }, { credit_window: 200 });
      await client.collect(receiver, count, (m) => tagOf(m) === tag, 60000);
      const filter = receiver.remote.attach.source ? receiver.remote.attach.source.filter : null;
      await client.close();
      // The stream may hold many messages from other cases: summarise those.
      const all = receiver.inbox.map(streamDelivery);
      const contiguous = all.every((d, i) => i === 0 || d.offset === all[i - 1].offset + 1);
      return {
        outcomes, filter: toWire(filter), first: all[0], count: all.length, contiguous,
        last_offset: all[all.length - 1].offset, tagged: all.filter((d) => d.tag === tag),
      };
    },

    // Take `count` messages without settling them and keep the connection open
    // (the test then closes the tab: a WebSocket drop with no AMQP close).
    async holdUnsettled({ url, address, count }) {
      const client = await Client.open({ url });
      const receiver = await client.receiver(address, { autoaccept: false, credit_window: count });
      const got = await client.collect(receiver, count);
      window.heldClient = client;
      return got.map(messageToWire);
    },

    // Attach from `offset` first, then publish `count` tagged messages; return what arrived.
    async streamLive({ url, address, tag, count, offset }) {
      const client = await Client.open({ url });
      const receiver = await client.receiver({ address, filter: offsetFilter(offset) });
      const sender = await client.sender(address);
      const messages = Array.from({ length: count }, (_, i) => ({
        body: `${tag}-${i}`, application_properties: { tag, i },
      }));
      const outcomes = await client.sendAll(sender, messages);
      await client.collect(receiver, count, (m) => tagOf(m) === tag);
      const filter = receiver.remote.attach.source ? receiver.remote.attach.source.filter : null;
      await client.close();
      return { outcomes, filter: toWire(filter), deliveries: receiver.inbox.map(streamDelivery) };
    },
  };

  // RabbitMQ 4's /management from the page: a link pair (two links of one name)
  // on one session.  rhea keys a session's links by name alone, so the pair's
  // sender is kept under a key of its own and the session's attach handler
  // picks the pair's link by role (as conformance/node/gateway_cases.js does).
  function pairLinks(session, name, sender) {
    session.links[name + '\u0000sender'] = sender;
    delete session.links[name];
    if (!session.pairs) {
      session.pairs = {};
      const onAttach = session.on_attach;
      session.on_attach = function (frame) {
        const pair = this.pairs[frame.performative.name];
        if (!pair) return onAttach.call(this, frame);
        const link = frame.performative.role ? pair.sender : pair.receiver; // true: the peer receives
        this.remote.handles[frame.performative.handle] = link;
        link.on_attach(frame);
        link.remote.attach = frame.performative;
      };
    }
    session.pairs[name] = { sender, receiver: null };
    return (receiver) => { session.pairs[name].receiver = receiver; };
  }

  // Each request [method, path, body] in turn on one pair; -> [{status, body}]
  harness.management = async ({ url, requests, timeout = DEFAULT_TIMEOUT }) => {
    const client = await Client.open({ url });
    const name = 'management-link-pair-' + Math.random().toString(16).slice(2, 10);
    const properties = { paired: true };
    const session = client.conn.session_policy.get_session();
    const sender = session.open_sender({ name, source: { address: '/management' },
      target: { address: '/management' }, snd_settle_mode: 1, properties });
    const setReceiver = pairLinks(session, name, sender);
    await withTimeout(new Promise((resolve, reject) => {
      sender.once('sender_open', resolve);
      sender.once('sender_error', (ctx) => reject(new Error(JSON.stringify(errorToWire(ctx.sender.error)))));
    }), timeout, 'management request link');
    const receiver = session.open_receiver({ name, source: { address: '/management' },
      target: { address: '/management' }, snd_settle_mode: 1, credit_window: 0, autoaccept: false,
      properties });
    setReceiver(receiver);
    const inbox = [];
    const waiters = [];
    receiver.on('message', (ctx) => { inbox.push(ctx.message); waiters.splice(0).forEach((w) => w()); });
    await withTimeout(new Promise((resolve, reject) => {
      receiver.once('receiver_open', resolve);
      receiver.once('receiver_error', (ctx) => reject(new Error(JSON.stringify(errorToWire(ctx.receiver.error)))));
    }), timeout, 'management reply link');
    // RabbitMQ ends the session on a request it has no credit to answer
    receiver.add_credit(requests.length);
    await new Promise((resolve) => setTimeout(resolve, 0));
    const answers = [];
    for (const [method, path, body] of requests) {
      const id = 'req-' + Math.random().toString(16).slice(2);
      if (!sender.sendable()) {
        await withTimeout(new Promise((resolve) => sender.once('sendable', resolve)), timeout, 'credit');
      }
      sender.send({ message_id: id, to: path, subject: method, reply_to: '$me',
                    body: body === undefined || body === null ? null : fromWire(body) });
      for (;;) {
        const i = inbox.findIndex((m) => m.correlation_id === id);
        if (i >= 0) {
          const reply = inbox.splice(i, 1)[0];
          answers.push({ status: Number(reply.subject), body: toWire(reply.body) });
          break;
        }
        await withTimeout(new Promise((resolve) => waiters.push(resolve)), timeout, `answer to ${method} ${path}`);
      }
    }
    await client.close();
    return answers;
  };

  window.harness = harness;
  window.harnessInternals = { Client, fromWire, toWire, messageToWire, offsetFilter };
  document.getElementById('status').textContent = 'ready';
})();
