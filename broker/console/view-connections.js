// #/connections: who is connected, over what, and how busy.

import { h } from './dom.js';
import * as fmt from './fmt.js';
import { badge, dataTable } from './widgets.js';

export function connectionsView() {
  let store = null;
  const summary = h('span', { class: 'muted' });
  const rate = (field) => (c) => ((store && store.connectionRates.get(c.name)) || {})[field] ?? null;
  const table = dataTable({
    id: 'connections-table', rowKey: (c) => c.name, sort: 'opened',
    empty: 'No connections open.',
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
      { key: 'bytes_in', label: 'Bytes in', num: true, value: (c) => c.bytes_in,
        text: (c) => `${fmt.bytes(c.bytes_in)} · ${fmt.rate(rate('in')(c), 'B')}` },
      { key: 'bytes_out', label: 'Bytes out', num: true, value: (c) => c.bytes_out,
        text: (c) => `${fmt.bytes(c.bytes_out)} · ${fmt.rate(rate('out')(c), 'B')}` },
      { key: 'opened', label: 'Opened', value: (c) => -(c.opened_at || 0),
        cell: (c) => h('time', { title: fmt.timestamp(c.opened_at), text: fmt.ago(c.opened_at) }) },
    ],
  });
  const el = h('div', { class: 'view' },
    h('div', { class: 'view-head' }, h('h1', { text: 'Connections' }), summary),
    table.el);

  function update(s) {
    store = s;
    if (!s.connections) return;
    summary.textContent = `${s.connections.length} open`;
    table.update(s.connections);
  }

  return { el, title: 'Connections', needs: ['connections'], update };
}

// The user, and the SASL mechanism when it says more than the name.
function userCell(c) {
  const mechanism = c.mechanism && c.mechanism.toLowerCase() !== c.user ? c.mechanism : '';
  return h('span', null, c.user || fmt.NONE,
    mechanism && h('span', { class: 'muted', title: 'SASL mechanism', text: ` ${mechanism}` }));
}
