#!/usr/bin/env node
// Compiles src/ to CommonJS with declarations, then writes thin ES module wrappers that re-export
// the CommonJS build by name, so `import { createOutbox } from 'dapr-outbox'` and
// `require('dapr-outbox')` load one copy of the code.
'use strict';
const { execFileSync } = require('node:child_process');
const fs = require('node:fs');
const path = require('node:path');

const root = path.resolve(__dirname, '..');
const dist = path.join(root, 'dist');
fs.rmSync(dist, { recursive: true, force: true });
execFileSync(process.execPath, [require.resolve('typescript/bin/tsc'), '-p', path.join(root, 'tsconfig.build.json')], {
  stdio: 'inherit',
});

const entries = [
  { cjs: './cjs/index.js', esm: 'esm/index.mjs' },
  { cjs: './cjs/extend.js', esm: 'esm/extend.mjs' },
  { cjs: './cjs/testing/index.js', esm: 'esm/testing.mjs' },
];
fs.mkdirSync(path.join(dist, 'esm'), { recursive: true });
for (const entry of entries) {
  const target = path.join(dist, entry.cjs);
  if (!fs.existsSync(target)) continue;
  const names = Object.keys(require(target)).filter((n) => n !== 'default' && n !== '__esModule');
  const relative = path.posix.join('..', entry.cjs.replace(/^\.\//, ''));
  const lines = [`import cjs from '${relative}';`, ...names.map((n) => `export const ${n} = cjs.${n};`), 'export default cjs;', ''];
  fs.writeFileSync(path.join(dist, entry.esm), lines.join('\n'));
}
// The dashboard's page, script and style sit beside the compiled admin router, which reads them
// from its own folder (the ES module entry re-exports the CommonJS build, so one copy serves both).
const staticFrom = path.join(root, 'src/http/admin/static');
const staticTo = path.join(dist, 'cjs/http/admin/static');
fs.mkdirSync(staticTo, { recursive: true });
for (const name of fs.readdirSync(staticFrom)) fs.copyFileSync(path.join(staticFrom, name), path.join(staticTo, name));

const cli = path.join(dist, 'cjs/testing/cli.js');
if (fs.existsSync(cli)) fs.chmodSync(cli, 0o755);
