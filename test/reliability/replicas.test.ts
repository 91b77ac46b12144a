/**
 * Replicas: three instances of the users service (child processes, each with its own pool and
 * processors) on one MariaDB database and one sidecar, the sidecar's deliveries spread over them
 * as a load balancer would. Without faults no event may be published twice. With replicas
 * SIGKILLed, or frozen (SIGSTOP) past their lease and then woken up mid-work, repeats may
 * happen at the transport, never as a second effect.
 */
import assert from 'node:assert/strict';
import { Agent } from 'node:http';
import { QueryTypes } from 'sequelize';
import { DaprEmulator } from '../../src/testing';
import { createTestDb, serverDialects, type TestDb } from '../support/db';
import type { Child } from '../support/processes';
import {
  countBy,
  dropNoticeUniqueIndex,
  eventIdOf,
  eventually,
  figures,
  freePort,
  kill,
  outboxRows,
  outcome,
  postJson,
  random,
  repeated,
  seedFor,
  settled,
  sleep,
  startBalancer,
  startService,
  userAccounts,
  within,
  type Balancer,
} from './helpers';

const REPLICAS = 3;
const CLEAN_EVENTS = 2000;
const FAULT_EVENTS = 1000;
const CLIENTS = 6;
/** Phase B: fault rounds at seeded moments of the load (see the faulter). */
const ROUNDS = 4;
/** More rounds, while the load lasts, until a replica was caught mid-claim. */
const MAX_ROUNDS = 8;
/** Phase B paces its clients so the load spans the fault rounds (each waits for a restart). */
const PACE_MS = 150;
const FAULT_LEASE = 1.5;

interface Replica {
  slot: number;
  port: number;
  url: string;
  child: Child | undefined;
  instanceId: string;
  generation: number;
  /** Receives requests and deliveries. */
  up: boolean;
}

