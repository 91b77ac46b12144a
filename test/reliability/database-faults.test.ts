/**
 * Database faults: the service's MariaDB or PostgreSQL connections are killed from another
 * session (`KILL <id>`, `pg_terminate_backend(pid)`) while requests, publishes, marks and
 * deliveries are running. The service must recover on its own (no restart), lose nothing, and a
 * request caught in the fault must get an error and leave nothing behind: no user without its
 * event, no event without its user.
 */
import assert from 'node:assert/strict';
import { Agent, type Server } from 'node:http';
import { QueryTypes, Sequelize } from 'sequelize';
import { DaprPublisher, IntegrationEvent, UnitOfWorkError } from '../../src';
import { EventState, OutboxEngine, runMigrations, SequelizeOutboxStore, silentLogger } from '../../src/extend';
import { SequelizeTransactions } from '../../src/adapters/sequelize/transactions';
import { DaprEmulator } from '../../src/testing';
import { createUsersService, type UsersService } from '../../example/users/app';
import { createTestDb, serverDialects, serverUrl, testDialects, type TestDb } from '../support/db';
import { RecordingPublisher } from '../support/recording-publisher';
import {
  closeServer,
  countBy,
  dropNoticeUniqueIndex,
  eventually,
  figures,
  listen,
  notices,
  outboxRows,
  outcome,
  postJson,
  random,
  seedFor,
  settled,
  sleep,
  userAccounts,
  within,
} from './helpers';

const CLIENTS = 4;
const REQUESTS = 300;
/** Kill rounds happen at evenly spread points of the load; more follow (bounded) until enough requests were caught. */
const ROUNDS = 6;
const MAX_ROUNDS = 20;
const WANT_CAUGHT = 3;
const AFTER = 20;

