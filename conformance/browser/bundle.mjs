// Build rhea's browser bundle from the installed npm package.
//
// rhea's own recipe (its package.json "browserify" script) is
// `browserify -r .:rhea`: a script defining a global `require` from which a
// page takes `require('rhea')`, with browserify's shims for Buffer, process,
// events and util.  The `dist/rhea.js` that rhea 3.0.5 ships on npm is older
// than its `lib/` (it lacks `Typed.prototype.toRheaTyped`, so described values
// such as stream offset filters decode differently), so we run the recipe on
// the installed `lib/` instead of copying that file.  The output is a build
// product: never commit it.
//
//   node bundle.mjs OUT.js        (run in a directory whose node_modules has rhea and browserify)
import { createRequire } from 'node:module';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';

const out = process.argv[2];
if (!out) {
  console.error('usage: node bundle.mjs OUT.js');
  process.exit(2);
}
const require = createRequire(join(process.cwd(), 'package.json'));
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
  `package by bundle.mjs. Load it, then require('rhea'). */\n` + source);
console.log(`wrote ${out}: rhea ${pkg.version}, ${source.length} bytes`);
