// The web console: a hash router over five views, fed by one poller.
//
// Every POLL_MS (while the tab is visible) the page asks for the overview
// and the queue list, plus whatever the current view needs; the Store keeps
// the answers and derives rates and history from successive totals; then the
// current view updates in place (its forms keep what was typed in them).

import { ApiError, api, basicAuth, bearerAuth, hasAuth, paths, setAuth } from './api.js';
import { h, replace } from './dom.js';
import * as fmt from './fmt.js';
import { POLL_MS, Poller, Store } from './live.js';
import { connectionsView } from './view-connections.js';
import { exchangesView } from './view-exchanges.js';
import { overviewView } from './view-overview.js';
import { queueView } from './view-queue.js';
import { queuesView } from './view-queues.js';
import { errorText, field, messageBox } from './widgets.js';

const VIEWS = {
  overview: () => overviewView(ctx),
  queues: () => queuesView(ctx),
  queue: (name) => queueView(ctx, name),
  exchanges: () => exchangesView(ctx),
  connections: () => connectionsView(ctx),
};

const store = new Store();
const poller = new Poller(poll, POLL_MS, () => setStatus('paused', 'paused while hidden'));
const ctx = { refresh: () => poller.now() };
const main = document.getElementById('view');
let current = null; // {name, arg, view}
let loginShown = false;

// '#/queue/a%2Fb' → {name: 'queue', arg: 'a/b'}
function parseRoute(hash) {
  const [name = '', ...rest] = hash.replace(/^#\/?/, '').split('/');
  const arg = rest.length ? safeDecode(rest.join('/')) : null;
  return { name: name || 'overview', arg };
}

function safeDecode(text) {
  try {
    return decodeURIComponent(text);
  } catch {
    return text;
  }
}

function route() {
  const { name, arg } = parseRoute(location.hash);
  if (!VIEWS[name] || (name === 'queue' && !arg)) {
    location.replace('#/overview');
    return;
  }
  current = { name, arg, view: VIEWS[name](arg) };
  loginShown = false;
  document.title = `${current.view.title} · amqpws-broker`;
  for (const link of document.querySelectorAll('#nav a')) {
    const active = link.dataset.view === (name === 'queue' ? 'queues' : name);
    if (active) link.setAttribute('aria-current', 'page');
    else link.removeAttribute('aria-current');
  }
  replace(main, current.view.el);
  current.view.update(store);
  poller.now();
}

async function poll() {
  const kinds = ['overview', 'queues', ...current.view.needs];
  const answers = await Promise.allSettled(kinds.map((kind) => api('GET', paths[kind])));
  const t = performance.now();
  const failures = [];
  answers.forEach((answer, i) => {
    if (answer.status === 'fulfilled') store.absorb(kinds[i], answer.value, t);
    else failures.push(answer.reason);
  });
  const refused = failures.find((err) => err instanceof ApiError && err.status === 401);
  if (refused) {
    showLogin(refused.message);
    return;
  }
  showProblem(failures[0]);
  showUser();
  if (!loginShown) current.view.update(store);
}

// -- the frame around the views -------------------------------------------------------

function setStatus(state, text, time = '') {
  document.getElementById('status').dataset.state = state;
  document.getElementById('status-text').textContent = text;
  document.getElementById('status-time').textContent = time;
}

let lastSample = ''; // the time of the last good poll

// A failed poll: a banner, the status, and what is shown dimmed (it is old).
function showProblem(err) {
  const banner = document.getElementById('banner');
  main.classList.toggle('stale', !!err);
  if (!err) {
    banner.hidden = true;
    lastSample = fmt.clock();
    setStatus('live', 'live', lastSample);
    return;
  }
  const text = err.status === 0
    ? `The broker cannot be reached (${err.message}); trying again every ${POLL_MS / 1000} s.`
    : `The broker answered ${errorText(err)}`;
  if (banner.textContent !== text) banner.textContent = text; // an alert: say it once
  banner.hidden = false;
  setStatus('error', err.status === 0 ? 'offline' : 'error', lastSample && `shown: ${lastSample}`);
}

function showUser() {
  const who = document.getElementById('who');
  const user = store.overview ? store.overview.user : '';
  replace(who, user && h('span', { class: 'user', title: 'signed in as', text: user }),
    hasAuth() && h('button', { type: 'button', class: 'link-button', text: 'Log out', onclick: logOut }));
  const o = store.overview;
  document.getElementById('node-name').textContent = o && o.node !== o.product ? o.node : '';
}

function logOut() {
  setAuth(null);
  location.reload();
}

// -- logging in -------------------------------------------------------------------------

function showLogin(message) {
  setStatus('error', 'login needed');
  document.getElementById('banner').hidden = true;
  if (loginShown) return;
  loginShown = true;
  replace(main, loginForm(message));
}

function loginForm(message) {
  const user = h('input', { name: 'user', autocomplete: 'username', required: true });
  const password = h('input', { name: 'password', type: 'password', autocomplete: 'current-password' });
  const token = h('input', { name: 'token', autocomplete: 'off', placeholder: 'eyJ…' });
  const box = messageBox();
  if (hasAuth()) box.show(message);
  const form = h('form', { class: 'login card', id: 'login-form' },
    h('h1', { text: 'Log in' }),
    h('p', { class: 'muted', text: `The broker says: ${message}.` }),
    field('User', user), field('Password', password),
    h('details', null, h('summary', { text: 'Use a token instead' }),
      field('Bearer token (JWT)', token, 'Sent instead of the user and password.')),
    h('div', { class: 'form-actions' }, h('button', { type: 'submit', class: 'primary', text: 'Log in' })),
    box.el);
  token.addEventListener('input', () => { user.required = !token.value.trim(); });
  form.addEventListener('submit', (event) => {
    event.preventDefault();
    setAuth(token.value.trim() ? bearerAuth(token.value) : basicAuth(user.value, password.value));
    route();
  });
  return form;
}

// -- start ------------------------------------------------------------------------------

window.addEventListener('hashchange', route);
// For tests and the curious: how many samples the page has taken, and where it is.
window.amqpwsConsole = Object.freeze({
  get polls() { return store.polls; },
  get route() { return current && { name: current.name, arg: current.arg }; },
});
route(); // takes the first sample
poller.start();
