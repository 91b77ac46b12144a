import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { join } from 'node:path';

const root = join(__dirname, '..', '..');

function node(args: string[]): string {
  return execFileSync(process.execPath, args, { cwd: root, encoding: 'utf8' }).trim();
}

describe('the published package (dist, built by npm test)', () => {
  before(function () {
    if (!existsSync(join(root, 'dist/cjs/index.js'))) throw new Error('dist/ is missing: run `npm run build` (npm test does)');
  });

  it('loads with CommonJS require', () => {
    const out = node(['-e', "const o = require('dapr-outbox'); console.log(typeof o.createOutbox, typeof o.IntegrationEvent, typeof o.DaprPublisher)"]);
    assert.equal(out, 'function function function');
  });

  it('loads with an ES module import, the same classes as require', () => {
    const out = node([
      '--input-type=module',
      '-e',
      "import { createOutbox, IntegrationEvent } from 'dapr-outbox'; import { createRequire } from 'node:module'; const req = createRequire(import.meta.url); console.log(typeof createOutbox, IntegrationEvent === req('dapr-outbox').IntegrationEvent)",
    ]);
    assert.equal(out, 'function true');
  });

  it('exposes dapr-outbox/testing both ways', () => {
    assert.equal(node(['-e', "console.log(typeof require('dapr-outbox/testing').DaprEmulator)"]), 'function');
    assert.equal(node(['--input-type=module', '-e', "import { DaprEmulator } from 'dapr-outbox/testing'; console.log(typeof DaprEmulator)"]), 'function');
  });

  it('ships type declarations', () => {
    assert.ok(existsSync(join(root, 'dist/cjs/index.d.ts')));
    assert.ok(existsSync(join(root, 'dist/cjs/testing/index.d.ts')));
  });
});
