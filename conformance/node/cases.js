#!/usr/bin/env node
// Conformance cases for rhea (Node), over TCP or WebSocket.
//
//   node cases.js '{"case": "roundtrip", "transport": "tcp"|"ws",
//                   "host": ..., "port": ..., "ws_url": ..., "params": {...}}'
//
// Prints one JSON line on stdout: {"ok": true, "result": ...} or
// {"ok": false, "error": "..."}; the Python side (conformance/clients.py)
// makes the assertions.  Every wait has a timeout, and the whole run is
// capped by params.timeout (seconds, default 30), so nothing hangs.
'use strict';

const crypto = require('crypto');
const rhea = require('rhea');
const WebSocket = require('ws');

const {sleep, withTimeout, errText, runCase, close, detach, drain, receiveN, offsetOf} = require('./common');

const T = JSON.parse(process.argv[2]);
const P = T.params || {};
const types = rhea.types;
const STEP = 10000; // default timeout for one wait, ms

function other(transport) { return transport === 'tcp' ? 'ws' : 'tcp'; }

// -- connections and links -----------------------------------------------------

function connect(opts) {
    opts = opts || {};
    const transport = opts.transport || T.transport;
    const container = rhea.create_container({id: opts.container_id || 'rhea-conf-' + crypto.randomUUID()});
    const o = {reconnect: false};
    if (opts.username) {
        o.username = opts.username;
        o.password = opts.password;
    } else {
        o.username = 'anonymous'; // rhea picks SASL ANONYMOUS for a user without password
    }
    if (opts.idle_time_out) o.idle_time_out = opts.idle_time_out;
    if (opts.max_frame_size) o.max_frame_size = opts.max_frame_size;
    if (transport === 'ws') {
        const ws = container.websocket_connect(WebSocket);
        o.connection_details = ws(T.ws_url, ['amqp'], {maxPayload: 64 * 1024 * 1024});
    } else {
        o.host = T.host;
        o.port = T.port;
    }
    const conn = container.connect(o);
    conn.on('error', () => {}); // errors surface through the promises below
    return withTimeout(new Promise((resolve, reject) => {
        conn.once('connection_open', () => resolve(conn));
        conn.once('connection_error', (ctx) => reject(new Error('connection error: ' + errText(ctx))));
        conn.once('connection_close', (ctx) => reject(new Error('connection closed: ' + errText(ctx))));
        conn.once('disconnected', (ctx) => reject(new Error('disconnected: ' + errText(ctx))));
    }), STEP, 'connection open');
}


// Drop the connection without an AMQP close (the broker sees a lost socket).
function drop(conn) {
    conn.socket.end();
    if (conn.socket.destroy) conn.socket.destroy();
}

function openSender(conn, address, extra) {
    const opts = Object.assign({target: address === null ? {} : {address: address}}, extra || {});
    if (address === null) opts.target = null;
    const sender = conn.open_sender(opts);
    return withTimeout(new Promise((resolve, reject) => {
        sender.once('sendable', () => resolve(sender));
        sender.once('sender_error', (ctx) => reject(new Error('sender error: ' + errText(ctx))));
    }), STEP, 'sender credit');
}

// A receiver with manual credit and manual settlement, and an inbox.
function openReceiver(conn, source, credit, extra) {
    if (typeof source === 'string') source = {address: source};
    const receiver = conn.open_receiver(Object.assign(
        {source: source, credit_window: 0, autoaccept: false}, extra || {}));
    const inbox = [];
    let waiter = null;
    receiver.on('message', (ctx) => {
        inbox.push(ctx);
        if (waiter) { const w = waiter; waiter = null; w(); }
    });
    receiver.next = function (ms) {
        return withTimeout(new Promise((resolve) => {
            const take = () => resolve(inbox.shift());
            if (inbox.length) take(); else waiter = take;
        }), ms || STEP, 'a message on ' + JSON.stringify(source));
    };
    receiver.inbox = inbox;
    return withTimeout(new Promise((resolve, reject) => {
        receiver.once('receiver_open', () => {
            if (credit) receiver.add_credit(credit);
            resolve(receiver);
        });
        receiver.once('receiver_error', (ctx) => reject(new Error('receiver error: ' + errText(ctx))));
    }), STEP, 'receiver attach');
}


