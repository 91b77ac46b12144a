/**
 * The ports are complete: the engine, the unit-of-work middleware and the subscription router run
 * on a store pair and transactions written here, in memory, with no database at all. (Not a
 * replacement for the real-database tests: it shows only that nothing goes around the ports.)
 */
import assert from 'node:assert/strict';
import { AsyncLocalStorage } from 'node:async_hooks';
import express from 'express';
import request from 'supertest';
import { createSubscriptionRouter, DropError, IntegrationEvent } from '../../src';
import {
  EventState,
  OutboxEngine,
  unitOfWorkMiddleware,
  silentLogger,
  type FailedMark,
  type InboxStore,
  type OutboxMessage,
  type OutboxRecord,
  type OutboxStats,
  type OutboxStore,
  type RepublishFilter,
  type TransactionPort,
} from '../../src/extend';
import { RecordingPublisher } from '../support/recording-publisher';
import { daprEnvelope, deliveryHeaders } from '../router/helpers';

/** A transaction of the in-memory store: its writes apply at commit, in order. */
class MemoryTx {
  readonly writes: Array<() => void> = [];
  readonly afterCommit: Array<() => void> = [];
  state: 'open' | 'committed' | 'rolled-back' = 'open';
}

class MemoryTransactions implements TransactionPort {
  private readonly ambient = new AsyncLocalStorage<MemoryTx | null>();
  commits = 0;

  async begin(): Promise<MemoryTx> {
    return new MemoryTx();
  }
  async commit(tx: unknown): Promise<void> {
    const t = tx as MemoryTx;
    if (t.state !== 'open') throw new Error(`the transaction is ${t.state}`);
    for (const write of t.writes) write();
    t.state = 'committed';
    this.commits += 1;
    for (const fn of t.afterCommit) fn();
  }
  async rollback(tx: unknown): Promise<void> {
    const t = tx as MemoryTx;
    if (t.state === 'open') t.state = 'rolled-back';
  }
  async run<T>(fn: (tx: unknown) => Promise<T>): Promise<T> {
    const tx = await this.begin();
    let result: T;
    try {
      result = await this.bind(tx, () => fn(tx));
    } catch (err) {
      await this.rollback(tx);
      throw err;
    }
    await this.commit(tx);
    return result;
  }
  bind<T>(tx: unknown, fn: () => T): T {
    return this.ambient.run(tx as MemoryTx, fn);
  }
  detached<T>(fn: () => T): T {
    return this.ambient.run(null, fn);
  }
  current(): MemoryTx | undefined {
    return this.ambient.getStore() ?? undefined;
  }
  afterCommit(tx: unknown, fn: () => void): void {
    (tx as MemoryTx).afterCommit.push(fn);
  }
}

/** Writes in a transaction apply at its commit; without one, at once. */
function write(tx: unknown, fn: () => void): void {
  if (tx) (tx as MemoryTx).writes.push(fn);
  else fn();
}

class MemoryOutboxStore implements OutboxStore {
  readonly rows = new Map<string, OutboxRecord>();
  private nextRowId = 1;

