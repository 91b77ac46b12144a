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
      'DaprPublisher,DropError,EventValidationError,IntegrationEvent,OutboxConfigError,OutboxError,PublishError,UnitOfWorkError,createAdminRouter,createOutbox,createSubscriptionRouter',
    );
  });

  it('ships the dashboard files, and the admin router serves them from the CommonJS and the ES module entry', () => {
    const packed = JSON.parse(execFileSync('npm', ['pack', '--dry-run', '--json', '--ignore-scripts'], { cwd: root, encoding: 'utf8' })) as Array<{ files: Array<{ path: string }> }>;
    const files = packed[0]!.files.map((f) => f.path);
    for (const name of ['index.html', 'dashboard.js', 'dashboard.css']) assert.ok(files.includes(`dist/cjs/http/admin/static/${name}`), `${name} is in the package`);
    // A stand-in outbox: the router reads its files when it is built, and serves them before any store call.
    const serve = (load: string) =>
      `${load}; const express = require('express'); const app = express();` +
      "app.use('/admin', createAdminRouter({ outbox: { store: {}, inbox: undefined, overview() {}, republish() {} }, authorize: () => true }));" +
      "const server = app.listen(0, '127.0.0.1', async () => { const base = 'http://127.0.0.1:' + server.address().port + '/admin/';" +
      "const out = []; for (const f of ['', 'dashboard.js', 'dashboard.css']) { const r = await fetch(base + f); out.push(r.status + ' ' + r.headers.get('content-type').split(';')[0]); }" +
      "console.log(out.join(',')); server.close(); });";
    const expected = '200 text/html,200 text/javascript,200 text/css';
    assert.equal(node(['-e', serve("const { createAdminRouter } = require('dapr-outbox')")]), expected);
    assert.equal(
      node(['--input-type=module', '-e', serve("import { createAdminRouter } from 'dapr-outbox'; import { createRequire } from 'node:module'; const require = createRequire(import.meta.url)")]),
      expected,
    );
  });

  it('ships type declarations', () => {
    assert.ok(existsSync(join(root, 'dist/cjs/index.d.ts')));
    assert.ok(existsSync(join(root, 'dist/cjs/extend.d.ts')));
    assert.ok(existsSync(join(root, 'dist/cjs/testing/index.d.ts')));
  });
});
