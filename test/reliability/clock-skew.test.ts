/**
 * Two replicas on one database, one with its clock 45 s ahead. Leases and due times are on the
 * database's clock, so the fast replica does not take rows the other is still publishing (the
 * broker is slow): no event goes out twice.
 */
import assert from 'node:assert/strict';
import { Agent } from 'node:http';
import { DaprEmulator } from '../../src/testing';
import { createTestDb, testDialects, type TestDb } from '../support/db';
import type { Child } from '../support/processes';
import { countBy, eventIdOf, eventually, freePort, kill, postJson, settled, startService, within } from './helpers';

const EVENTS = 20;
const SKEW_MS = 45_000;
/** Each publish waits this long in the broker: long enough for the fast replica's retry passes to run meanwhile. */
const BROKER_DELAY_MS = 3000;

for (const kind of testDialects()) {
  describe(`reliability: a replica whose clock is ${SKEW_MS / 1000} s ahead (${kind}, child processes)`, function () {
    this.timeout(120_000);
    let db: TestDb | undefined;
    let emu: DaprEmulator | undefined;
    const children: Child[] = [];
    const agent = new Agent({ keepAlive: true });

    before(async () => {
      db = await createTestDb(kind);
      emu = await DaprEmulator.start({ appId: 'users' });
    });
    after(async () => {
      await Promise.all(children.map((c) => kill(c)));
      agent.destroy();
      await emu?.stop();
      await db?.close();
    });

    it('does not publish an event the other replica is still publishing', async () => {
      // A production lease; retry passes several times a second, so the fast replica keeps looking.
      const outbox = { leaseTime: 30, failedRetryInterval: 0.3, minimumRetryInterval: 0.2, maximumRetryInterval: 1, localFailedRetryInterval: 0.3 };
      const start = async (name: string, clockShiftMs: number) => {
        const port = await freePort();
        children.push(await startService({ databaseUrl: db!.url, daprPort: emu!.port, port, instanceId: name, seed: 1, outbox, clockShiftMs }));
        return `http://127.0.0.1:${port}`;
      };
      const onTime = await start('on-time', 0);
      await start('ahead', SKEW_MS);
      await emu!.attachApp({ appId: 'users', appUrl: onTime });

      emu!.faults.slowBroker(BROKER_DELAY_MS);
      for (let i = 0; i < EVENTS; i++) {
        const res = await postJson(agent, `${onTime}/register`, { account: `skew${i}`, mobile: '13700000000' });
        assert.equal(res.status, 201);
      }
      await eventually(() => settled(db!.sequelize), 'every event to be published and handled', 60_000, 250);
      await within(emu!.idle(), 60_000, 'the sidecar to finish');

      const accepted = countBy(emu!.publishes.filter((p) => p.accepted), eventIdOf);
      assert.equal(accepted.size, EVENTS, 'every event was published');
      assert.deepEqual([...accepted].filter(([, n]) => n > 1), [], 'no event was published twice');
    });
  });
}