  async insert(rows: readonly OutboxMessage[], tx: unknown, owner: string, leaseUntil: number, now: number): Promise<void> {
    write(tx, () => {
      for (const r of rows) {
        this.rows.set(r.id, { ...r, rowId: this.nextRowId++, state: EventState.NotPublished, timesSent: 1, modificationTime: now, nextAttemptTime: leaseUntil, lockOwner: owner, lockedUntil: leaseUntil, rowVersion: 1, lastError: null });
      }
    });
  }
  async claimDue(limit: number, now: number, owner: string, leaseUntil: number): Promise<OutboxRecord[]> {
    const due = [...this.rows.values()].filter((r) => r.nextAttemptTime !== null && r.nextAttemptTime <= now).slice(0, limit);
    return due.map((r) => this.update(r.id, { state: EventState.InProgress, lockOwner: owner, lockedUntil: leaseUntil, nextAttemptTime: leaseUntil, timesSent: r.timesSent + 1, modificationTime: now })!);
  }
  async markPublished(ids: readonly string[], now: number): Promise<void> {
    for (const id of ids) this.update(id, { state: EventState.Published, nextAttemptTime: null, lockOwner: null, lockedUntil: null, modificationTime: now });
  }
  async markFailed(marks: readonly FailedMark[], owner: string, now: number): Promise<void> {
    for (const m of marks) {
      if (this.rows.get(m.id)?.lockOwner !== owner) continue;
      this.update(m.id, { state: EventState.PublishedFailed, nextAttemptTime: m.nextAttemptTime, lockOwner: null, lockedUntil: null, lastError: m.error, modificationTime: now });
    }
  }
  async extendLease(ids: readonly string[], owner: string, leaseUntil: number): Promise<string[]> {
    const held = ids.filter((id) => this.rows.get(id)?.lockOwner === owner && this.rows.get(id)?.state !== EventState.Published);
    for (const id of held) this.update(id, { lockedUntil: leaseUntil, nextAttemptTime: leaseUntil });
    return held;
  }
  async release(ids: readonly string[], owner: string, now: number, options: { undoAttempt?: boolean } = {}): Promise<void> {
    for (const id of ids) {
      const row = this.rows.get(id);
      if (row?.lockOwner !== owner) continue;
      const undo = options.undoAttempt ? { timesSent: Math.max(0, row.timesSent - 1), state: row.lastError === null ? EventState.NotPublished : EventState.PublishedFailed } : {};
      this.update(id, { lockOwner: null, lockedUntil: null, nextAttemptTime: now, ...undo });
    }
  }
  async deletePublished(before: number, limit: number): Promise<number> {
    const old = [...this.rows.values()].filter((r) => r.state === EventState.Published && r.modificationTime < before).slice(0, limit);
    for (const r of old) this.rows.delete(r.id);
    return old.length;
  }
  async republish(filter: RepublishFilter, now: number): Promise<number> {
    const rows = [...this.rows.values()].filter((r) => r.state === EventState.PublishedFailed && r.nextAttemptTime === null && (!filter.ids || filter.ids.includes(r.id)));
    for (const r of rows) this.update(r.id, { state: EventState.NotPublished, timesSent: 0, nextAttemptTime: now });
    return rows.length;
  }
  async find(ids: readonly string[]): Promise<OutboxRecord[]> {
    return ids.map((id) => this.rows.get(id)).filter((r): r is OutboxRecord => r !== undefined);
  }
  async stats(): Promise<OutboxStats> {
    const s: OutboxStats = { notPublished: 0, inProgress: 0, published: 0, publishedFailed: 0, terminalFailed: 0 };
    for (const r of this.rows.values()) {
      if (r.state === EventState.NotPublished) s.notPublished++;
      else if (r.state === EventState.InProgress) s.inProgress++;
      else if (r.state === EventState.Published) s.published++;
      else if (r.nextAttemptTime === null) s.terminalFailed++;
      else s.publishedFailed++;
    }
    return s;
  }
  private update(id: string, fields: Partial<OutboxRecord>): OutboxRecord | undefined {
    const row = this.rows.get(id);
    if (!row) return undefined;
    const next = { ...row, ...fields, rowVersion: row.rowVersion + 1 };
    this.rows.set(id, next);
    return next;
  }
}

/** Handled (consumer, event id) pairs; a pair recorded in a transaction counts once it commits. */
class MemoryInboxStore implements InboxStore {
  readonly handled = new Set<string>();
  async record(consumer: string, eventId: string, tx: unknown): Promise<boolean> {
    const key = `${consumer}\u0000${eventId}`;
    if (this.handled.has(key)) return false;
    write(tx, () => this.handled.add(key));
    return true;
  }
  async deleteOlderThan(): Promise<number> {
    return 0;
  }
}

class OrderPlaced extends IntegrationEvent {
  constructor(public orderId: number) {
    super();
  }
}

class InvoiceCreated extends IntegrationEvent {
  constructor(public orderId: number) {
    super();
  }
}

