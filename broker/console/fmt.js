// Numbers, sizes, rates and times for people.

const integer = new Intl.NumberFormat(undefined, { maximumFractionDigits: 0 });
const decimal = new Intl.NumberFormat(undefined, { maximumFractionDigits: 1 });
const UNITS = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];

export const NONE = '–';

export function count(n) {
  return n === null || n === undefined ? NONE : integer.format(n);
}

export function bytes(n) {
  if (n === null || n === undefined) return NONE;
  let value = n;
  let unit = 0;
  while (value >= 1024 && unit < UNITS.length - 1) {
    value /= 1024;
    unit += 1;
  }
  const shown = unit === 0 || value >= 10 ? integer.format(value) : decimal.format(value);
  return `${shown} ${UNITS[unit]}`;
}

// Messages (or bytes, with `unit`) per second; null: not known yet.
export function rate(r, unit = '') {
  if (r === null || r === undefined) return NONE;
  if (unit) return `${bytes(r)}/s`;
  return `${r > 0 && r < 10 ? decimal.format(r) : integer.format(r)}/s`;
}

export function duration(seconds) {
  const s = Math.max(0, Math.floor(seconds));
  const parts = [[Math.floor(s / 86400), 'd'], [Math.floor(s / 3600) % 24, 'h'],
    [Math.floor(s / 60) % 60, 'min'], [s % 60, 's']];
  const first = parts.findIndex(([value]) => value > 0);
  if (first === -1) return '0 s';
  return parts.slice(first, first + 2).filter(([value]) => value > 0)
    .map(([value, unit]) => `${value} ${unit}`).join(' ');
}

// How long ago a wall-clock time (seconds since the epoch) was.
export function ago(epochSeconds, nowMs = Date.now()) {
  if (epochSeconds === null || epochSeconds === undefined) return NONE;
  const seconds = nowMs / 1000 - epochSeconds;
  return seconds < 5 ? 'just now' : `${duration(seconds)} ago`;
}

export function timestamp(epochSeconds) {
  return epochSeconds ? new Date(epochSeconds * 1000).toLocaleString() : '';
}

export function clock(date = new Date()) {
  return date.toLocaleTimeString(undefined, { hour12: false });
}

// A value from the API as one short line (objects as compact JSON).
export function brief(value) {
  if (value === null || value === undefined) return NONE;
  if (typeof value === 'object') return JSON.stringify(value);
  return value === '' ? '""' : String(value);
}
