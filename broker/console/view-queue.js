// #/queue/NAME: one queue or stream: stats, peek, publish, purge, delete.

import { api, paths } from './api.js';
import { h, replace } from './dom.js';
import * as fmt from './fmt.js';
import { showMessages } from './messages.js';
import { features, typeBadge } from './view-queues.js';
import {
  card, chartBox, chips, confirmAction, errorText, field, kvList, messageBox, parseObject, tiles,
  toast,
} from './widgets.js';

export function queueView(ctx, name) {
  let queue = null;
  const badges = h('span', { class: 'head-badges' });
  const missing = messageBox();
  const numbers = tiles([
    { key: 'ready', label: 'Ready' }, { key: 'unacked', label: 'Unacked' },
    { key: 'consumers', label: 'Consumers' }, { key: 'bytes', label: 'Bytes' },
    { key: 'in', label: 'In', hint: 'msg/s' }, { key: 'out', label: 'Out', hint: 'msg/s' },
  ]);
  const trend = chartBox(fmt.count);
  const details = h('div');
  const args = h('div');
  const peek = peekPanel(name, () => queue);
  const danger = dangerZone(ctx, name, () => queue);
  const body = h('div', { class: 'queue-body' },
    numbers.el,
    h('div', { class: 'columns' },
      h('section', { class: 'card chart-card' }, h('h2', { text: 'Ready messages' }), trend.el),
      card('Details', details, h('h2', { class: 'sub', text: 'Arguments' }), args)),
    peek.el,
    h('div', { class: 'columns top' }, publishForm(ctx, name), danger.el));
  const el = h('div', { class: 'view' },
    h('nav', { class: 'crumbs', 'aria-label': 'Breadcrumb' },
      h('a', { href: '#/queues', text: 'Queues & streams' }), h('span', { text: ' / ' })),
    h('div', { class: 'view-head' }, h('h1', { class: 'queue-name', text: name }), badges),
    missing.el, body);

  function update(store) {
    if (!store.queues) return;
    queue = store.queue(name);
    body.hidden = !queue;
    if (!queue) {
      missing.show(`There is no queue or stream named “${name}” (any more).`, 'warn');
      replace(badges);
      return;
    }
    missing.clear();
    showQueue(queue, store);
  }

  function showQueue(q, store) {
    const r = store.queueRates.get(q.name) || {};
    const flags = features(q).filter(([, title]) => title); // D, AD, Excl
    replace(badges, typeBadge(q), flags.length > 0 && chips(flags));
    const stream = q.kind === 'stream';
    numbers.set('ready', fmt.count(q.message_count));
    numbers.set('unacked', stream ? fmt.NONE : fmt.count(q.unacked), stream ? 'streams keep messages' : '');
    numbers.set('consumers', fmt.count(q.consumer_count));
    numbers.set('bytes', fmt.bytes(q.bytes));
    numbers.set('in', fmt.rate(r.in), 'msg/s published');
    numbers.set('out', fmt.rate(r.out), stream ? 'msg/s read' : `msg/s · ack ${fmt.rate(r.ack)}`);
    trend.draw([{ points: store.depthOf(q.name).points, class: 'depth' }], store.span(),
      `ready messages of ${q.name}`);
    replace(details, kvList(detailRows(q)));
    replace(args, kvList(q.arguments || {}));
    peek.update(q);
    danger.update(q);
  }

  return { el, title: name, needs: [], update };
}

function detailRows(q) {
  const rows = [
    ['type', q.type], ['durable', q.durable], ['auto-delete', q.auto_delete],
    ['exclusive', q.exclusive], ['published', fmt.count(q.published)],
    ['delivered', fmt.count(q.delivered)],
  ];
  if (q.kind === 'stream') {
    rows.push(['offsets', `${fmt.count(q.first_offset)} … ${fmt.count(q.next_offset)} (next)`]);
    return rows;
  }
  return rows.concat([
    ['acked', fmt.count(q.acked)], ['redelivered', fmt.count(q.redelivered)],
    ['dead-lettered', fmt.count(q.dead_lettered)], ['expired', fmt.count(q.expired)],
    ['dropped (overflow)', fmt.count(q.dropped)],
  ]);
}

// -- peek ------------------------------------------------------------------------------

