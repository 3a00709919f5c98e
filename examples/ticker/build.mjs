// Build build/rhea.js, rhea's browser bundle, from the installed npm package.
//
// The recipe of examples/bunny/build.mjs: rhea's own `browserify -r .:rhea`
// (from rhea's package.json) run on the installed library, so the page can
// `require('rhea')`.  The package's shipped `dist/rhea.js` is older than its
// `lib/` in rhea 3.0.5, so we do not use it.  build/ is a build product, never
// committed; serve.py runs this when build/rhea.js is missing or older than the
// lock file.
import { createRequire } from 'node:module';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const here = dirname(fileURLToPath(import.meta.url));
const out = join(here, 'build', 'rhea.js');
const require = createRequire(join(here, 'package.json'));
const browserify = require('browserify');
const rheaDir = dirname(require.resolve('rhea/package.json'));
const pkg = JSON.parse(readFileSync(join(rheaDir, 'package.json'), 'utf8'));

const source = await new Promise((resolve, reject) => {
  browserify({ basedir: rheaDir }).require(rheaDir, { expose: 'rhea' }).bundle((err, buf) => {
    if (err) reject(err);
    else resolve(buf.toString('utf8'));
  });
});
mkdirSync(dirname(out), { recursive: true });
writeFileSync(out,
  `/* rhea ${pkg.version} (${pkg.license}, ${pkg.homepage}), browserified from the npm ` +
  `package by examples/ticker/build.mjs. */\n` + source);
console.log(`wrote ${out}: rhea ${pkg.version}, ${source.length} bytes`);
