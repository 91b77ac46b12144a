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

/**
 * An outbox on a fresh SQLite file publishing one event with a given traceparent to an emulator:
 * prints the traceparent the emulator received and whether health() answered. Module code for
 * the CommonJS (require) or the ES module (import) build.
 */
function publishOne(load: (name: string) => string): string {
  return `
    const { createOutbox, DaprPublisher } = ${load('dapr-outbox')};
    const { DaprEmulator } = ${load('dapr-outbox/testing')};
    const { Sequelize } = ${load('sequelize')};
    const { mkdtempSync, rmSync } = ${load('node:fs')};
    const { join } = ${load('node:path')};
    const { tmpdir } = ${load('node:os')};
    async function publishOne(traceparent) {
      const dir = mkdtempSync(join(tmpdir(), 'dapr-outbox-peer-'));
      const emu = await DaprEmulator.start({ appId: 'users' });
      const sequelize = new Sequelize({ dialect: 'sqlite', storage: join(dir, 'app.db'), logging: false });
      const outbox = createOutbox({ sequelize, publisher: new DaprPublisher({ daprPort: emu.port }) });
      await outbox.migrate();
      await outbox.bus.publish({ id: 'e1', topic: 'orders' }, { traceparent });
      await outbox.drain();
      await emu.idle();
      const health = await outbox.health({ processors: false });
      await outbox.close();
      await emu.stop();
      await sequelize.close();
      rmSync(dir, { recursive: true, force: true });
      return emu.publishes.map((p) => p.status + ' ' + p.envelope.traceparent).join(',') + ' ' + health.healthy;
    }
  `;
}

const TRACEPARENT = '00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01';

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

  it('without @opentelemetry/api: publishing, tracing headers and health work, and no OpenTelemetry module is loaded', () => {
    const out = withoutPackages(['@opentelemetry/api'], `
      ${publishOne((name) => `require('${name}')`)}
      publishOne('${TRACEPARENT}').then((line) => {
        console.log(line);
        console.log(Object.keys(require.cache).some((file) => file.includes('@opentelemetry')) ? 'an @opentelemetry module was loaded' : 'no @opentelemetry module loaded');
      }).catch((err) => { console.log(err.stack); process.exitCode = 1; });
    `);
    assert.deepEqual(out.split('\n'), [`204 ${TRACEPARENT} true`, 'no @opentelemetry module loaded']);
  });

  it('the ES module build with @opentelemetry/api and an SDK: the row carries the create span, a child of the given traceparent', () => {
    const code = `
      import { trace } from '@opentelemetry/api';
      import { BasicTracerProvider, InMemorySpanExporter, SimpleSpanProcessor } from '@opentelemetry/sdk-trace-base';
      ${publishOne((name) => `await import('${name}')`)}
      const exporter = new InMemorySpanExporter();
      trace.setGlobalTracerProvider(new BasicTracerProvider({ spanProcessors: [new SimpleSpanProcessor(exporter)] }));
      const line = await publishOne('${TRACEPARENT}');
      const create = exporter.getFinishedSpans().find((s) => s.name === 'create orders');
      console.log(line);
      console.log(create.parentSpanContext.spanId, create.spanContext().spanId);
    `;
    const out = execFileSync(process.execPath, ['--input-type=module', '-e', code], { cwd: root, encoding: 'utf8' }).trim().split('\n');
    const [parent, spanId] = out[1]!.split(' ');
    assert.equal(parent, '00f067aa0ba902b7');
    assert.equal(out[0], `204 00-4bf92f3577b34da6a3ce929d0e0e4736-${spanId}-01 true`);
  });
});