// Absent: no message arrives within ms.
async function nothingWithin(receiver, ms) {
    try {
        const ctx = await receiver.next(ms);
        return {unexpected: describe(ctx.message)};
    } catch (e) {
        return null;
    }
}


// Send and wait for the broker's outcome.
function send(sender, message) {
    return withTimeout(new Promise((resolve, reject) => {
        const go = () => {
            const delivery = sender.send(message);
            const done = (state) => (ctx) => {
                if (ctx.delivery !== delivery) return;
                off();
                resolve(state);
            };
            const handlers = {
                accepted: done('accepted'), rejected: done('rejected'),
                released: done('released'), modified: done('modified'),
            };
            const off = () => { for (const k in handlers) sender.removeListener(k, handlers[k]); };
            for (const k in handlers) sender.on(k, handlers[k]);
        };
        if (sender.sendable()) go(); else sender.once('sendable', go);
        sender.once('sender_error', (ctx) => reject(new Error('sender error: ' + errText(ctx))));
    }), STEP, 'an outcome');
}

// Send many without waiting for each outcome; resolve with all outcomes in order.
function sendAll(sender, messages) {
    return withTimeout(new Promise((resolve) => {
        const outcomes = new Array(messages.length);
        const index = new Map();
        let next = 0;
        let settled = 0;
        const record = (state) => (ctx) => {
            const i = index.get(ctx.delivery);
            if (i === undefined) return;
            outcomes[i] = state;
            if (++settled === messages.length) {
                for (const k of ['accepted', 'rejected', 'released', 'modified']) sender.removeAllListeners(k);
                sender.removeListener('sendable', pump);
                resolve(outcomes);
            }
        };
        for (const k of ['accepted', 'rejected', 'released', 'modified']) sender.on(k, record(k));
        const pump = () => {
            while (next < messages.length && sender.sendable()) {
                index.set(sender.send(messages[next]), next);
                next++;
            }
        };
        sender.on('sendable', pump);
        pump();
    }), STEP * 3, 'outcomes of ' + messages.length + ' messages');
}

// -- message descriptions (JSON) -----------------------------------------------

function plain(v) {
    if (Buffer.isBuffer(v)) return {binary: v.toString('hex')};
    if (v instanceof Date) return {timestamp: v.getTime()};
    if (Array.isArray(v)) return v.map(plain);
    if (v && typeof v === 'object') {
        if (v.typecode !== undefined && v.content !== undefined) return {section: v.typecode, content: plain(v.content)};
        if (v.descriptor !== undefined) return {described: plain(v.descriptor.value), value: plain(v.value)};
        const o = {};
        for (const k of Object.keys(v)) o[k] = plain(v[k]);
        return o;
    }
    if (typeof v === 'bigint') return Number(v);
    return v;
}

function describe(m) {
    const body = m.body;
    let kind = 'value';
    let content = body;
    if (body && body.typecode === 0x75) { kind = 'data'; content = body.multiple ? body.content : [body.content]; }
    else if (body && body.typecode === 0x76) { kind = 'sequence'; content = body.multiple ? body.content : [body.content]; }
    return {
        message_id: plain(m.message_id),
        correlation_id: plain(m.correlation_id),
        subject: m.subject, to: m.to, reply_to: m.reply_to,
        content_type: m.content_type === undefined ? undefined : String(m.content_type),
        group_id: m.group_id,
        user_id: m.user_id === undefined ? undefined : plain(m.user_id),
        durable: m.durable, priority: m.priority,
        delivery_count: m.delivery_count || 0,
        first_acquirer: m.first_acquirer,
        application_properties: plain(m.application_properties || {}),
        message_annotations: plain(m.message_annotations || {}),
        body_kind: kind,
        body: plain(content),
    };
}

// -- cases ---------------------------------------------------------------------

const cases = {};

cases.connect_anonymous = async () => {
    const conn = await connect();
    const caps = [].concat(conn.remote.open.offered_capabilities || []).map(String);
    await close(conn);
    return {open: true, offered_capabilities: caps};
};

