/**
 * GET /v1.0/metadata. The JS SDK's DaprClient polls this route (every 500 ms, up to ~30 s)
 * until it answers 2xx with a non-empty body, so the emulator always answers with the sidecar's
 * id, runtime version, pubsub components and its app's subscriptions.
 */
import type { EmulatorState } from './emulator-state';
import { marshalGo, Marshalable } from './go-json';

export function metadataBody(core: EmulatorState, appId: string): string {
  const app = core.broker.app(appId);
  const subscriptions: Marshalable[] = (app?.subscriptions ?? []).map((sub) => ({
    pubsubname: sub.pubsubName,
    topic: sub.topic,
    metadata: sub.metadata,
    rules: { rules: sub.rules.map((r) => ({ match: r.match, path: r.path })) },
    ...(sub.deadLetterTopic ? { deadLetterTopic: sub.deadLetterTopic } : {}),
    type: 'PROGRAMMATIC',
  }));
  const body: Record<string, Marshalable> = {
    id: appId,
    runtimeVersion: core.options.runtimeVersion,
    enabledFeatures: [],
    components: core.options.pubsubs.map((name) => ({
      name,
      type: 'pubsub.in-memory',
      version: 'v1',
      capabilities: ['SUBSCRIBE_WILDCARDS'],
    })),
    subscriptions,
    extended: { emulator: 'dapr-outbox/testing' },
  };
  if (app) {
    const url = new URL(app.appUrl);
    body.appConnectionProperties = {
      port: Number(url.port || 80),
      protocol: 'http',
      channelAddress: url.hostname,
    };
  }
  return marshalGo(body);
}
