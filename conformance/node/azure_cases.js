#!/usr/bin/env node
// Conformance cases for Microsoft's Node SDK @azure/service-bus 7.9 over
// WebSocket (it dials wss:// only: core-amqp builds
// `wss://HOST:PORT/$servicebus/websocket` with subprotocol AMQPWSB10 from the
// connection string's Endpoint, and hands it to rhea's websocket_connect).
//
//   node azure_cases.js '{"case": "send_receive", "params": {"port": 12345,
//                         "entity": "az-...", "timeout": 30}}'
//
// Run with NODE_EXTRA_CA_CERTS=<the test CA> (verification stays on).  Prints
// one JSON line on stdout: {"ok": true, "result": ...} or {"ok": false,
// "error": "..."}; the Python side (test_azure_node.py) makes the assertions.
// Every SDK call has the SDK's own timeout (retryOptions.timeoutInMs, no
// retries) and ours on top (withTimeout), so nothing hangs.
'use strict';

const WebSocket = require('ws');
const {ServiceBusClient} = require('@azure/service-bus');

const {sleep, withTimeout, runCase} = require('./common');

const T = JSON.parse(process.argv[2]);
const P = T.params || {};
const STEP = 8000; // ms: one SDK step (link open, receive wait, management request)

const KEY_NAME = 'RootManageSharedAccessKey';
const KEY = P.key || 'SAS_KEY_VALUE';

// -- the client -----------------------------------------------------------------

// The connection string as an application would write it.  Its port is kept
// (ConnectionConfig.create) and, with a WebSocket given, becomes the port of
// the wss:// URL, so no customEndpointAddress is needed.  The host is
// `localhost`: the test certificate is for 127.0.0.1 and localhost.
// (UseDevelopmentEmulator=true would only switch rhea's *TCP* transport to
// plain and its default port to 5672; over WebSocket it changes nothing.)
function client() {
    const host = P.host || 'localhost';
    const connectionString = `Endpoint=sb://${host}:${P.port};SharedAccessKeyName=${KEY_NAME};`
        + `SharedAccessKey=${KEY}`;
    return new ServiceBusClient(connectionString, {
        webSocketOptions: {webSocket: WebSocket},
        retryOptions: {maxRetries: 0, timeoutInMs: STEP},
    });
}

function step(promise, what) {
    return withTimeout(promise, STEP + 2000, what);
}

// What the assertions need of a received message, JSON-shaped (Longs as numbers).
function describe(m) {
    const num = (v) => (v === undefined || v === null ? null : Number(v.toString()));
    const date = (v) => (v ? v.getTime() : null);
    return {
        body: Buffer.isBuffer(m.body) ? m.body.toString('utf8') : m.body,
        message_id: m.messageId === undefined ? null : m.messageId,
        subject: m.subject === undefined ? null : m.subject,
        content_type: m.contentType === undefined ? null : m.contentType,
        application_properties: m.applicationProperties || {},
        delivery_count: m.deliveryCount === undefined ? null : m.deliveryCount,
        lock_token: m.lockToken === undefined ? null : m.lockToken,
        sequence_number: num(m.sequenceNumber),
        enqueued_time: date(m.enqueuedTimeUtc),
        locked_until: date(m.lockedUntilUtc),
        dead_letter_reason: m.deadLetterReason === undefined ? null : m.deadLetterReason,
        dead_letter_error_description:
            m.deadLetterErrorDescription === undefined ? null : m.deadLetterErrorDescription,
        state: m.state === undefined ? null : m.state,
    };
}

// A call that should fail: what it failed with (ServiceBusError's code and
// name), or {rejected: false}.  Our own step timeout has no code.
async function rejection(promise, what) {
    try {
        await step(promise, what);
        return {rejected: false};
    } catch (err) {
        return {rejected: true, code: err.code === undefined ? null : err.code,
            name: err.name || null, message: String(err.message || err)};
    }
}

