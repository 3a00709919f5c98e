// The gateway's console page (gateway.html, served at `/` by
// `amqpws-broker gateway`): one view, fed by polling /api/gateway every
// GATEWAY_POLL_MS while the tab is visible.  The frame is the broker
// console's (status, banner, login when anonymous access is off); the view
// is view-gateway.js.

import { ApiError, api, basicAuth, bearerAuth, hasAuth, setAuth } from './api.js';
import { h, replace } from './dom.js';
import * as fmt from './fmt.js';
import { Poller } from './live.js';
import { GATEWAY_POLL_MS, GatewayStore, gatewayView } from './view-gateway.js';
import { field, messageBox } from './widgets.js';

const API_PATH = '/api/gateway';

const store = new GatewayStore();
const poller = new Poller(poll, GATEWAY_POLL_MS, () => setStatus('paused', 'paused while hidden'));
const view = gatewayView();
const main = document.getElementById('view');
let loginShown = false;
let lastSample = ''; // the time of the last good poll

async function poll() {
  let answer;
  try {
    answer = await api('GET', API_PATH);
  } catch (err) {
    if (err instanceof ApiError && err.status === 401) showLogin(err.message);
    else showProblem(err);
    return;
  }
  store.absorb(answer, performance.now());
  loginShown = false;
  if (view.el.parentNode !== main) replace(main, view.el); // after a login
  showProblem(null);
  showFrame(answer);
  view.update(store);
}

// -- the frame around the view ----------------------------------------------------------

function setStatus(state, text, time = '') {
  document.getElementById('status').dataset.state = state;
  document.getElementById('status-text').textContent = text;
  document.getElementById('status-time').textContent = time;
}

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
    ? `The gateway cannot be reached (${err.message}); trying again every ${GATEWAY_POLL_MS / 1000} s.`
    : `The gateway answered ${err.status ? `${err.status}: ${err.message}` : String(err.message || err)}`;
  if (banner.textContent !== text) banner.textContent = text; // an alert: say it once
  banner.hidden = false;
  setStatus('error', err.status === 0 ? 'offline' : 'error', lastSample && `shown: ${lastSample}`);
}

function showFrame(answer) {
  const node = answer.node && answer.node !== answer.product ? ` · ${answer.node}` : '';
  document.getElementById('node-name').textContent = `gateway${node}`;
  replace(document.getElementById('who'),
    answer.user && h('span', { class: 'user', title: 'signed in as', text: answer.user }),
    hasAuth() && h('button', { type: 'button', class: 'link-button', text: 'Log out', onclick: logOut }));
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
    h('p', { class: 'muted', text: `The gateway says: ${message}.` }),
    field('User', user), field('Password', password),
    h('details', null, h('summary', { text: 'Use a token instead' }),
      field('Bearer token (JWT)', token, 'Sent instead of the user and password.')),
    h('div', { class: 'form-actions' }, h('button', { type: 'submit', class: 'primary', text: 'Log in' })),
    box.el);
  token.addEventListener('input', () => { user.required = !token.value.trim(); });
  form.addEventListener('submit', (event) => {
    event.preventDefault();
    setAuth(token.value.trim() ? bearerAuth(token.value) : basicAuth(user.value, password.value));
    loginShown = false; // a refusal shows the form again, with the reason
    main.replaceChildren();
    poller.now();
  });
  return form;
}

// -- start ------------------------------------------------------------------------------

// For tests and the curious: how many samples the page has taken, and the last one.
window.amqpwsGateway = Object.freeze({
  get polls() { return store.polls; },
  get last() { return store.gateway; },
});
replace(main, view.el);
poller.start();
poller.now(); // the first sample
