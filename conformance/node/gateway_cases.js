#!/usr/bin/env node
// Gateway conformance cases for rhea (Node): every link goes through an
// `amqpws-broker gateway` to the upstream broker (our own `serve`, or
// RabbitMQ 4), over WebSocket (subprotocol amqp) unless a case says tcp.
//
//   node gateway_cases.js '{"case": "window", "transport": "ws"|"tcp",
//                           "host": ..., "port": ..., "ws_url": ..., "params": {...}}'
//
// params.login_user / login_password: SASL PLAIN for every connection (the
// Python side talks straight to the upstream this way, e.g. `requests`);
// otherwise SASL ANONYMOUS unless a case says who.
// params.address_v1: the upstream is RabbitMQ 3.x (GATEWAY_UPSTREAM=rabbitmq310),
// whose AMQP 1.0 plugin knows only the v1 addresses: a queue is `/amq/queue/NAME`
// (it must exist; `/queue/NAME` declares it, see `declare_v1`), an exchange
// `/exchange/X/KEY`, and there is no anonymous relay (a null target ends the
// session), so the cases leave their relay steps out.
//
// Cases (params in brackets):
//   declare_v1 [queue, durable] RabbitMQ 3.x: declare a classic queue by attaching
//              a sender to `/queue/NAME` (target durable: unsettled-state when
//              `durable`, else none), then detach
//   requests   [requests: [[method, path, body], ...], unsettled] `/management`
//              requests in order on one link pair -> [{status, body} | {outcome}]
//   window     [queue, tag, count, window, refill_at, no_list_value] count rich
//              messages at-least-once while a receiver grants at most `window`
//              credit at a time, topping up when its credit is down to refill_at
//              (default window/2) (no_list_value: leave out the amqp-value
//              holding a list)
//   credit_topup [queue, count, grants, rounds] `count` messages queued first,
//              then a receiver granted credit 1 at a time, `grants` times, one
//              event-loop turn apart (so while deliveries are in flight, as rhea's
//              own credit_window tops up), and again once those have arrived, for
//              `rounds` rounds or until the link fails -> what arrived, whether
//              the link stayed up, what came after the credit was spent
//   management [queue, stream, tag] declare, bind to amq.topic, route, unbind, delete
//   pair_at_once [queue] a /management link pair attached in one write (corked TCP)
//   stream     [stream, tag, count, from_index] publish, read from first, from a
//              numeric offset, and from first again on a second connection
//   missing    [missing, queue] attach both ways to a queue that does not exist,
//              then use the same connection on a new session
//   drain      [queue, arrived_first] credit 10 and drain on 3 messages; drain on
//              none; no leftover credit afterwards.  arrived_first (RabbitMQ 3.x):
//              drain once the 3 have arrived, and go on on a new link (3.10 sends
//              nothing more on a link it has drained)
//   drain_spent [queue] credit 3 and drain on 3 messages queued: the messages
//              spend the credit, and the drain's answer (a flow that moves no
//              count) must still come, as rhea reports a drain only on it
//   outcomes   [queue, exchange_key, missing_exchange] released / rejected /
//              modified from a consumer; released and rejected to a publisher
//   restart    [queue, tag, count, kill_after, readyz, pace_ms] a producer and a
//              consumer across an upstream restart (the Python side kills and
//              restarts it when this prints {"event": "kill"}; both re-attach once
//              /readyz says 200) -> ids accepted, ids received, errors seen
//   reattach   [queue, tag, count, kill_after, api, pace_ms, stream] a producer and
//              a consumer that desire amqpws:reattach, across an upstream restart
//              (the kill asked for as in `restart`): neither link may fail, the
//              gateway re-attaches both -> ids accepted, ids received, errors
//              (stream: the consumer reads from `first` -> the offsets too)
//   security   [allowed, other, user, password, presettled, answer_ms] the
//              gateway's own users and permissions (the secure gateway)
//   observe    [queue, api] links open on a ws and a tcp connection, with two
//              deliveries unsettled, while /api/gateway and /metrics are read
//
// Prints {"ok": true, "result": ...} or {"ok": false, "error": "..."} as its
// last line (conformance/test_gateway.py asserts on the result).  Every wait
// has a timeout and the whole case is capped by params.timeout (s, default 30).
'use strict';

const crypto = require('crypto');
const rhea = require('rhea');
const WebSocket = require('ws');

const {sleep, withTimeout, errText, errorText, close, detach, drain, receiveN, offsetOf} = require('./common');

const T = JSON.parse(process.argv[2]);
const P = T.params || {};
const types = rhea.types;
const STEP = 10000; // ms for one wait
const OFFSET_SPEC = 'rabbitmq:stream-offset-spec';
const MANAGEMENT = '/management';

// -- connections and links -----------------------------------------------------

function errorOf(ctx, what) {
    const e = ctx && ((what && ctx[what] && ctx[what].error) || ctx.error ||
                      (ctx.session && ctx.session.error) || (ctx.connection && ctx.connection.error));
    if (!e) return null;
    return {condition: e.condition ? String(e.condition) : null,
            description: e.description ? String(e.description) : String(e.message || '')};
}

function connect(opts) {
    opts = opts || {};
    const transport = opts.transport || T.transport || 'ws';
    const container = rhea.create_container({id: 'rhea-gateway-' + crypto.randomUUID()});
    const o = {reconnect: false};
    if (opts.username) {
        o.username = opts.username;
        o.password = opts.password;
    } else if (P.login_user && !opts.anonymous) { // straight to the upstream
        o.username = P.login_user;
        o.password = P.login_password;
    } else {
        o.username = 'anonymous'; // rhea picks SASL ANONYMOUS for a user without password
    }
    if (transport === 'ws') {
        const ws = container.websocket_connect(WebSocket);
        o.connection_details = ws(opts.ws_url || T.ws_url, ['amqp'], {maxPayload: 64 * 1024 * 1024});
    } else {
        o.host = T.host;
        o.port = T.port;
    }
    const conn = container.connect(o);
    conn.on('error', () => {}); // errors surface through the promises below
    container.on('error', () => {});
    conn.events = []; // every error the connection, its sessions and links reported
    const note = (what) => (ctx) => conn.events.push(Object.assign({event: what}, errorOf(ctx) || {}));
    for (const ev of ['sender_error', 'receiver_error', 'session_error', 'connection_error', 'disconnected']) {
        conn.on(ev, note(ev));
    }
    return withTimeout(new Promise((resolve, reject) => {
        const fail = (what) => (ctx) => {
            const e = errorOf(ctx) || {condition: null, description: errText(ctx)};
            reject(Object.assign(new Error(what + ': ' + errText(ctx)), {amqp: e}));
        };
        conn.once('connection_open', () => resolve(conn));
        conn.once('connection_error', fail('connection error'));
        conn.once('connection_close', fail('connection closed'));
        conn.once('disconnected', fail('disconnected'));
    }), STEP, 'connection open');
}

