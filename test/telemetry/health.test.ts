/**
 * outbox.health() and outbox.healthHandler(): 200 when healthy; 503 with the reasons for stopped
 * processors, an old backlog, and a sidecar that is down or not ready.
 */
import assert from 'node:assert/strict';
import { OutboxConfigError } from '../../src';
import { createTestDb, testDialects, type TestDb } from '../support/db';
import { OrderPlaced, settle, startOrdersService, type OrdersService } from './helpers';

async function getHealth(service: OrdersService): Promise<{ status: number; body: Record<string, any> }> {
  const res = await fetch(`${service.url}/health`);
  assert.equal(res.headers.get('cache-control'), 'no-store');
  return { status: res.status, body: (await res.json()) as Record<string, any> };
}

for (const kind of testDialects()) {
  describe(`telemetry: health (${kind})`, () => {
    let db: TestDb;
    let service: OrdersService;

    beforeEach(async () => {
      db = await createTestDb(kind);
      // Every health call reads the overview afresh here; the default reuses a read for 5 s.
      service = await startOrdersService(db, { overviewCacheTime: 0.001 });
    });
    afterEach(async () => {
      await service.close();
      await db.close();
    });

    it('healthy: 200 with the processors, their passes, the backlog and the sidecar', async () => {
      service.outbox.start();
      await service.outbox.runPass('retry-by-database');
      const { status, body } = await getHealth(service);
      assert.equal(status, 200, JSON.stringify(body.reasons));
      assert.equal(body.status, 'ok');
      assert.equal(body.healthy, true);
      assert.deepEqual(body.reasons, []);
      assert.equal(body.processors.running, true);
      assert.deepEqual(
        body.processors.passes.map((p: { name: string }) => p.name),
        ['retry-by-local-queue', 'retry-by-database', 'delete-published-expired', 'delete-local-queue-expired', 'clean-inbox'],
      );
      const retry = body.processors.passes.find((p: { name: string }) => p.name === 'retry-by-database');
      assert.equal(typeof retry.lastEnd, 'number');
      assert.equal(retry.lastError, null);
      assert.equal(retry.everySeconds, 60);
      assert.equal(body.backlog, 0);
      assert.equal(body.oldestPendingAgeMs, null);
      assert.equal(body.terminalFailures, 0);
      assert.deepEqual(body.sidecar, { healthy: true });
    });

    it('processors stopped: 503 saying so; healthy again with processors: false', async () => {
      service.outbox.start();
      await service.outbox.stop();
      const { status, body } = await getHealth(service);
      assert.equal(status, 503);
      assert.equal(body.status, 'unhealthy');
      assert.equal(body.processors.running, false);
      assert.deepEqual(body.reasons, ['the background processors are not running (outbox.start() was not called, or outbox.stop() was)']);
      assert.equal((await service.outbox.health({ processors: false })).healthy, true);
    });

    it('a processor that started no pass for stalledAfter of its intervals is reported', async () => {
      service.outbox.start();
      await service.outbox.runPass('retry-by-local-queue');
      await new Promise((r) => setTimeout(r, 20));
      // 0.001 intervals of 3 s: 3 ms without a pass.
      const report = await service.outbox.health({ stalledAfter: 0.001, sidecar: false });
      assert.equal(report.healthy, false);
      assert.ok(report.reasons.some((r) => /^processor retry-by-local-queue started no pass for \d+ s \(it runs every 3 s\)$/.test(r)), report.reasons.join('; '));
    });

    it('an old backlog: 503 when the oldest unpublished event is older than maxPendingAge', async () => {
      service.outbox.start();
      service.emu.faults.failPublishesFor(60_000);
      const event = new OrderPlaced('old');
      event.creationTime = new Date(Date.now() - 10 * 60_000).toISOString();
      await service.outbox.bus.publish(event);
      await settle(service);
      const { status, body } = await getHealth(service);
      assert.equal(status, 503);
      assert.equal(body.backlog, 1);
      assert.ok(body.oldestPendingAgeMs >= 599_000, String(body.oldestPendingAgeMs));
      assert.equal(body.reasons.length, 1, body.reasons.join('; '));
      assert.match(body.reasons[0], /^the oldest unpublished event is 6\d\d s old \(maxPendingAge 300 s\)$/);
      // Thresholds are options: a limit above its age, and one on the backlog's size.
      assert.equal((await service.outbox.health({ maxPendingAge: 3600 })).healthy, true);
      assert.deepEqual((await service.outbox.health({ maxPendingAge: null, maxBacklog: 0 })).reasons, ['1 event waiting to be published (maxBacklog 0)']);
      service.emu.faults.reset();
    });

    it('the sidecar not ready, then down: 503 with what its health check answered', async () => {
      service.outbox.start();
      service.emu.faults.setHealth({ ready: false });
      const notReady = await getHealth(service);
      assert.equal(notReady.status, 503);
      assert.equal(notReady.body.sidecar.healthy, false);
      assert.match(notReady.body.reasons[0], /^the sidecar is not healthy: the sidecar's health check answered 500 .*ERR_HEALTH_NOT_READY/);
      service.emu.faults.reset();
      assert.equal((await getHealth(service)).status, 200);

      await service.emu.stop();
      const down = await getHealth(service);
      assert.equal(down.status, 503);
      assert.deepEqual(down.body.reasons.length, 1);
      assert.match(down.body.reasons[0], /^the sidecar is not healthy: the sidecar did not answer its health check: .*ECONNREFUSED/);
      // A liveness probe need not restart the app for its sidecar.
      assert.equal((await service.outbox.health({ sidecar: false })).healthy, true);
    });
  });
}

describe('telemetry: health with terminal failures', () => {
  it('counts them, and is unhealthy past maxTerminalFailures (no limit by default)', async () => {
    const db = await createTestDb('sqlite');
    const service = await startOrdersService(db, { localRetryTimes: 0, maxRetryTimes: 0, overviewCacheTime: 0.001 });
    try {
      service.outbox.start();
      service.emu.faults.failNextPublishes(1);
      await service.outbox.bus.publish(new OrderPlaced('lost'));
      await settle(service);
      const report = await service.outbox.health();
      assert.equal(report.terminalFailures, 1);
      assert.equal(report.backlog, 0);
      assert.equal(report.healthy, true);
      assert.deepEqual((await service.outbox.health({ maxTerminalFailures: 0 })).reasons, ['1 event failed for good (maxTerminalFailures 0)']);
    } finally {
      await service.close();
      await db.close();
    }
  });
});

describe('telemetry: health options', () => {
  it('a bad threshold fails when the handler is built, naming the option', async () => {
    const db = await createTestDb('sqlite');
    const service = await startOrdersService(db);
    try {
      assert.throws(() => service.outbox.healthHandler({ maxPendingAge: -1 }), (err: Error) => err instanceof OutboxConfigError && /maxPendingAge must be a number >= 0, or null for no limit/.test(err.message));
      assert.throws(() => service.outbox.healthHandler({ sidecar: 'yes' as never }), OutboxConfigError);
      assert.throws(() => service.outbox.healthHandler({ stalledAfter: 0 }), /stalledAfter must be a number > 0/);
    } finally {
      await service.close();
      await db.close();
    }
  });
});