for (const kind of serverDialects()) {
  describe(`reliability: three replicas on one database and one sidecar (${kind}, child processes)`, function () {
    this.timeout(280_000);
    let db: TestDb | undefined;
    let emu: DaprEmulator | undefined;
    let balancer: Balancer | undefined;
    const replicas: Replica[] = [];
    const agent = new Agent({ keepAlive: true, maxSockets: CLIENTS * 2 });
    let seed = 0;
    let rand: () => number = Math.random;

    const boot = async (r: Replica, options: Record<string, unknown>, publishDelayMs: number): Promise<void> => {
      r.generation += 1;
      r.instanceId = `replica-${r.slot}-g${r.generation}`;
      r.child = await startService({ databaseUrl: db!.url, daprPort: emu!.port, port: r.port, instanceId: r.instanceId, seed: seed + r.slot * 100 + r.generation, publishDelayMs, outbox: options });
      r.up = true;
    };

    /** Sends registrations through the live replicas; a request that dies with its replica is sent again elsewhere. */
    const load = async (accounts: string[], onDone: () => void, paceMs = 0) => {
      const answers = new Map<string, number>();
      const unexpected: string[] = [];
      let lostAnswers = 0;
      let cursor = 0;
      const client = async (): Promise<void> => {
        for (let i = cursor++; i < accounts.length; i = cursor++) {
          const account = accounts[i]!;
          for (let attempt = 0; ; attempt++) {
            if (attempt >= 40) {
              unexpected.push(`${account}: no definitive answer after 40 attempts`);
              break;
            }
            const live = replicas.filter((r) => r.up);
            if (live.length === 0) {
              await sleep(50);
              continue;
            }
            const r = live[(i + attempt) % live.length]!;
            let status: number;
            try {
              status = (await postJson(agent, `${r.url}/register`, { account, mobile: '13700000000' }, 30_000)).status;
            } catch {
              lostAnswers += 1;
              await sleep(20);
              continue;
            }
            if (status >= 500) continue;
            if (status !== 201 && status !== 409) unexpected.push(`${account}: answered ${status}`);
            answers.set(account, status);
            break;
          }
          onDone();
          if (paceMs > 0) await sleep(paceMs);
        }
      };
      await Promise.all(Array.from({ length: CLIENTS }, client));
      return { answers, unexpected, lostAnswers };
    };

    const stopAll = async (signal: 'SIGTERM' | 'SIGKILL') => {
      for (const r of replicas) r.up = false;
      await Promise.all(replicas.map((r) => r.child?.stop(signal)));
    };

    before(async () => {
      seed = seedFor('replicas');
      rand = random(seed);
      db = await createTestDb(kind);
      emu = await DaprEmulator.start({ appId: 'users', resiliency: { retries: 20, intervalMs: 250 }, redelivery: { retries: 20, intervalMs: 1000 }, appTimeoutMs: 20_000 });
      balancer = await startBalancer(() => replicas.filter((r) => r.up).map((r) => r.url));
      for (let slot = 0; slot < REPLICAS; slot++) {
        const port = await freePort();
        replicas.push({ slot, port, url: `http://127.0.0.1:${port}`, child: undefined, instanceId: '', generation: 0, up: false });
      }
    });

    after(async () => {
      await Promise.all(replicas.map((r) => kill(r.child)));
      agent.destroy();
      await balancer?.close();
      await emu?.stop();
      await db?.close();
    });

    it(`${CLEAN_EVENTS} events without faults: no event published twice`, async () => {
      // Production-like lease; fast retry passes, so all three replicas keep polling for due rows.
      const options = { leaseTime: 30, failedRetryInterval: 0.3, minimumRetryInterval: 0.2, maximumRetryInterval: 1, localFailedRetryInterval: 0.3 };
      // The first replica creates the tables; the others start on them.
      await boot(replicas[0]!, options, 0);
      await dropNoticeUniqueIndex(db!.sequelize);
      await Promise.all(replicas.slice(1).map((r) => boot(r, options, 0)));
      await emu!.attachApp({ appId: 'users', appUrl: balancer!.url });

      const accounts = Array.from({ length: CLEAN_EVENTS }, (_, i) => `a${String(i).padStart(4, '0')}`);
      const started = Date.now();
      const { answers, unexpected } = await load(accounts, () => {});
      await eventually(() => settled(db!.sequelize), 'every event to be published and handled', 120_000, 250);
      await within(emu!.idle(), 60_000, 'the sidecar to finish');
      const ms = Date.now() - started;

      const accepted = countBy(emu!.publishes.filter((p) => p.accepted), eventIdOf);
      const delivered = countBy(emu!.deliveries.filter((d) => d.outcome === 'SUCCESS'), (d) => d.eventId);
      const result = await outcome(db!.sequelize);
      const rows = await outboxRows(db!.sequelize);
      figures('replicas (no faults)', {
        events: result.events,
        replicas: REPLICAS,
        kills: 0,
        'answered-201': [...answers.values()].filter((s) => s === 201).length,
        published: accepted.size,
        'double-publishes': repeated(accepted),
        'duplicates-at-transport': repeated(delivered),
        'double-effects': result.doubleEffects,
        lost: result.unhandled.length + rows.filter((r) => !delivered.has(r.eventId)).length,
        ms,
      });

      assert.deepEqual(unexpected, []);
      assert.equal([...answers.values()].filter((s) => s === 201).length, CLEAN_EVENTS, 'every registration answered 201');
      assert.equal(result.events, CLEAN_EVENTS);
      assert.equal(result.undrained, 0, 'the outbox is drained');
      assert.equal(accepted.size, CLEAN_EVENTS, 'every event was published');
      assert.deepEqual([...accepted].filter(([, n]) => n > 1), [], 'no event was published twice');
      assert.ok(rows.every((r) => delivered.get(r.eventId) === 1), 'every event was delivered once');
      assert.equal(result.doubleEffects, 0);
      assert.deepEqual(result.unhandled, []);
      assert.equal(result.notices, CLEAN_EVENTS);
    });

    it(`${FAULT_EVENTS} more events while replicas are killed or frozen past their lease: repeats only at the transport, no double effect`, async () => {
      await stopAll('SIGTERM');
      const publishesBefore = emu!.publishes.length;
      const deliveriesBefore = emu!.deliveries.length;
      // A short lease so that the survivors take over a dead or frozen replica's rows quickly, and
      // publishes widened at both ends so the faults land between commit, publish and mark. The
      // relay claims with leases here: a claimer is caught by its lease on the rows (under row
      // locks nothing in the rows shows who holds them; a relay frozen under row locks is tested
      // in test/processors/locked-relay-idle.test.ts, and the crash test kills replicas relaying
      // under row locks).
      const options = {
        leaseTime: FAULT_LEASE,
        failedRetryInterval: 0.3,
        minimumRetryInterval: 0.2,
        maximumRetryInterval: 1,
        localFailedRetryInterval: 0.3,
        maxRetryTimes: 1000,
        relayUnderRowLocks: false,
      };
      await Promise.all(replicas.map((r) => boot(r, options, 40)));

      let done = 0;
      let loadDone = false;
      let kills = 0;
      let freezes = 0;
      let midClaim = 0;
      let heldAtFault = 0;
      let heldByClaims = 0;
      const heldBy = async (owner: string) => (await outboxRows(db!.sequelize)).filter((r) => (r.state === 0 || r.state === 1) && r.lockOwner === owner);

      const pick = <T>(items: T[]): T | undefined => items[Math.floor(rand() * items.length)];
      /** Watches for a live replica holding rows in state 0 or 1, and returns one at once. */
      const catchHolder = async (timeoutMs: number): Promise<Replica | undefined> => {
        const deadline = Date.now() + timeoutMs;
        while (Date.now() < deadline) {
          const owners = (await db!.sequelize.query('SELECT DISTINCT lock_owner AS owner FROM integration_event_log WHERE state IN (0, 1) AND lock_owner IS NOT NULL', { type: QueryTypes.SELECT })) as Array<{ owner: string }>;
          const holders = replicas.filter((r) => r.up && owners.some((o) => o.owner === r.instanceId));
          if (holders.length > 0) return pick(holders);
          await sleep(2);
        }
        return undefined;
      };

      /** Watches for a live replica holding rows its retry processor claimed (times_sent > 1), and returns it at once. */
      const catchClaimer = async (timeoutMs: number): Promise<Replica | undefined> => {
        const deadline = Date.now() + timeoutMs;
        while (Date.now() < deadline) {
          const owners = (await db!.sequelize.query('SELECT DISTINCT lock_owner AS owner FROM integration_event_log WHERE state = 1 AND times_sent > 1 AND lock_owner IS NOT NULL', { type: QueryTypes.SELECT })) as Array<{ owner: string }>;
          const claimer = replicas.find((r) => r.up && owners.some((o) => o.owner === r.instanceId));
          if (claimer) return claimer;
          await sleep(2);
        }
        return undefined;
      };

      /**
       * Each round SIGKILLs a random replica at a random moment of the load. While it restarts, its
       * rows' lease runs out and a survivor's retry processor claims them: that survivor is caught
       * mid-claim and killed too, or frozen past its lease (the others claim the same rows again)
       * and then woken up to finish what it was doing.
       */
      const faulter = async (): Promise<void> => {
        for (let round = 0; round < MAX_ROUNDS && (round < ROUNDS || midClaim === 0) && !(loadDone && round >= ROUNDS); round++) {
          const threshold = done + Math.floor(FAULT_EVENTS / (ROUNDS + 2));
          await eventually(() => done >= threshold || loadDone, 'the load to go on', 120_000, 5);
          await sleep(loadDone ? 300 + rand() * 700 : rand() * 50);
          // The victim: a live replica holding rows right now (committed, not yet marked), else any.
          const victim = (await catchHolder(2000)) ?? pick(replicas.filter((r) => r.up));
          if (!victim) continue;
          victim.up = false;
          const owner = victim.instanceId;
          await kill(victim.child);
          kills += 1;
          heldAtFault += (await heldBy(owner)).length;
          const restarting = boot(victim, options, 40);
          const claimer = await catchClaimer(FAULT_LEASE * 1000 + 4000);
          if (claimer) {
            claimer.up = false;
            const freeze = round % 2 === 0;
            if (freeze) process.kill(-claimer.child!.proc.pid!, 'SIGSTOP');
            else await kill(claimer.child);
            const held = (await heldBy(claimer.instanceId)).filter((r) => r.timesSent > 1).length;
            if (held > 0) midClaim += 1;
            heldByClaims += held;
            if (freeze) {
              freezes += 1;
              await sleep(FAULT_LEASE * 1000 * 2.5);
              process.kill(-claimer.child!.proc.pid!, 'SIGCONT');
              claimer.up = true;
            } else {
              kills += 1;
              await boot(claimer, options, 40);
            }
          }
          await restarting;
        }
      };

      const accounts = Array.from({ length: FAULT_EVENTS }, (_, i) => `b${String(i).padStart(4, '0')}`);
      const faulting = faulter();
      const { answers, unexpected, lostAnswers } = await load(accounts, () => (done += 1), PACE_MS);
      loadDone = true;
      await faulting;

      await eventually(() => settled(db!.sequelize), 'every event to be published and handled', 150_000, 250);
      await within(emu!.idle(), 150_000, 'the sidecar to finish');

      const result = await outcome(db!.sequelize);
      const users = new Set(await userAccounts(db!.sequelize));
      const rows = await outboxRows(db!.sequelize);
      const accepted = countBy(emu!.publishes.slice(publishesBefore).filter((p) => p.accepted), eventIdOf);
      const delivered = countBy(emu!.deliveries.slice(deliveriesBefore).filter((d) => d.outcome === 'SUCCESS'), (d) => d.eventId);
      const faultRows = rows.filter((r) => r.account.startsWith('b'));
      figures('replicas (kills)', {
        events: faultRows.length,
        replicas: REPLICAS,
        kills,
        freezes,
        'caught-mid-claim': midClaim,
        'held-at-fault': heldAtFault,
        'held-by-retry-claims': heldByClaims,
        'answers-lost': lostAnswers,
        'republished-at-transport': repeated(accepted),
        'duplicates-at-transport': repeated(delivered),
        'double-effects': result.doubleEffects,
        lost: accounts.filter((a) => !users.has(a)).length + result.unhandled.length + faultRows.filter((r) => !delivered.has(r.eventId)).length,
      });

      assert.deepEqual(unexpected, [], 'every request ended in a definitive answer');
      assert.ok(kills >= ROUNDS, `${kills} kills`);
      assert.ok(midClaim >= 1, 'at least one replica was killed or frozen while holding rows it had claimed');
      assert.equal(answers.size, FAULT_EVENTS);
      assert.deepEqual(accounts.filter((a) => !users.has(a)), [], 'every registration is committed');
      assert.equal(result.users, CLEAN_EVENTS + FAULT_EVENTS, 'and nothing else');
      assert.deepEqual(result.orphanUsers, []);
      assert.deepEqual(result.orphanEvents, []);
      assert.equal(result.undrained, 0, 'the outbox is drained');
      assert.deepEqual(faultRows.filter((r) => !delivered.has(r.eventId)).map((r) => r.account), [], 'every event was delivered');
      assert.deepEqual(emu!.dropped.map((d) => d.eventId), [], 'the sidecar gave up on nothing');
      assert.deepEqual(result.unhandled, [], 'every event was handled');
      assert.equal(result.doubleEffects, 0, 'no event was handled twice, whatever the transport repeated');
      assert.equal(result.strayNotices, 0);
      assert.equal(result.notices, CLEAN_EVENTS + FAULT_EVENTS);
    });
  });
}
