// #/queues: every queue and stream, live.

import { api, paths } from './api.js';
import { h, queueHref } from './dom.js';
import * as fmt from './fmt.js';
import {
  badge, chips, dataTable, errorText, field, messageBox, parseObject, plural, sparkline, toast,
} from './widgets.js';

export function queuesView(ctx) {
  let store = null;
  const filter = h('input', {
    type: 'search', placeholder: 'Filter by name', 'aria-label': 'Filter queues by name',
    oninput: () => store && update(store),
  });
  const summary = h('span', { class: 'muted' });
  const table = dataTable({
    id: 'queues-table', columns: queueColumns(() => store), rowKey: (q) => q.name,
    link: (q) => queueHref(q.name),
    empty: 'No queues yet. Clients create them on first use, or add one below.',
  });
  const el = h('div', { class: 'view' },
    h('div', { class: 'view-head' }, h('h1', { text: 'Queues & streams' }), summary),
    h('div', { class: 'toolbar' }, filter),
    table.el,
    declareForm(ctx));

  function update(s) {
    store = s;
    if (!s.queues) return;
    const needle = filter.value.trim().toLowerCase();
    const shown = s.queues.filter((q) => q.name.toLowerCase().includes(needle));
    const streams = s.queues.filter((q) => q.kind === 'stream').length;
    summary.textContent = `${plural(s.queues.length - streams, 'queue')}, ${plural(streams, 'stream')}` +
      (needle ? ` · ${shown.length} shown` : '');
    table.update(shown);
  }

  return { el, title: 'Queues', needs: [], update };
}

function queueColumns(store) {
  const rate = (field) => (q) => (store().queueRates.get(q.name) || {})[field] ?? null;
  return [
    { key: 'name', label: 'Name', value: (q) => q.name,
      cell: (q) => h('a', { href: queueHref(q.name), class: 'name', text: q.name }) },
    { key: 'type', label: 'Type', value: (q) => q.type, cell: (q) => typeBadge(q) },
    { key: 'depth', label: 'Ready', num: true, value: (q) => q.message_count,
      text: (q) => fmt.count(q.message_count) },
    { key: 'unacked', label: 'Unacked', num: true, value: (q) => q.unacked,
      text: (q) => fmt.count(q.unacked) },
    { key: 'bytes', label: 'Bytes', num: true, value: (q) => q.bytes, text: (q) => fmt.bytes(q.bytes) },
    { key: 'consumers', label: 'Consumers', num: true, value: (q) => q.consumer_count,
      text: (q) => fmt.count(q.consumer_count) },
    { key: 'in', label: 'In', num: true, value: rate('in'), text: (q) => fmt.rate(rate('in')(q)) },
    { key: 'out', label: 'Out', num: true, value: rate('out'), text: (q) => fmt.rate(rate('out')(q)) },
    { key: 'ack', label: 'Ack', num: true, value: rate('ack'), text: (q) => fmt.rate(rate('ack')(q)) },
    { key: 'trend', label: 'Ready trend', value: (q) => q.message_count,
      cell: (q) => sparkline([{ points: store().depthOf(q.name).points, class: 'depth' }],
        { span: store().span(), label: `ready messages of ${q.name}, recently` }) },
    { key: 'features', label: 'Features', value: (q) => features(q).length,
      cell: (q) => chips(features(q)) },
  ];
}

export function typeBadge(q) {
  return badge(q.type, q.kind === 'stream' ? 'stream' : q.type);
}

// RabbitMQ's feature letters, then the arguments (the type has its column).
export function features(q) {
  const flags = [];
  if (q.durable) flags.push(['D', 'durable']);
  if (q.auto_delete) flags.push(['AD', 'auto-delete']);
  if (q.exclusive) flags.push(['Excl', 'exclusive']);
  for (const [key, value] of Object.entries(q.arguments || {})) {
    if (key !== 'x-queue-type') flags.push([`${key}: ${fmt.brief(value)}`]);
  }
  return flags;
}

function declareForm(ctx) {
  const name = h('input', { name: 'name', required: true, autocomplete: 'off' });
  const type = h('select', { name: 'type' }, ['classic', 'quorum', 'stream'].map(
    (t) => h('option', { value: t, text: t })));
  const args = h('input', { name: 'arguments', placeholder: '{"x-max-length": 1000}' });
  const box = messageBox();
  const form = h('form', { class: 'form-grid' },
    field('Name', name), field('Type', type),
    field('Arguments', args, 'JSON object of RabbitMQ arguments, optional'),
    h('div', { class: 'form-actions' },
      h('button', { type: 'submit', class: 'primary', 'data-action': 'declare', text: 'Add queue' })),
    box.el);
  form.addEventListener('submit', async (event) => {
    event.preventDefault();
    box.clear();
    try {
      const queue = name.value.trim();
      const body = {
        durable: true,
        arguments: { ...parseObject(args.value, 'Arguments'), 'x-queue-type': type.value },
      };
      await api('PUT', paths.queue(queue), body);
      toast(`Queue ${queue} is there`);
      form.reset();
      ctx.refresh();
    } catch (err) {
      box.show(errorText(err));
    }
  });
  return h('details', { class: 'card declare' }, h('summary', { text: 'Add a queue or stream' }), form);
}
