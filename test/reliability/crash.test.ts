/**
 * Crash: the users example runs as a child process under load and is SIGKILLed at random moments,
 * over and over, with the windows between COMMIT and publish and between publish and the
 * Published mark widened by a test hook. Whatever a kill interrupts, every committed registration
 * must reach the subscriber and take effect exactly once; nothing of a failed request may.
 *
 * The keyed variant gives the events ordering keys (a getter on the event class, as an
 * application would write it): besides the above, each key's events must be numbered 1..n with no
 * gap and take effect in exactly that order.
 */
import assert from 'node:assert/strict';
import { Agent } from 'node:http';
import { DaprEmulator } from '../../src/testing';
import { createTestDb, serverDialects, type TestDb } from '../support/db';
import type { Child } from '../support/processes';
import {
  countBy,
  countRows,
  dropNoticeUniqueIndex,
  eventIdOf,
  eventually,
  figures,
  freePort,
  handledOrderByKey,
  kill,
  outboxRows,
  outcome,
  postJson,
  random,
  repeated,
  seedFor,
  settled,
  sleep,
  startService,
  userAccounts,
  within,
} from './helpers';

/** Ordering keys of the keyed variant. */
const KEYS = 20;
const CLIENTS = 4;
const MIN_KILLS = 10;
const MAX_KILLS = 25;