// A rule as listRules gives it, JSON-shaped (undefined correlation fields dropped).
function describeRule(rule) {
    const filter = {};
    for (const [k, v] of Object.entries(rule.filter || {})) {
        if (v !== undefined && v !== null) filter[k] = v;
    }
    const action = rule.action && rule.action.sqlExpression !== undefined
        ? rule.action.sqlExpression : null;
    return {name: rule.name, filter, action};
}

// Every rule of a subscription, through listRules' pages (enumerate-rules with top and skip).
async function listRules(ruleManager) {
    const rules = [];
    const pages = ruleManager.listRules().byPage({maxPageSize: 100});
    for (;;) {
        const page = await step(pages.next(), 'listRules');
        if (page.done) break;
        rules.push(...page.value.map(describeRule));
    }
    return rules;
}

// Up to `count` messages, waiting at most `waitMs` in all.
async function receive(receiver, count, waitMs = STEP) {
    const got = [];
    const deadline = Date.now() + waitMs;
    while (got.length < count) {
        const left = deadline - Date.now();
        if (left <= 0) break;
        const batch = await step(receiver.receiveMessages(count - got.length,
            {maxWaitTimeInMs: Math.max(left, 200)}), 'receiveMessages');
        got.push(...batch);
    }
    return got;
}

async function send(sb, entity, ...messages) {
    const sender = sb.createSender(entity);
    try {
        await step(sender.sendMessages(messages), 'sendMessages');
    } finally {
        await step(sender.close(), 'sender.close');
    }
}

// Receive-and-delete: what is left on `entity` (or its dead-letter queue).
async function drain(sb, entity, count, waitMs, options = {}) {
    const receiver = sb.createReceiver(entity, Object.assign({receiveMode: 'receiveAndDelete'}, options));
    try {
        return (await receive(receiver, count, waitMs)).map(describe);
    } finally {
        await step(receiver.close(), 'receiver.close');
    }
}

// Run `body(sb)` with a client, always closing it; a failure of the body is
// the one reported, not a later one of close.
async function withClient(body) {
    const sb = client();
    let result;
    try {
        result = await body(sb);
    } catch (err) {
        await step(sb.close(), 'client.close').catch(() => {});
        throw err;
    }
    await step(sb.close(), 'client.close');
    return result;
}

// -- cases ----------------------------------------------------------------------

const cases = {};

// Send one message with properties, receive it in receiveAndDelete mode.
cases.send_receive = () => withClient(async (sb) => {
    await send(sb, P.entity, {body: 'hello', messageId: 'm-1', subject: 'greeting',
        contentType: 'text/plain', applicationProperties: {colour: 'blue', n: 7}});
    return {messages: await drain(sb, P.entity, 2, 2000)};
});

// createMessageBatch + tryAddMessage x100, one sendMessages(batch).
cases.send_batch = () => withClient(async (sb) => {
    const sender = sb.createSender(P.entity);
    const added = [];
    try {
        const batch = await step(sender.createMessageBatch(), 'createMessageBatch');
        for (let i = 0; i < 100; i++) {
            added.push(batch.tryAddMessage({body: `b${i}`, messageId: `b-${i}`}));
        }
        await step(sender.sendMessages(batch), 'sendMessages(batch)');
    } finally {
        await step(sender.close(), 'sender.close');
    }
    return {added, messages: await drain(sb, P.entity, 101, 3000)};
});

// peekLock (the default) and complete: gone afterwards.
cases.peek_lock_complete = () => withClient(async (sb) => {
    await send(sb, P.entity, {body: 'to complete', messageId: 'c-1'});
    const receiver = sb.createReceiver(P.entity);
    let got;
    try {
        got = await receive(receiver, 1);
        if (got.length) await step(receiver.completeMessage(got[0]), 'completeMessage');
    } finally {
        await step(receiver.close(), 'receiver.close');
    }
    return {messages: got.map(describe), left: await drain(sb, P.entity, 1, 1500)};
});

