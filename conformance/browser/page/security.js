// Security cases in the browser (test_browser_security.py): rhea's browser
// build over wss:// with a token as the SASL PLAIN password, and the raw
// browser WebSocket for the broker's Origin check.  Built on harness.js's
// Client (loaded first); every function returns a promise of plain JSON.
(function () {
  'use strict';
  const { Client, messageToWire } = window.harnessInternals;
  const STEP = 5000; // one wait, ms: each case stays under 10 s

  function withTimeout(promise, ms, what) {
    let timer;
    const timeout = new Promise((_, reject) => {
      timer = setTimeout(() => reject(new Error(`timed out after ${ms} ms: ${what}`)), ms);
    });
    return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
  }

  // rhea keeps the null terminus of a received attach as a typed null.
  function isNull(terminus) {
    return !terminus || (terminus.type && terminus.type.name === 'Null');
  }

  // Attach a receiver and report how the broker answered: attached, or
  // refused (rhea's receiver_open for the null-source attach, then
  // receiver_error with the detach's error, spec 2.6.3).
  function attachReceiver(conn, address) {
    return withTimeout(new Promise((resolve) => {
      const link = conn.open_receiver({ source: { address }, credit_window: 0 });
      const events = [];
      const outcome = (attached) => {
        const e = link.remote.detach && link.remote.detach.error;
        resolve({ attached, events, error: e ? { condition: String(e.condition), description: e.description || null } : null });
      };
      link.on('receiver_open', () => {
        events.push('open');
        if (!isNull(link.remote.attach.source)) outcome(true);
      });
      link.on('receiver_error', () => { events.push('error'); outcome(false); });
      link.on('receiver_close', () => { events.push('close'); outcome(false); });
    }), STEP, `receiver attach to ${address}`);
  }

  const security = {
    // Connect with PLAIN (the token as the password), send `count` messages to
    // `address` and receive them back on the same connection.
    async roundtrip({ url, username, password, address, count, tag }) {
      const client = await Client.open({ url, username, password, timeout: STEP });
      const sasl = client.conn.sasl_transport;
      const mechanism = sasl ? sasl.mechanism_name : null;
      const receiver = await withTimeout(client.receiver(address), STEP, `receiver on ${address}`);
      const sender = await withTimeout(client.sender(address), STEP, `sender on ${address}`);
      const messages = Array.from({ length: count }, (_, i) => ({
        message_id: `${tag}-${i}`, body: `${tag} body ${i}`, application_properties: { i },
      }));
      const outcomes = await client.sendAll(sender, messages, STEP);
      const got = await client.collect(receiver, count, () => true, STEP);
      await client.close(STEP);
      return { mechanism, outcomes, received: got.map(messageToWire), errors: client.errors };
    },

    // Attach a receiver to each of `addresses` on one connection; how each went.
    async attach({ url, username, password, addresses }) {
      const client = await Client.open({ url, username, password, timeout: STEP });
      const outcomes = [];
      for (const address of addresses) outcomes.push(await attachReceiver(client.conn, address));
      const open = client.conn.is_open();
      await client.close(STEP);
      return { outcomes, open_after: open };
    },

    // The browser's own WebSocket to `url`: did the upgrade succeed?  A refused
    // upgrade (HTTP 403) shows to a page only as an error and close code 1006.
    probe({ url }) {
      return withTimeout(new Promise((resolve) => {
        const seen = { opened: false, protocol: null, error: false, close_code: null };
        const ws = new WebSocket(url, ['amqp']);
        ws.onopen = () => { seen.opened = true; seen.protocol = ws.protocol; ws.close(1000); };
        ws.onerror = () => { seen.error = true; };
        ws.onclose = (event) => { seen.close_code = event.code; resolve(seen); };
      }), STEP, `WebSocket to ${url}`);
    },
  };

  window.security = security;
  document.getElementById('status').textContent = 'security ready';
})();