for (const kind of serverDialects()) {
  describe(`reliability: database faults (${kind}, ${kind === 'postgres' ? 'pg_terminate_backend' : 'KILL'} of the service connections)`, function () {
    this.timeout(180_000);
    let db: TestDb | undefined;
    let admin: Sequelize | undefined;
    let emu: DaprEmulator | undefined;
    let svc: UsersService | undefined;
    let server: Server | undefined;
    const agent = new Agent({ keepAlive: true, maxSockets: CLIENTS });

    // Sequelize reports a failed COMMIT or ROLLBACK with console.warn; counted here instead of printed.
    const warn = console.warn;
    const sequelizeWarnings = { commit: 0, rollback: 0 };
    before(() => {
      console.warn = (...args: unknown[]) => {
        const line = String(args[0]);
        if (line.startsWith('Committing transaction')) sequelizeWarnings.commit += 1;
        else if (line.startsWith('Rolling back transaction')) sequelizeWarnings.rollback += 1;
        else warn(...args);
      };
    });

    after(async () => {
      console.warn = warn;
      await svc?.close();
      await closeServer(server);
      agent.destroy();
      await emu?.stop();
      await admin?.close();
      await db?.close();
    });

    it('recovers without a restart, loses nothing, and a request caught in the fault fails and writes nothing', async () => {
      const seed = seedFor('database-faults');
      const rand = random(seed);
      db = await createTestDb(kind);
      const dbName = new URL(db.url).pathname.slice(1);
      // The killer's own session is on another database, and excludes itself by id as well.
      admin = new Sequelize(serverUrl(kind), { logging: false, pool: { max: 1 } });
      emu = await DaprEmulator.start({ appId: 'users', resiliency: { retries: 20, intervalMs: 100 }, redelivery: { retries: 20, intervalMs: 500 }, appTimeoutMs: 20_000 });
      const errors: string[] = [];
      svc = await createUsersService({
        sequelize: db.sequelize,
        publisher: new DaprPublisher({ daprPort: emu.port }),
        log: () => {},
        logger: silentLogger,
        outbox: { leaseTime: 2, failedRetryInterval: 0.3, minimumRetryInterval: 0.2, maximumRetryInterval: 1, localFailedRetryInterval: 0.3, maxRetryTimes: 1000 },
      });
      svc.outbox.on('error', (e: Error) => errors.push(e.message));
      await dropNoticeUniqueIndex(db.sequelize);
      const listening = await listen(svc.app);
      server = listening.server;
      await emu.attachApp({ appId: 'users', appUrl: listening.url });
      svc.outbox.start();

      const answers = new Map<string, number | string>();
      const bodies = new Map<string, string>();
      let cursor = 0;
      let done = 0;
      const client = async (): Promise<void> => {
        for (let i = cursor++; i < REQUESTS; i = cursor++) {
          const account = `k${String(i).padStart(4, '0')}`;
          try {
            const res = await postJson(agent, `${listening.url}/register`, { account, mobile: '13900000000' }, 60_000);
            answers.set(account, res.status);
            if (res.status >= 500) bodies.set(account, res.text.slice(0, 300));
          } catch (err) {
            answers.set(account, `no answer: ${(err as Error).message}`);
          }
          done += 1;
        }
      };
      const caught = () => [...answers.values()].filter((s) => typeof s === 'number' && s >= 500).length;

      let rounds = 0;
      let killed = 0;
      const killRound = async (): Promise<void> => {
        const sessions =
          kind === 'postgres'
            ? 'SELECT pid AS id FROM pg_stat_activity WHERE datname = ? AND pid <> pg_backend_pid()'
            : 'SELECT ID AS id FROM information_schema.PROCESSLIST WHERE DB = ? AND ID <> CONNECTION_ID()';
        const ids = (await admin!.query(sessions, { replacements: [dbName], type: QueryTypes.SELECT })) as Array<{ id: number }>;
        for (const { id } of ids) {
          try {
            await admin!.query(kind === 'postgres' ? `SELECT pg_terminate_backend(${Number(id)})` : `KILL ${Number(id)}`);
            killed += 1;
          } catch {
            // Gone already (closed by its pool between the SELECT and the KILL).
          }
        }
        rounds += 1;
      };
      const killer = async (): Promise<void> => {
        for (let r = 0; r < ROUNDS; r++) {
          const at = Math.floor(((r + 1) * REQUESTS) / (ROUNDS + 1));
          await eventually(() => done >= at, 'the load to go on', 60_000, 5);
          await sleep(rand() * 30);
          await killRound();
        }
        while (caught() < WANT_CAUGHT && rounds < MAX_ROUNDS && done < REQUESTS) {
          await sleep(20 + rand() * 80);
          await killRound();
        }
      };

      await Promise.all([killer(), ...Array.from({ length: CLIENTS }, client)]);

      // No restart: the same process, the same pool, goes on serving.
      const after: number[] = [];
      for (let i = 0; i < AFTER; i++) after.push((await postJson(agent, `${listening.url}/register`, { account: `after${i}`, mobile: '13900000000' })).status);

      await eventually(() => settled(db!.sequelize), 'every committed event to be published and handled', 90_000, 200);
      await within(emu.idle(), 60_000, 'the sidecar to finish');

      const result = await outcome(db.sequelize);
      const users = new Set(await userAccounts(db.sequelize));
      const rows = await outboxRows(db.sequelize);
      const eventAccounts = new Set(rows.map((r) => r.account));
      const noticeAccounts = new Set((await notices(db.sequelize)).map((n) => n.account));
      const delivered = countBy(emu.deliveries.filter((d) => d.outcome === 'SUCCESS'), (d) => d.eventId);
      const ok = [...answers].filter(([, s]) => s === 201).map(([a]) => a);
      const failed = [...answers].filter(([, s]) => typeof s === 'number' && s >= 500).map(([a]) => a);
      const other = [...answers].filter(([, s]) => s !== 201 && !(typeof s === 'number' && s >= 500));
      const failedThatWrote = failed.filter((a) => users.has(a) || eventAccounts.has(a) || noticeAccounts.has(a));
      const lost = ok.filter((a) => !users.has(a) || !eventAccounts.has(a) || !noticeAccounts.has(a));
      figures('database-faults', {
        events: result.events,
        requests: REQUESTS,
        'kill-rounds': rounds,
        'connections-killed': killed,
        'answered-201': ok.length,
        'caught-5xx': failed.length,
        'commit-errors': sequelizeWarnings.commit,
        'other-answers': other.length,
        'failed-that-wrote': failedThatWrote.length,
        'after-faults-201': after.filter((s) => s === 201).length,
        delivered: rows.filter((r) => delivered.has(r.eventId)).length,
        'duplicates-at-transport': [...delivered.values()].filter((n) => n > 1).length,
        'double-effects': result.doubleEffects,
        'processor-errors': errors.length,
        lost: lost.length,
      });

      assert.ok(killed > 0, 'the rounds killed service connections');
      assert.ok(failed.length > 0, 'some requests were caught in the fault (the test exercised it)');
      assert.deepEqual(other, [], 'every request was answered 201 or 5xx');
      assert.deepEqual(failedThatWrote.map((a) => `${a}: ${bodies.get(a)}`), [], 'a request caught in the fault wrote nothing');
      assert.deepEqual(lost, [], 'every 201 has its user, its event and its effect');
      assert.deepEqual(after, Array(AFTER).fill(201), 'the service serves again without a restart');
      assert.deepEqual(result.orphanUsers, [], 'no user without its event');
      assert.deepEqual(result.orphanEvents, [], 'no event without its user');
      assert.equal(result.users, ok.length + AFTER, 'exactly the acknowledged registrations are committed');
      assert.equal(result.undrained, 0, 'the outbox is drained');
      assert.deepEqual(result.unhandled, [], 'every event was handled');
      assert.equal(rows.filter((r) => !delivered.has(r.eventId)).length, 0, 'every event was delivered');
      assert.equal(result.doubleEffects, 0, 'no event was handled twice');
      assert.equal(result.notices, result.events);
    });
  });
}

