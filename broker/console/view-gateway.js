// The gateway's one view (gateway.html): client connections, upstream
// connections, routed links, deliveries in flight and held, the upstream's
// round-trip time, and the listeners, from /api/gateway (see
// broker/gateway/observe.py for its fields).

import { h, replace } from './dom.js';
import * as fmt from './fmt.js';
import { WINDOW_MS, rates } from './live.js';
import { badge, card, chartBox, dataTable, kvList, plural, tiles } from './widgets.js';

export const GATEWAY_POLL_MS = 1000;

const BYTE_FIELDS = { in: 'bytes_in', out: 'bytes_out' };

// Points [t, value] of the last WINDOW_MS (t: performance.now()).
class Series {
  constructor() {
    this.points = [];
  }

  push(t, value) {
    this.points.push([t, value]);
    while (this.points.length && this.points[0][0] < t - WINDOW_MS) this.points.shift();
  }
}

// The last answer of /api/gateway and what follows from successive ones:
// bytes per second by client and upstream connection, and their sum over
// the clients (what passes through), with its history.
export class GatewayStore {
  constructor() {
    this.polls = 0;
    this.gateway = null;
    this.previous = null; // [t, answer]
    this.clientRates = new Map(); // client name → {in, out} bytes/s
    this.upstreamRates = new Map(); // upstream key → {in, out} bytes/s
    this.traffic = { in: null, out: null }; // bytes/s over the clients seen in both samples
    this.series = { in: new Series(), out: new Series() };
    this.since = null;
  }

  span(now = performance.now()) {
    const known = this.since === null ? 0 : now - this.since;
    return Math.min(WINDOW_MS, Math.max(60 * 1000, known));
  }

  absorb(answer, t) {
    const [before, seconds] = this.previous
      ? [this.previous[1], (t - this.previous[0]) / 1000] : [null, 0];
    this.previous = [t, answer];
    this.gateway = answer;
    this.polls += 1;
    if (this.since === null) this.since = t;
    const clients = answer.clients || [];
    const earlier = new Map(((before && before.clients) || []).map((c) => [c.name, c]));
    this.clientRates = new Map();
    const total = { in: 0, out: 0 };
    for (const c of clients) {
      const r = rates(earlier.get(c.name), c, seconds, BYTE_FIELDS);
      this.clientRates.set(c.name, r);
      total.in += r.in || 0;
      total.out += r.out || 0;
    }
    const upstream = upstreamRows(answer);
    const earlierUp = new Map((before ? upstreamRows(before) : []).map((u) => [u.key, u]));
    this.upstreamRates = new Map(upstream.map(
      (u) => [u.key, rates(earlierUp.get(u.key), u, seconds, BYTE_FIELDS)]));
    if (!before) return;
    this.traffic = total;
    this.series.in.push(t, total.in);
    this.series.out.push(t, total.out);
  }
}

// The upstream connections have no name of their own: their place and node.
function upstreamRows(answer) {
  return (answer.upstream_connections || []).map((u, i) => ({ ...u, key: `${i + 1} ${u.node}` }));
}

