// A plain WebSocket → TCP relay, the workaround people put in front of a broker
// without AMQP over WebSocket: every WebSocket message's bytes go to a TCP socket
// of their own to the broker, and the broker's bytes come back as binary
// messages.  The baseline of bench_gateway.py (a relay knows nothing of AMQP).
// Usage: node ws_relay.js <upstream host> <upstream port>  → prints its port.
'use strict';
const net = require('net');
const { WebSocketServer } = require('ws');

const [host, port] = [process.argv[2], Number(process.argv[3])];
const server = new WebSocketServer({
  host: '127.0.0.1', port: 0, perMessageDeflate: false,
  handleProtocols: (protocols) => (protocols.has('amqp') ? 'amqp' : false),
});
server.on('connection', (ws) => {
  const tcp = net.connect({ host, port, noDelay: true });
  const pending = [];
  tcp.on('connect', () => { for (const b of pending) tcp.write(b); pending.length = 0; });
  ws.on('message', (data) => { if (tcp.connecting) pending.push(data); else tcp.write(data); });
  tcp.on('data', (data) => ws.send(data, { binary: true }));
  const end = () => { ws.terminate(); tcp.destroy(); };
  ws.on('close', end); ws.on('error', end); tcp.on('close', end); tcp.on('error', end);
});
server.on('listening', () => process.stdout.write(`${server.address().port}\n`));
