// Building the DOM safely.  Every piece of data goes in as text (a text node
// or textContent) or as an attribute value, never as markup: there is no
// innerHTML anywhere in the console.

const SVG_NS = 'http://www.w3.org/2000/svg';

// h('a', {href: '#/queues', class: 'nav', onclick: fn}, 'Queues', child, …)
// `text` sets textContent, `value` the property, on* adds a listener, true
// gives an empty attribute, and null / undefined / false leave it out.
export function h(tag, props, ...children) {
  const el = document.createElement(tag);
  setProps(el, props);
  return add(el, ...children);
}

export function svg(tag, attrs) {
  const el = document.createElementNS(SVG_NS, tag);
  for (const [name, value] of Object.entries(attrs || {})) {
    if (value !== null && value !== undefined) el.setAttribute(name, String(value));
  }
  return el;
}

function setProps(el, props) {
  for (const [key, value] of Object.entries(props || {})) {
    if (value === undefined || value === null || value === false) continue;
    if (key === 'text') el.textContent = String(value);
    else if (key === 'value') el.value = String(value);
    else if (key.startsWith('on')) el.addEventListener(key.slice(2), value);
    else el.setAttribute(key, value === true ? '' : String(value));
  }
}

// Appends nodes and strings (as text); skips null, undefined and false.
export function add(el, ...children) {
  for (const child of children.flat(Infinity)) {
    if (child === undefined || child === null || child === false) continue;
    el.append(child instanceof Node ? child : String(child));
  }
  return el;
}

export function replace(el, ...children) {
  el.replaceChildren();
  return add(el, ...children);
}

// The hash of a queue's page; names may hold any character, '/' included.
export function queueHref(name) {
  return `#/queue/${encodeURIComponent(name)}`;
}
