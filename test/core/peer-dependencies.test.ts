/**
 * The database drivers are optional peers and @dapr/dapr is needed only for a DaprClient of the
 * application's own, given to DaprPublisher: these tests run the built package in a child process
 * in which chosen packages cannot be resolved, as on a machine where they were never installed.
 */
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { join } from 'node:path';

const root = join(__dirname, '..', '..');

/** Runs `code` (CommonJS) with `missing` packages unresolvable; returns what it printed. */
function withoutPackages(missing: string[], code: string): string {
  const hide = `
    const Module = require('node:module');
    const missing = new Set(${JSON.stringify(missing)});
    const resolve = Module._resolveFilename;
    Module._resolveFilename = function (request, ...rest) {
      if (missing.has(request)) {
        const err = new Error("Cannot find module '" + request + "'");
        err.code = 'MODULE_NOT_FOUND';
        throw err;
      }
      return resolve.call(this, request, ...rest);
    };
  `;
  return execFileSync(process.execPath, ['-e', `${hide}\n${code}`], { cwd: root, encoding: 'utf8' }).trim();
}

const DRIVERS = ['mysql2', 'sqlite3', 'pg', 'pg-hstore'];

describe('peer dependencies: what an application without a package sees (dist, built by npm test)', () => {
  before(function () {
    if (!existsSync(join(root, 'dist/cjs/index.js'))) throw new Error('dist/ is missing: run `npm run build` (npm test does)');
  });

  it('the package and dapr-outbox/testing load with no database driver installed', () => {
    const out = withoutPackages(DRIVERS, `
      const o = require('dapr-outbox');
      const t = require('dapr-outbox/testing');
      console.log(typeof o.createOutbox, typeof o.createSubscriptionRouter, typeof t.DaprEmulator);
    `);
    assert.equal(out, 'function function function');
  });

  for (const [driver, url] of [
    ['mysql2', 'mysql://user:secret@127.0.0.1:3306/app'],
    ['sqlite3', 'sqlite:./app.db'],
    ['pg', 'postgres://user:secret@127.0.0.1:5432/app'],
  ] as const) {
    it(`a Sequelize for a dialect whose driver (${driver}) is missing fails at construction, naming the package`, () => {
      const out = withoutPackages([driver], `
        const { Sequelize } = require('sequelize');
        try { new Sequelize(${JSON.stringify(url)}, { logging: false }); console.log('constructed'); }
        catch (err) { console.log(err.message); }
      `);
      assert.equal(out, `Please install ${driver} package manually`);
    });
  }

  it('DaprPublisher without @dapr/dapr: the default publishes over HTTP, single and bulk; a given client is used', () => {
    const out = withoutPackages(['@dapr/dapr'], `
      const { DaprPublisher } = require('dapr-outbox');
      const { DaprEmulator } = require('dapr-outbox/testing');
      const event = (id) => ({ id, topic: 'orders', pubsubName: 'pubsub', eventTypeName: 'OrderPlaced', content: JSON.stringify({ id }), creationTime: Date.now() });
      (async () => {
        const emu = await DaprEmulator.start({ appId: 'users' });
        const publisher = new DaprPublisher({ daprPort: emu.port });
        await publisher.publish(event('a'));
        const bulk = await publisher.publishBulk([event('b'), event('c')]);
        await publisher.close();
        await emu.stop();
        console.log(emu.publishes.map((p) => p.status + ' ' + p.envelope.id).join(','), bulk.failed.length);
        console.log(new DaprPublisher({ client: { pubsub: {} } }).pubsubName);
        console.log(Object.keys(require.cache).some((file) => file.includes('@dapr')) ? 'an @dapr module was loaded' : 'no @dapr module loaded');
      })().catch((err) => { console.log(err.stack); process.exitCode = 1; });
    `);
    assert.deepEqual(out.split('\n'), ['204 a,204 b,204 c 0', 'pubsub', 'no @dapr module loaded']);
  });
});
