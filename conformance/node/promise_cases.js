#!/usr/bin/env node
// A subset of the conformance cases with rhea-promise (the promise layer over
// rhea that Azure's JavaScript SDKs are built on), over TCP or WebSocket.
// Same calling convention as cases.js: one JSON spec argument, one JSON line
// out.  rhea itself runs every case (cases.js); this checks the patterns that
// rhea-promise adds: awaitable senders, a request/response link pair, and
// its own WebSocket option.
'use strict';

const crypto = require('crypto');
const WebSocket = require('ws');
const {Connection, ReceiverEvents} = require('rhea-promise');

const {withTimeout, runCase} = require('./common');

const T = JSON.parse(process.argv[2]);
const P = T.params || {};
const STEP = 10000;

function other(transport) { return transport === 'tcp' ? 'ws' : 'tcp'; }

async function connect(opts) {
    opts = opts || {};
    const transport = opts.transport || T.transport;
    const o = {
        reconnect: false,
        container_id: 'rhea-promise-conf-' + crypto.randomUUID(),
        username: opts.username || 'anonymous', // no password: SASL ANONYMOUS
        password: opts.password,
        operationTimeoutInSeconds: STEP / 1000,
    };
    if (transport === 'ws') {
        o.webSocketOptions = {webSocket: WebSocket, url: T.ws_url, protocol: ['amqp'], options: {}};
    } else {
        o.host = T.host;
        o.port = T.port;
        o.transport = 'tcp';
    }
    const conn = new Connection(o);
    await withTimeout(conn.open(), STEP, 'connection open');
    return conn;
}

// A receiver with manual credit and settlement, and an inbox.
async function receiver(conn, source, credit) {
    if (typeof source === 'string') source = {address: source};
    const inbox = [];
    let waiter = null;
    const r = await conn.createReceiver({source: source, credit_window: 0, autoaccept: false});
    r.on(ReceiverEvents.message, (ctx) => {
        inbox.push(ctx);
        if (waiter) { const w = waiter; waiter = null; w(); }
    });
    r.next = (ms) => withTimeout(new Promise((resolve) => {
        const take = () => resolve(inbox.shift());
        if (inbox.length) take(); else waiter = take;
    }), ms || STEP, 'a message');
    if (credit) r.addCredit(credit);
    return r;
}

// AwaitableSender.send resolves only when the broker accepts (it rejects
// with the outcome on rejected/released/modified), so a send that resolves
// is an accepted one.
async function send(sender, msg) {
    await sender.send(msg, {timeoutInSeconds: STEP / 1000});
    return 'accepted';
}

const cases = {};

cases.connect_anonymous = async () => {
    const conn = await connect();
    // rhea-promise keeps rhea's connection as _connection (no public accessor).
    const offered = [].concat((conn._connection.remote.open || {}).offered_capabilities || []).map(String);
    await conn.close();
    return {open: true, offered_capabilities: offered};
};

cases.connect_plain = async () => {
    const conn = await connect({username: P.user, password: P.password});
    await conn.close();
    return {open: true};
};

cases.connect_bad_password = async () => {
    try {
        const conn = await connect({username: P.user, password: P.password});
        await conn.close();
        return {refused: false};
    } catch (e) {
        return {refused: true, error: String(e.message || e)};
    }
};

cases.many_in_order = async () => {
    const n = P.count;
    const conn = await connect();
    const r = await receiver(conn, P.queue, 0);
    r.addCredit(n);
    const sender = await conn.createAwaitableSender({target: {address: P.queue}});
    const sends = [];
    for (let i = 0; i < n; i++) {
        sends.push(sender.send({application_properties: {seq: i}, body: 'm' + i}, {timeoutInSeconds: 30}));
    }
    const deliveries = await Promise.all(sends); // rejects unless every one is accepted
    const got = [];
    for (let i = 0; i < n; i++) got.push(await r.next());
    got.forEach((ctx) => ctx.delivery.accept());
    await conn.close();
    return {
        accepted: deliveries.length,
        seqs: got.map((ctx) => ctx.message.application_properties.seq),
        bodies_ok: got.every((ctx, i) => ctx.message.body === 'm' + i),
    };
};

cases.request_response = async () => {
    const server = await connect();
    const service = await receiver(server, P.queue, 1);
    const client = await connect();
    const replies = await receiver(client, {dynamic: true}, 1);
    const replyTo = replies.source.address;
    const requests = await client.createAwaitableSender({target: {address: P.queue}});
    const sent = await send(requests, {message_id: 'req-1', reply_to: replyTo, body: 'ping'});
    const req = await service.next();
    req.delivery.accept();
    const responder = await server.createAwaitableSender({target: {address: req.message.reply_to}});
    const replied = await send(responder, {correlation_id: req.message.message_id, body: 'pong:' + req.message.body});
    const reply = await replies.next();
    reply.delivery.accept();
    await Promise.all([server.close(), client.close()]);
    return {reply_to: replyTo, request_outcome: sent, reply_outcome: replied,
            reply: {body: reply.message.body, correlation_id: reply.message.correlation_id}};
};

cases.cross_transport = async () => {
    const pub = await connect({transport: T.transport});
    const sub = await connect({transport: other(T.transport)});
    const r = await receiver(sub, P.queue, 10);
    const sender = await pub.createAwaitableSender({target: {address: P.queue}});
    const outcomes = [];
    for (let i = 0; i < 5; i++) {
        outcomes.push(await send(sender, {message_id: 'x' + i, body: 'via-' + T.transport + '-' + i}));
    }
    const got = [];
    for (let i = 0; i < 5; i++) got.push(await r.next());
    got.forEach((ctx) => ctx.delivery.accept());
    await Promise.all([pub.close(), sub.close()]);
    return {outcomes: outcomes, bodies: got.map((ctx) => ctx.message.body),
            publisher: T.transport, consumer: other(T.transport)};
};

// Errors from ws arrive as event objects, not Error instances.
runCase(cases, T, P, 'rhea-promise');