cases.connect_plain = async () => {
    const conn = await connect({username: P.user, password: P.password});
    await close(conn);
    return {open: true};
};

cases.connect_bad_password = async () => {
    try {
        const conn = await connect({username: P.user, password: P.password});
        await close(conn);
        return {refused: false};
    } catch (e) {
        return {refused: true, error: String(e.message)};
    }
};

function richMessages(tag) {
    const props = (i) => ({
        message_id: tag + '-' + i,
        correlation_id: 'corr-' + i,
        subject: 'subject-' + i,
        reply_to: '/queues/reply-' + tag,
        content_type: 'application/octet-stream',
        group_id: 'group-1',
        user_id: Buffer.from('anonymous'),
        durable: true,
        priority: 7,
        application_properties: {
            str: 'text', int: 42, neg: -7, dbl: 3.5, bool: true, i: i,
            long: types.wrap_long(1099511627776), ulong: types.wrap_ulong(4503599627370496),
        },
        message_annotations: {'x-opt-conf': 'annotated', 'x-opt-num': 99},
    });
    const bodies = [
        rhea.message.data_section(Buffer.from([0, 1, 2, 253, 254, 255])),
        'a string value ☃',
        types.wrap_long(-1234567890123),
        3.25,
        true,
        null,
        types.wrap_binary(Buffer.from('binary value')),
        types.wrap_symbol('a-symbol'),
        {nested: {list: [1, 'two', 3.5], flag: false}},
        [1, 'two', [3]],
        rhea.message.sequence_section([1, 'two', 3.5]),
        types.wrap_timestamp(1700000000123),
        types.wrap_uuid(Buffer.from('0123456789abcdef0123456789abcdef', 'hex')),
    ];
    return bodies.map((body, i) => Object.assign(props(i), {body: body}));
}

cases.roundtrip = async () => {
    const conn = await connect();
    const q = P.queue;
    const messages = richMessages(P.tag);
    const sender = await openSender(conn, q);
    const outcomes = await sendAll(sender, messages);
    const receiver = await openReceiver(conn, q, messages.length);
    const got = await receiveN(receiver, messages.length);
    got.forEach((ctx) => ctx.delivery.accept());
    await close(conn);
    // What the broker should hand back: the message as this client itself
    // decodes its own encoding.
    const expected = messages.map((m) => describe(rhea.message.decode(rhea.message.encode(m))));
    return {outcomes: outcomes, messages: got.map((ctx) => describe(ctx.message)), expected: expected};
};

cases.many_in_order = async () => {
    const n = P.count;
    const conn = await connect();
    const receiver = await openReceiver(conn, P.queue, 0);
    receiver.set_credit_window(200); // rhea tops credit up as messages arrive
    receiver.flow(200);
    const sender = await openSender(conn, P.queue);
    const messages = [];
    for (let i = 0; i < n; i++) messages.push({application_properties: {seq: i}, body: 'm' + i});
    const outcomes = await sendAll(sender, messages);
    const got = await receiveN(receiver, n);
    got.forEach((ctx) => ctx.delivery.accept());
    await close(conn);
    return {
        accepted: outcomes.filter((o) => o === 'accepted').length,
        seqs: got.map((ctx) => ctx.message.application_properties.seq),
        bodies_ok: got.every((ctx, i) => ctx.message.body === 'm' + i),
    };
};

cases.large_message = async () => {
    const size = P.size;
    const payload = crypto.randomBytes(size);
    const conn = await connect({max_frame_size: P.max_frame_size});
    const sender = await openSender(conn, P.queue);
    const outcome = await send(sender, {message_id: 'big', body: rhea.message.data_section(payload)});
    const receiver = await openReceiver(conn, P.queue, 1);
    const ctx = await receiver.next(30000);
    ctx.delivery.accept();
    const body = ctx.message.body.content;
    const remoteMax = conn.remote.open.max_frame_size;
    await close(conn);
    return {
        outcome: outcome,
        received_size: body.length,
        intact: Buffer.compare(body, payload) === 0,
        local_max_frame_size: P.max_frame_size,
        remote_max_frame_size: remoteMax,
    };
};

