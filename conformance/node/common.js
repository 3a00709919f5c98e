// Helpers shared by the Node case scripts: timeouts, error texts, the one-JSON-line
// runner, and the rhea waits every script had its own copy of (close, detach,
// drain, receiveN, offsetOf).
'use strict';

function sleep(ms) { return new Promise((resolve) => setTimeout(resolve, ms)); }

function withTimeout(promise, ms, what) {
    let timer;
    const timeout = new Promise((_, reject) => {
        timer = setTimeout(() => reject(new Error('timed out after ' + ms + ' ms waiting for ' + what)), ms);
    });
    return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

// The AMQP error of a rhea event context, as "condition: description".
function errText(ctx) {
    const e = (ctx && (ctx.error || (ctx.connection && ctx.connection.error))) || ctx;
    if (!e) return 'unknown';
    if (e.condition) return e.condition + (e.description ? ': ' + e.description : '');
    return String(e.message || e);
}

function errorText(err) {
    if (!err) return 'unknown error';
    if (err.stack) return String(err.stack);
    if (err.message) return String(err.message);
    if (err.error) return errorText(err.error);
    try { return JSON.stringify(err); } catch (e) { return String(err); }
}

// Run cases[spec.case] under the case's timeout and print {"ok", "result"|"error"}.
function runCase(cases, spec, params, client) {
    const fn = cases[spec.case];
    const run = fn
        ? withTimeout(fn(), (params.timeout || 30) * 1000, 'case ' + spec.case)
        : Promise.reject(new Error('case ' + spec.case + ' is not written for ' + client));
    run.then(
        (result) => {
            process.stdout.write(JSON.stringify({ok: true, result: result === undefined ? null : result}) + '\n');
            process.exit(0);
        },
        (err) => {
            process.stdout.write(JSON.stringify({ok: false, error: errorText(err)}) + '\n');
            process.exit(0);
        },
    );
}

const STEP = 10000; // ms: the default for one wait below

function close(conn, ms) {
    return withTimeout(new Promise((resolve) => {
        if (!conn.is_open()) return resolve();
        conn.once('connection_close', () => resolve());
        conn.once('disconnected', () => resolve());
        conn.close();
    }), ms || STEP, 'connection close');
}

function detach(link, ms) {
    return withTimeout(new Promise((resolve) => {
        link.once(link.is_sender() ? 'sender_close' : 'receiver_close', () => resolve());
        link.close();
    }), ms || STEP, 'detach');
}

function drain(receiver, ms) {
    return withTimeout(new Promise((resolve) => {
        receiver.once('receiver_drained', () => resolve());
        receiver.drain_credit();
    }), ms || STEP, 'receiver_drained');
}

// The next n messages of a receiver that has an inbox (its `next(ms)`).
async function receiveN(receiver, n, ms) {
    const out = [];
    for (let i = 0; i < n; i++) out.push(await receiver.next(ms));
    return out;
}

// A stream message's offset (RabbitMQ's x-stream-offset annotation), or null.
function offsetOf(ctx) {
    const a = ctx.message.message_annotations || {};
    return a['x-stream-offset'] === undefined ? null : Number(a['x-stream-offset']);
}

module.exports = {sleep, withTimeout, errText, errorText, runCase, close, detach, drain, receiveN, offsetOf};
