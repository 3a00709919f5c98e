// Peeked messages (GET /api/queues/NAME/messages) as cards: the body as
// text, pretty JSON or a hex dump (a toggle), then the message's sections.

import { h, replace } from './dom.js';
import * as fmt from './fmt.js';
import { kvList } from './widgets.js';

function messageCard(message, index) {
  const where = message.offset !== undefined ? `offset ${message.offset}` : `#${index + 1}`;
  const p = message.properties || {};
  return h('article', { class: 'message', 'data-offset': message.offset ?? null },
    h('header', { class: 'message-head' },
      h('strong', { text: where }),
      h('span', { class: 'muted', text: fmt.bytes(message.size) }),
      p.subject && h('span', { class: 'chip', title: 'subject', text: p.subject }),
      p.content_type && h('span', { class: 'muted', text: p.content_type })),
    message.error ? h('p', { class: 'notice error', text: message.error }) : bodyView(message.body),
    h('div', { class: 'sections' },
      section('Properties', message.properties),
      section('Application properties', message.application_properties),
      section('Message annotations', message.message_annotations),
      section('Header', message.header)));
}

function section(title, value) {
  return h('div', { class: 'section' }, h('h4', { text: title }), kvList(value || {}));
}

// The forms a body can be shown in, best first.
function bodyForms(body) {
  if (!body) return [];
  if (body.kind === 'data') {
    return [
      body.json !== undefined && ['JSON', JSON.stringify(body.json, null, 2)],
      body.text !== undefined && ['Text', body.text],
      ['Hex', hexDump(body.hex)],
    ].filter(Boolean);
  }
  if (body.kind === 'value' && typeof body.value === 'string') {
    const json = parseJson(body.value);
    return [json !== undefined && ['JSON', JSON.stringify(json, null, 2)], ['Text', body.value]]
      .filter(Boolean);
  }
  if (body.kind === 'value' || body.kind === 'sequence') {
    return [['JSON', JSON.stringify(body.value, null, 2)]];
  }
  return [];
}

function bodyView(body) {
  const forms = bodyForms(body);
  if (!forms.length) {
    const what = body && body.kind === 'mixed' ? 'a body of mixed sections' : 'no body';
    return h('p', { class: 'muted', text: `(${what})` });
  }
  const pre = h('pre', { class: 'body', tabindex: 0 });
  const buttons = forms.map(([label, text]) => h('button', {
    type: 'button', 'data-form': label, 'aria-pressed': 'false', text: label,
    onclick: () => show(label, text),
  }));
  function show(label, text) {
    pre.textContent = text;
    pre.dataset.form = label;
    for (const b of buttons) b.setAttribute('aria-pressed', String(b.dataset.form === label));
  }
  show(...forms[0]);
  return h('div', { class: 'body-view' },
    h('div', { class: 'body-bar' },
      h('span', { class: 'muted', text: bodyKind(body) }),
      h('span', { class: 'segmented', role: 'group', 'aria-label': 'show the body as' }, buttons)),
    pre,
    body.truncated && h('p', { class: 'muted', text: `first 64 KiB of ${fmt.bytes(body.size)} shown` }));
}

function bodyKind(body) {
  if (body.kind === 'data') return `data · ${fmt.bytes(body.size)}`;
  if (body.kind === 'value') return 'amqp-value';
  return 'amqp-sequence';
}

function parseJson(text) {
  const start = text.trimStart()[0];
  if (start !== '{' && start !== '[') return undefined;
  try {
    return JSON.parse(text);
  } catch {
    return undefined;
  }
}

// 16 bytes a line: offset, hex, printable ASCII.
function hexDump(hex) {
  const lines = [];
  for (let at = 0; at < hex.length; at += 32) {
    const chunk = hex.slice(at, at + 32).match(/../g) || [];
    const ascii = chunk.map((b) => {
      const code = parseInt(b, 16);
      return code >= 32 && code < 127 ? String.fromCharCode(code) : '.';
    }).join('');
    lines.push(`${(at / 2).toString(16).padStart(8, '0')}  ${chunk.join(' ').padEnd(47)}  ${ascii}`);
  }
  return lines.join('\n') || '(empty)';
}

export function showMessages(el, messages, queue) {
  if (!messages.length) {
    const why = queue && queue.kind === 'stream' ? 'nothing at or after that offset'
      : 'no ready messages (unacked ones are with their consumers)';
    replace(el, h('p', { class: 'muted', text: `Nothing to show: ${why}.` }));
    return;
  }
  replace(el, messages.map(messageCard));
}
