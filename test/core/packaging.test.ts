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

  it('exposes dapr-outbox/extend both ways, and keeps the main entry to what an application uses', () => {
    assert.equal(node(['-e', "const e = require('dapr-outbox/extend'); console.log(typeof e.OutboxEngine, typeof e.runMigrations, typeof e.SequelizeOutboxStore)"]), 'function function function');
    assert.equal(node(['--input-type=module', '-e', "import { OutboxEngine } from 'dapr-outbox/extend'; console.log(typeof OutboxEngine)"]), 'function');
    const values = node(['-e', "console.log(Object.keys(require('dapr-outbox')).filter((k) => k !== '__esModule').sort().join(','))"]);
    assert.equal(
      values,
      'DaprPublisher,DropError,EventValidationError,IntegrationEvent,OutboxConfigError,OutboxError,PublishError,UnitOfWorkError,createOutbox,createSubscriptionRouter',
    );
  });

  it('ships type declarations', () => {
    assert.ok(existsSync(join(root, 'dist/cjs/index.d.ts')));
    assert.ok(existsSync(join(root, 'dist/cjs/extend.d.ts')));
    assert.ok(existsSync(join(root, 'dist/cjs/testing/index.d.ts')));
  });
});
