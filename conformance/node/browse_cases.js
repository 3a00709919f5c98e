#!/usr/bin/env node
// Browsing consumers and last-value queues with rhea (Node), over TCP or WebSocket.
//
//   node browse_cases.js '{"case": "browse_while_consuming", "transport": "tcp"|"ws",
//                          "host": ..., "port": ..., "ws_url": ..., "params": {...}}'
//
// A browser is a receiver whose source asks `distribution_mode: 'copy'`
// (rhea's source option; a symbol on the wire).  Queue depths come from the
// broker's HTTP JSON API (params.api_url: GET .../api/queues/NAME on the
// WebSocket port), read while the case runs.  Prints one JSON line,
// {"ok": true, "result": ...} or {"ok": false, "error": "..."}; the Python
// side (test_browsing.py) makes the assertions.  Every wait has a timeout
// and the whole case is capped by params.timeout (seconds, default 30).
'use strict';

const crypto = require('crypto');
const rhea = require('rhea');
const WebSocket = require('ws');

const {sleep, withTimeout, errText, runCase, close} = require('./common');

const T = JSON.parse(process.argv[2]);
const P = T.params || {};
const STEP = 10000; // ms for one wait

// -- connections and links -----------------------------------------------------

function connect() {
    const container = rhea.create_container({id: 'rhea-browse-' + crypto.randomUUID()});
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

// Send many without waiting for each outcome; resolve with all outcomes in order.
function sendAll(sender, messages) {
    return withTimeout(new Promise((resolve) => {
        const outcomes = new Array(messages.length);
        const index = new Map();
        const states = ['accepted', 'rejected', 'released', 'modified'];
        let next = 0;
        let settled = 0;
        const handlers = {};
        const pump = () => {
            while (next < messages.length && sender.sendable()) {
                index.set(sender.send(messages[next]), next);
                next++;
            }
        };
        const off = () => {
            for (const k of states) sender.removeListener(k, handlers[k]);
            sender.removeListener('sendable', pump);
        };
        for (const k of states) {
            handlers[k] = (ctx) => {
                const i = index.get(ctx.delivery);
                if (i === undefined) return;
                index.delete(ctx.delivery);
                outcomes[i] = k;
                if (++settled === messages.length) { off(); resolve(outcomes); }
            };
            sender.on(k, handlers[k]);
        }
        sender.on('sendable', pump);
        pump();
    }), STEP * 2, 'outcomes of ' + messages.length + ' messages');
}

// A receiver with manual credit and settlement, and an inbox.  `copy`: a browser.
function openReceiver(conn, address, opts) {
    opts = opts || {};
    const source = {address: address};
    if (opts.copy) source.distribution_mode = 'copy';
    const receiver = conn.open_receiver({source: source, credit_window: 0, autoaccept: false});
    const inbox = [];
    let waiter = null;
    receiver.on('message', (ctx) => {
        inbox.push(ctx);
        if (waiter) { const w = waiter; waiter = null; w(); }
    });
    receiver.inbox = inbox;
    receiver.next = (ms) => withTimeout(new Promise((resolve) => {
        const take = () => resolve(inbox.shift());
        if (inbox.length) take(); else waiter = take;
    }), ms || STEP, 'a message on ' + address);
    return withTimeout(new Promise((resolve, reject) => {
        receiver.once('receiver_open', () => {
            if (opts.credit) receiver.add_credit(opts.credit);
            resolve(receiver);
        });
        receiver.once('receiver_error', (ctx) => reject(new Error('receiver error: ' + errText(ctx))));
    }), STEP, 'attach to ' + address);
}

// What the broker's attach said about the source's distribution mode
// (a symbol; absent: the spec's default, move).
function modeOf(receiver) {
    const source = receiver.remote && receiver.remote.attach && receiver.remote.attach.source;
    const mode = source ? source.distribution_mode : undefined;
    return mode === undefined || mode === null ? null : String(mode);
}

// What this receiver's own attach carries: rhea keeps the local source
// encoded, a described list whose seventh field is distribution-mode (§3.5.3).
function askedMode(receiver) {
    const field = receiver.local.attach.source.value[6];
    return field ? {value: String(field.value), type: field.type.name} : null;
}

// Messages that arrive within ms, settled or not (for "nothing more").
async function extrasWithin(receiver, ms) {
    await sleep(ms);
    const extra = receiver.inbox.map((ctx) => ctx.message.body);
    receiver.inbox.length = 0;
    return extra;
}

function seen(ctx) {
    const props = ctx.message.application_properties || {};
    return {
        body: ctx.message.body,
        i: props.i === undefined ? null : props.i,
        symbol: props.symbol === undefined ? null : props.symbol,
        settled: Boolean(ctx.delivery.remote_settled),
    };
}

async function queueStats() {
    const response = await withTimeout(fetch(P.api_url), STEP, 'GET ' + P.api_url);
    if (!response.ok) throw new Error('GET ' + P.api_url + ': ' + response.status);
    const stats = await response.json();
    return {message_count: stats.message_count, unacked: stats.unacked,
            acked: stats.acked, consumer_count: stats.consumer_count};
}

async function waitUntil(predicate, ms, what) {
    const deadline = Date.now() + ms;
    while (!predicate()) {
        if (Date.now() > deadline) throw new Error('timed out after ' + ms + ' ms waiting for ' + what);
        await sleep(5);
    }
}

// -- cases ---------------------------------------------------------------------

const cases = {};

// params: queue (address), api_url, count, tag.  Half the messages are queued
// before the browser attaches, the rest are published while an acquiring
// consumer takes them (5 in flight, each accepted as it comes).
cases.browse_while_consuming = async () => {
    const n = P.count;
    const half = Math.floor(n / 2);
    const message = (i) => ({message_id: P.tag + '-' + i, application_properties: {i: i}, body: 'm' + i});
    const pub = await connect();
    const sender = await openSender(pub, P.queue);
    const first = [];
    for (let i = 0; i < half; i++) first.push(message(i));
    const outcomes = await sendAll(sender, first);

    const bconn = await connect();
    const browser = await openReceiver(bconn, P.queue, {copy: true, credit: 2 * n});
    const browsed = [];
    const takeBrowsed = () => { while (browser.inbox.length) browsed.push(seen(browser.inbox.shift())); };
    await waitUntil(() => { takeBrowsed(); return browsed.length >= half; }, STEP, half + ' browsed');
    const after_browse = await queueStats();

    // The consumer: accepts each message as it comes and grants one more credit.
    const cconn = await connect();
    const consumer = await openReceiver(cconn, P.queue, {credit: 5});
    const consumed = [];
    consumer.on('message', (ctx) => {
        consumed.push(seen(ctx));
        ctx.delivery.accept();
        consumer.add_credit(1);
    });
    const rest = [];
    for (let i = half; i < n; i++) rest.push(message(i));
    // One at a time, so that publishing, browsing and consuming interleave.
    for (const m of rest) outcomes.push(...await sendAll(sender, [m]));
    const consumed_while_publishing = consumed.length;
    await waitUntil(() => { takeBrowsed(); return browsed.length >= n && consumed.length >= n; },
                    STEP, n + ' browsed and ' + n + ' consumed');
    consumer.inbox.length = 0; // the consumer's own handler took them
    await sleep(300); // anything more would be a duplicate
    takeBrowsed();
    const final = await queueStats();
    const result = {
        outcomes: outcomes,
        browser_mode: modeOf(browser),
        consumer_mode: modeOf(consumer),
        browsed: browsed,
        consumed: consumed,
        after_browse: after_browse,
        consumed_while_publishing: consumed_while_publishing,
        final: final,
    };
    await Promise.all([close(pub), close(bconn), close(cconn)]);
    return result;
};

// params: queue (a last-value queue keyed by the application property
// `symbol`), api_url, keys, updates.  One sender feeds keys × updates, in
// rounds; then a late browser, one more update, and a late acquiring receiver.
cases.last_value_queue = async () => {
    const conn = await connect();
    const sender = await openSender(conn, P.queue);
    const feed = [];
    for (let u = 0; u < P.updates; u++) {
        for (const k of P.keys) feed.push({application_properties: {symbol: k, u: u}, body: k + '=' + u});
    }
    const outcomes = await sendAll(sender, feed);
    const after_feed = await queueStats();

    const browser = await openReceiver(conn, P.queue, {copy: true, credit: 100});
    const browsed = [];
    for (let i = 0; i < P.keys.length; i++) browsed.push(seen(await browser.next()));
    const browsed_extra = await extrasWithin(browser, 300);
    const after_browse = await queueStats();
    // A live update: the browser sees it, and it replaces its key's message.
    const last = P.keys[0] + '=' + P.updates;
    const update_outcome = (await sendAll(sender, [{application_properties: {symbol: P.keys[0], u: P.updates}, body: last}]))[0];
    const browsed_update = seen(await browser.next());
    const after_update = await queueStats();

    const consumer = await openReceiver(conn, P.queue, {credit: 100});
    const consumed = [];
    for (let i = 0; i < P.keys.length; i++) {
        const ctx = await consumer.next();
        consumed.push(seen(ctx));
        ctx.delivery.accept();
    }
    const consumed_extra = await extrasWithin(consumer, 300);
    const final = await queueStats();
    await close(conn);
    return {
        outcomes_accepted: outcomes.filter((o) => o === 'accepted').length,
        after_feed: after_feed,
        browser_mode: modeOf(browser),
        browsed: browsed,
        browsed_extra: browsed_extra,
        after_browse: after_browse,
        update_outcome: update_outcome,
        browsed_update: browsed_update,
        after_update: after_update,
        consumed: consumed,
        consumed_extra: consumed_extra,
        final: final,
    };
};

// params: queue (an ordinary queue), board (a queue declared x-browse-only).
// The distribution mode in the broker's attach for a browser, an ordinary
// receiver, and an ordinary receiver on the browse-only queue.
cases.browse_attach_reply = async () => {
    const conn = await connect();
    const browser = await openReceiver(conn, P.queue, {copy: true});
    const plain = await openReceiver(conn, P.queue);
    const onBoard = await openReceiver(conn, P.board);
    const result = {
        browser: modeOf(browser),
        receiver: modeOf(plain),
        browse_only_receiver: modeOf(onBoard),
        asked: askedMode(browser),
    };
    await close(conn);
    return result;
};

// params: board (a queue declared x-browse-only), api_url, count.  Two
// ordinary receivers (not asking copy) each see every message, and the queue keeps them.
cases.browse_only_queue = async () => {
    const conn = await connect();
    const sender = await openSender(conn, P.board);
    const messages = [];
    for (let i = 0; i < P.count; i++) messages.push({application_properties: {i: i}, body: 'n' + i});
    const outcomes = await sendAll(sender, messages);
    const got = {};
    const modes = {};
    for (const who of ['a', 'b']) {
        const receiver = await openReceiver(conn, P.board, {credit: 2 * P.count});
        modes[who] = modeOf(receiver);
        got[who] = [];
        for (let i = 0; i < P.count; i++) {
            const ctx = await receiver.next();
            got[who].push(seen(ctx));
            if (!ctx.delivery.remote_settled) ctx.delivery.accept(); // changes nothing either way
        }
        got[who + '_extra'] = await extrasWithin(receiver, 200);
    }
    const final = await queueStats();
    await close(conn);
    return {outcomes: outcomes, modes: modes, got: got, final: final};
};

runCase(cases, T, P, 'rhea');
