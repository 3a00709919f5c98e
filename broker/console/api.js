// The broker's JSON API (broker/services/http_api.py).
//
// Credentials, when the broker wants them, are the page's own (the login
// form): sent as an Authorization header with `credentials: 'omit'`, so the
// browser neither caches them nor pops up its own Basic-auth dialog.  They
// live in sessionStorage, for this tab only.  A request that changes
// something carries `x-amqpws-console: 1`, which the API insists on (a page
// on another site cannot send it without a CORS preflight).

const AUTH_KEY = 'amqpws-console-auth';
const CHANGE_HEADER = 'x-amqpws-console';

export class ApiError extends Error {
  constructor(status, message) {
    super(message);
    this.status = status; // 0: the broker could not be reached
  }
}

export function basicAuth(user, password) {
  const utf8 = new TextEncoder().encode(`${user}:${password}`);
  return `Basic ${btoa(String.fromCharCode(...utf8))}`;
}

export function bearerAuth(token) {
  return `Bearer ${token.trim()}`;
}

export function setAuth(header) {
  if (header) sessionStorage.setItem(AUTH_KEY, header);
  else sessionStorage.removeItem(AUTH_KEY);
}

export function hasAuth() {
  return sessionStorage.getItem(AUTH_KEY) !== null;
}

export async function api(method, path, body) {
  let response;
  try {
    response = await fetch(path, request(method, body));
  } catch (err) {
    throw new ApiError(0, err.message); // e.g. 'Failed to fetch'
  }
  const data = await readJson(response);
  if (!response.ok) {
    const message = (data && data.error) || response.statusText || 'request failed';
    throw new ApiError(response.status, message);
  }
  return data;
}

function request(method, body) {
  const headers = { accept: 'application/json' };
  const auth = sessionStorage.getItem(AUTH_KEY);
  if (auth) headers.authorization = auth;
  if (method !== 'GET' && method !== 'HEAD') headers[CHANGE_HEADER] = '1';
  if (body !== undefined) headers['content-type'] = 'application/json';
  return {
    method, headers, cache: 'no-store', credentials: 'omit',
    body: body === undefined ? undefined : JSON.stringify(body),
  };
}

async function readJson(response) {
  try {
    return await response.json();
  } catch {
    return null;
  }
}

export const paths = {
  overview: '/api/overview',
  queues: '/api/queues',
  exchanges: '/api/exchanges',
  bindings: '/api/bindings',
  connections: '/api/connections',
  publish: '/api/publish',
  queue: (name) => `/api/queues/${encodeURIComponent(name)}`,
  messages: (name) => `/api/queues/${encodeURIComponent(name)}/messages`,
};
