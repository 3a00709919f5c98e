// The console's building blocks: cards, tiles, sortable tables (cards on a
// phone), sparklines, key/value lists, badges, confirm steps, error boxes
// and toasts.

import { h, replace, svg } from './dom.js';
import { NONE, brief, duration } from './fmt.js';
import { POLL_MS, WINDOW_MS } from './live.js';

export function card(title, ...children) {
  return h('section', { class: 'card' }, title && h('h2', { text: title }), ...children);
}

export function plural(n, one, many = `${one}s`) {
  return `${n} ${n === 1 ? one : many}`;
}

export function badge(text, kind = '') {
  return h('span', { class: `badge ${kind}`.trim(), text });
}

// Big numbers: tiles([{key, label, hint}]) → {el, set(key, text, sub)}.
export function tiles(defs) {
  const values = new Map();
  const el = h('div', { class: 'tiles' }, defs.map((def) => {
    const value = h('span', { class: 'tile-value', text: NONE });
    const sub = h('span', { class: 'tile-sub', text: def.hint || '' });
    values.set(def.key, [value, sub]);
    return h('div', { class: 'tile', 'data-tile': def.key },
      h('span', { class: 'tile-label', text: def.label }), value, sub);
  }));
  function set(key, text, subText) {
    const [value, sub] = values.get(key);
    value.textContent = text;
    if (subText !== undefined) sub.textContent = subText;
  }
  return { el, set };
}

// A key/value list; objects and lists show as compact JSON.
export function kvList(entries, empty = 'none') {
  const pairs = Array.isArray(entries) ? entries : Object.entries(entries || {});
  if (!pairs.length) return h('p', { class: 'muted', text: empty });
  return h('dl', { class: 'kv' }, pairs.map(([key, value]) => [
    h('dt', { text: key }),
    h('dd', null, value instanceof Node ? value : brief(value)),
  ]));
}

// Arguments and flags of a queue as small chips.
export function chips(items) {
  if (!items.length) return h('span', { class: 'muted', text: NONE });
  return h('span', { class: 'chips' }, items.map(([text, title]) =>
    h('span', { class: 'chip', title: title || text, text })));
}

// -- tables --------------------------------------------------------------------

// columns: [{key, label, value(row) for sorting and the default text,
//            text(row)?, cell(row) → Node?, num?: true}]
export function dataTable({ columns, rowKey, link, empty = 'None.', sort, id }) {
  const state = { rows: [], by: sort || columns[0].key, descending: false };
  const body = h('tbody');
  const headRow = h('tr', null, columns.map((col) => headerCell(col, state, render)));
  const el = h('div', { class: 'table-wrap' },
    h('table', { class: 'data', id }, h('thead', null, headRow), body));

  function render() {
    const col = columns.find((c) => c.key === state.by) || columns[0];
    const rows = [...state.rows].sort((a, b) => compare(col.value(a), col.value(b)));
    if (state.descending) rows.reverse();
    for (const th of headRow.children) {
      th.setAttribute('aria-sort', th.dataset.col !== col.key ? 'none'
        : state.descending ? 'descending' : 'ascending');
    }
    replace(body, rows.length ? rows.map((row) => tableRow(row, columns, rowKey, link))
      : h('tr', { class: 'empty' }, h('td', { colspan: columns.length, text: empty })));
  }

  return {
    el,
    update(rows) {
      state.rows = rows;
      render();
    },
  };
}

function headerCell(col, state, render) {
  const sortBy = () => {
    state.descending = state.by === col.key ? !state.descending : !!col.num;
    state.by = col.key;
    render();
  };
  return h('th', { scope: 'col', class: col.num ? 'num' : null, 'data-col': col.key },
    h('button', { type: 'button', class: 'sort', onclick: sortBy, text: col.label }));
}

function tableRow(row, columns, rowKey, link) {
  const tr = h('tr', { 'data-key': rowKey(row) }, columns.map((col) => h('td', {
    class: col.num ? 'num' : null, 'data-col': col.key, 'data-label': col.label,
  }, col.cell ? col.cell(row) : (col.text || ((r) => brief(col.value(r))))(row))));
  if (link) {
    tr.classList.add('link');
    tr.addEventListener('click', (event) => {
      if (!event.target.closest('a, button, input')) location.hash = link(row);
    });
  }
  return tr;
}

function compare(a, b) {
  if (a === b) return 0;
  if (a === null || a === undefined) return -1;
  if (b === null || b === undefined) return 1;
  if (typeof a === 'number' && typeof b === 'number') return a - b;
  return String(a).localeCompare(String(b));
}

// -- sparklines ----------------------------------------------------------------

// lines: [{points: [[t, v]], class}] over the last `span` ms, now on the
// right; a gap of more than a few polls (a hidden tab) breaks the line.
export function sparkline(lines, { width = 120, height = 28, label = '', area = false,
  span = WINDOW_MS } = {}) {
  const now = performance.now();
  const shown = lines.map((l) => ({ ...l, points: l.points.filter((p) => p[0] >= now - span) }));
  const max = niceCeiling(Math.max(0, ...shown.flatMap((l) => l.points.map((p) => p[1] || 0))));
  const x = (t) => width - ((now - t) / span) * width;
  const y = (v) => height - 2 - (max > 0 ? (v / max) * (height - 4) : 0);
  const el = svg('svg', {
    class: 'spark', viewBox: `0 0 ${width} ${height}`, role: 'img', 'aria-label': label,
    preserveAspectRatio: 'none',
  });
  el.append(svg('line', { class: 'spark-base', x1: 0, x2: width, y1: height - 1.5, y2: height - 1.5 }));
  for (const line of shown) drawLine(el, line, x, y, area && height);
  el.dataset.max = String(max);
  return el;
}

