/**
 * Sidecar outage: the sidecar refuses every publish for a while. Requests must go on succeeding
 * (the events wait in the outbox), every event must be delivered once the sidecar is back, and
 * the publish attempts made meanwhile must stay within what the backoff schedule allows: no
 * retry storm against a sidecar that is down.
 */
import assert from 'node:assert/strict';
import { Agent, type Server } from 'node:http';
import { DaprPublisher } from '../../src';
import { silentLogger } from '../../src/extend';
import { DaprEmulator } from '../../src/testing';
import { createUsersService, type UsersService } from '../../example/users/app';
import { createTestDb, testDialects, type TestDb } from '../support/db';
import { closeServer, countBy, eventIdOf, eventually, figures, listen, outcome, postJson, settled, sleep, within } from './helpers';

/** The service's retry tuning, in seconds as the options take it. */
const TUNING = {
  localRetryTimes: 2,
  localFailedRetryInterval: 0.25,
  failedRetryInterval: 0.25,
  minimumRetryInterval: 0.5,
  maximumRetryInterval: 4,
  maxRetryTimes: 30,
  leaseTime: 5,
};
const OUTAGE_MS = 4000;
const CLIENTS = 3;
const PER_CLIENT = 20;

/**
 * The most publish attempts one event can get within `windowMs` of failures: the post-commit
 * attempt, `localRetryTimes` in-memory retries, then database retries. The first database retry
 * waits at least `minimumRetryInterval` after the local ones gave up, and each wait after that
 * at least doubles from there (the jitter keeps half of the exponential delay): retry k comes at
 * least min * 2^(k-1) after the hand-over, so k retries fit only while min * 2^(k-1) <= window.
 */
function attemptsBound(windowMs: number, t: typeof TUNING): number {
  const min = t.minimumRetryInterval * 1000;
  const databaseRetries = windowMs < min ? 0 : 1 + Math.floor(Math.log2(windowMs / min));
  return 1 + t.localRetryTimes + Math.min(databaseRetries, t.maxRetryTimes);
}

for (const kind of testDialects()) {
  describe(`reliability: sidecar outage (${kind})`, function () {
    this.timeout(120_000);
    let db: TestDb | undefined;
    let emu: DaprEmulator | undefined;
    let svc: UsersService | undefined;
    let server: Server | undefined;
    const agent = new Agent({ keepAlive: true, maxSockets: CLIENTS });

    after(async () => {
      await svc?.close();
      await closeServer(server);
      agent.destroy();
      await emu?.stop();
      await db?.close();
    });

    it('requests succeed during the outage, every event is delivered after it, and publish attempts stay within the backoff bound', async () => {
      db = await createTestDb(kind);
      emu = await DaprEmulator.start({ appId: 'users', resiliency: { retries: 10, intervalMs: 200 }, appTimeoutMs: 20_000 });
      svc = await createUsersService({ sequelize: db.sequelize, publisher: new DaprPublisher({ daprPort: emu.port }), log: () => {}, logger: silentLogger, outbox: TUNING });
      const listening = await listen(svc.app);
      server = listening.server;
      await emu.attachApp({ appId: 'users', appUrl: listening.url });
      svc.outbox.start();

      // The outage lasts until the test ends it: at least OUTAGE_MS, and until every request was
      // answered and its post-commit publish refused. The bound is computed from the measured length.
      const outageStart = Date.now();
      emu.faults.failPublishesFor(600_000);
      const statuses: number[] = [];
      await Promise.all(
        Array.from({ length: CLIENTS }, async (_, c) => {
          for (let i = 0; i < PER_CLIENT; i++) {
            const res = await postJson(agent, `${listening.url}/register`, { account: `c${c}n${i}`, mobile: '13800000000' });
            statuses.push(res.status);
            await sleep((OUTAGE_MS * 0.75) / PER_CLIENT);
          }
        }),
      );
      await svc.outbox.drain();
      await sleep(Math.max(0, outageStart + OUTAGE_MS - Date.now()));
      emu.faults.reset();
      const outageEnd = Date.now();
      const outageMs = outageEnd - outageStart;

      await eventually(() => settled(db!.sequelize), 'every event to be published and handled after the outage', 60_000, 100);
      await within(emu.idle(), 30_000, 'the sidecar to finish');

      const failedAttempts = emu.publishes.filter((p) => !p.accepted);
      const perEvent = countBy(failedAttempts, eventIdOf);
      const events = statuses.length;
      const perEventBound = attemptsBound(outageMs, TUNING);
      const bound = events * perEventBound;
      const maxPerEvent = Math.max(0, ...perEvent.values());
      const publishCalls = emu.requests.filter((r) => r.path.includes('/publish/') && r.at.getTime() >= outageStart && r.at.getTime() <= outageEnd).length;
      const result = await outcome(db.sequelize);
      const delivered = countBy(emu.deliveries.filter((d) => d.outcome === 'SUCCESS'), (d) => d.eventId);
      figures(`sidecar-outage (${kind})`, {
        events,
        'outage-ms': outageMs,
        'answered-201': statuses.filter((s) => s === 201).length,
        'failed-attempts': failedAttempts.length,
        bound,
        'max-attempts-per-event': maxPerEvent,
        'bound-per-event': perEventBound,
        'publish-calls-during-outage': publishCalls,
        delivered: delivered.size,
        'double-effects': result.doubleEffects,
        lost: result.unhandled.length + (events - delivered.size),
      });

      assert.deepEqual(statuses.filter((s) => s !== 201), [], 'every request succeeded during the outage');
      assert.equal(perEvent.size, events, 'every event was tried (and refused) during the outage');
      assert.ok(failedAttempts.length <= bound, `${failedAttempts.length} publish attempts during the outage; the backoff allows at most ${bound}`);
      assert.ok(maxPerEvent <= perEventBound, `an event was tried ${maxPerEvent} times during the outage; the backoff allows at most ${perEventBound}`);
      assert.equal(result.events, events);
      assert.equal(result.undrained, 0, 'the outbox is drained');
      assert.equal(delivered.size, events, 'every event was delivered after the outage');
      assert.deepEqual(result.unhandled, [], 'every event was handled');
      assert.equal(result.doubleEffects, 0);
      assert.equal(result.notices, events);
    });
  });
}