export function gatewayView() {
  let store = null;
  const numbers = tiles([
    { key: 'clients', label: 'Client connections' },
    { key: 'upstream', label: 'Upstream connections' },
    { key: 'links', label: 'Routed links', hint: 'client ↔ upstream' },
    { key: 'in_flight', label: 'In flight', hint: 'deliveries not yet settled' },
    { key: 'held', label: 'Held', hint: 'deliveries held for lowered credit' },
    { key: 'rtt', label: 'Upstream RTT', hint: 'link attaches, averaged' },
  ]);
  const chart = chartBox((top) => fmt.rate(top, 'B'));
  const legend = h('div', { class: 'legend' });
  const about = h('div');
  const upstreamSummary = h('span', { class: 'muted' });
  const clientSummary = h('span', { class: 'muted' });
  const mode = h('span', { class: 'badge', id: 'mode', text: 'mode: gateway' });
  const ready = h('span');
  const upRate = (field) => (u) => ((store && store.upstreamRates.get(u.key)) || {})[field] ?? null;
  const clientRate = (field) => (c) => ((store && store.clientRates.get(c.name)) || {})[field] ?? null;
  const upstreamTable = dataTable({
    id: 'upstream-table', rowKey: (u) => u.key, sort: 'name',
    empty: 'No upstream connection: the gateway is dialing.',
    columns: [
      { key: 'name', label: 'Node', value: (u) => u.key,
        cell: (u) => h('span', { class: 'name', text: u.node }) },
      { key: 'state', label: 'State', value: (u) => (u.opened ? 'open' : 'opening'),
        cell: (u) => (u.opened ? badge('open', 'good') : badge('opening', 'quorum')) },
      { key: 'container', label: 'Peer container id', value: (u) => u.peer,
        cell: (u) => h('code', { class: 'wrap', text: u.peer || fmt.NONE }) },
      { key: 'sessions', label: 'Sessions', num: true, value: (u) => u.sessions },
      { key: 'links', label: 'Links', num: true, value: (u) => u.links },
      { key: 'bytes_in', label: 'Bytes in', num: true, value: (u) => u.bytes_in,
        text: (u) => `${fmt.bytes(u.bytes_in)} · ${fmt.rate(upRate('in')(u), 'B')}` },
      { key: 'bytes_out', label: 'Bytes out', num: true, value: (u) => u.bytes_out,
        text: (u) => `${fmt.bytes(u.bytes_out)} · ${fmt.rate(upRate('out')(u), 'B')}` },
    ],
  });
  const clientTable = dataTable({
    id: 'clients-table', rowKey: (c) => c.name, sort: 'peer',
    empty: 'No client connections open.',
    columns: [
      { key: 'peer', label: 'Peer', value: (c) => c.name,
        cell: (c) => h('span', { class: 'name', text: c.name }) },
      { key: 'transport', label: 'Transport', value: (c) => c.transport,
        cell: (c) => badge(c.transport, `transport-${c.transport}`) },
      { key: 'user', label: 'User', value: (c) => c.user, cell: userCell },
      { key: 'container', label: 'Container id', value: (c) => c.container_id,
        cell: (c) => h('code', { class: 'wrap', text: c.container_id || fmt.NONE }) },
      { key: 'sessions', label: 'Sessions', num: true, value: (c) => c.sessions },
      { key: 'links', label: 'Links', num: true, value: (c) => c.links },
      { key: 'in_flight', label: 'In flight', num: true, value: (c) => c.in_flight },
      { key: 'bytes_in', label: 'Bytes in', num: true, value: (c) => c.bytes_in,
        text: (c) => `${fmt.bytes(c.bytes_in)} · ${fmt.rate(clientRate('in')(c), 'B')}` },
      { key: 'bytes_out', label: 'Bytes out', num: true, value: (c) => c.bytes_out,
        text: (c) => `${fmt.bytes(c.bytes_out)} · ${fmt.rate(clientRate('out')(c), 'B')}` },
    ],
  });
  const el = h('div', { class: 'view' },
    h('div', { class: 'view-head' }, h('h1', { text: 'Gateway' }),
      h('span', { class: 'head-badges' }, mode, ready)),
    numbers.el,
    h('div', { class: 'columns' },
      h('section', { class: 'card chart-card' },
        h('h2', { text: 'Traffic through the gateway' }), legend, chart.el),
      h('div', { class: 'stack' }, card('Gateway', about))),
    h('section', { class: 'card', id: 'upstream' },
      h('div', { class: 'view-head' }, h('h2', { text: 'Upstream connections' }), upstreamSummary),
      upstreamTable.el),
    h('section', { class: 'card', id: 'clients' },
      h('div', { class: 'view-head' }, h('h2', { text: 'Client connections' }), clientSummary),
      clientTable.el));

  function update(s) {
    store = s;
    const g = s.gateway;
    if (!g) return;
    const upstream = upstreamRows(g);
    const open = upstream.filter((u) => u.opened).length;
    mode.textContent = `mode: ${g.mode}`;
    replace(ready, g.ready ? badge('ready', 'good') : badge('not ready: no upstream open', 'bad'));
    showNumbers(numbers, g, open);
    showTraffic(chart, legend, s);
    replace(about, aboutGateway(g));
    upstreamSummary.textContent = `${open} of ${upstream.length} open · ${
      plural(g.upstream_pool ? g.upstream_pool.wanted : upstream.length, 'connection')} wanted`;
    upstreamTable.update(upstream);
    const clients = g.clients || [];
    clientSummary.textContent = g.clients_truncated
      ? `${fmt.count(g.client_connections)} open · the first ${fmt.count(clients.length)} listed`
      : `${fmt.count(g.client_connections)} open`;
    clientTable.update(clients);
  }

  return { el, title: 'Gateway', update };
}

