#!/usr/bin/env node
// Durability (--data-dir) with rhea (Node), over TCP or WebSocket: the steps
// that run before and after a broker restart (conformance/test_durability.py
// stops and starts the broker between them, on the same data directory).
//
//   node durability_cases.js '{"case": "publish", "transport": "tcp"|"ws",
//                              "host": ..., "port": ..., "ws_url": ..., "params": {...}}'
//
// Cases:
//   publish   params.address, params.batches: [[{id, body, durable, props}, ...], ...],
//             params.gap_ms: sends each batch and waits for its outcomes; a wall-clock
//             mark (ms) is taken in the middle of the gap before each batch and after
//             the last one -> {outcomes: [[...], ...], marks: [...]}
//   consume   params.address, params.count, params.spec (stream offset spec, or none),
//             params.accept (how many to accept; the rest stay unsettled and are
//             released when the connection closes), params.rest_max and rest_ms
//             (then take, and accept, up to rest_max more until none comes within
//             rest_ms), params.extra_ms (how long to wait for one message beyond
//             those, left unsettled) -> {messages: [...], rest: [...], extra: null|{...}}
//   kill_during_publish   params.address, params.generate ({tag, prefix, n}: the
//             durable messages of test_durability.py's messages()), params.kill_after,
//             params.pid: sends as fast as credit allows and SIGKILLs the broker
//             (process.kill) once kill_after outcomes are accepted; records every
//             outcome that arrived before the connection died -> {sent: [ids],
//             accepted: [ids], other: {id: state}, disconnected: bool}
//   kill_while_holding   params.address, params.count, params.hold_ms, params.pid:
//             takes count messages and settles none, waits hold_ms, then SIGKILLs
//             the broker -> {held: [...], killed: true}
//
// Prints one JSON line, {"ok": true, "result": ...} or {"ok": false, "error": "..."}.
// Every wait has a timeout and the whole case is capped by params.timeout (s, default 30).
'use strict';

const crypto = require('crypto');
const rhea = require('rhea');
const WebSocket = require('ws');

const {sleep, withTimeout, errText, errorText, close} = require('./common');

const T = JSON.parse(process.argv[2]);
const P = T.params || {};
const types = rhea.types;
const STEP = 10000; // ms for one wait
const OFFSET_SPEC = 'rabbitmq:stream-offset-spec';

// -- connections and links -----------------------------------------------------

function connect() {
    const container = rhea.create_container({id: 'rhea-durable-' + crypto.randomUUID()});
    const o = {reconnect: false, username: 'anonymous'}; // SASL ANONYMOUS
    if (T.transport === 'ws') {
        const ws = container.websocket_connect(WebSocket);
        o.connection_details = ws(T.ws_url, ['amqp']);
    } else {
        o.host = T.host;
        o.port = T.port;
    }
    const conn = container.connect(o);
    conn.on('error', () => {}); // surfaced through the promises
    return withTimeout(new Promise((resolve, reject) => {
        conn.once('connection_open', () => resolve(conn));
        conn.once('connection_error', (ctx) => reject(new Error('connection error: ' + errText(ctx))));
        conn.once('connection_close', (ctx) => reject(new Error('connection closed: ' + errText(ctx))));
        conn.once('disconnected', (ctx) => reject(new Error('disconnected: ' + errText(ctx))));
    }), STEP, 'connection open');
}


function openSender(conn, address) {
    const sender = conn.open_sender({target: {address: address}});
    return withTimeout(new Promise((resolve, reject) => {
        sender.once('sendable', () => resolve(sender));
        sender.once('sender_error', (ctx) => reject(new Error('sender error: ' + errText(ctx))));
    }), STEP, 'credit on ' + address);
}

