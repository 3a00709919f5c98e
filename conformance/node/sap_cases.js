#!/usr/bin/env node
// Conformance cases for SAP's Node client @sap/xb-msg-amqp-v100 (the client of
// SAP Event Mesh), over WebSocket (ws:// or wss://, optionally OAuth2).
//
//   node sap_cases.js '{"case": "send_receive"|"connect_refused",
//                       "params": {"uri": "ws://127.0.0.1:PORT/", "address": ...,
//                                  "count": 3, "sasl": {...}, "oa2": {...},
//                                  "ca_file": "ca.pem", "timeout": 30}}'
//
// Prints one JSON line on stdout: {"ok": true, "result": ...} or
// {"ok": false, "error": "..."}; the Python side (test_sap_client.py) makes
// the assertions.  Every wait has a timeout, so nothing hangs.
'use strict';

const fs = require('fs');
const AMQP = require('@sap/xb-msg-amqp-v100');

const {withTimeout, errorText} = require('./common');

const T = JSON.parse(process.argv[2]);
const P = T.params || {};
const STEP = 10000; // default timeout for one wait, ms

// -- client options -------------------------------------------------------------

// The options as an application would write them: a URI, then the sections
// the URI cannot carry (trust, OAuth2, SASL).  Certificate verification stays
// on: the test's own CA is given as `ca`, never `rejectUnauthorized: false`.
function clientOptions() {
    const options = {uri: P.uri, amqp: {containerID: 'sap-conf-' + process.pid}};
    if (P.uri.startsWith('wss:')) {
        options.wss = {};
        if (P.ca_file) options.wss.ca = fs.readFileSync(P.ca_file);
    }
    if (P.sasl) options.sasl = P.sasl;
    if (P.oa2) options.oa2 = P.oa2;
    return options;
}

// Connect and resolve with what the client reports about the handshake.
function connect(client) {
    const seen = {mechanism: null, peer: null};
    client.on('authenticated', (mechanism) => { seen.mechanism = mechanism; });
    return withTimeout(new Promise((resolve, reject) => {
        client.once('connected', (destination, peerInfo) => {
            seen.peer = peerInfo ? {description: peerInfo.description || null,
                                    container: peerInfo.containerID || null} : null;
            resolve(seen);
        });
        client.connect(null, (error) => reject(new Error('connect failed: ' + messageOf(error))));
    }), STEP, 'connected');
}

// The client's errors carry their text in `message` ("[252] web socket error, ...").
function messageOf(error) {
    return String((error && error.message) || error);
}

function disconnect(client) {
    return withTimeout(new Promise((resolve) => {
        client.once('disconnected', () => resolve());
        client.disconnect();
    }), STEP, 'disconnected');
}

// Write `messages` and resolve with each one's outcome: the client calls
// `done` on accepted, `failed(error)` on rejected, `failed(null)` on released
// or modified (its OutgoingStream._onTransferDispose).
function sendAll(stream, messages) {
    return withTimeout(Promise.all(messages.map((message) => new Promise((resolve) => {
        stream.write(Object.assign({}, message, {
            done: () => resolve('accepted'),
            failed: (error) => resolve(error ? 'rejected: ' + messageOf(error) : 'released'),
        }));
    }))), STEP, 'outcomes of ' + messages.length + ' messages');
}

function ready(stream, event, what) {
    return withTimeout(new Promise((resolve, reject) => {
        stream.once(event, () => resolve());
        stream.once('error', (error) => reject(new Error(what + ': ' + messageOf(error))));
    }), STEP, what);
}

// Collect `n` messages from an incoming stream (not yet settled).
function receiveN(stream, n) {
    return withTimeout(new Promise((resolve) => {
        const got = [];
        const take = (message) => {
            got.push(message);
            if (got.length === n) {
                stream.removeListener('data', take);
                resolve(got);
            }
        };
        stream.on('data', take);
    }), STEP, n + ' messages');
}

function describe(message) {
    const props = message.source.properties || {};
    const payload = message.payload || {};
    return {
        message_id: props.messageID === undefined ? null : props.messageID,
        subject: props.subject === undefined ? null : props.subject,
        content_type: payload.type || null,
        settled: message.source.settled,
        application_properties: payload.properties || {},
        body: Buffer.concat(payload.chunks || []).toString('utf8'),
    };
}

// -- cases ----------------------------------------------------------------------

const cases = {};

// One sender and one receiver on the same opaque address; `count` messages
// there and back, each accepted by the receiver with message.done().
cases.send_receive = async () => {
    const client = new AMQP.Client(clientOptions());
    const errors = [];
    client.on('error', (error) => errors.push(messageOf(error)));
    const handshake = await connect(client);

    // attach() returns the link's stream: Readable (receiver), Writable (sender).
    const inbound = client.receiver('sap-conf-in').attach(P.address, '', P.count, 0);
    await ready(inbound, 'subscribed', 'receiver attach');
    const outbound = client.sender('sap-conf-out').attach(P.address);
    await ready(outbound, 'ready', 'sender attach');

    const messages = [];
    for (let i = 0; i < P.count; i++) {
        messages.push({
            payload: {
                chunks: [Buffer.from(P.tag + ' body ' + i)],
                type: 'text/plain',
                properties: {i: i, tag: P.tag},
            },
            target: {properties: {messageID: P.tag + '-' + i, subject: 'sap-' + i}},
        });
    }
    const incoming = receiveN(inbound, P.count);
    const outcomes = await sendAll(outbound, messages);
    const got = await incoming;
    got.forEach((message) => message.done());
    const described = got.map(describe);
    await disconnect(client);
    return {mechanism: handshake.mechanism, peer: handshake.peer, outcomes: outcomes,
            messages: described, errors: errors};
};

// The connection must fail (e.g. the broker refuses the upgrade); report how.
cases.connect_refused = async () => {
    const client = new AMQP.Client(clientOptions());
    const errors = [];
    client.on('error', (error) => errors.push(messageOf(error)));
    try {
        const handshake = await connect(client);
        await disconnect(client);
        return {refused: false, mechanism: handshake.mechanism};
    } catch (e) {
        return {refused: true, error: String(e.message), errors: errors};
    }
};

// -- main ------------------------------------------------------------------------

// Like common.runCase, but a failed case also exits non-zero.
function main() {
    const fn = cases[T.case];
    const run = fn
        ? withTimeout(fn(), (P.timeout || 30) * 1000, 'case ' + T.case)
        : Promise.reject(new Error('case ' + T.case + ' is not written for sap-xb-msg'));
    run.then(
        (result) => {
            const answer = {ok: true, result: result === undefined ? null : result};
            process.stdout.write(JSON.stringify(answer) + '\n');
            process.exit(0);
        },
        (err) => {
            process.stdout.write(JSON.stringify({ok: false, error: errorText(err)}) + '\n');
            process.exit(1);
        },
    );
}

main();