// connect(), or why not: {refused: true, error: {condition, description}}
async function tryConnect(opts) {
    try {
        const conn = await connect(opts);
        await close(conn);
        return {refused: false};
    } catch (e) {
        return {refused: true, error: e.amqp || {condition: null, description: String(e.message)}};
    }
}


// rhea decodes a null terminus as a typed null (truthy): README findings.
function nullTerminus(t) {
    return t === null || t === undefined || (typeof t === 'object' && 'value' in t && t.value === null &&
                                             t.address === undefined);
}

// A link attached, or refused: resolves {link} or {error, level} where level
// says who reported the refusal (the link's detach, or its session's end).
function attached(link, kind) {
    const session = link.session;
    const conn = session.connection;
    const on = [];
    const listen = (emitter, ev, fn) => { emitter.once(ev, fn); on.push([emitter, ev, fn]); };
    return withTimeout(new Promise((resolve) => {
        let done = false;
        const finish = (v) => { if (!done) { done = true; resolve(v); } };
        listen(link, kind + '_open', () => {
            // A refusal is an attach with a null terminus, then a detach (which finishes).
            const attach = link.remote.attach || {};
            if (!nullTerminus(kind === 'receiver' ? attach.source : attach.target)) finish({link});
        });
        listen(link, kind + '_error', (ctx) => finish({error: errorOf(ctx, kind), level: 'link'}));
        listen(link, kind + '_close', (ctx) => finish({error: errorOf(ctx, kind), level: 'link'}));
        listen(session, 'session_error', (ctx) => finish({error: errorOf(ctx, 'session'), level: 'session'}));
        listen(session, 'session_close', (ctx) => finish({error: errorOf(ctx, 'session'), level: 'session'}));
        listen(conn, 'disconnected', (ctx) => finish({error: errorOf(ctx) || {condition: null,
            description: 'disconnected: ' + errText(ctx)}, level: 'connection'}));
        listen(conn, 'connection_close', (ctx) => finish({error: errorOf(ctx, 'connection'), level: 'connection'}));
    }), STEP, kind + ' attach').finally(() => {
        for (const [emitter, ev, fn] of on) emitter.removeListener(ev, fn);
    });
}

async function openSender(on, address, extra) {
    const opts = Object.assign({target: address === null ? {} : {address: address}}, extra || {});
    const sender = on.open_sender(opts);
    const r = await attached(sender, 'sender');
    if (r.error) throw Object.assign(new Error('sender refused: ' + JSON.stringify(r)), {amqp: r.error});
    return sender;
}

// A receiver with manual credit and manual settlement, and an inbox.
async function openReceiver(on, source, credit, extra) {
    if (typeof source === 'string') source = {address: source};
    const receiver = on.open_receiver(Object.assign({source: source, credit_window: 0, autoaccept: false}, extra || {}));
    inbox(receiver);
    const r = await attached(receiver, 'receiver');
    if (r.error) throw Object.assign(new Error('receiver refused: ' + JSON.stringify(r)), {amqp: r.error});
    if (credit) receiver.add_credit(credit);
    return receiver;
}

function inbox(receiver) {
    const box = [];
    let waiter = null;
    receiver.on('message', (ctx) => {
        box.push(ctx);
        if (waiter) { const w = waiter; waiter = null; w(); }
    });
    receiver.next = function (ms) {
        let take = null;
        return withTimeout(new Promise((resolve) => {
            take = () => resolve(box.shift());
            if (box.length) take(); else waiter = take;
        }), ms || STEP, 'a message on ' + JSON.stringify(receiver.source && receiver.source.address))
            .finally(() => { if (waiter === take) waiter = null; }); // a timed-out wait takes nothing
    };
    receiver.inbox = box;
    return receiver;
}


async function nothingWithin(receiver, ms) {
    try {
        const ctx = await receiver.next(ms);
        return {unexpected: describe(ctx.message)};
    } catch (e) {
        return null;
    }
}


function stateOf(delivery) {
    const s = delivery.remote_state;
    const name = s && s.constructor && s.constructor.composite_type;
    if (!s) return 'settled';
    if (name) return String(name).replace(/^amqp:/, '').replace(/:list$/, '');
    return String(s);
}

