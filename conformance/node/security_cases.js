#!/usr/bin/env node
// Security cases for rhea (Node): amqps:// and wss:// on the test CA, tokens
// as the PLAIN password, client certificates (SASL EXTERNAL) and permissions.
//
//   node security_cases.js '{"case": "send_receive"|"permissions"|"connect_refused",
//                            "params": {"transport": "wss"|"tls"|"ws",
//                                       "url": "wss://127.0.0.1:PORT", "host": ..., "port": ...,
//                                       "ca_file": ..., "cert_file": ..., "key_file": ...,
//                                       "external": true, "username": ..., "password": ...,
//                                       ...case parameters..., "timeout": 20}}'
//
// Prints one JSON line on stdout: {"ok": true, "result": ...} or
// {"ok": false, "error": "..."}; the Python side (test_security_rhea.py)
// makes the assertions.  Certificate verification stays on: the CA is given
// as `ca` (rhea's option for amqps, ws's for wss), never
// `rejectUnauthorized: false`.  Every wait has a timeout.
'use strict';

const crypto = require('crypto');
const fs = require('fs');
const rhea = require('rhea');
const WebSocket = require('ws');

const common = require('./common');
const {withTimeout, errText, runCase} = common;
const close = (conn) => common.close(conn, STEP); // this suite's shorter wait

const T = JSON.parse(process.argv[2]);
const P = T.params || {};
const STEP = 5000; // one wait, ms: every case stays well under 10 s

// -- connections ------------------------------------------------------------------

// The TLS options, the same for ws's WebSocket (passed on to tls.connect) and
// rhea's own tls transport.
function tlsOptions() {
    const o = {};
    if (P.ca_file) o.ca = [fs.readFileSync(P.ca_file)];
    if (P.cert_file) o.cert = fs.readFileSync(P.cert_file);
    if (P.key_file) o.key = fs.readFileSync(P.key_file);
    return o;
}

// What the handshake showed, filled in as it happens.
function newSeen() {
    return {offered_mechanisms: null, mechanism: null, tls: null};
}

// Record the mechanisms the broker offers, before rhea picks one.
function watchSasl(conn, seen) {
    const sasl = conn.sasl_transport;
    if (!sasl) return;
    const original = sasl.on_sasl_mechanisms;
    sasl.on_sasl_mechanisms = function (frame) {
        const offered = frame.performative.sasl_server_mechanisms;
        seen.offered_mechanisms = [].concat(offered === undefined ? [] : offered).map(String);
        return original.call(this, frame);
    };
}

function tlsInfo(socket) {
    if (!socket || !socket.encrypted) return null;
    const peer = socket.getPeerCertificate() || {};
    return {authorized: socket.authorized, protocol: socket.getProtocol(),
            peer_subject_cn: peer.subject ? peer.subject.CN : null};
}

function connect(seen) {
    const transport = P.transport;
    const container = rhea.create_container({id: 'rhea-sec-' + crypto.randomUUID()});
    const o = {reconnect: false};
    if (P.username) {
        o.username = P.username;
        o.password = P.password;
    } else if (!P.external) {
        o.username = 'anonymous'; // rhea offers ANONYMOUS for a user without password
    }
    if (transport === 'wss' || transport === 'ws') {
        const ws = container.websocket_connect(WebSocket);
        o.connection_details = ws(P.url, ['amqp'], tlsOptions());
        if (P.external) {
            // rhea enables EXTERNAL by itself only on its own TLS socket, so
            // over a WebSocket the mechanism is asked for explicitly.
            const mechanisms = container.sasl.client_mechanisms();
            mechanisms.enable_external();
            o.sasl_mechanisms = mechanisms;
        }
    } else if (transport === 'tls') {
        Object.assign(o, tlsOptions(), {transport: 'tls', host: P.host, port: P.port});
        if (P.external) o.enable_sasl_external = true;
    } else {
        throw new Error('unknown transport ' + transport);
    }
    const conn = container.connect(o);
    conn.on('error', () => {}); // errors surface through the promise below
    container.on('error', () => {});
    watchSasl(conn, seen);
    return withTimeout(new Promise((resolve, reject) => {
        conn.once('connection_open', () => {
            seen.mechanism = conn.sasl_transport ? conn.sasl_transport.mechanism_name : null;
            if (transport === 'tls') seen.tls = tlsInfo(conn.socket);
            resolve(conn);
        });
        const fail = (what) => (ctx) => reject(Object.assign(new Error(what + ': ' + (
            ctx.error || (ctx.connection && ctx.connection.error)
                ? errText(ctx) : 'the socket ended without an error')), {ctx: ctx}));
        conn.once('connection_error', fail('connection error'));
        conn.once('connection_close', fail('connection closed'));
        conn.once('disconnected', fail('disconnected'));
    }), STEP, 'connection open');
}


// -- links --------------------------------------------------------------------------

function linkError(link) {
    const e = link.remote.detach && link.remote.detach.error;
    return e ? {condition: String(e.condition), description: e.description || null} : null;
}

