// #/overview: the node at a glance.

import { h, replace } from './dom.js';
import * as fmt from './fmt.js';
import { badge, card, chartBox, kvList, tiles } from './widgets.js';

export function overviewView() {
  const numbers = tiles([
    { key: 'ready', label: 'Ready', hint: 'messages waiting' },
    { key: 'unacked', label: 'Unacked', hint: 'delivered, not settled' },
    { key: 'in', label: 'Publish', hint: 'msg/s in' },
    { key: 'out', label: 'Deliver', hint: 'msg/s out' },
    { key: 'connections', label: 'Connections' },
    { key: 'queues', label: 'Queues & streams' },
  ]);
  const chart = chartBox(fmt.rate);
  const legend = h('div', { class: 'legend' });
  const memory = h('div', { class: 'memory' });
  const node = h('div');
  const el = h('div', { class: 'view' },
    h('div', { class: 'view-head' }, h('h1', { text: 'Overview' })),
    numbers.el,
    h('div', { class: 'columns' },
      h('section', { class: 'card chart-card' }, h('h2', { text: 'Message rates' }), legend, chart.el),
      h('div', { class: 'stack' }, card('Memory', memory), card('Node', node))));

  function update(store) {
    const o = store.overview;
    if (!o) return;
    showNumbers(numbers, o, store);
    showRates(chart, legend, store);
    replace(memory, memoryInfo(o.memory));
    replace(node, nodeInfo(o, store));
  }

  return { el, title: 'Overview', needs: [], update };
}

function showNumbers(numbers, o, store) {
  numbers.set('ready', fmt.count(o.messages_ready));
  numbers.set('unacked', fmt.count(o.messages_unacked));
  numbers.set('in', fmt.rate(store.totals.in), `msg/s in · ${fmt.count(o.published)} in all`);
  numbers.set('out', fmt.rate(store.totals.out), `msg/s out · ${fmt.count(o.delivered)} in all`);
  numbers.set('connections', fmt.count(o.connections), transports(o.connections_by_transport));
  numbers.set('queues', fmt.count(o.queues), `${fmt.count(o.exchanges)} exchanges`);
}

function transports(byTransport) {
  const entries = Object.entries(byTransport || {}).sort();
  return entries.length ? entries.map(([name, n]) => `${name} ${n}`).join(' · ') : 'none open';
}

function showRates(chart, legend, store) {
  const series = store.totalSeries;
  const peak = Math.max(0, ...[...series.in.points, ...series.out.points].map((p) => p[1]));
  replace(legend,
    h('span', { class: 'key in' }, `in ${fmt.rate(store.totals.in)}`),
    h('span', { class: 'key out' }, `out ${fmt.rate(store.totals.out)}`),
    h('span', { class: 'muted' }, `peak ${fmt.rate(peak)}`));
  chart.draw([{ points: series.in.points, class: 'in' }, { points: series.out.points, class: 'out' }],
    store.span(), 'messages per second in and out');
}

function memoryInfo(m) {
  if (!m) return h('p', { class: 'muted', text: 'not reported' });
  const share = m.high_watermark ? m.held_bytes / m.high_watermark : 0;
  const fill = h('span', { class: `meter-fill${m.alarm ? ' alarm' : ''}` });
  fill.style.width = `${Math.min(100, Math.max(share * 100, m.held_bytes ? 0.5 : 0))}%`;
  return [
    h('div', { class: 'memory-head' },
      h('span', { class: 'big', text: fmt.bytes(m.held_bytes) }),
      m.alarm ? badge('alarm: publishers held back', 'bad') : badge('no alarm', 'good')),
    h('div', { class: 'meter', role: 'meter', 'aria-valuemin': 0, 'aria-valuemax': 100,
      'aria-valuenow': Math.round(share * 100), 'aria-label': 'held by messages' }, fill),
    kvList([
      ['held by messages', `${fmt.bytes(m.held_bytes)} (${(share * 100).toFixed(1)} %)`],
      ['high watermark', fmt.bytes(m.high_watermark)],
      ...(m.limit !== m.high_watermark ? [['limit now (capped by RSS)', fmt.bytes(m.limit)]] : []),
      ['process RSS', m.rss_bytes === null ? 'not sampled yet' : fmt.bytes(m.rss_bytes)],
    ]),
  ];
}

function nodeInfo(o, store) {
  return kvList([
    ['node', o.node],
    ['version', `${o.product} ${o.version}`],
    ['uptime', fmt.duration(o.uptime_s)],
    ['signed in as', o.user],
    ['connections', transports(o.connections_by_transport)],
    ['bytes in', `${fmt.bytes(o.bytes_in)} · ${fmt.rate(store.traffic.in, 'B')}`],
    ['bytes out', `${fmt.bytes(o.bytes_out)} · ${fmt.rate(store.traffic.out, 'B')}`],
    ['acked', `${fmt.count(o.acked)} · ${fmt.rate(store.totals.ack)}`],
  ]);
}
