// #/exchanges: exchanges and bindings.

import { h, queueHref } from './dom.js';
import { badge, card, chips, dataTable } from './widgets.js';

const DEFAULT = '(AMQP default)';

export function exchangesView() {
  const exchanges = dataTable({
    id: 'exchanges-table', rowKey: (x) => x.name, empty: 'No exchanges.',
    columns: [
      { key: 'name', label: 'Name', value: (x) => x.name,
        cell: (x) => h('span', { class: x.name ? 'name' : 'name muted', text: x.name || DEFAULT }) },
      { key: 'type', label: 'Type', value: (x) => x.type, cell: (x) => badge(x.type) },
      { key: 'flags', label: 'Features', value: (x) => exchangeFeatures(x).length,
        cell: (x) => chips(exchangeFeatures(x)) },
    ],
  });
  const bindings = dataTable({
    id: 'bindings-table', rowKey: (b) => b.location,
    empty: 'No bindings yet. (The default exchange routes to every queue by its name; '
      + 'those bindings are implicit.)',
    columns: [
      { key: 'source', label: 'From exchange', value: (b) => b.source || DEFAULT },
      { key: 'destination', label: 'To', value: destination, cell: destinationCell },
      { key: 'key', label: 'Binding key', value: (b) => b.binding_key,
        cell: (b) => h('code', { text: b.binding_key || '""' }) },
      { key: 'arguments', label: 'Arguments', value: (b) => JSON.stringify(b.arguments),
        cell: (b) => chips(argumentChips(b.arguments)) },
    ],
  });
  const el = h('div', { class: 'view' },
    h('div', { class: 'view-head' }, h('h1', { text: 'Exchanges & bindings' })),
    card('Exchanges', exchanges.el),
    card('Bindings', bindings.el));

  function update(store) {
    if (store.exchanges) exchanges.update(store.exchanges);
    if (store.bindings) bindings.update(store.bindings);
  }

  return { el, title: 'Exchanges', needs: ['exchanges', 'bindings'], update };
}

function exchangeFeatures(x) {
  const flags = [];
  if (x.durable) flags.push(['D', 'durable']);
  if (x.auto_delete) flags.push(['AD', 'auto-delete']);
  if (x.internal) flags.push(['I', 'internal']);
  return flags.concat(argumentChips(x.arguments));
}

function argumentChips(args) {
  return Object.entries(args || {}).map(([key, value]) => [`${key}: ${JSON.stringify(value)}`]);
}

function destination(b) {
  return b.destination_queue ?? b.destination_exchange;
}

function destinationCell(b) {
  if (b.destination_queue !== undefined) {
    return h('span', null, badge('queue'), ' ',
      h('a', { href: queueHref(b.destination_queue), text: b.destination_queue }));
  }
  return h('span', null, badge('exchange'), ' ', h('span', { text: b.destination_exchange }));
}