function offsetSource(address, spec) {
    if (spec === undefined || spec === null) return {address: address};
    let value;
    if (spec.offset !== undefined) value = types.wrap_ulong(spec.offset);
    else if (spec.timestamp !== undefined) value = types.wrap_timestamp(spec.timestamp);
    else value = types.wrap_string(spec);
    return {address: address, filter: {[OFFSET_SPEC]: types.described(types.wrap_symbol(OFFSET_SPEC), value)}};
}

// A receiver with manual credit and settlement, and an inbox.
function openReceiver(conn, source, credit) {
    const receiver = conn.open_receiver({source: source, credit_window: 0, autoaccept: false});
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
        }), ms || STEP, 'a message on ' + JSON.stringify(source.address));
    };
    return withTimeout(new Promise((resolve, reject) => {
        receiver.once('receiver_open', () => {
            if (credit) receiver.add_credit(credit);
            resolve(receiver);
        });
        receiver.once('receiver_error', (ctx) => reject(new Error('receiver error: ' + errText(ctx))));
    }), STEP, 'receiver attach');
}

function toMessage(m) {
    const out = {message_id: m.id, body: m.body, durable: !!m.durable};
    if (m.subject) out.subject = m.subject;
    if (m.props) out.application_properties = m.props;
    return out;
}

// test_durability.py's messages(tag, prefix, n): too many to pass on the command line.
function generated(g) {
    const out = [];
    for (let i = 0; i < g.n; i++) {
        out.push({id: g.tag + '-' + g.prefix + i, body: g.prefix + i, subject: 's-' + g.prefix,
                  props: {i: i, batch: g.prefix}, durable: true});
    }
    return out;
}

// Send many without waiting for each outcome; resolve with all outcomes in order.
function sendAll(sender, messages) {
    return withTimeout(new Promise((resolve) => {
        const outcomes = new Array(messages.length);
        const index = new Map();
        let next = 0;
        let settled = 0;
        const states = ['accepted', 'rejected', 'released', 'modified'];
        const handlers = {};
        const pump = () => {
            while (next < messages.length && sender.sendable()) {
                index.set(sender.send(messages[next]), next);
                next++;
            }
        };
        for (const state of states) {
            handlers[state] = (ctx) => {
                const i = index.get(ctx.delivery);
                if (i === undefined) return;
                outcomes[i] = state;
                if (++settled === messages.length) {
                    for (const s of states) sender.removeListener(s, handlers[s]);
                    sender.removeListener('sendable', pump);
                    resolve(outcomes);
                }
            };
            sender.on(state, handlers[state]);
        }
        sender.on('sendable', pump);
        pump();
    }), STEP * 2, 'outcomes of ' + messages.length + ' messages');
}

function plain(v) {
    if (Buffer.isBuffer(v)) return {binary: v.toString('hex')};
    if (v instanceof Date) return {timestamp: v.getTime()};
    if (Array.isArray(v)) return v.map(plain);
    if (typeof v === 'bigint') return Number(v);
    if (v && typeof v === 'object') {
        const o = {};
        for (const k of Object.keys(v)) o[k] = plain(v[k]);
        return o;
    }
    return v;
}

function describe(ctx) {
    const m = ctx.message;
    const a = m.message_annotations || {};
    return {
        id: m.message_id === undefined ? null : plain(m.message_id),
        body: plain(m.body),
        subject: m.subject === undefined ? null : m.subject,
        durable: !!m.durable,
        props: plain(m.application_properties || {}),
        delivery_count: m.delivery_count || 0,
        first_acquirer: !!m.first_acquirer,
        offset: a['x-stream-offset'] === undefined ? null : Number(a['x-stream-offset']),
    };
}

// -- cases ---------------------------------------------------------------------

const cases = {};

cases.publish = async () => {
    const conn = await connect();
    const sender = await openSender(conn, P.address);
    const gap = P.gap_ms === undefined ? 60 : P.gap_ms;
    const outcomes = [];
    const marks = [];
    for (const batch of P.batches) {
        if (gap) await sleep(gap / 2);
        marks.push(Date.now());
        if (gap) await sleep(gap / 2);
        outcomes.push(await sendAll(sender, batch.map(toMessage)));
    }
    if (gap) await sleep(gap / 2);
    marks.push(Date.now());
    if (gap) await sleep(gap / 2);
    await close(conn);
    return {outcomes: outcomes, marks: marks};
};

