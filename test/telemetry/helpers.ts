import express from 'express';
import { metrics } from '@opentelemetry/api';
import { MeterProvider, type MetricReader } from '@opentelemetry/sdk-metrics';
import type { Model, ModelStatic } from 'sequelize';
import { createOutbox, createSubscriptionRouter, DaprPublisher, IntegrationEvent, type Outbox, type OutboxOptions } from '../../src';
import { silentLogger } from '../../src/core/logger';
import { DaprEmulator } from '../../src/testing';
import { createTestDb, type TestDb } from '../support/db';
import { defineEffect, listen } from '../router/helpers';

export class OrderPlaced extends IntegrationEvent {
  constructor(
    public orderId: string,
    /** What the subscriber's handler does with it. */
    public then: 'ship' | 'throw' | 'record' = 'record',
  ) {
    super();
  }
}

export class OrderShipped extends IntegrationEvent {
  constructor(public orderId: string) {
    super();
  }
}

export interface OrdersService {
  outbox: Outbox;
  emu: DaprEmulator;
  url: string;
  Effect: ModelStatic<Model>;
  close(): Promise<void>;
}

/**
 * One app that publishes and subscribes through the emulator: POST /orders publishes
 * OrderPlaced; its handler records an effect, throws, or publishes OrderShipped (whose handler
 * records one too).
 */
export async function startOrdersService(db: TestDb, options: Partial<OutboxOptions> = {}): Promise<OrdersService> {
  const emu = await DaprEmulator.start({ appId: 'orders' });
  const outbox = createOutbox({ sequelize: db.sequelize, publisher: new DaprPublisher({ daprPort: emu.port }), logger: silentLogger, ...options });
  await outbox.migrate();
  const Effect = defineEffect(db.sequelize);
  await Effect.sync();
  const router = createSubscriptionRouter({ outbox, appApiToken: null, logger: silentLogger });
  router.topic('pubsub', 'OrderPlaced', async (event: OrderPlaced, ctx) => {
    if (event.then === 'throw') throw new TypeError('the handler failed');
    await Effect.create({ eventId: ctx.id, note: event.orderId });
    if (event.then === 'ship') await outbox.bus.publish(new OrderShipped(event.orderId));
  });
  router.topic('pubsub', 'OrderShipped', async (event: OrderShipped, ctx) => {
    await Effect.create({ eventId: ctx.id, note: `shipped ${event.orderId}` });
  });
  const app = express();
  app.use(router);
  app.use(express.json());
  app.use(outbox.middleware());
  app.post('/orders', async (req, res) => {
    const event = new OrderPlaced(String(req.body.orderId), req.body.then);
    await outbox.bus.publish(event);
    res.status(201).json({ eventId: event.id });
  });
  app.get('/health', outbox.healthHandler());
  const server = await listen(app);
  await emu.attachApp({ appId: 'orders', appUrl: server.url });
  return {
    outbox,
    emu,
    url: server.url,
    Effect,
    async close() {
      await outbox.close();
      await emu.stop();
      await server.close();
    },
  };
}

/** Posts an order; resolves with the published event's id. */
export async function postOrder(service: OrdersService, orderId: string, then?: OrderPlaced['then'], headers: Record<string, string> = {}): Promise<string> {
  const res = await fetch(`${service.url}/orders`, { method: 'POST', headers: { 'content-type': 'application/json', ...headers }, body: JSON.stringify({ orderId, then }) });
  if (res.status !== 201) throw new Error(`POST /orders answered ${res.status}: ${await res.text()}`);
  return ((await res.json()) as { eventId: string }).eventId;
}

/** Waits until the outbox has published what it holds and the emulator has delivered it. */
export async function settle(service: OrdersService): Promise<void> {
  for (let i = 0; i < 3; i++) {
    await service.outbox.drain();
    await service.emu.idle();
  }
}

/**
 * Mocha hooks of a suite: a meter provider reading through `reader`, registered globally first,
 * then an orders service on a fresh SQLite database (its gauges register with the outbox).
 */
export function meteredOrdersService(reader: () => MetricReader): { readonly service: OrdersService } {
  let db: TestDb;
  let service: OrdersService;
  let provider: MeterProvider;
  before(async () => {
    provider = new MeterProvider({ readers: [reader()] });
    if (!metrics.setGlobalMeterProvider(provider)) throw new Error('a global meter provider is registered already');
    db = await createTestDb('sqlite');
    service = await startOrdersService(db);
  });
  after(async () => {
    await service.close();
    await db.close();
    metrics.disable();
    await provider.shutdown();
  });
  return {
    get service() {
      return service;
    },
  };
}