// The top of a chart's scale: 1, 2 or 5 times a power of ten, above the peak.
function niceCeiling(peak) {
  if (peak <= 0) return 0;
  const power = 10 ** Math.floor(Math.log10(peak));
  return [1, 2, 5, 10].map((m) => m * power).find((top) => top >= peak * 1.05) || 10 * power;
}

// A wide chart with its axes: chartBox(format) → {el, draw(lines, span, label)};
// `format` writes the top of the scale.
export function chartBox(format) {
  const plot = h('div', { class: 'chart' });
  const top = h('span', { class: 'chart-top' });
  const since = h('span');
  const el = h('div', { class: 'chart-box' }, plot,
    h('p', { class: 'axis' }, since, h('span', { text: 'now' })));
  return {
    el,
    draw(lines, span, label) {
      since.textContent = `${duration(span / 1000)} ago`;
      const chart = sparkline(lines, { width: 600, height: 120, area: true, span, label });
      top.textContent = Number(chart.dataset.max) > 0 ? format(Number(chart.dataset.max)) : '';
      replace(plot, chart, top);
    },
  };
}

function drawLine(el, line, x, y, fillTo) {
  const points = line.points.filter((p) => p[1] !== null && p[1] !== undefined);
  for (const run of runs(points)) {
    // h0.01: a lone point still shows, as a dot (the line has round caps)
    const d = run.map(([t, v], i) => `${i ? 'L' : 'M'}${x(t).toFixed(1)},${y(v).toFixed(1)}`)
      .join('') + (run.length === 1 ? 'h0.01' : '');
    if (fillTo) {
      const [first, last] = [run[0][0], run[run.length - 1][0]];
      el.append(svg('path', {
        class: `spark-area ${line.class}`,
        d: `${d}L${x(last).toFixed(1)},${fillTo}L${x(first).toFixed(1)},${fillTo}Z`,
      }));
    }
    el.append(svg('path', { class: `spark-line ${line.class}`, d, 'vector-effect': 'non-scaling-stroke' }));
  }
}

// Points split where more than a few polls are missing (the tab was hidden).
function runs(points) {
  const out = [];
  let previous = null;
  for (const point of points) {
    if (previous === null || point[0] - previous > 3 * POLL_MS) out.push([]);
    out[out.length - 1].push(point);
    previous = point[0];
  }
  return out;
}

// -- actions -------------------------------------------------------------------

// A box for an action's error (or result), shown under its form.
export function messageBox() {
  const el = h('div', { class: 'notice', role: 'status', hidden: true });
  return {
    el,
    show(text, kind = 'error') {
      el.className = `notice ${kind}`;
      el.setAttribute('role', kind === 'error' ? 'alert' : 'status');
      el.textContent = text;
      el.hidden = false;
    },
    clear() {
      el.hidden = true;
      el.textContent = '';
    },
  };
}

export function errorText(err) {
  if (err && err.status === 0) return `the broker cannot be reached (${err.message})`;
  if (err && err.status) return `${err.status}: ${err.message}`;
  return String(err && err.message ? err.message : err);
}

// A button that asks first: label → "question? [confirm] [Cancel]" → run().
export function confirmAction({ label, question, confirm, run, name }) {
  const box = messageBox();
  const start = h('button', { type: 'button', class: 'danger', 'data-action': name, text: label });
  const yes = h('button', { type: 'button', class: 'danger solid', 'data-confirm': name, text: confirm });
  const no = h('button', { type: 'button', text: 'Cancel' });
  const prompt = h('span', { class: 'confirm-text' });
  const step = h('span', { class: 'confirm', hidden: true }, prompt, yes, no);
  const showStep = (asking) => {
    start.hidden = asking;
    step.hidden = !asking;
  };
  start.addEventListener('click', () => {
    box.clear();
    prompt.textContent = typeof question === 'function' ? question() : question;
    showStep(true);
    yes.focus();
  });
  no.addEventListener('click', () => showStep(false));
  yes.addEventListener('click', async () => {
    yes.disabled = true;
    try {
      await run();
      showStep(false);
    } catch (err) {
      box.show(errorText(err));
    } finally {
      yes.disabled = false;
    }
  });
  return {
    el: h('div', { class: 'confirm-action' }, start, step, box.el),
    set disabled(value) {
      start.disabled = value;
      if (value) showStep(false);
    },
  };
}

export function toast(text, kind = 'ok') {
  const el = h('div', { class: `toast ${kind}`, text }); // #toasts is a polite live region
  document.getElementById('toasts').append(el);
  setTimeout(() => el.remove(), 5000);
}

export function field(label, control, hint) {
  return h('label', { class: 'field' }, h('span', { class: 'field-label', text: label }),
    control, hint && h('span', { class: 'field-hint', text: hint }));
}

// A JSON object typed into a form field ('' → {}); throws a readable error.
export function parseObject(text, what) {
  if (!text.trim()) return {};
  let value;
  try {
    value = JSON.parse(text);
  } catch (err) {
    throw new Error(`${what}: not JSON (${err.message})`);
  }
  if (value === null || typeof value !== 'object' || Array.isArray(value)) {
    throw new Error(`${what}: must be a JSON object, like {"key": "value"}`);
  }
  return value;
}