function showNumbers(numbers, g, open) {
  numbers.set('clients', fmt.count(g.client_connections), transports(g.client_connections_by_transport));
  const nodes = [...new Set((g.upstream_connections || []).filter((u) => u.opened).map((u) => u.node))];
  numbers.set('upstream', fmt.count(open),
    open ? nodes.join(' · ') : 'none open: dialing');
  const reattach = g.links_waiting_reattach ? ` · ${fmt.count(g.links_waiting_reattach)} waiting to re-attach` : '';
  numbers.set('links', fmt.count(g.routed_links), `now · ${fmt.count(g.links_routed_total)} in all${reattach}`);
  numbers.set('in_flight', fmt.count(g.in_flight_deliveries));
  numbers.set('held', fmt.count(g.held_deliveries));
  numbers.set('rtt', milliseconds(g.upstream_rtt_seconds));
}

function milliseconds(seconds) {
  if (seconds === null || seconds === undefined) return fmt.NONE;
  const ms = seconds * 1000;
  return `${ms < 10 ? ms.toFixed(2) : ms < 100 ? ms.toFixed(1) : Math.round(ms)} ms`;
}

function transports(byTransport) {
  const entries = Object.entries(byTransport || {}).sort();
  return entries.length ? entries.map(([name, n]) => `${name} ${n}`).join(' · ') : 'none open';
}

function showTraffic(chart, legend, store) {
  const { series, traffic } = store;
  replace(legend,
    h('span', { class: 'key in' }, `from clients ${fmt.rate(traffic.in, 'B')}`),
    h('span', { class: 'key out' }, `to clients ${fmt.rate(traffic.out, 'B')}`));
  chart.draw([{ points: series.in.points, class: 'in' }, { points: series.out.points, class: 'out' }],
    store.span(), 'bytes per second from and to the clients');
}

function aboutGateway(g) {
  const lines = (items, empty) => (items && items.length
    ? h('div', null, items.map((item) => h('div', null, h('code', { class: 'wrap', text: item }))))
    : h('span', { class: 'muted', text: empty }));
  return kvList([
    ['mode', g.mode],
    ['node', g.node],
    ['version', `${g.product} ${g.version}`],
    ['listeners', lines(g.listeners, 'not listening yet')],
    ['upstream nodes', lines(g.upstream_nodes, 'none')],
    ['upstream RTT', milliseconds(g.upstream_rtt_seconds)],
    ['signed in as', g.user],
  ]);
}

// The user, and the SASL mechanism when it says more than the name.
function userCell(c) {
  const mechanism = c.mechanism && c.mechanism.toLowerCase() !== c.user ? c.mechanism : '';
  return h('span', null, c.user || fmt.NONE,
    mechanism && h('span', { class: 'muted', title: 'SASL mechanism', text: ` ${mechanism}` }));
}