// Abandon, receive again (deliveryCount 1), complete.
cases.abandon = () => withClient(async (sb) => {
    await send(sb, P.entity, {body: 'again', messageId: 'a-1'});
    const receiver = sb.createReceiver(P.entity);
    let first, second;
    try {
        first = await receive(receiver, 1);
        if (first.length) await step(receiver.abandonMessage(first[0]), 'abandonMessage');
        second = await receive(receiver, 1);
        if (second.length) await step(receiver.completeMessage(second[0]), 'completeMessage');
    } finally {
        await step(receiver.close(), 'receiver.close');
    }
    return {first: first.map(describe), second: second.map(describe),
        left: await drain(sb, P.entity, 1, 1500)};
});

// deadLetterMessage with reason and description, then read the dead-letter queue.
cases.dead_letter = () => withClient(async (sb) => {
    await send(sb, P.entity, {body: 'poison', messageId: 'd-1'});
    const receiver = sb.createReceiver(P.entity);
    let got;
    try {
        got = await receive(receiver, 1);
        if (got.length) {
            await step(receiver.deadLetterMessage(got[0], {deadLetterReason: 'bad-input',
                deadLetterErrorDescription: 'cannot parse'}), 'deadLetterMessage');
        }
    } finally {
        await step(receiver.close(), 'receiver.close');
    }
    const dead = await drain(sb, P.entity, 1, STEP, {subQueueType: 'deadLetter'});
    return {messages: got.map(describe), dead, left: await drain(sb, P.entity, 1, 1000)};
});

// peekMessages (ENTITY/$management) shows the messages without taking them.
cases.peek = () => withClient(async (sb) => {
    await send(sb, P.entity, {body: 'p0'}, {body: 'p1'}, {body: 'p2'});
    const receiver = sb.createReceiver(P.entity);
    let peeked;
    try {
        peeked = await step(receiver.peekMessages(5), 'peekMessages');
    } finally {
        await step(receiver.close(), 'receiver.close');
    }
    return {peeked: peeked.map(describe), left: await drain(sb, P.entity, 3, STEP)};
});

// renewMessageLock returns a later expiry; then complete.
cases.renew_lock = () => withClient(async (sb) => {
    await send(sb, P.entity, {body: 'keep', messageId: 'r-1'});
    const receiver = sb.createReceiver(P.entity);
    let got, locked = null, renewed = null;
    try {
        got = await receive(receiver, 1);
        if (got.length) {
            // read now: renewMessageLock updates the message's lockedUntilUtc in place
            locked = got[0].lockedUntilUtc ? got[0].lockedUntilUtc.getTime() : null;
            await sleep(500);
            renewed = (await step(receiver.renewMessageLock(got[0]), 'renewMessageLock')).getTime();
            await step(receiver.completeMessage(got[0]), 'completeMessage');
        }
    } finally {
        await step(receiver.close(), 'receiver.close');
    }
    return {messages: got.map(describe), locked, renewed, left: await drain(sb, P.entity, 1, 1000)};
});

// scheduleMessages 2 s ahead: not there at once, there afterwards.  The
// receiver attaches first, so the queue exists before the request (as an Azure
// entity would): scheduleMessages goes straight to ENTITY/$management without
// attaching a sender link, and the broker creates queues only on attach.
cases.schedule = () => withClient(async (sb) => {
    const receiver = sb.createReceiver(P.entity, {receiveMode: 'receiveAndDelete'});
    let seqs, early, got, arrived = null, when = null;
    try {
        const before = await receive(receiver, 1, 300);
        if (before.length) throw new Error('the queue was not empty');
        when = new Date(Date.now() + 2000);
        const sender = sb.createSender(P.entity);
        try {
            seqs = await step(sender.scheduleMessages({body: 'later', messageId: 's-1'}, when),
                'scheduleMessages');
        } finally {
            await step(sender.close(), 'sender.close');
        }
        early = await receive(receiver, 1, 500);
        got = await receive(receiver, 1, 5000);
        arrived = Date.now();
    } finally {
        await step(receiver.close(), 'receiver.close');
    }
    return {sequence_numbers: seqs.map((s) => Number(s.toString())), scheduled_for: when.getTime(),
        early: early.map(describe), messages: got.map(describe), arrived};
});