// rhea keeps a null terminus of a received attach as a typed null (the
// field's type is `*`), not as null.
function isNull(terminus) {
    return !terminus || (terminus.type && terminus.type.name === 'Null');
}

// Attach a link and report how the broker answered: attached (with a
// terminus), or refused (a null terminus, then a detach with an error, §2.6.3).
function attach(conn, kind, address, credit) {
    const link = kind === 'receiver'
        ? conn.open_receiver({source: {address: address}, credit_window: 0, autoaccept: false})
        : conn.open_sender({target: {address: address}});
    link.inbox = [];
    if (kind === 'receiver') link.on('message', (ctx) => link.inbox.push(ctx));
    return withTimeout(new Promise((resolve) => {
        const events = [];
        link.on(kind + '_open', () => {
            events.push('open');
            const terminus = kind === 'receiver' ? link.remote.attach.source : link.remote.attach.target;
            if (!isNull(terminus)) {
                if (credit) link.add_credit(credit);
                resolve({link: link, attached: true, events: events, error: null});
            } // a null terminus: the detach with the error follows
        });
        link.on(kind + '_error', () => {
            events.push('error');
            resolve({link: link, attached: false, events: events, error: linkError(link)});
        });
        link.on(kind + '_close', () => {
            events.push('close');
            resolve({link: link, attached: false, events: events, error: linkError(link)});
        });
    }), STEP, kind + ' attach to ' + address);
}

async function attached(conn, kind, address, credit) {
    const a = await attach(conn, kind, address, credit);
    if (!a.attached) throw new Error(kind + ' on ' + address + ' refused: ' + JSON.stringify(a.error));
    return a.link;
}

// Send each message; resolve with the broker's outcomes, in order.
function sendAll(sender, messages) {
    return withTimeout(new Promise((resolve) => {
        const outcomes = new Array(messages.length);
        const index = new Map();
        let next = 0;
        let settled = 0;
        const record = (state) => (ctx) => {
            const i = index.get(ctx.delivery);
            if (i === undefined || outcomes[i] !== undefined) return;
            outcomes[i] = state;
            if (++settled === messages.length) resolve(outcomes);
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
    }), STEP, 'outcomes of ' + messages.length + ' messages');
}

function receiveN(receiver, n) {
    return withTimeout(new Promise((resolve) => {
        const check = () => {
            if (receiver.inbox.length >= n) {
                receiver.removeListener('message', check);
                resolve(receiver.inbox.splice(0, n));
            }
        };
        receiver.on('message', check);
        check();
    }), STEP, n + ' messages on ' + receiver.source.address);
}

// Send `count` messages to `queue`, receive them back on the same connection.
async function roundTrip(conn, queue, count, tag) {
    const receiver = await attached(conn, 'receiver', queue, count);
    const sender = await attached(conn, 'sender', queue);
    const messages = [];
    for (let i = 0; i < count; i++) {
        messages.push({message_id: tag + '-' + i, application_properties: {i: i}, body: tag + ' body ' + i});
    }
    const outcomes = await sendAll(sender, messages);
    const got = await receiveN(receiver, count);
    got.forEach((ctx) => ctx.delivery.accept());
    return {
        outcomes: outcomes,
        messages: got.map((ctx) => ({message_id: ctx.message.message_id, body: ctx.message.body,
                                     i: (ctx.message.application_properties || {}).i})),
    };
}

// -- cases ----------------------------------------------------------------------------

const cases = {};

// Connect (TLS, SASL as the params say), send and receive `count` messages.
cases.send_receive = async () => {
    const seen = newSeen();
    const conn = await connect(seen);
    const trip = await roundTrip(conn, P.queue, P.count, P.tag);
    await close(conn);
    return Object.assign(seen, trip);
};

// Attach to queues the user may not use (each refusal reported by rhea),
// then use an allowed queue on the same connection.
cases.permissions = async () => {
    const seen = newSeen();
    const conn = await connect(seen);
    const refused = [];
    for (const [kind, address] of P.refused) {
        const a = await attach(conn, kind, address);
        refused.push({kind: kind, address: address, attached: a.attached, events: a.events, error: a.error});
    }
    const alive = conn.is_open();
    const trip = await roundTrip(conn, P.allowed, P.count, P.tag);
    await close(conn);
    return Object.assign(seen, trip, {refused: refused, open_after_refusals: alive});
};

// A connection that must fail (e.g. the server's certificate does not verify):
// how it failed.
cases.connect_refused = async () => {
    const seen = newSeen();
    try {
        const conn = await connect(seen);
        await close(conn);
        return {refused: false, seen: seen};
    } catch (e) {
        let cause = e.ctx && (e.ctx.error || (e.ctx.connection && e.ctx.connection.error));
        // ws reports an ErrorEvent whose `error` is the Error of tls.connect.
        if (cause && cause.error instanceof Error) cause = cause.error;
        return {
            refused: true,
            error: String(e.message),
            code: cause && cause.code ? String(cause.code) : null,
            cause: cause ? String(cause.message || cause) : null,
            sasl_started: seen.offered_mechanisms !== null,
        };
    }
};

runCase(cases, T, P, 'rhea');