cases.competing_consumers = async () => {
    const n = P.count;
    const c1 = await connect();
    const c2 = await connect();
    const r1 = await openReceiver(c1, P.queue, 0);
    const r2 = await openReceiver(c2, P.queue, 0);
    r1.set_credit_window(5); r1.flow(5);
    r2.set_credit_window(5); r2.flow(5);
    const pub = await connect();
    const sender = await openSender(pub, P.queue);
    const messages = [];
    for (let i = 0; i < n; i++) messages.push({message_id: 'c' + i, body: i});
    await sendAll(sender, messages);
    const seen = {a: [], b: []};
    const deadline = Date.now() + STEP;
    while (seen.a.length + seen.b.length < n && Date.now() < deadline) {
        while (r1.inbox.length) { const ctx = r1.inbox.shift(); ctx.delivery.accept(); seen.a.push(ctx.message.body); }
        while (r2.inbox.length) { const ctx = r2.inbox.shift(); ctx.delivery.accept(); seen.b.push(ctx.message.body); }
        await sleep(10);
    }
    await Promise.all([close(c1), close(c2), close(pub)]);
    return seen;
};

cases.dispositions = async () => {
    const conn = await connect();
    const sender = await openSender(conn, P.queue);
    await sendAll(sender, ['release-me', 'reject-me', 'modify-me'].map((b) => ({body: b})));
    const receiver = await openReceiver(conn, P.queue, 3);
    const [a, b, c] = await receiveN(receiver, 3);
    const first = [a, b, c].map((ctx) => describe(ctx.message));
    // One outcome per event-loop turn: rhea 3.0.5 batches dispositions of
    // consecutive deliveries into one range, and when a range starts with a
    // single delivery it does not compare states (session.js
    // write_dispositions: `first !== last && ...`), so release+reject written
    // together would both go out as `released`.  A rhea bug, not ours.
    a.delivery.release();
    await sleep(20);
    b.delivery.reject({condition: 'amqp:internal-error', description: 'conformance reject'});
    await sleep(20);
    c.delivery.modified({delivery_failed: true});
    receiver.add_credit(3);
    const again = [];
    again.push(describe((await receiver.next()).message));
    again.push(describe((await receiver.next()).message));
    const extra = await nothingWithin(receiver, 500);
    receiver.inbox.length = 0;
    await close(conn);
    return {first: first, again: again, extra: extra};
};

cases.redelivery_detach = async () => {
    const pub = await connect();
    const sender = await openSender(pub, P.queue);
    await send(sender, {body: 'redeliver-me'});
    const c1 = await connect();
    const r1 = await openReceiver(c1, P.queue, 1);
    const first = describe((await r1.next()).message);
    await detach(r1); // unsettled: goes back to the queue
    const c2 = await connect();
    const r2 = await openReceiver(c2, P.queue, 1);
    const ctx = await r2.next();
    ctx.delivery.accept();
    const second = describe(ctx.message);
    await Promise.all([close(pub), close(c1), close(c2)]);
    return {first: first, second: second};
};

cases.redelivery_drop = async () => {
    const pub = await connect();
    const sender = await openSender(pub, P.queue);
    await send(sender, {body: 'redeliver-me'});
    const c1 = await connect();
    const r1 = await openReceiver(c1, P.queue, 1);
    const first = describe((await r1.next()).message);
    drop(c1); // no AMQP close
    const c2 = await connect();
    const r2 = await openReceiver(c2, P.queue, 1);
    const ctx = await r2.next();
    ctx.delivery.accept();
    const second = describe(ctx.message);
    await Promise.all([close(pub), close(c2)]);
    return {first: first, second: second};
};