// A message sent without a message-id, received in peekLock and completed.
// The SDK's LockRenewer keys its timers by messageId and throws "Failed to
// stop auto lock renewal - no message ID" from receiver.close() (stopAll) when
// it held such a message: it relies on Service Bus giving every message an id
// when the sender did not.
cases.peek_lock_no_message_id = () => withClient(async (sb) => {
    await send(sb, P.entity, {body: 'anonymous'});
    const receiver = sb.createReceiver(P.entity);
    let got;
    try {
        got = await receive(receiver, 1);
        if (got.length) await step(receiver.completeMessage(got[0]), 'completeMessage');
    } finally {
        await step(receiver.close(), 'receiver.close');
    }
    return {messages: got.map(describe), left: await drain(sb, P.entity, 1, 1000)};
});

// A topic with two subscriptions; the receivers attach before the send.
cases.topic_subscriptions = () => withClient(async (sb) => {
    // one options object each: createReceiver takes over the object it is given
    const r1 = sb.createReceiver(P.entity, 's1', {receiveMode: 'receiveAndDelete'});
    const r2 = sb.createReceiver(P.entity, 's2', {receiveMode: 'receiveAndDelete'});
    try {
        // receiving attaches the links; nothing is there yet
        const before1 = await receive(r1, 1, 300);
        const before2 = await receive(r2, 1, 300);
        await send(sb, P.entity, {body: 'fan-out'});
        const got1 = await receive(r1, 2, 2000);
        const got2 = await receive(r2, 2, 2000);
        return {before: before1.length + before2.length,
            s1: got1.map(describe), s2: got2.map(describe)};
    } finally {
        await step(r1.close(), 'r1.close');
        await step(r2.close(), 'r2.close');
    }
});

// deferMessage sets the message aside (out of the queue, peek shows it
// "deferred"); receiveDeferredMessages by its sequence number gives it back
// locked, with a higher deliveryCount; renewMessageLock and completeMessage go
// through ENTITY/$management (renew-lock, update-disposition); asked for again,
// it is not found.
cases.defer = () => withClient(async (sb) => {
    await send(sb, P.entity, {body: 'set aside', messageId: 'df-1'});
    const receiver = sb.createReceiver(P.entity);
    let first, after, peeked, deferred = [], locked = null, renewed = null, again;
    try {
        first = await receive(receiver, 1);
        if (!first.length) throw new Error('nothing received to defer');
        const seq = first[0].sequenceNumber;
        await step(receiver.deferMessage(first[0]), 'deferMessage');
        after = await receive(receiver, 1, 1000);
        peeked = await step(receiver.peekMessages(5), 'peekMessages');
        deferred = await step(receiver.receiveDeferredMessages([seq]), 'receiveDeferredMessages');
        if (deferred.length) {
            // read now: renewMessageLock updates lockedUntilUtc in place
            locked = deferred[0].lockedUntilUtc ? deferred[0].lockedUntilUtc.getTime() : null;
            await sleep(500);
            renewed = (await step(receiver.renewMessageLock(deferred[0]),
                'renewMessageLock(deferred)')).getTime();
            await step(receiver.completeMessage(deferred[0]), 'completeMessage(deferred)');
        }
        again = await rejection(receiver.receiveDeferredMessages([seq]),
            'receiveDeferredMessages again');
    } finally {
        await step(receiver.close(), 'receiver.close');
    }
    return {first: first.map(describe), after: after.map(describe), peeked: peeked.map(describe),
        deferred: deferred.map(describe), locked, renewed, again,
        left: await drain(sb, P.entity, 1, 1000)};
});