function peekPanel(name, current) {
  const count = h('input', { type: 'number', name: 'count', min: 1, max: 100, value: 10 });
  const offset = h('input', { type: 'number', name: 'offset', min: 0, placeholder: 'first' });
  const offsetField = field('From offset', offset);
  const hint = h('span', { class: 'muted' });
  const box = messageBox();
  const list = h('div', { class: 'messages', id: 'peeked' });
  const form = h('form', { class: 'inline-form' },
    field('Count', count), offsetField,
    h('button', { type: 'submit', class: 'primary', 'data-action': 'peek', text: 'Peek' }), hint);
  form.addEventListener('submit', async (event) => {
    event.preventDefault();
    box.clear();
    try {
      const messages = await api('GET', peekPath(name, count.value, offset.value, current()));
      showMessages(list, messages, current());
    } catch (err) {
      box.show(errorText(err));
    }
  });
  const el = card('Peek messages',
    h('p', { class: 'muted', text: 'Shows messages without taking them: the next ready ones of a queue, '
      + 'or a stream’s from an offset.' }),
    form, box.el, list);
  return {
    el,
    update(q) {
      const stream = q.kind === 'stream';
      offsetField.hidden = !stream;
      hint.textContent = stream ? `offsets ${q.first_offset} … ${q.next_offset - 1}` : '';
    },
  };
}

function peekPath(name, count, offset, q) {
  const query = new URLSearchParams({ count: String(count || 10) });
  if (q && q.kind === 'stream' && offset !== '') query.set('offset', String(offset));
  return `${paths.messages(name)}?${query}`;
}

// -- publish ---------------------------------------------------------------------------

function publishForm(ctx, name) {
  const address = `/queues/${encodeURIComponent(name)}`;
  const body = h('textarea', { name: 'body', rows: 4, placeholder: 'Hello from the console' });
  const subject = h('input', { name: 'subject', autocomplete: 'off' });
  const type = h('input', { name: 'content_type', value: 'text/plain', list: 'content-types' });
  const props = h('input', { name: 'application_properties', placeholder: '{"key": "value"}' });
  const box = messageBox();
  const form = h('form', { class: 'form-grid', id: 'publish-form' },
    field('Body', body), field('Subject', subject, 'optional'), field('Content type', type),
    field('Application properties', props, 'JSON object, optional'),
    h('datalist', { id: 'content-types' },
      ['text/plain', 'application/json', 'application/octet-stream'].map((t) => h('option', { value: t }))),
    h('div', { class: 'form-actions' },
      h('button', { type: 'submit', class: 'primary', 'data-action': 'publish', text: 'Publish' }),
      h('span', { class: 'muted' }, 'to ', h('code', { text: address }))),
    box.el);
  form.addEventListener('submit', async (event) => {
    event.preventDefault();
    box.clear();
    try {
      const message = { address, body: body.value, content_type: type.value.trim() || 'text/plain' };
      if (subject.value.trim()) message.subject = subject.value.trim();
      const properties = parseObject(props.value, 'Application properties');
      if (Object.keys(properties).length) message.application_properties = properties;
      showOutcome(box, await api('POST', paths.publish, message), name);
      ctx.refresh();
    } catch (err) {
      box.show(errorText(err));
    }
  });
  return card('Publish a test message', form);
}

function showOutcome(box, answer, name) {
  if (answer.outcome === 'accepted') {
    box.show(`Published to ${name}: accepted.`, 'ok');
    return;
  }
  box.show(`The broker answered ${answer.outcome}${answer.error ? `: ${answer.error}` : ''}.`,
    answer.outcome === 'released' ? 'warn' : 'error');
}

// -- purge and delete ------------------------------------------------------------------

function dangerZone(ctx, name, current) {
  const purge = confirmAction({
    name: 'purge', label: 'Purge…', confirm: 'Purge',
    question: () => `Remove all ${fmt.count(current().message_count)} ready messages of “${name}”?`,
    run: async () => {
      const { message_count: n } = await api('DELETE', paths.messages(name));
      toast(`Purged ${fmt.count(n)} messages from ${name}`);
      ctx.refresh();
    },
  });
  const remove = confirmAction({
    name: 'delete', label: 'Delete…', confirm: 'Delete',
    question: () => `Delete “${name}” and its ${fmt.count(current().message_count)} messages? `
      + 'Clients attached to it are detached.',
    run: async () => {
      const { message_count: n } = await api('DELETE', paths.queue(name));
      toast(`Deleted ${name} (${fmt.count(n)} messages)`);
      location.hash = '#/queues';
    },
  });
  const why = h('p', { class: 'muted' });
  return {
    el: h('section', { class: 'card danger-zone' }, h('h2', { text: 'Danger zone' }),
      h('div', { class: 'danger-actions' }, purge.el, remove.el), why),
    update(q) {
      purge.disabled = q.kind === 'stream';
      why.textContent = q.kind === 'stream'
        ? 'Streams cannot be purged; their retention (x-max-age, x-max-length-bytes) trims them.' : '';
    },
  };
}