cases.drain = async () => {
    const conn = await connect();
    const sender = await openSender(conn, P.queue);
    await sendAll(sender, [1, 2, 3].map((i) => ({body: 'd' + i})));
    const receiver = await openReceiver(conn, P.queue, 10);
    await drain(receiver);
    const drained = receiver.inbox.map((ctx) => ctx.message.body);
    const credit_after = receiver.credit;
    receiver.inbox.forEach((ctx) => ctx.delivery.accept());
    receiver.inbox.length = 0;
    // Draining with nothing queued completes at once too.
    receiver.drain = false;
    receiver.add_credit(5);
    await drain(receiver);
    const empty = receiver.inbox.length;
    const credit_after_empty = receiver.credit;
    await close(conn);
    return {drained: drained, credit_after: credit_after, empty_drain_messages: empty,
            credit_after_empty: credit_after_empty};
};

cases.request_response = async () => {
    // Responder: serves one request from the service queue, replying to reply-to.
    const server = await connect();
    const service = await openReceiver(server, P.queue, 1);
    const client = await connect();
    const replies = await openReceiver(client, {dynamic: true}, 1);
    const replyTo = replies.source.address;
    const requests = await openSender(client, P.queue);
    const outcome = await send(requests, {message_id: 'req-1', reply_to: replyTo, body: 'ping'});
    const req = await service.next();
    req.delivery.accept();
    const responder = await openSender(server, req.message.reply_to);
    const replyOutcome = await send(responder, {correlation_id: req.message.message_id, body: 'pong:' + req.message.body});
    const reply = await replies.next();
    reply.delivery.accept();
    await Promise.all([close(server), close(client)]);
    return {reply_to: replyTo, request_outcome: outcome, reply_outcome: replyOutcome,
            reply: describe(reply.message)};
};

cases.anonymous_relay = async () => {
    const conn = await connect();
    const caps = [].concat(conn.remote.open.offered_capabilities || []).map(String);
    const relay = await openSender(conn, null);
    const outcomes = [];
    outcomes.push(await send(relay, {to: P.queue_a, body: 'to-a'}));
    outcomes.push(await send(relay, {to: P.queue_b, body: 'to-b'}));
    const badTo = await send(relay, {to: P.bad_to, body: 'nowhere'});
    const ra = await openReceiver(conn, P.queue_a, 1);
    const rb = await openReceiver(conn, P.queue_b, 1);
    const a = await ra.next();
    const b = await rb.next();
    a.delivery.accept();
    b.delivery.accept();
    await close(conn);
    return {offered_capabilities: caps, outcomes: outcomes, bad_to_outcome: badTo,
            a: describe(a.message), b: describe(b.message)};
};

function offsetSource(address, spec) {
    let value;
    if (spec && spec.offset !== undefined) value = types.wrap_ulong(spec.offset);
    else if (spec && spec.timestamp !== undefined) value = types.wrap_timestamp(spec.timestamp);
    else value = types.wrap_string(spec);
    return {
        address: address,
        filter: {'rabbitmq:stream-offset-spec': types.described(types.wrap_symbol('rabbitmq:stream-offset-spec'), value)},
    };
}


async function firstFrom(conn, spec) {
    const r = await openReceiver(conn, offsetSource(P.stream, spec), 1);
    const ctx = await r.next();
    ctx.delivery.accept();
    const applied = Object.keys((r.remote.attach.source && r.remote.attach.source.filter) || {});
    await detach(r);
    return {offset: offsetOf(ctx), body: ctx.message.body, applied_filters: applied};
}

cases.stream_offsets = async () => {
    const tag = P.tag;
    const conn = await connect();
    const tail = await openReceiver(conn, offsetSource(P.stream, 'next'), 100);
    const sender = await openSender(conn, P.stream);
    const batch1 = [0, 1, 2, 3, 4].map((i) => ({body: tag + '-' + i}));
    const outcomes = await sendAll(sender, batch1);
    const tailed = (await receiveN(tail, 5)).map((ctx) => {
        ctx.delivery.accept();
        return {offset: offsetOf(ctx), body: ctx.message.body, annotations: plain(ctx.message.message_annotations)};
    });
    const offsets = tailed.map((m) => m.offset);
    const result = {outcomes: outcomes, tailed: tailed};
    result.numeric = await firstFrom(conn, {offset: offsets[2]});
    result.first = await firstFrom(conn, 'first');
    result.last = await firstFrom(conn, 'last');
    result.interval = await firstFrom(conn, '10m');
    await sleep(50);
    const ts = Date.now();
    await sleep(50);
    await sendAll(sender, [5, 6].map((i) => ({body: tag + '-' + i})));
    result.timestamp = await firstFrom(conn, {timestamp: ts});
    result.tail_after = (await receiveN(tail, 2)).map((ctx) => ({offset: offsetOf(ctx), body: ctx.message.body}));
    const late = await openReceiver(conn, offsetSource(P.stream, 'next'), 5);
    result.next_new_attach = await nothingWithin(late, 300);
    await close(conn);
    return result;
};