// createRuleManager on TOPIC/Subscriptions/filtered: $Default first; SQL
// rules on sys.label and on an application property, a correlation rule; a
// duplicate name and a rule with an action refused; $Default deleted.  Then
// eight messages: `filtered` gets those some rule matches (once each, even
// when two match: rules without actions make one copy), `all` (its $Default
// untouched) gets every one.
cases.rules = () => withClient(async (sb) => {
    // receivers first: attaching creates the topic and its subscriptions
    const filtered = sb.createReceiver(P.entity, 'filtered', {receiveMode: 'receiveAndDelete'});
    const all = sb.createReceiver(P.entity, 'all', {receiveMode: 'receiveAndDelete'});
    try {
        const before = (await receive(filtered, 1, 300)).length
            + (await receive(all, 1, 300)).length;
        const rm = sb.createRuleManager(P.entity, 'filtered');
        const initial = await listRules(rm);
        await step(rm.createRule('red', {sqlExpression: "sys.label = 'red'"}), 'createRule red');
        await step(rm.createRule('bulk', {sqlExpression: 'quantity > 10'}), 'createRule bulk');
        await step(rm.createRule('gold', {correlationId: 'order-7',
            applicationProperties: {tier: 'gold'}}), 'createRule gold');
        const duplicate = await rejection(rm.createRule('red', {sqlExpression: '1=1'}),
            'createRule red again');
        // rule actions rewrite messages: the broker refuses them (400), keeping nothing
        const withAction = await rejection(rm.createRule('stamped', {sqlExpression: '1=1'},
            {sqlExpression: "SET sys.label = 'stamped'"}), 'createRule with an action');
        await step(rm.deleteRule('$Default'), 'deleteRule $Default');
        const rules = await listRules(rm);
        await send(sb, P.entity,
            {body: 'red', subject: 'red'},
            {body: 'blue', subject: 'blue'},
            {body: 'bulk', applicationProperties: {quantity: 20}},
            {body: 'few', applicationProperties: {quantity: 2}},
            {body: 'gold', correlationId: 'order-7', applicationProperties: {tier: 'gold'}},
            {body: 'silver', correlationId: 'order-7', applicationProperties: {tier: 'silver'}},
            {body: 'other-order', correlationId: 'order-8', applicationProperties: {tier: 'gold'}},
            {body: 'red-gold', subject: 'red', correlationId: 'order-7',
                applicationProperties: {tier: 'gold'}});
        const gotFiltered = await receive(filtered, 9, 2000);
        const gotAll = await receive(all, 9, 2000);
        return {before, initial, duplicate, withAction, rules,
            filtered: gotFiltered.map(describe), all: gotAll.map(describe)};
    } finally {
        await step(filtered.close(), 'filtered.close');
        await step(all.close(), 'all.close');
    }
});

// deleteRule of a rule the subscription does not have.  core-amqp tells an
// entity that is not there (MessagingEntityNotFound) from a service that is
// not (ServiceCommunicationProblem) by the 404's description: Service Bus says
// "The messaging entity '...' could not be found."
cases.delete_unknown_rule = () => withClient(async (sb) => {
    const receiver = sb.createReceiver(P.entity, 'sub', {receiveMode: 'receiveAndDelete'});
    try {
        await receive(receiver, 1, 300); // attaching creates the topic and subscription
        const rm = sb.createRuleManager(P.entity, 'sub');
        const unknown = await rejection(rm.deleteRule('no-such-rule'), 'deleteRule no-such-rule');
        return {unknown, rules: await listRules(rm)};
    } finally {
        await step(receiver.close(), 'receiver.close');
    }
});

runCase(cases, T, P, '@azure/service-bus');
