// Helpers shared by the Node case scripts (cases.js, promise_cases.js,
// exchange_cases.js): timeouts, error texts, and the one-JSON-line runner.
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

module.exports = {sleep, withTimeout, errText, errorText, runCase};