// Two stream readers: one in rcv-settle-mode second, whose accepts (unsettled)
// wait for the broker's settlement, and one in mode first, which settles
// itself and expects nothing back; both go on reading.
cases.stream_settle_modes = async () => {
    const tag = P.tag;
    const conn = await connect();
    const second = await openReceiver(conn, offsetSource(P.stream, 'next'), 10, {rcv_settle_mode: 1});
    const first = await openReceiver(conn, offsetSource(P.stream, 'next'), 10);
    const settled = [];
    second.on('settled', (ctx) => settled.push(ctx.delivery.id));
    const sender = await openSender(conn, P.stream);
    const outcomes = await sendAll(sender, [0, 1, 2].map((i) => ({body: tag + '-s' + i})));
    const bySecond = await receiveN(second, 3);
    const byFirst = await receiveN(first, 3);
    bySecond.forEach((ctx) => ctx.delivery.accept());  // mode second: sent unsettled
    byFirst.forEach((ctx) => ctx.delivery.accept());   // mode first: sent settled
    const waited = Date.now();
    while (settled.length < 3 && Date.now() - waited < STEP) await sleep(20);
    await sendAll(sender, [{body: tag + '-after'}]);
    const after = [(await second.next()).message.body, (await first.next()).message.body];
    const result = {
        outcomes: outcomes,
        remote_rcv_settle_mode: [second.remote.attach.rcv_settle_mode, first.remote.attach.rcv_settle_mode],
        second_bodies: bySecond.map((ctx) => ctx.message.body),
        first_bodies: byFirst.map((ctx) => ctx.message.body),
        second_settled_by_broker: settled.length,
        second_locally_settled: bySecond.map((ctx) => ctx.delivery.settled),
        after: after,
    };
    await close(conn);
    return result;
};

cases.heartbeat = async () => {
    const conn = await connect({idle_time_out: P.idle_ms});
    const sender = await openSender(conn, P.queue);
    const receiver = await openReceiver(conn, P.queue, 2);
    const before = await send(sender, {body: 'before'});
    (await receiver.next()).delivery.accept();
    await sleep(P.idle_for_ms);
    const alive = conn.is_open();
    const after = await send(sender, {body: 'after'});
    const ctx = await receiver.next();
    ctx.delivery.accept();
    const remoteIdle = conn.remote.open.idle_time_out;
    await close(conn);
    return {before: before, alive_after_idle: alive, after: after, body: ctx.message.body,
            remote_idle_time_out: remoteIdle === undefined ? null : remoteIdle};
};

cases.cross_transport = async () => {
    // Publish on this transport, consume on the other.
    const pub = await connect({transport: T.transport});
    const sub = await connect({transport: other(T.transport)});
    const receiver = await openReceiver(sub, P.queue, 10);
    const sender = await openSender(pub, P.queue);
    const outcomes = await sendAll(sender, [0, 1, 2, 3, 4].map((i) => ({message_id: 'x' + i, body: 'via-' + T.transport + '-' + i})));
    const got = await receiveN(receiver, 5);
    got.forEach((ctx) => ctx.delivery.accept());
    await Promise.all([close(pub), close(sub)]);
    return {outcomes: outcomes, bodies: got.map((ctx) => ctx.message.body),
            publisher: T.transport, consumer: other(T.transport)};
};

// -- main ----------------------------------------------------------------------

// Errors from ws arrive as event objects, not Error instances.
runCase(cases, T, P, 'rhea');