/** The transaction port with a COMMIT whose answer is lost, as when the connection dies during it. */
class LostCommitTransactions extends SequelizeTransactions {
  /** 'after': the COMMIT took effect, then the answer was lost. 'before': it never took effect. */
  lose: 'after' | 'before' | undefined;
  override async commit(tx: unknown): Promise<void> {
    const lose = this.lose;
    if (lose === 'before') await super.rollback(tx);
    else await super.commit(tx);
    if (lose) throw new Error('Connection lost: The server closed the connection.');
  }
}

class Probe extends IntegrationEvent {
  constructor(public n: number) {
    super();
  }
}

for (const kind of testDialects()) {
  describe(`reliability: a COMMIT whose answer is lost (${kind})`, () => {
    let db: TestDb;
    let engine: OutboxEngine;
    let store: SequelizeOutboxStore;
    let publisher: RecordingPublisher;
    let transactions: LostCommitTransactions;

    beforeEach(async () => {
      db = await createTestDb(kind);
      await runMigrations(db.sequelize);
      publisher = new RecordingPublisher();
      transactions = new LostCommitTransactions(db.sequelize);
      store = new SequelizeOutboxStore(db.sequelize, 'integration_event_log');
      engine = new OutboxEngine({ store, publisher, transactions }, { logger: silentLogger });
    });
    afterEach(async () => {
      await engine.close();
      await db.close();
    });

    it('that did commit is reported committed, and its event is published at once', async () => {
      transactions.lose = 'after';
      const event = new Probe(1);
      await engine.runInUnitOfWork(() => engine.bus.publish(event));
      await engine.drain();
      assert.deepEqual(publisher.ids(), [event.id]);
      const [row] = await store.find([event.id]);
      assert.equal(row?.state, EventState.Published);
    });

    it('that did not commit is reported as a failed commit, and nothing is written or published', async () => {
      transactions.lose = 'before';
      const event = new Probe(2);
      await assert.rejects(
        engine.runInUnitOfWork(() => engine.bus.publish(event)),
        (err: unknown) => err instanceof UnitOfWorkError && err.phase === 'commit',
      );
      await engine.drain();
      assert.deepEqual(publisher.ids(), []);
      assert.deepEqual(await store.find([event.id]), []);
    });
  });
}
