/**
 * /emulator/v1/* routes: what a test or a service in ANOTHER process needs to drive an
 * emulator it did not start (the CLI): attach apps, add sidecars, read records, wait for
 * idle, inject faults. They sit behind the same dapr-api-token check as the Dapr API.
 */
import { EmulatorError, messageOf } from './errors';
import { Faults, ReorderOptions } from './faults';
import { GoValue, isGoObject, parseFirstValue, toPlain } from './go-json';
import { answers, HttpAnswer } from './http-answer';
import { Recorder } from './records';
import { Subscription } from './subscriptions';

/** What the admin routes call; implemented by DaprEmulator. */
export interface AdminApi {
  attachApp(opts: { appId: string; appUrl: string; appApiToken?: string }): Promise<Subscription[]>;
  detachApp(appId: string): void;
  addSidecar(opts: { appId: string; appUrl?: string; port?: number }): Promise<{ appId: string; url: string; port: number }>;
  idle(): Promise<void>;
  readonly faults: Faults;
  readonly recorder: Recorder;
  apps(): Array<{ appId: string; appUrl: string; subscriptions: Subscription[] }>;
}

const json = (status: number, value: unknown): HttpAnswer => answers.json(status, JSON.stringify(value));

/** Handles a request under /emulator/v1; `rest` is the path after it. */
export async function handleAdmin(api: AdminApi, method: string, rest: string[], body: Buffer): Promise<HttpAnswer> {
  try {
    const [resource, id] = rest;
    if (resource === 'apps' && rest.length === 1 && method === 'GET') return json(200, api.apps());
    if (resource === 'apps' && rest.length === 1 && method === 'POST') {
      const input = readObject(body);
      const subscriptions = await api.attachApp({
        appId: input.appId as string,
        appUrl: input.appUrl as string,
        ...(input.appApiToken !== undefined ? { appApiToken: input.appApiToken as string } : {}),
      });
      return json(200, { appId: input.appId, subscriptions });
    }
    if (resource === 'apps' && rest.length === 2 && method === 'DELETE' && id) {
      api.detachApp(id);
      return answers.empty();
    }
    if (resource === 'sidecars' && rest.length === 1 && method === 'POST') {
      const input = readObject(body);
      const info = await api.addSidecar({
        appId: input.appId as string,
        ...(input.appUrl !== undefined ? { appUrl: input.appUrl as string } : {}),
        ...(input.port !== undefined ? { port: input.port as number } : {}),
      });
      return json(201, { appId: info.appId, url: info.url, port: info.port });
    }
    if (resource === 'records' && rest.length === 1 && method === 'GET') return json(200, serializeRecords(api.recorder));
    if (resource === 'records' && rest.length === 1 && method === 'DELETE') {
      api.recorder.clear();
      return answers.empty();
    }
    if (resource === 'idle' && rest.length === 1 && method === 'POST') {
      await api.idle();
      return answers.empty();
    }
    if (resource === 'faults' && rest.length === 1 && method === 'POST') {
      applyFaults(api.faults, readObject(body));
      return answers.empty();
    }
    return answers.plainError(404, '404 page not found');
  } catch (err) {
    const code = err instanceof EmulatorError ? err.code : 'INTERNAL';
    const status = code === 'DISCOVERY_FAILED' ? 502 : code === 'INTERNAL' || code === 'NOT_RUNNING' ? 500 : 400;
    return json(status, { error: messageOf(err), code });
  }
}

function readObject(body: Buffer): Record<string, unknown> {
  const parsed = parseFirstValue(body.toString('utf8'));
  const value: GoValue | undefined = parsed.ok ? parsed.value : undefined;
  if (!isGoObject(value)) throw EmulatorError.invalidOption('request body', body.toString('utf8'), 'must be a JSON object');
  return toPlain(value) as Record<string, unknown>;
}

/**
 * { failNextPublishes?: n | { count, error }, failPublishesForMs?: ms, publishError?: text,
 *   slowBrokerMs?: ms, reorderDeliveries?: { holdProbability, ... } | null, closeConnections?: true,
 *   health?: { ready?, outboundReady? }, reset?: true }
 */
function applyFaults(faults: Faults, input: Record<string, unknown>): void {
  if (input.reset === true) faults.reset();
  const error = input.publishError === undefined ? {} : { error: input.publishError as string };
  const next = input.failNextPublishes;
  if (typeof next === 'number') faults.failNextPublishes(next, error);
  else if (next !== null && typeof next === 'object') {
    const spec = next as { count?: unknown; error?: unknown };
    faults.failNextPublishes(spec.count as number, spec.error === undefined ? error : { error: spec.error as string });
  }
  if (input.failPublishesForMs !== undefined) faults.failPublishesFor(input.failPublishesForMs as number, error);
  if (input.slowBrokerMs !== undefined) faults.slowBroker(input.slowBrokerMs as number);
  if (input.reorderDeliveries !== undefined) faults.reorderDeliveries(input.reorderDeliveries as ReorderOptions | null);
  if (input.health !== undefined) faults.setHealth(input.health as { ready?: boolean; outboundReady?: boolean });
  if (input.closeConnections === true) faults.closeConnections();
}

/** Records as JSON: Buffers become `body` (UTF-8 text) plus `bodyBase64`. */
export function serializeRecords(recorder: Recorder): Record<string, unknown[]> {
  const withBody = <T extends { body: Buffer }>(r: T): Omit<T, 'body'> & { body: string; bodyBase64: string } => ({
    ...r,
    body: r.body.toString('utf8'),
    bodyBase64: r.body.toString('base64'),
  });
  return {
    requests: recorder.requests,
    publishes: recorder.publishes.map(withBody),
    deliveries: recorder.deliveries,
    deadLetters: recorder.deadLetters.map(withBody),
    dropped: recorder.dropped.map(withBody),
  };
}
