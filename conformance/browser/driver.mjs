// Headless Chromium under playwright-core, driven by JSON lines on stdin.
//
// The Python tests (conftest.py) start one of these per session and send one
// request per line: {"id": 1, "cmd": "open", "url": "..."}.  Each request
// gets exactly one reply line on stdout: {"id": 1, "ok": true, "result": ...}
// or {"id": 1, "ok": false, "error": "..."}.  Anything else the driver has to
// say goes to stderr.  Requests run concurrently, so one page can wait for a
// message while another page sends it.
//
// Commands:
//   open {url}                      -> {page}
//   eval {page, expr}               -> value of the expression (awaited if a promise)
//   click {page, selector}          -> null
//   drag {page, selector, points}   -> null; points are [x, y] fractions of the element's box
//   screenshot {page, path}         -> null
//   log {page}                      -> console lines and page errors seen so far
//   close {page}                    -> null
//   quit {}                         -> null, then the process exits
//
// Chromium is Debian's (`CHROMIUM` or /usr/bin/chromium); playwright-core never
// downloads a browser.  Playwright gives every launch a fresh, empty
// --user-data-dir of its own.  `CHROMIUM_EXTRA_ARGS` (a JSON array) adds
// switches to the launch.
import { createInterface } from 'node:readline';
import { chromium } from 'playwright-core';

const executablePath = process.env.CHROMIUM || '/usr/bin/chromium';
const args = [
  '--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
  '--disable-background-networking', '--disable-component-update', '--disable-sync',
  // More switches for one launch, as a JSON array (e.g. the security cases'
  // --ignore-certificate-errors-spki-list pinning the test broker's key).
  ...JSON.parse(process.env.CHROMIUM_EXTRA_ARGS || '[]'),
];

const browser = await chromium.launch({ executablePath, headless: true, args, timeout: 30000 });
const context = await browser.newContext({ viewport: { width: 1100, height: 760 } });
const pages = new Map();
let nextPage = 1;

function reply(obj) {
  process.stdout.write(JSON.stringify(obj) + '\n');
}

function getPage(id) {
  const entry = pages.get(id);
  if (!entry) throw new Error(`no page ${id}`);
  return entry;
}

const commands = {
  async open({ url }) {
    const page = await context.newPage();
    const id = nextPage++;
    const entry = { page, log: [] };
    pages.set(id, entry);
    page.on('console', (msg) => entry.log.push(`${msg.type()}: ${msg.text()}`));
    page.on('pageerror', (err) => entry.log.push(`pageerror: ${err.stack || err}`));
    await page.goto(url, { waitUntil: 'load' });
    return { page: id };
  },
  async eval({ page, expr }) {
    return await getPage(page).page.evaluate(expr);
  },
  async click({ page, selector }) {
    await getPage(page).page.click(selector);
    return null;
  },
  async drag({ page, selector, points }) {
    const p = getPage(page).page;
    const box = await p.locator(selector).boundingBox();
    if (!box) throw new Error(`${selector} is not visible`);
    const at = ([fx, fy]) => [box.x + fx * box.width, box.y + fy * box.height];
    await p.mouse.move(...at(points[0]));
    await p.mouse.down();
    for (const pt of points.slice(1)) await p.mouse.move(...at(pt), { steps: 4 });
    await p.mouse.up();
    return null;
  },
  async screenshot({ page, path }) {
    await getPage(page).page.screenshot({ path });
    return null;
  },
  async log({ page }) {
    return getPage(page).log;
  },
  async close({ page }) {
    await getPage(page).page.close();
    pages.delete(page);
    return null;
  },
  async quit() {
    return null;
  },
};

async function shutdown(code) {
  try {
    await browser.close();
  } finally {
    process.exit(code);
  }
}

const rl = createInterface({ input: process.stdin });
rl.on('line', async (line) => {
  if (!line.trim()) return;
  let req;
  try {
    req = JSON.parse(line);
  } catch (err) {
    process.stderr.write(`driver: bad request line: ${line}\n`);
    return;
  }
  const handler = commands[req.cmd];
  try {
    if (!handler) throw new Error(`unknown command ${req.cmd}`);
    const result = await handler(req);
    reply({ id: req.id, ok: true, result: result === undefined ? null : result });
  } catch (err) {
    reply({ id: req.id, ok: false, error: String(err && err.stack ? err.stack : err) });
  }
  if (req.cmd === 'quit') await shutdown(0);
});
rl.on('close', () => shutdown(0));
reply({ id: 0, ok: true, result: { version: browser.version() } });