// Send and wait for the broker's outcome: 'accepted', 'released', or
// {rejected: {condition, description}} / 'modified'.
function send(sender, message, ms) {
    return withTimeout(new Promise((resolve, reject) => {
        const go = () => {
            const delivery = sender.send(message);
            const done = (state) => (ctx) => {
                if (ctx.delivery !== delivery) return;
                off();
                if (state === 'rejected') {
                    const e = ctx.delivery.remote_state && ctx.delivery.remote_state.error;
                    resolve({rejected: e ? {condition: String(e.condition), description: String(e.description || '')} : null});
                } else resolve(state);
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
    }), ms || STEP, 'an outcome');
}

// Send many without waiting for each outcome; resolve with all outcomes in order.
function sendAll(sender, messages, ms) {
    return withTimeout(new Promise((resolve) => {
        const outcomes = new Array(messages.length);
        const index = new Map();
        let next = 0;
        let settled = 0;
        const states = ['accepted', 'rejected', 'released', 'modified'];
        const handlers = {};
        const finish = () => {
            for (const k of states) sender.removeListener(k, handlers[k]);
            sender.removeListener('sendable', pump);
            resolve(outcomes);
        };
        const record = (state) => (ctx) => {
            const i = index.get(ctx.delivery);
            if (i === undefined) return;
            outcomes[i] = state;
            if (++settled === messages.length) finish();
        };
        for (const k of states) { handlers[k] = record(k); sender.on(k, handlers[k]); }
        const pump = () => {
            while (next < messages.length && sender.sendable()) {
                index.set(sender.send(messages[next]), next);
                next++;
            }
        };
        sender.on('sendable', pump);
        pump();
        if (!messages.length) finish();
    }), ms || STEP * 3, 'outcomes of ' + messages.length + ' messages');
}

// -- message descriptions (JSON) -----------------------------------------------

function plain(v) {
    if (Buffer.isBuffer(v)) return {binary: v.toString('hex')};
    if (v instanceof Date) return {timestamp: v.getTime()};
    if (Array.isArray(v)) return v.map(plain);
    if (v && typeof v === 'object') {
        if (v.typecode !== undefined && v.content !== undefined) return {section: v.typecode, content: plain(v.content)};
        if (v.descriptor !== undefined) return {described: plain(v.descriptor.value), value: plain(v.value)};
        if (typeof v.toRheaTyped === 'function' && 'value' in v) return plain(v.value);
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
        durable: m.durable, priority: m.priority,
        delivery_count: m.delivery_count || 0,
        first_acquirer: m.first_acquirer,
        application_properties: plain(m.application_properties || {}),
        message_annotations: plain(m.message_annotations || {}),
        body_kind: kind,
        body: plain(content),
    };
}


function offsetSource(address, spec) {
    const value = typeof spec === 'number' ? types.wrap_ulong(spec) : types.wrap_string(spec);
    return {address: address, filter: {[OFFSET_SPEC]: types.described(types.wrap_symbol(OFFSET_SPEC), value)}};
}

function appliedFilters(receiver) {
    const source = receiver.remote.attach && receiver.remote.attach.source;
    return Object.keys((source && source.filter) || {});
}

// -- /management (RabbitMQ 4's HTTP over AMQP) ---------------------------------

// A link pair on `on` (a connection or a session): the request link
// pre-settled as RabbitMQ's clients open it (or unsettled, to see an outcome).
//
// rhea keys a session's links by name alone (Session.links, on_attach), so two
// links with one name replace each other: the sender is kept under a key of
// its own, and the session's attach handler picks the pair's link by role.
function pairLinks(session, name, sender) {
    session.links[name + '\u0000sender'] = sender;
    delete session.links[name];
    if (!session.pairs) {
        session.pairs = {};
        const onAttach = session.on_attach;
        session.on_attach = function (frame) {
            const pair = this.pairs[frame.performative.name];
            if (!pair) return onAttach.call(this, frame);
            const link = frame.performative.role ? pair.sender : pair.receiver; // role true: peer receives
            this.remote.handles[frame.performative.handle] = link;
            link.on_attach(frame);
            link.remote.attach = frame.performative;
        };
    }
    session.pairs[name] = {sender: sender, receiver: null};
    return (receiver) => { session.pairs[name].receiver = receiver; };
}

// opts.unsettled: the request link unsettled (to see an outcome);
// opts.together: attach both links at once, in one TCP write (see the
// `pair_at_once` case), instead of the sender first and the receiver once the
// sender is attached, as proton's blocking clients do.
async function management(on, opts) {
    opts = opts || {};
    const unsettled = Boolean(opts.unsettled);
    const name = 'management-link-pair-' + crypto.randomUUID().slice(0, 8);
    const properties = {paired: true};
    const session = on.create_session ? on.session_policy.get_session() : on; // a connection's default session
    const conn = session.connection;
    if (opts.together) conn.socket.cork(); // both attaches in one segment: one read at the gateway
    // both ends named on both links, as RabbitMQ's clients attach them
    const requests = session.open_sender({name: name, source: {address: MANAGEMENT}, target: {address: MANAGEMENT},
                                          snd_settle_mode: unsettled ? 0 : 1, properties: properties});
    const setReceiver = pairLinks(session, name, requests);
    const sent = attached(requests, 'sender');
    if (!opts.together) {
        const r = await sent;
        if (r.error) throw Object.assign(new Error('management link refused: ' + JSON.stringify(r)), {amqp: r.error, level: r.level});
    }
    const replies = session.open_receiver({name: name, source: {address: MANAGEMENT}, target: {address: MANAGEMENT},
                                           snd_settle_mode: 1, credit_window: 0, autoaccept: false,
                                           properties: properties});
    setReceiver(replies);
    inbox(replies);
    const received = attached(replies, 'receiver');
    if (opts.together) setImmediate(() => conn.socket.uncork()); // rhea writes on the next tick
    for (const r of await Promise.all([sent, received])) {
        if (r.error) throw Object.assign(new Error('management link refused: ' + JSON.stringify(r)), {amqp: r.error, level: r.level});
    }
    // Credit for the answers must be on the wire before the first request:
    // RabbitMQ ends the session (precondition-failed) on a request it has no
    // credit to answer, and (window-violation) on a flow sent before its begin.
    // rhea writes on the next tick, sessions' transfers before links' flows.
    replies.add_credit(8);
    await new Promise((resolve) => setImmediate(resolve));
    return {
        requests: requests,
        replies: replies,
        // -> {status, body}, or {outcome} when the request was not accepted
        async request(method, path, body) {
            const id = crypto.randomUUID();
            const message = {message_id: id, to: path, subject: method, reply_to: '$me',
                             body: body === undefined ? null : body};
            if (unsettled) {
                const outcome = await send(requests, message);
                if (outcome !== 'accepted') return {outcome: outcome};
            } else {
                if (!requests.sendable()) {
                    await withTimeout(new Promise((resolve) => requests.once('sendable', resolve)),
                                      STEP, 'management credit');
                }
                requests.send(message);
            }
            for (;;) {
                const ctx = await replies.next(opts.answer_ms || STEP).catch((e) => {
                    throw new Error('no answer to ' + method + ' ' + path + ': ' + e.message);
                });
                replies.add_credit(1);
                if (String(ctx.message.correlation_id) === id) {
                    return {status: Number(ctx.message.subject), body: plain(ctx.message.body)};
                }
            }
        },
    };
}

function enc(s) { return encodeURIComponent(s); }

// A queue's address: RabbitMQ's v2 `/queues/NAME`, or on RabbitMQ 3.x (address_v1)
// `/amq/queue/NAME`, the v1 address of a queue that must exist (as `/queues/` is
// on `serve --no-auto-create` and RabbitMQ 4).
function qaddr(name) { return P.address_v1 ? '/amq/queue/' + name : '/queues/' + enc(name); }

// An exchange (and routing key) as a target: `/exchanges/X/KEY`, or v1 `/exchange/X/KEY`.
function xaddr(exchange, key) {
    if (P.address_v1) return '/exchange/' + exchange + (key === undefined ? '' : '/' + key);
    return '/exchanges/' + enc(exchange) + (key === undefined ? '' : '/' + enc(key));
}

// -- cases ---------------------------------------------------------------------

const cases = {};

// RabbitMQ 3.x: attaching to `/queue/NAME` declares a classic queue, durable when
// the target is (it must match: attaching again with another durability ends the
// session, precondition-failed), so the cases then use `/amq/queue/NAME`.
cases.declare_v1 = async () => {
    const conn = await connect();
    const target = {address: '/queue/' + P.queue, durable: P.durable ? 2 : 0};
    const sender = conn.open_sender({target: target});
    const r = await attached(sender, 'sender');
    if (r.error) throw Object.assign(new Error('declare refused: ' + JSON.stringify(r)), {amqp: r.error});
    const echoed = sender.remote.attach.target;
    await detach(sender);
    await close(conn);
    return {address: echoed && echoed.address, durable: echoed && Number(echoed.durable || 0)};
};

cases.requests = async () => {
    const conn = await connect();
    const m = await management(conn, {unsettled: P.unsettled});
    const out = [];
    for (const [method, path, body] of P.requests) out.push(await m.request(method, path, body));
    await close(conn);
    return out;
};

// A /management link pair attached at once (both attaches in one write),
// as rhea and RabbitMQ's asynchronous clients do, then one request.
cases.pair_at_once = async () => {
    const conn = await connect();
    const r = {};
    try {
        const m = await management(conn, {together: true});
        r.answer = await m.request('GET', '/queues/' + enc(P.queue));
    } catch (e) {
        r.error = e.amqp || {description: String(e.message)};
    }
    r.events = conn.events;
    r.connection_open_after = conn.is_open();
    if (conn.is_open()) await close(conn);
    return r;
};

function richMessage(tag, i) {
    let bodies = [
        () => rhea.message.data_section(Buffer.from([0, 1, 2, i & 255, 254, 255])),
        () => 'a string value ☃ ' + i,
        () => types.wrap_long(-1234567890123 - i),
        () => ({nested: {list: [1, 'two', 3.5], flag: false}, i: i}),
        () => [i, 'two', [3]],
        () => rhea.message.sequence_section([i, 'two', 3.5]),
        () => types.wrap_binary(Buffer.from('binary value ' + i)),
        () => null,
        () => types.wrap_symbol('a-symbol-' + i),
        () => 2.25 + i,
    ];
    if (P.no_list_value) bodies = bodies.filter((_, k) => k !== 4); // [i, 'two', [3]]
    return {
        message_id: tag + '-' + i,
        correlation_id: 'corr-' + i,
        subject: 'subject-' + i,
        reply_to: '/queues/reply-' + tag,
        content_type: 'application/octet-stream',
        group_id: 'group-1',
        durable: true,
        priority: i % 10,
        application_properties: {
            seq: i, str: 'text ' + i, neg: -7, dbl: 3.5, bool: i % 2 === 0,
            long: types.wrap_long(1099511627776 + i), ulong: types.wrap_ulong(4503599627370496),
            nothing: null,
        },
        message_annotations: {'x-opt-conf': 'annotated', 'x-opt-num': i},
        body: bodies[i % bodies.length](),
    };
}

cases.window = async () => {
    const n = P.count;
    const windowSize = P.window;
    const refillAt = P.refill_at === undefined ? windowSize / 2 : P.refill_at;
    const conn = await connect();
    const receiver = await openReceiver(conn, P.queue, windowSize);
    let maxCredit = receiver.credit;
    const got = [];
    const all = new Promise((resolve) => {
        const take = () => {
            while (receiver.inbox.length) {
                const ctx = receiver.inbox.shift();
                got.push(ctx);
                ctx.delivery.accept();
                // top up to the window once half of it is spent: never more than `window`
                if (receiver.credit <= refillAt) {
                    receiver.add_credit(windowSize - receiver.credit);
                    maxCredit = Math.max(maxCredit, receiver.credit);
                }
            }
            if (got.length >= n) resolve();
        };
        receiver.on('message', () => setImmediate(take));
        take();
    });
    const pub = await connect();
    const sender = await openSender(pub, P.queue);
    const messages = [];
    for (let i = 0; i < n; i++) messages.push(richMessage(P.tag, i));
    const outcomes = await sendAll(sender, messages, 30000);
    await withTimeout(all, 20000, 'all ' + n + ' messages (have ' + got.length + ')');
    const extra = await nothingWithin(receiver, 300);
    await Promise.all([close(pub), close(conn)]);
    const tally = {};
    outcomes.forEach((o) => { tally[o] = (tally[o] || 0) + 1; });
    const expected = messages.map((m) => describe(rhea.message.decode(rhea.message.encode(m))));
    return {outcomes: tally, max_credit: maxCredit, extra: extra,
            messages: got.map((ctx) => describe(ctx.message)), expected: expected};
};

cases.credit_topup = async () => {
    const address = qaddr(P.queue);
    const conn = await connect();
    const sender = await openSender(conn, address);
    const bodies = [];
    for (let i = 0; i < P.count; i++) bodies.push('t' + i);
    const r = {sent: await sendAll(sender, bodies.map((b) => ({message_id: b, body: b})))};
    const receiver = await openReceiver(conn, address, 0);
    const errors = [];
    receiver.on('receiver_error', (ctx) => errors.push(errorOf(ctx, 'receiver')));
    receiver.on('receiver_close', (ctx) => errors.push(errorOf(ctx, 'receiver') || {condition: 'closed'}));
    r.rounds = 0;
    while (r.rounds < (P.rounds || 1) && !errors.length) {
        r.rounds++;
        for (let i = 0; i < P.grants; i++) {
            receiver.add_credit(1);
            await new Promise((resolve) => setImmediate(resolve));
        }
        const deadline = Date.now() + 3000;
        while (receiver.inbox.length < r.rounds * P.grants && !errors.length && Date.now() < deadline) await sleep(5);
    }
    await sleep(300); // anything beyond the credit would be here by now
    r.received = receiver.inbox.map((ctx) => ctx.message.body);
    r.credit_after = receiver.credit;
    r.errors = errors;
    r.link_open = receiver.is_open();
    receiver.inbox.forEach((ctx) => ctx.delivery.accept());
    r.events = conn.events;
    await close(conn);
    return r;
};

cases.management = async () => {
    const Q = P.queue;
    const S = P.stream;
    const key = 'gw.' + P.tag + '.#';
    const conn = await connect();
    const m = await management(conn);
    const r = {};
    r.declare_queue = await m.request('PUT', '/queues/' + enc(Q), {durable: true, arguments: {'x-queue-type': 'classic'}});
    r.declare_queue_again = await m.request('PUT', '/queues/' + enc(Q), {durable: true, arguments: {'x-queue-type': 'classic'}});
    r.declare_inequivalent = await m.request('PUT', '/queues/' + enc(Q), {durable: true, arguments: {'x-queue-type': 'stream'}});
    r.declare_stream = await m.request('PUT', '/queues/' + enc(S), {durable: true, arguments: {'x-queue-type': 'stream'}});
    r.bind = await m.request('POST', '/bindings', {source: 'amq.topic', destination_queue: Q,
                                                   binding_key: key, arguments: {}});
    const sender = await openSender(conn, '/exchanges/amq.topic/' + enc('gw.' + P.tag + '.x'));
    r.routed = await send(sender, {message_id: 'via-topic', body: 'routed ' + P.tag});
    r.get_queue = await m.request('GET', '/queues/' + enc(Q));
    const receiver = await openReceiver(conn, '/queues/' + enc(Q), 1);
    const ctx = await receiver.next();
    ctx.delivery.accept();
    r.received = describe(ctx.message);
    r.unbind = await m.request('DELETE', '/bindings/src=amq.topic;dstq=' + enc(Q) + ';key=' + enc(key) + ';args=');
    r.routed_after_unbind = await send(sender, {message_id: 'nowhere', body: 'unrouted'});
    await detach(receiver);
    r.delete_queue = await m.request('DELETE', '/queues/' + enc(Q));
    r.delete_stream = await m.request('DELETE', '/queues/' + enc(S));
    r.get_deleted = await m.request('GET', '/queues/' + enc(Q));
    await close(conn);
    return r;
};

cases.stream = async () => {
    const address = qaddr(P.stream);
    const n = P.count;
    const conn = await connect();
    const sender = await openSender(conn, address);
    const messages = [];
    for (let i = 0; i < n; i++) {
        messages.push({message_id: P.tag + '-' + i, application_properties: {i: i}, body: P.tag + '-' + i});
    }
    const outcomes = await sendAll(sender, messages);
    const read = async (on, spec, count) => {
        const receiver = await openReceiver(on, offsetSource(address, spec), count);
        const got = await receiveN(receiver, count);
        got.forEach((ctx) => ctx.delivery.accept());
        const extra = await nothingWithin(receiver, 200);
        const applied = appliedFilters(receiver);
        await detach(receiver);
        return {applied: applied, extra: extra,
                offsets: got.map(offsetOf), bodies: got.map((ctx) => ctx.message.body)};
    };
    const r = {outcomes: outcomes};
    r.first = await read(conn, 'first', n);
    const from = r.first.offsets[P.from_index];
    r.numeric = await read(conn, from, n - P.from_index);
    r.numeric_from = from;
    const other = await connect();
    r.second_reader = await read(other, 'first', n);
    await Promise.all([close(conn), close(other)]);
    return r;
};

cases.missing = async () => {
    const conn = await connect();
    const r = {};
    // The default session: a receiver from the missing queue.
    const receiver = conn.open_receiver({source: {address: qaddr(P.missing)}, credit_window: 5});
    r.receiver = await attached(receiver, 'receiver');
    delete r.receiver.link;
    // A sender to it on a session of its own.
    const s1 = conn.create_session();
    s1.begin();
    const sender = s1.open_sender({target: {address: qaddr(P.missing)}});
    r.sender = await attached(sender, 'sender');
    // RabbitMQ 3.x attaches a sender to a missing `/amq/queue/` (it publishes
    // through the default exchange): what becomes of a message sent on it
    if (!r.sender.error) r.sender.outcome = await send(sender, {body: 'to ' + P.missing});
    delete r.sender.link;
    r.connection_open_after = conn.is_open();
    // The connection stays usable: a new session reaches an existing queue.
    const s2 = conn.create_session();
    s2.begin();
    const ok = await openSender(s2, qaddr(P.queue));
    r.outcome_after = await send(ok, {body: 'after ' + P.missing});
    const back = await openReceiver(s2, qaddr(P.queue), 1);
    const ctx = await back.next();
    ctx.delivery.accept();
    r.body_after = ctx.message.body;
    r.events = conn.events;
    await close(conn);
    return r;
};


cases.drain_spent = async () => {
    const address = qaddr(P.queue);
    const conn = await connect();
    const sender = await openSender(conn, address);
    await sendAll(sender, [1, 2, 3].map((i) => ({body: 's' + i})));
    const receiver = await openReceiver(conn, address, 0);
    const answered = withTimeout(new Promise((resolve) => {
        receiver.once('receiver_drained', () => resolve(true));
    }), STEP, 'receiver_drained').catch(() => false);
    receiver.drain = true;
    receiver.add_credit(3);  // one flow: credit 3, drain
    const r = {answered: await answered};
    r.received = receiver.inbox.map((ctx) => ctx.message.body);
    r.credit_after = receiver.credit;
    receiver.inbox.forEach((ctx) => ctx.delivery.accept());
    await close(conn);
    return r;
};


cases.drain = async () => {
    const address = qaddr(P.queue);
    const conn = await connect();
    const sender = await openSender(conn, address);
    const outcomes = await sendAll(sender, [1, 2, 3].map((i) => ({body: 'd' + i})));
    const receiver = await openReceiver(conn, address, 10);
    if (P.arrived_first) {
        const deadline = Date.now() + STEP;
        while (receiver.inbox.length < 3 && Date.now() < deadline) await sleep(10);
    }
    await drain(receiver);
    const r = {outcomes: outcomes};
    r.drained = receiver.inbox.map((ctx) => ctx.message.body);
    r.credit_after = receiver.credit;
    receiver.inbox.forEach((ctx) => ctx.delivery.accept());
    receiver.inbox.length = 0;
    // Nothing arrives once drained: the credit is gone end to end.
    await send(sender, {body: 'd4'});
    r.after_drain = await nothingWithin(receiver, 400);
    // A drain with nothing queued completes at once too (d4 first).
    let again = receiver;
    if (P.arrived_first) {
        await detach(receiver);
        again = await openReceiver(conn, address, 0);
    } else {
        receiver.drain = false;
    }
    again.add_credit(1);
    const d4 = await again.next();
    d4.delivery.accept();
    r.d4 = d4.message.body;
    again.add_credit(5);
    await drain(again);
    r.empty_drain_messages = again.inbox.length;
    r.credit_after_empty = again.credit;
    await close(conn);
    return r;
};

cases.outcomes = async () => {
    const address = qaddr(P.queue);
    const conn = await connect();
    const sender = await openSender(conn, address);
    const r = {};
    // no_modified: RabbitMQ 3.x knows accepted, rejected and released only (its
    // source's outcomes) and ends the session on a `modified`
    const bodies = ['release-me', 'reject-me', 'modify-me', 'accept-me'].filter((b) => !(P.no_modified && b === 'modify-me'));
    r.sent = await sendAll(sender, bodies.map((b) => ({body: b})));
    const receiver = await openReceiver(conn, address, bodies.length);
    const got = await receiveN(receiver, bodies.length);
    r.first = got.map((ctx) => ctx.message.body);
    r.source_outcomes = plain((receiver.remote.attach.source || {}).outcomes || null);
    const by = (body) => got.find((ctx) => ctx.message.body === body);
    // One outcome per event-loop turn (rhea coalesces dispositions: README findings).
    by('release-me').delivery.release();
    await sleep(20);
    by('reject-me').delivery.reject({condition: 'amqp:internal-error', description: 'conformance reject'});
    await sleep(20);
    if (!P.no_modified) {
        by('modify-me').delivery.modified({delivery_failed: true});
        await sleep(20);
    }
    by('accept-me').delivery.accept();
    receiver.add_credit(4);
    const again = await receiveN(receiver, P.no_modified ? 1 : 2);
    r.again = again.map((ctx) => ({body: ctx.message.body, delivery_count: ctx.message.delivery_count || 0}));
    again.forEach((ctx) => ctx.delivery.accept());
    r.extra = await nothingWithin(receiver, 500);
    // Outcomes to a publisher: an exchange that routes nowhere releases; a
    // relay message to an exchange that does not exist is rejected.
    const unrouted = await openSender(conn, xaddr('amq.topic', P.exchange_key));
    r.unrouted = await send(unrouted, {body: 'to nobody'});
    if (!P.address_v1) { // RabbitMQ 3.x has no anonymous relay
        const relay = await openSender(conn, null);
        r.relay_missing_exchange = await send(relay, {to: xaddr(P.missing_exchange), body: 'nowhere'});
        r.relay_ok = await send(relay, {to: address, body: 'via relay'});
        const last = await receiver.next();
        last.delivery.accept();
        r.relay_body = last.message.body;
    }
    r.events = conn.events;
    await close(conn);
    return r;
};

// -- restart: a producer and a consumer across an upstream restart ----------------

function emit(obj) { process.stdout.write(JSON.stringify(obj) + '\n'); }

async function waitReady(url, ms) {
    const deadline = Date.now() + ms;
    let polls = 0;
    for (;;) {
        polls++;
        try {
            const res = await fetch(url, {signal: AbortSignal.timeout(1000)});
            if (res.status === 200) return polls;
        } catch (e) { /* not yet */ }
        if (Date.now() > deadline) throw new Error('the gateway was not ready again within ' + ms + ' ms');
        await sleep(50);
    }
}

cases.restart = async () => {
    const address = qaddr(P.queue);
    const n = P.count;
    const conn = await connect();
    const accepted = new Set();
    const received = [];
    const errors = [];
    let generation = 0;
    let killed = false;
    let killAt = null;
    let reattached = {sender: 0, receiver: 0};
    let resend = []; // ids whose outcome never came (the link died first): sent again
    let nextId = 0;

    // The consumer: credit 20, accepts everything, re-attaches after a failure.
    let receiver = null;
    const startReceiver = async () => {
        for (;;) {
            const link = conn.open_receiver({source: {address: address}, credit_window: 20, autoaccept: true});
            link.on('message', (ctx) => received.push(ctx.message.message_id));
            const r = await attached(link, 'receiver');
            if (!r.error) {
                link.on('receiver_error', (ctx) => { errors.push(Object.assign({link: 'receiver'}, errorOf(ctx, 'receiver'))); });
                // an ended session (RabbitMQ ends one on a refused attach) says
                // nothing to its links in rhea: the link is gone all the same
                const ended = (ctx) => {
                    errors.push(Object.assign({link: 'receiver', session: true}, errorOf(ctx, 'session')));
                    if (receiver === link) receiver = null;
                };
                link.session.once('session_close', ended);
                link.on('receiver_close', () => {
                    link.session.removeListener('session_close', ended);
                    if (receiver === link) receiver = null;
                });
                receiver = link;
                return;
            }
            errors.push(Object.assign({link: 'receiver', on_attach: true}, r.error));
            await waitReady(P.readyz, 60000);
        }
    };
    // The producer: at-least-once, a few in flight, ids tracked until accepted.
    // Once the kill is asked for it slows to one message every pace_ms and goes
    // on (past `count` if need be) until its link has failed: the upstream may
    // take a while to go (RabbitMQ's stop), and the kill must land mid-run.
    let producing = true;
    const waitingForKill = () => killed && !errors.some((e) => e.link === 'sender');
    const more = () => accepted.size < n || waitingForKill();
    const produce = async () => {
        while (more()) {
            let sender;
            try {
                sender = await openSender(conn, address);
            } catch (e) {
                errors.push(Object.assign({link: 'sender', on_attach: true}, e.amqp || {description: String(e.message)}));
                await waitReady(P.readyz, 60000);
                continue;
            }
            if (generation++) reattached.sender++;
            const inflight = new Map();
            const failed = await new Promise((resolve) => {
                let over = false;
                let timer = null;
                const next = () => {
                    if (waitingForKill()) { if (!timer) timer = setTimeout(() => { timer = null; pump(); }, P.pace_ms || 5); }
                    else pump();
                };
                const settle = (state) => (ctx) => {
                    const id = inflight.get(ctx.delivery);
                    if (id === undefined) return;
                    inflight.delete(ctx.delivery);
                    if (state === 'accepted') accepted.add(id); else resend.push(id);
                    if (!killed && accepted.size >= P.kill_after) {
                        killed = true;
                        killAt = accepted.size;
                        emit({event: 'kill', accepted: accepted.size});
                    }
                    next();
                };
                for (const st of ['accepted', 'released', 'rejected', 'modified']) sender.on(st, settle(st));
                const fail = (ctx, session) => {
                    if (over) return;
                    errors.push(Object.assign({link: 'sender'}, session ? {session: true} : {},
                                              errorOf(ctx, session ? 'session' : 'sender')));
                    over = true;
                    clearTimeout(timer);
                    sender.session.removeListener('session_close', ended);
                    resolve(true);
                };
                const ended = (ctx) => fail(ctx, true); // as for the receiver
                sender.on('sender_error', fail);
                sender.on('sender_close', fail);
                sender.session.once('session_close', ended);
                const pump = () => {
                    if (over) return;
                    if (!more() && inflight.size === 0) { over = true; resolve(false); return; }
                    const limit = waitingForKill() ? 1 : 5;
                    while (sender.sendable() && inflight.size < limit && (accepted.size + inflight.size < n || waitingForKill())) {
                        const id = resend.length ? resend.shift() : P.tag + '-' + (nextId++);
                        inflight.set(sender.send({message_id: id, durable: true, body: id}), id);
                    }
                };
                sender.on('sendable', pump);
                pump();
            });
            if (failed) {
                // outcomes that never came: unknown, so sent again (duplicates allowed)
                for (const id of inflight.values()) resend.push(id);
                await waitReady(P.readyz, 60000);
            }
        }
        producing = false;
    };
    progress = () => ({accepted: accepted.size, received: received.length,
                        missing: [...accepted].filter((id) => !received.includes(id)).slice(0, 10),
                        producing: producing, receiver_attached: receiver !== null,
                        resend: resend.length, errors: errors, kill_at: killAt,
                        reattached: reattached});
    await startReceiver();
    const watchReceiver = (async () => {
        // re-attach the consumer whenever it was detached, until everything arrived
        for (;;) {
            const have = new Set(received);
            if (!producing && [...accepted].every((id) => have.has(id))) return;
            if (receiver === null) {
                await waitReady(P.readyz, 60000);
                reattached.receiver++;
                await startReceiver();
            }
            await sleep(20);
        }
    })();
    const started = Date.now();
    await produce();
    await withTimeout(watchReceiver, 30000, 'every accepted message at the consumer (' +
                      received.length + ' received, ' + accepted.size + ' accepted)');
    const result = {
        accepted: [...accepted], received: received, errors: errors, kill_at: killAt,
        reattached: reattached, elapsed_ms: Date.now() - started,
    };
    await close(conn);
    return result;
};

// -- reattach: links that asked to ride out an upstream restart -----------------

// Both links desire amqpws:reattach. The producer keeps a few messages in
// flight; once kill_after are accepted it asks for the kill and slows to one
// message at a time, and it goes on (past `count` if need be) until the
// gateway's /api/gateway says both links were re-attached. Neither link may
// fail: the gateway holds the producer's unsettled messages and sends them
// again, and the upstream delivers the consumer's again.
cases.reattach = async () => {
    const address = qaddr(P.queue);
    const caps = {desired_capabilities: 'amqpws:reattach'};
    const conn = await connect();
    const accepted = new Set();
    const received = [];
    const errors = [];
    const offered = (link) => [].concat((link.remote.attach || {}).offered_capabilities || []).map(String);
    const offsets = []; // a stream's x-stream-offset, delivery by delivery
    const source = P.stream ? {address: address, filter: {[OFFSET_SPEC]: types.wrap_described('first', OFFSET_SPEC)}} : address;
    const receiver = await openReceiver(conn, source, 0, Object.assign({credit_window: 20, autoaccept: true}, caps));
    receiver.on('message', (ctx) => {
        received.push(ctx.message.message_id);
        if (P.stream) offsets.push(offsetOf(ctx));
    });
    const sender = await openSender(conn, address, caps);
    const fail = (what) => (ctx) => errors.push(Object.assign({link: what}, errorOf(ctx, what) || {}));
    for (const [link, what] of [[receiver, 'receiver'], [sender, 'sender']]) {
        link.on(what + '_error', fail(what));
        link.on(what + '_close', fail(what));
    }
    conn.on('session_close', fail('session'));
    const offers = {sender: offered(sender), receiver: offered(receiver)};
    let killAt = null;
    let reattached = 0;
    const inflight = new Map();
    let nextId = 0;
    progress = () => ({accepted: accepted.size, received: received.length, inflight: inflight.size,
                       kill_at: killAt, reattached: reattached, errors: errors});
    const watch = (async () => { // the gateway's own count of re-attached links
        while (reattached < 2) {
            await sleep(100);
            if (killAt === null) continue;
            try {
                reattached = (await (await fetch(P.api, {signal: AbortSignal.timeout(1000)})).json()).links_reattached_total;
            } catch (e) { /* the gateway is busy: ask again */ }
        }
    })();
    await new Promise((resolve, reject) => {
        let timer = null;
        const done = () => accepted.size >= P.count && reattached >= 2 && inflight.size === 0;
        const pump = () => {
            if (done()) { resolve(); return; }
            if (errors.length) { reject(new Error('a link failed: ' + JSON.stringify(errors))); return; }
            const limit = killAt === null ? 5 : 1;
            while (sender.sendable() && inflight.size < limit && (accepted.size + inflight.size < P.count || killAt !== null)) {
                if (killAt !== null && accepted.size >= P.count && reattached >= 2) break;
                const id = P.tag + '-' + (nextId++);
                inflight.set(sender.send({message_id: id, durable: true, body: id}), id);
            }
            if (!timer) timer = setTimeout(() => { timer = null; pump(); }, P.pace_ms || 5);
        };
        const settle = (state) => (ctx) => {
            const id = inflight.get(ctx.delivery);
            if (id === undefined) return;
            inflight.delete(ctx.delivery);
            if (state !== 'accepted') { errors.push({link: 'sender', outcome: state, id: id}); return; }
            accepted.add(id);
            if (killAt === null && accepted.size >= P.kill_after) {
                killAt = accepted.size;
                emit({event: 'kill', accepted: accepted.size});
            }
            pump();
        };
        for (const st of ['accepted', 'released', 'rejected', 'modified']) sender.on(st, settle(st));
        sender.on('sendable', pump);
        pump();
    });
    await watch;
    await withTimeout((async () => {
        for (;;) {
            const have = new Set(received);
            if ([...accepted].every((id) => have.has(id))) return;
            await sleep(20);
        }
    })(), 30000, 'every accepted message at the consumer');
    const result = {accepted: [...accepted], received: received, errors: errors, kill_at: killAt,
                    reattached: reattached, offered: offers, events: conn.events, offsets: offsets};
    await close(conn);
    return result;
};

// -- the gateway's own users and permissions -----------------------------------

cases.security = async () => {
    const r = {};
    r.bad_password = await tryConnect({username: P.user, password: P.password + '-wrong'});
    r.anonymous = await tryConnect({});
    const conn = await connect({username: P.user, password: P.password});
    const allowed = qaddr(P.allowed);
    const other = qaddr(P.other);
    const sender = await openSender(conn, allowed);
    r.allowed_send = await send(sender, {message_id: 'allowed-1', body: 'for alice'});
    const receiver = await openReceiver(conn, allowed, 1);
    const ctx = await receiver.next();
    ctx.delivery.accept();
    r.allowed_body = ctx.message.body;
    const refused = async (link, kind) => {
        const a = await attached(link, kind);
        return {level: a.level || null, error: a.error || null};
    };
    r.other_send = await refused(conn.open_sender({target: {address: other}}), 'sender');
    r.other_receive = await refused(conn.open_receiver({source: {address: other}}), 'receiver');
    if (!P.address_v1) { // RabbitMQ 3.x has no anonymous relay
        const relay = await openSender(conn, null);
        r.relay_other = await send(relay, {to: other, body: 'not for alice'});
        r.relay_allowed = await send(relay, {to: allowed, body: 'relayed for alice'});
        receiver.add_credit(1);
        const relayed = await receiver.next();
        relayed.delivery.accept();
        r.relayed_body = relayed.message.body;
    }
    // /management: alice may not configure anything, so a declare is refused at
    // the edge.  Unsettled requests see the refusal as their outcome; a
    // pre-settled one (RabbitMQ's clients) should get a 403 answer.
    try {
        const mu = await management(conn, {unsettled: true});
        r.declare_unsettled = await mu.request('PUT', '/queues/' + enc(P.other), {durable: true});
    } catch (e) {
        if (!e.amqp) throw e;
        r.declare_unsettled = {attach_refused: e.amqp, level: e.level};
    }
    if (P.presettled) {
        const ms = await management(conn, {answer_ms: P.answer_ms});
        try {
            r.declare_presettled = await ms.request('PUT', '/queues/' + enc(P.other), {durable: true});
        } catch (e) {
            r.declare_presettled = {no_answer: String(e.message)};
        }
    }
    r.connection_open_after = conn.is_open();
    r.events = conn.events;
    await close(conn);
    return r;
};

// -- what the gateway shows about itself ---------------------------------------

cases.observe = async () => {
    const address = qaddr(P.queue);
    const ws = await connect({transport: 'ws'});
    const tcp = await connect({transport: 'tcp'});
    const sender = await openSender(tcp, address);
    await sendAll(sender, [1, 2].map((i) => ({body: 'held ' + i})));
    const receiver = await openReceiver(ws, address, 2);
    const held = await receiveN(receiver, 2); // unsettled while we look
    const api = await (await fetch(P.api)).json();
    const metrics = await (await fetch(P.metrics)).text();
    held.forEach((ctx) => ctx.delivery.accept());
    await Promise.all([close(ws), close(tcp)]);
    return {api: api, metrics: metrics};
};

// -- main ----------------------------------------------------------------------

// What a long case has done so far (the restart case sets it): added to its
// error, so a timeout says where the case was.
let progress = null;

// common.js's runCase, but exiting only once stdout is flushed: a pipe takes
// writes asynchronously, and some results here are larger than its buffer.
function runCase(spec, params) {
    const fn = cases[spec.case];
    const run = fn
        ? withTimeout(fn(), (params.timeout || 30) * 1000, 'case ' + spec.case)
        : Promise.reject(new Error('case ' + spec.case + ' is not written for rhea (gateway)'));
    const out = (obj) => process.stdout.write(JSON.stringify(obj) + '\n', () => process.exit(0));
    run.then((result) => out({ok: true, result: result === undefined ? null : result}),
             (err) => out({ok: false, error: errorText(err) +
                           (progress ? '\nprogress: ' + JSON.stringify(progress()) : '')}));
}

runCase(T, P);
