#!/usr/bin/env node
// RabbitMQ 4 style addressing for rhea (Node): publishing to exchanges
// (/exchanges/NAME/KEY, /exchanges/NAME with the subject as the key, and a
// null target with `to`), consuming from /queues/NAME.
//
//   node exchange_cases.js '{"case": "topic_routing", "host": ..., "port": ...,
//                            "params": {"user": ..., "password": ..., ...}}'
//
// rhea has no management API: the Python side declares and binds the queues
// (rabbitmq-amqp-python-client's Management) before it runs a case, and
// deletes them afterwards.  Prints one JSON line, {"ok": true, "result": ...}
// or {"ok": false, "error": "..."}; the assertions are made in Python
// (test_rabbitmq_client.py).  Every wait has a timeout and the whole case is
// capped by params.timeout (seconds, default 30).
'use strict';

const crypto = require('crypto');
const rhea = require('rhea');

const {sleep, withTimeout, errText, runCase, close} = require('./common');

const T = JSON.parse(process.argv[2]);
const P = T.params || {};
const STEP = 10000; // ms for one wait


function connect() {
    const container = rhea.create_container({id: 'rhea-exchange-' + crypto.randomUUID()});
    const conn = container.connect({
        host: T.host, port: T.port, reconnect: false,
        username: P.user, password: P.password,
    });
    conn.on('error', () => {}); // surfaced through the promises
    return withTimeout(new Promise((resolve, reject) => {
        conn.once('connection_open', () => resolve(conn));
        conn.once('connection_error', (ctx) => reject(new Error('connection error: ' + errText(ctx))));
        conn.once('connection_close', (ctx) => reject(new Error('connection closed: ' + errText(ctx))));
        conn.once('disconnected', (ctx) => reject(new Error('disconnected: ' + errText(ctx))));
    }), STEP, 'connection open');
}


// address null: a target without an address (ANONYMOUS-RELAY, `to` per
// message).  It must be a target: RabbitMQ 4.0.5 answers an attach with no
// target at all (rhea's `target: null`) by ending the session with
// amqp:internal-error (function_clause in rabbit_amqp_session:ensure_target).
function openSender(conn, address) {
    const sender = conn.open_sender({target: address === null ? {} : {address: address}});
    return withTimeout(new Promise((resolve, reject) => {
        sender.once('sendable', () => resolve(sender));
        sender.once('sender_error', (ctx) => reject(new Error('sender error: ' + errText(ctx))));
    }), STEP, 'credit on ' + address);
}

function send(sender, message) {
    return withTimeout(new Promise((resolve, reject) => {
        const delivery = sender.send(message);
        const handlers = {};
        const off = () => { for (const k in handlers) sender.removeListener(k, handlers[k]); };
        for (const state of ['accepted', 'rejected', 'released', 'modified']) {
            handlers[state] = (ctx) => {
                if (ctx.delivery !== delivery) return;
                off();
                resolve(state);
            };
            sender.on(state, handlers[state]);
        }
        sender.once('sender_error', (ctx) => reject(new Error('sender error: ' + errText(ctx))));
    }), STEP, 'the outcome of ' + JSON.stringify(message.body));
}

// A receiver with manual settlement and an inbox.
function openReceiver(conn, address, credit) {
    const receiver = conn.open_receiver({source: {address: address}, credit_window: 0, autoaccept: false});
    const inbox = [];
    let waiter = null;
    receiver.on('message', (ctx) => {
        inbox.push(ctx);
        if (waiter) { const w = waiter; waiter = null; w(); }
    });
    receiver.next = (ms) => withTimeout(new Promise((resolve) => {
        const take = () => resolve(inbox.shift());
        if (inbox.length) take(); else waiter = take;
    }), ms || STEP, 'a message on ' + address);
    receiver.inbox = inbox;
    return withTimeout(new Promise((resolve, reject) => {
        receiver.once('receiver_open', () => {
            receiver.add_credit(credit);
            resolve(receiver);
        });
        receiver.once('receiver_error', (ctx) => reject(new Error('receiver error: ' + errText(ctx))));
    }), STEP, 'attach to ' + address);
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

function describe(m) {
    let body = m.body;
    if (body && body.typecode === 0x75) body = Buffer.from(body.content).toString('utf8');
    else if (Buffer.isBuffer(body)) body = body.toString('utf8');
    return {
        body: body,
        subject: m.subject === undefined ? null : m.subject,
        annotations: plain(m.message_annotations || {}),
        delivery_count: m.delivery_count || 0,
        first_acquirer: m.first_acquirer === undefined ? null : m.first_acquirer,
    };
}

const cases = {};

// params: user, password, star, hash (queue names bound to amq.topic by
// orders.* and orders.#), keys (routing keys), expect {star: n, hash: n}.
cases.topic_routing = async () => {
    const conn = await connect();
    const queues = {star: P.star, hash: P.hash};
    const receivers = {};
    for (const role of Object.keys(queues)) receivers[role] = await openReceiver(conn, '/queues/' + queues[role], 10);
    const exchange = '/exchanges/amq.topic';
    const anonymous = await openSender(conn, null);
    const how = {};
    const outcomes = {};
    for (let i = 0; i < P.keys.length; i++) {
        const key = P.keys[i];
        const payload = {body: rhea.message.data_section(Buffer.from(key))};
        if (i === 0) {
            // the key in the link's target address
            how[key] = 'address';
            const sender = await openSender(conn, exchange + '/' + encodeURIComponent(key));
            outcomes[key] = await send(sender, payload);
        } else {
            how[key] = 'to';
            outcomes[key] = await send(anonymous, Object.assign({to: exchange + '/' + encodeURIComponent(key)}, payload));
        }
    }
    // /exchanges/NAME without a key: the routing key is empty, whatever the
    // subject says (the subject was the key of the old /exchange/NAME form)
    const bare = await openSender(conn, exchange);
    const subjectOnly = await send(bare, {subject: P.keys[0], body: rhea.message.data_section(Buffer.from('subject-only'))});
    const received = {};
    for (const role of Object.keys(queues)) {
        received[role] = [];
        for (let i = 0; i < P.expect[role]; i++) {
            const ctx = await receivers[role].next();
            ctx.delivery.accept();
            received[role].push(describe(ctx.message));
        }
    }
    await sleep(300); // anything more would be a wrong route
    const extra = {};
    for (const role of Object.keys(queues)) {
        extra[role] = receivers[role].inbox.map((ctx) => describe(ctx.message).body);
        receivers[role].inbox.forEach((ctx) => ctx.delivery.release());
    }
    await close(conn);
    return {outcomes: outcomes, how: how, subject_only: subjectOnly, received: received, extra: extra};
};

runCase(cases, T, P, 'rhea');