cases.consume = async () => {
    const conn = await connect();
    const count = P.count;
    const accept = P.accept === undefined ? count : P.accept;
    const restMax = P.rest_max || 0;
    const receiver = await openReceiver(conn, offsetSource(P.address, P.spec), count + restMax + 5);
    const messages = [];
    for (let i = 0; i < count; i++) {
        const ctx = await receiver.next();
        messages.push(describe(ctx));
        if (i < accept) ctx.delivery.accept();
    }
    const rest = [];
    while (rest.length < restMax) {
        let ctx;
        try {
            ctx = await receiver.next(P.rest_ms || 500);
        } catch (e) {
            break;
        }
        rest.push(describe(ctx));
        ctx.delivery.accept();
    }
    let extra = null;
    if (P.extra_ms) {
        try {
            extra = describe(await receiver.next(P.extra_ms));
        } catch (e) {
            extra = null;
        }
    }
    await sleep(50); // the dispositions go out before the close
    await close(conn);
    return {messages: messages, rest: rest, extra: extra};
};

cases.kill_during_publish = async () => {
    const conn = await connect();
    const sender = await openSender(conn, P.address);
    const messages = generated(P.generate).map(toMessage);
    const sent = [];
    const accepted = [];
    const other = {};
    const ids = new Map();
    let killed = false;
    let disconnected = false;
    let next = 0;
    const gone = new Promise((resolve) => {
        conn.on('disconnected', () => { disconnected = true; resolve(); });
        conn.on('connection_close', () => resolve());
    });
    const pump = () => {
        while (!killed && next < messages.length && sender.sendable()) {
            ids.set(sender.send(messages[next]), messages[next].message_id);
            sent.push(messages[next].message_id);
            next++;
        }
    };
    sender.on('accepted', (ctx) => {
        accepted.push(ids.get(ctx.delivery));
        if (!killed && accepted.length >= P.kill_after) {
            killed = true;
            process.kill(P.pid, 'SIGKILL');
        }
    });
    for (const state of ['rejected', 'released', 'modified']) {
        sender.on(state, (ctx) => { other[ids.get(ctx.delivery)] = state; });
    }
    sender.on('sendable', pump);
    pump();
    await withTimeout(gone, STEP * 2, 'the connection to drop after the kill');
    return {sent: sent, accepted: accepted, other: other, killed: killed, disconnected: disconnected};
};

cases.kill_while_holding = async () => {
    const conn = await connect();
    const receiver = await openReceiver(conn, {address: P.address}, P.count);
    const held = [];
    for (let i = 0; i < P.count; i++) held.push(describe(await receiver.next()));
    const gone = new Promise((resolve) => {
        conn.on('disconnected', () => resolve());
        conn.on('connection_close', () => resolve());
    });
    await sleep(P.hold_ms || 500); // none settled
    process.kill(P.pid, 'SIGKILL');
    await withTimeout(gone, STEP, 'the connection to drop after the kill');
    return {held: held, killed: true};
};

// -- main ----------------------------------------------------------------------

// common.js's runCase, except that it exits only once the line is written: a
// result over 64 KiB is cut short on a pipe by process.exit otherwise.
function run() {
    const fn = cases[T.case];
    const work = fn
        ? withTimeout(fn(), (P.timeout || 30) * 1000, 'case ' + T.case)
        : Promise.reject(new Error('case ' + T.case + ' is not written for rhea'));
    const answer = (out) => process.stdout.write(JSON.stringify(out) + '\n', () => process.exit(0));
    work.then((result) => answer({ok: true, result: result === undefined ? null : result}),
              (err) => answer({ok: false, error: errorText(err)}));
}

run();