describe('the ports are complete: engine, middleware and router on an in-memory store pair', () => {
  let store: MemoryOutboxStore;
  let inbox: MemoryInboxStore;
  let transactions: MemoryTransactions;
  let publisher: RecordingPublisher;
  let engine: OutboxEngine;
  let orders: number[];
  let invoices: number[];

  beforeEach(() => {
    store = new MemoryOutboxStore();
    inbox = new MemoryInboxStore();
    transactions = new MemoryTransactions();
    publisher = new RecordingPublisher();
    engine = new OutboxEngine({ store, inbox, publisher, transactions }, { logger: silentLogger, localRetryTimes: 0 });
    orders = [];
    invoices = [];
  });
  afterEach(() => engine.close());

  function app(): express.Express {
    const a = express();
    const router = createSubscriptionRouter({ outbox: engine, appApiToken: null, logger: silentLogger });
    router.topic('pubsub', 'OrderPlaced', async (event: OrderPlaced) => {
      if (event.orderId < 0) throw new DropError('no such order');
      if (event.orderId === 0) throw new Error('try again');
      // The delivery's own transaction: the invoice event commits with the inbox record.
      write(transactions.current(), () => invoices.push(event.orderId));
      await engine.bus.publish(new InvoiceCreated(event.orderId));
    });
    a.use(router);
    a.use(express.json());
    a.use(unitOfWorkMiddleware(engine));
    a.post('/orders', async (req, res) => {
      write(transactions.current(), () => orders.push(req.body.id));
      await engine.bus.publish(new OrderPlaced(req.body.id));
      if (req.body.fail) throw new Error('refused');
      res.status(201).json({ ok: true });
    });
    return a;
  }

  const deliver = (a: express.Express, m: OutboxMessage) =>
    request(a).post('/dapr-outbox/pubsub/OrderPlaced').set(deliveryHeaders()).send(daprEnvelope({ id: m.id, topic: m.topic, data: JSON.parse(m.content) }));

  it('a request commits its write and its event together; the event is published and marked', async () => {
    const a = app();
    assert.equal((await request(a).post('/orders').send({ id: 7 })).status, 201);
    await engine.drain();
    assert.deepEqual(orders, [7]);
    assert.deepEqual(publisher.messages.map((m) => m.topic), ['OrderPlaced']);
    assert.equal((await engine.stats()).published, 1);
  });

  it('a request that throws keeps neither its write nor its event', async () => {
    const a = app();
    assert.equal((await request(a).post('/orders').send({ id: 8, fail: true })).status, 500);
    await engine.drain();
    assert.deepEqual(orders, []);
    assert.equal(store.rows.size, 0);
    assert.equal(publisher.messages.length, 0);
  });

  it('a delivery runs its handler once per event id, and its event commits with the inbox record', async () => {
    const a = app();
    await request(a).post('/orders').send({ id: 9 });
    await engine.drain();
    const [message] = publisher.messages;
    assert.deepEqual((await deliver(a, message!)).body, { status: 'SUCCESS' });
    assert.deepEqual((await deliver(a, message!)).body, { status: 'SUCCESS' });
    await engine.drain();
    assert.deepEqual(invoices, [9], 'the redelivery did not run the handler');
    assert.deepEqual(publisher.messages.map((m) => m.topic), ['OrderPlaced', 'InvoiceCreated']);
  });

  it('a failing handler answers RETRY and leaves no inbox record; a poison event answers DROP', async () => {
    const a = app();
    const retry = await deliver(a, { id: 'e-0', topic: 'OrderPlaced', pubsubName: 'pubsub', eventTypeName: 'OrderPlaced', content: '{"orderId":0}', creationTime: 0 });
    assert.deepEqual(retry.body, { status: 'RETRY' });
    assert.equal(inbox.handled.size, 0);
    const drop = await deliver(a, { id: 'e-1', topic: 'OrderPlaced', pubsubName: 'pubsub', eventTypeName: 'OrderPlaced', content: '{"orderId":-1}', creationTime: 0 });
    assert.deepEqual(drop.body, { status: 'DROP' });
    assert.equal(transactions.commits, 0);
  });

  it('the database retry publishes what the post-commit dispatch could not', async () => {
    const a = app();
    publisher.down = true;
    await request(a).post('/orders').send({ id: 10 });
    await engine.drain();
    assert.equal((await engine.stats()).publishedFailed, 1);
    publisher.down = false;
    const [row] = [...store.rows.values()];
    store.rows.set(row!.id, { ...row!, nextAttemptTime: 0 });
    assert.equal(await engine.runPass('retry-by-database'), 1);
    assert.equal((await engine.stats()).published, 1);
    assert.deepEqual(publisher.messages.map((m) => m.topic), ['OrderPlaced']);
  });
});
