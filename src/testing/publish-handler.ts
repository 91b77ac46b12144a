/**
 * POST/PUT /v1.0/publish/{pubsubname}/{topic...} (dapr pkg/api/http onPublish), in daprd's
 * order: pubsub and topic checks, metadata, envelope, scopes, then the broker.
 */
import { randomUUID } from 'node:crypto';
import type { BrokerMessage, EmulatorState } from './emulator-state';
import { ApiError, pubsubErrors } from './dapr-errors';
import { buildEnvelope } from './envelope';
import { marshalGo } from './go-json';
import { answers, HttpAnswer } from './http-answer';
import { isTopicAllowed } from './options';
import { PublishRecord } from './records';
import { Metadata, readRawPayload } from './request-metadata';

/** The sidecar a request came in through. */
export interface SidecarIdentity {
  appId: string;
}

export interface PublishRequest {
  pubsubName: string;
  topic: string;
  body: Buffer;
  /** The Content-Type header, '' when absent. */
  contentType: string;
  metadata: Metadata;
  traceParent: string;
  traceState: string;
}

/** The checks daprd runs before anything else, in its order; undefined when the request may go on. */
export function checkPubsubAndTopic(core: EmulatorState, pubsubName: string, topic: string, metadata: Metadata): ApiError | undefined {
  if (pubsubName === '') return pubsubErrors.nameEmpty(metadata);
  if (!core.options.pubsubs.includes(pubsubName)) return pubsubErrors.notFound(pubsubName, metadata);
  if (topic === '') return pubsubErrors.topicEmpty(pubsubName, metadata);
  return undefined;
}

export type BrokerWrite = { ok: true; messageId: string } | { ok: false; error: string };

/**
 * The component's Publish: the slowBroker wait, then an injected failure if one is due, then
 * the message is stored and its deliveries start.
 */
export async function writeToBroker(core: EmulatorState, msg: Omit<BrokerMessage, 'messageId'>): Promise<BrokerWrite> {
  if (!(await core.faults.brokerDelay())) return { ok: false, error: 'the emulator is stopping' };
  const failure = core.faults.takePublishFailure();
  if (failure !== undefined) return { ok: false, error: failure };
  const messageId = randomUUID();
  core.broker.publish({ ...msg, messageId });
  return { ok: true, messageId };
}

export async function handlePublish(core: EmulatorState, sidecar: SidecarIdentity, req: PublishRequest): Promise<HttpAnswer> {
  const record = (status: number, fields: Partial<PublishRecord> = {}): void => {
    core.recorder.publishes.push({
      appId: sidecar.appId,
      pubsubName: req.pubsubName,
      topic: req.topic,
      status,
      accepted: false,
      envelope: undefined,
      body: req.body,
      contentType: req.contentType === '' ? undefined : req.contentType,
      metadata: req.metadata,
      at: core.now(),
      bulk: false,
      ...fields,
    });
  };
  const fail = (err: ApiError): HttpAnswer => {
    record(err.status, { error: err.message });
    return answers.apiError(err);
  };

  const invalid = checkPubsubAndTopic(core, req.pubsubName, req.topic, req.metadata);
  if (invalid) return fail(invalid);
  const raw = readRawPayload(req.metadata);
  if (!raw.ok) return fail(pubsubErrors.metadataDeserialize(req.pubsubName, req.metadata, raw.error));

  let data = req.body;
  let envelope: Record<string, unknown> | undefined;
  let eventId: string | undefined;
  if (!raw.raw) {
    const built = buildEnvelope({
      source: sidecar.appId,
      topic: req.topic,
      pubsubName: req.pubsubName,
      contentType: req.contentType,
      body: req.body,
      traceParent: req.traceParent,
      traceState: req.traceState,
      metadata: req.metadata,
      now: core.now(),
    });
    if (!built.ok) return fail(pubsubErrors.cloudEventCreation(req.pubsubName, sidecar.appId, built.error));
    data = Buffer.from(marshalGo(built.envelope), 'utf8');
    envelope = JSON.parse(data.toString('utf8')) as Record<string, unknown>;
    eventId = typeof envelope.id === 'string' ? envelope.id : undefined;
  }

  if (!isTopicAllowed(core.options.scopes, 'publish', sidecar.appId, req.topic)) {
    return fail(pubsubErrors.forbidden(req.pubsubName, req.topic, sidecar.appId));
  }
  const written = await writeToBroker(core, {
    pubsubName: req.pubsubName,
    topic: req.topic,
    data,
    contentType: req.contentType === '' ? undefined : req.contentType,
    metadata: req.metadata,
    publisherAppId: sidecar.appId,
    eventId,
  });
  if (!written.ok) {
    const err = pubsubErrors.publishMessage(req.pubsubName, req.topic, written.error);
    record(err.status, { envelope, body: data, error: err.message });
    return answers.apiError(err);
  }
  record(204, { accepted: true, envelope, body: data, messageId: written.messageId });
  return answers.empty();
}
