import { randomUUID } from 'node:crypto';
import type { AddressInfo } from 'node:net';
import type { Server } from 'node:http';
import express, { type Express } from 'express';
import { DataTypes, type Model, type ModelStatic, type Sequelize } from 'sequelize';
import type { Logger } from '../../src';

export interface LogEntry {
  level: 'debug' | 'info' | 'warn' | 'error';
  message: string;
  context?: Record<string, unknown>;
}

/** A logger that keeps what it is told. */
export function recordingLogger(): Logger & { entries: LogEntry[]; warnings(): string[] } {
  const entries: LogEntry[] = [];
  const at = (level: LogEntry['level']) => (message: string, context?: Record<string, unknown>) => void entries.push({ level, message, context });
  return {
    entries,
    debug: at('debug'),
    info: at('info'),
    warn: at('warn'),
    error: at('error'),
    warnings: () => entries.filter((e) => e.level === 'warn').map((e) => e.message),
  };
}

export const TRACEPARENT = '00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01';

/**
 * The envelope daprd stores and delivers for a plain JSON publish, byte for byte: Go marshals a
 * map with its keys sorted, no spaces (contract section 2).
 */
export function daprEnvelope(fields: { id?: string; topic?: string; pubsubname?: string; data?: unknown; [k: string]: unknown } = {}): string {
  const ce: Record<string, unknown> = {
    data: { a: 1 },
    datacontenttype: 'application/json',
    id: randomUUID(),
    pubsubname: 'pubsub',
    source: 'checkout',
    specversion: '1.0',
    time: '2024-03-27T23:47:53Z',
    topic: 'orders',
    traceid: TRACEPARENT,
    traceparent: TRACEPARENT,
    tracestate: '',
    type: 'com.dapr.event.sent',
    ...fields,
  };
  for (const k of Object.keys(ce)) if (ce[k] === undefined) delete ce[k];
  return goJson(ce);
}

/** JSON with object keys sorted, as Go's encoding/json writes maps. */
export function goJson(value: unknown): string {
  if (Array.isArray(value)) return `[${value.map(goJson).join(',')}]`;
  if (value !== null && typeof value === 'object') {
    const o = value as Record<string, unknown>;
    return `{${Object.keys(o)
      .sort()
      .map((k) => `${JSON.stringify(k)}:${goJson(o[k])}`)
      .join(',')}}`;
  }
  return JSON.stringify(value);
}

/** The headers daprd sends with a single delivery. */
export function deliveryHeaders(extra: Record<string, string> = {}): Record<string, string> {
  return { 'content-type': 'application/cloudevents+json', traceparent: TRACEPARENT, pubsubname: 'pubsub', ...extra };
}

/** daprd's bulk delivery body: entries in struct order, the envelope's keys sorted. */
export function bulkBody(entries: Array<{ entryId: string; event: unknown; contentType?: string }>, topic = 'orders'): string {
  const items = entries.map(
    (e) => `{"entryId":${JSON.stringify(e.entryId)},"event":${typeof e.event === 'string' ? JSON.stringify(e.event) : goJson(e.event)},"metadata":{},"contentType":${JSON.stringify(e.contentType ?? 'application/cloudevents+json')}}`,
  );
  return `{"entries":[${items.join(',')}],"id":${JSON.stringify(randomUUID())},"metadata":{"pubsubName":"pubsub"},"pubsubname":"pubsub","topic":${JSON.stringify(topic)},"type":"com.dapr.event.sent.bulk"}`;
}

/** A CloudEvent object as an entry's `event`. */
export function cloudEvent(fields: Record<string, unknown> = {}): Record<string, unknown> {
  return JSON.parse(daprEnvelope(fields as never)) as Record<string, unknown>;
}

/** A table the handlers write to: one row per handler effect (no unique key, so doubles show). */
export function defineEffect(sequelize: Sequelize): ModelStatic<Model> {
  return sequelize.define('Effect', { eventId: { type: DataTypes.STRING(191), field: 'event_id' }, note: DataTypes.STRING }, { tableName: 'router_effects', timestamps: false });
}

export async function listen(app: Express): Promise<{ server: Server; url: string; close(): Promise<void> }> {
  const server = app.listen(0, '127.0.0.1');
  await new Promise<void>((resolve, reject) => {
    server.once('listening', resolve);
    server.once('error', reject);
  });
  const { port } = server.address() as AddressInfo;
  return {
    server,
    url: `http://127.0.0.1:${port}`,
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}

export function appWith(...middleware: express.RequestHandler[]): Express {
  const app = express();
  for (const m of middleware) app.use(m);
  return app;
}