for (const keyed of [false, true])
for (const kind of serverDialects()) {
  const REGISTRATIONS = keyed ? 300 : 500;
  /** Requests to POST /register-and-fail, mixed in: they publish, then throw. */
  const FAILING = keyed ? 30 : 50;
  describe(`reliability: crash (${kind}, child process, SIGKILL${keyed ? `, ${KEYS} ordering keys` : ''})`, function () {
    this.timeout(280_000);
    let db: TestDb | undefined;
    let emu: DaprEmulator | undefined;
    let child: Child | undefined;
    const agent = new Agent({ keepAlive: true, maxSockets: CLIENTS });

    after(async () => {
      await kill(child);
      agent.destroy();
      await emu?.stop();
      await db?.close();
    });

    it(`${REGISTRATIONS} registrations, SIGKILL at least ${MIN_KILLS} times: each committed event delivered and handled once, none of a failed request, outbox drained`, async () => {
      const seed = seedFor(keyed ? 'crash-keyed' : 'crash');
      const rand = random(seed);
      db = await createTestDb(kind);
      // While the child is down the sidecar's deliveries fail; these policies keep trying for about
      // two minutes, far longer than a restart takes. A message given up on would be counted below.
      emu = await DaprEmulator.start({ appId: 'users', resiliency: { retries: 20, intervalMs: 250 }, redelivery: { retries: 20, intervalMs: 1000 }, appTimeoutMs: 20_000 });
      const port = await freePort();
      const url = `http://127.0.0.1:${port}`;
      const outboxOptions = { leaseTime: 1.5, failedRetryInterval: 0.3, minimumRetryInterval: 0.2, maximumRetryInterval: 1, localFailedRetryInterval: 0.3, localRetryTimes: 2, maxRetryTimes: 1000 };
      let generation = 0;
      let instanceId = '';
      const start = async (): Promise<Child> => {
        generation += 1;
        instanceId = `crash-${generation}`;
        return startService({ databaseUrl: db!.url, daprPort: emu!.port, port, instanceId, seed: seed + generation, publishDelayMs: 40, outbox: outboxOptions, orderingKeys: keyed ? KEYS : 0 });
      };
      child = await start();
      await dropNoticeUniqueIndex(db.sequelize);
      // Same port across restarts: deliveries that failed while the child was down reach the next one.
      await emu.attachApp({ appId: 'users', appUrl: url });

      // The plan: good registrations with failing ones mixed in at seeded places.
      const plan: Array<{ account: string; fail: boolean }> = [];
      for (let i = 0; i < REGISTRATIONS; i++) plan.push({ account: `u${String(i).padStart(4, '0')}`, fail: false });
      for (let i = 0; i < FAILING; i++) plan.splice(Math.floor(rand() * plan.length), 0, { account: `f${String(i).padStart(4, '0')}`, fail: true });

      // Clients wait while the child is down, then try again with the same account.
      let up: Promise<void> = Promise.resolve();
      let markUp: () => void = () => {};
      const seen201 = new Set<string>();
      const seen409 = new Set<string>();
      const failedAnswers = new Map<string, number>();
      const unexpected: string[] = [];
      let lostAnswers = 0;
      let cursor = 0;
      let completedSinceStart = 0;
      let loadDone = false;

      const client = async (): Promise<void> => {
        for (let i = cursor++; i < plan.length; i = cursor++) {
          const { account, fail } = plan[i]!;
          const body = { account, mobile: `1380000${String(i).padStart(4, '0')}` };
          for (let attempt = 1; ; attempt++) {
            if (attempt > 40) {
              unexpected.push(`${account}: no definitive answer after 40 attempts`);
              break;
            }
            await up;
            let status: number;
            try {
              status = (await postJson(agent, `${url}/${fail ? 'register-and-fail' : 'register'}`, body, 30_000)).status;
            } catch {
              lostAnswers += 1; // killed mid-request: committed or not, the database will tell
              await sleep(20);
              continue;
            }
            if (fail) {
              if (status >= 500) failedAnswers.set(account, status);
              else unexpected.push(`${account}: /register-and-fail answered ${status}`);
              break;
            }
            if (status === 201) seen201.add(account);
            else if (status === 409) seen409.add(account); // an earlier attempt committed; its answer was lost
            else if (status >= 500) continue; // caught by a kill on the server side; try again
            else unexpected.push(`${account}: /register answered ${status}`);
            break;
          }
          completedSinceStart += 1;
        }
      };

      let kills = 0;
      let orphaned = 0;
      let publishedUnmarked = 0;
      const killer = async (): Promise<void> => {
        while (kills < MAX_KILLS && (kills < MIN_KILLS || !loadDone)) {
          const threshold = 30 + Math.floor(rand() * 30);
          await eventually(() => completedSinceStart >= threshold || loadDone, 'load to go on', 120_000, 5);
          if (loadDone && kills >= MIN_KILLS) break;
          // A random moment: mid-request, mid-commit, mid-publish, mid-mark, mid-delivery.
          await sleep(loadDone ? 200 + rand() * 1500 : rand() * 60);
          up = new Promise((resolve) => (markUp = resolve));
          await kill(child);
          kills += 1;
          // What the dead process held: committed rows not marked Published. Of those, the ones the
          // sidecar already accepted died between publish and mark.
          const dead = instanceId;
          const held = (await outboxRows(db!.sequelize)).filter((r) => (r.state === 0 || r.state === 1) && r.lockOwner === dead);
          const accepted = new Set(emu!.publishes.filter((p) => p.accepted).map(eventIdOf));
          orphaned += held.length;
          publishedUnmarked += held.filter((r) => accepted.has(r.eventId)).length;
          child = await start();
          completedSinceStart = 0;
          markUp();
        }
      };

      const started = Date.now();
      const killing = killer();
      await Promise.all(Array.from({ length: CLIENTS }, client));
      loadDone = true;
      await killing;
      const loadMs = Date.now() - started;

      // The last process drains what the others left (their leases run out) and the sidecar delivers.
      await eventually(() => settled(db!.sequelize), 'the outbox to drain and every event to be handled', 150_000, 250);
      await within(emu.idle(), 150_000, 'the sidecar to finish its deliveries');

      const result = await outcome(db.sequelize);
      const users = new Set(await userAccounts(db.sequelize));
      const rows = await outboxRows(db.sequelize);
      const deliveredOk = countBy(emu.deliveries.filter((d) => d.outcome === 'SUCCESS' && d.topic === 'RegisterUserEvent'), (d) => d.eventId);
      const acceptedPublishes = countBy(emu.publishes.filter((p) => p.accepted), eventIdOf);
      const publishedAccounts = emu.publishes.filter((p) => p.accepted).map((p) => String((p.envelope?.data as { account?: unknown } | undefined)?.account));
      const delivered = rows.filter((r) => deliveredOk.has(r.eventId)).length;
      const failedThatWrote = [...users].filter((a) => a.startsWith('f')).length + rows.filter((r) => r.account.startsWith('f')).length + publishedAccounts.filter((a) => a.startsWith('f')).length;
      const lost = [...seen201, ...seen409].filter((a) => !users.has(a)).length + result.unhandled.length + rows.filter((r) => !deliveredOk.has(r.eventId)).length;
      const inbox = await countRows(db.sequelize, 'SELECT COUNT(*) AS n FROM integration_event_inbox');
      figures('crash', {
        events: result.events,
        kills,
        'orphaned-rows': orphaned,
        'published-unmarked': publishedUnmarked,
        'answers-lost': lostAnswers,
        'answered-201': seen201.size,
        '409-after-lost-answer': seen409.size,
        'failed-requests': failedAnswers.size,
        delivered,
        'republished-at-transport': repeated(acceptedPublishes),
        'duplicates-at-transport': repeated(deliveredOk),
        'double-effects': result.doubleEffects,
        lost,
        'failed-that-wrote': failedThatWrote,
        'load-ms': loadMs,
      });

      assert.deepEqual(unexpected, [], 'every request ended in a definitive answer');
      assert.ok(kills >= MIN_KILLS, `killed ${kills} times`);
      assert.equal(seen201.size + seen409.size, REGISTRATIONS, 'every good registration was answered 201, or 409 after its lost 201');
      assert.equal(failedAnswers.size, FAILING, 'every failing request was answered 5xx');
      assert.equal(failedThatWrote, 0, 'no user, outbox row or publish of a failed request');
      assert.deepEqual([...seen201, ...seen409].filter((a) => !users.has(a)), [], 'every acknowledged registration is committed');
      assert.equal(users.size, REGISTRATIONS, 'no other user was committed');
      assert.deepEqual(result.orphanUsers, [], 'every committed user has its event');
      assert.deepEqual(result.orphanEvents, [], 'every event belongs to a committed user');
      assert.equal(result.events, REGISTRATIONS, 'one event per registration');
      assert.equal(result.undrained, 0, 'the outbox is drained (no row in state 0, 1 or 3)');
      assert.equal(delivered, REGISTRATIONS, 'every event was delivered at least once');
      assert.deepEqual(emu.dropped.map((d) => d.eventId), [], 'the sidecar gave up on nothing');
      assert.deepEqual(result.unhandled, [], 'every event was handled');
      assert.equal(result.doubleEffects, 0, 'no event was handled twice');
      assert.equal(result.strayNotices, 0, 'no effect of an unknown event');
      assert.equal(result.notices, REGISTRATIONS, 'one effect per registration');
      assert.equal(inbox, REGISTRATIONS, 'one inbox entry per event');
      if (keyed) {
        const order = await handledOrderByKey(db.sequelize);
        assert.equal(order.size, KEYS, 'every key had events');
        for (const [key, sequences] of order) {
          assert.deepEqual(sequences, Array.from({ length: sequences.length }, (_, i) => i + 1), `${key}: numbered 1..n and handled in that order`);
        }
        assert.equal([...order.values()].reduce((n, s) => n + s.length, 0), REGISTRATIONS);
      }
    });
  });
}
