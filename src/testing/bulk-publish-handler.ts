/**
 * POST/PUT /v1.0-alpha1/publish/bulk/{pubsub}/{topic...} (also under /v1.0), as daprd's
 * onBulkPublish: validate the request, wrap each entry exactly as a single publish, publish
 * every entry, answer 204, or 500 with the failed entries (the others were published).
 */
import type { EmulatorState } from './emulator-state';
import { ApiError, pubsubErrors } from './dapr-errors';
import { buildEnvelope } from './envelope';
import { goQuote, marshalGo } from './go-json';
import { answers, HttpAnswer } from './http-answer';
import { decodeBulkEntries, eventToBytes } from './bulk-publish-entries';
import { isTopicAllowed } from './options';
import { checkPubsubAndTopic, PublishRequest, SidecarIdentity, writeToBroker } from './publish-handler';
import { PublishRecord } from './records';
import { Metadata, readRawPayload } from './request-metadata';

interface PreparedEntry {
  entryId: string;
  data: Buffer;
  contentType: string;
  metadata: Metadata;
  envelope: Record<string, unknown> | undefined;
  eventId: string | undefined;
}

export async function handleBulkPublish(
  core: EmulatorState,
  sidecar: SidecarIdentity,
  req: Omit<PublishRequest, 'contentType'>,
): Promise<HttpAnswer> {
  const { pubsubName, topic, metadata } = req;
  const base = (status: number): PublishRecord => ({
    appId: sidecar.appId,
    pubsubName,
    topic,
    status,
    accepted: false,
    envelope: undefined,
    body: req.body,
    contentType: 'application/json',
    metadata,
    at: core.now(),
    bulk: true,
  });
  const fail = (err: ApiError): HttpAnswer => {
    core.recorder.publishes.push({ ...base(err.status), error: err.message });
    return answers.apiError(err);
  };

  const invalid = checkPubsubAndTopic(core, pubsubName, topic, metadata);
  if (invalid) return fail(invalid);
  const raw = readRawPayload(metadata);
  if (!raw.ok) return fail(pubsubErrors.metadataDeserialize(pubsubName, metadata, raw.error));
  const decoded = decodeBulkEntries(req.body);
  if (!decoded.ok) return fail(pubsubErrors.unmarshalEvents(pubsubName, topic, sidecar.appId, decoded.error));

  const prepared: Array<PreparedEntry & { ownMetadata: Metadata | undefined }> = [];
  const seen = new Set<string>();
  for (const entry of decoded.entries) {
    const bytes = eventToBytes(entry.event, entry.contentType);
    if (!bytes.ok) return fail(pubsubErrors.marshalEnvelope(pubsubName, topic, sidecar.appId, bytes.error));
    if (entry.entryId === '' || seen.has(entry.entryId)) {
      return fail(pubsubErrors.marshalEvents(pubsubName, topic, sidecar.appId, 'entryId is duplicated or not present for entry'));
    }
    seen.add(entry.entryId);
    // Entry metadata overrides request metadata; an entry without metadata gets none at all.
    const ownMetadata = entry.metadata === undefined ? undefined : { ...metadata, ...entry.metadata };
    prepared.push({
      entryId: entry.entryId,
      data: bytes.bytes,
      contentType: entry.contentType,
      metadata: ownMetadata ?? {},
      ownMetadata,
      envelope: undefined,
      eventId: undefined,
    });
  }

  if (!raw.raw) {
    for (const entry of prepared) {
      const built = buildEnvelope({
        source: sidecar.appId,
        topic,
        pubsubName,
        contentType: entry.contentType,
        body: entry.data,
        traceParent: req.traceParent,
        traceState: req.traceState,
        metadata: entry.ownMetadata ?? {},
        now: core.now(),
      });
      if (!built.ok) return fail(pubsubErrors.cloudEventCreation(pubsubName, sidecar.appId, built.error));
      entry.data = Buffer.from(marshalGo(built.envelope), 'utf8');
      entry.envelope = JSON.parse(entry.data.toString('utf8')) as Record<string, unknown>;
      entry.eventId = typeof entry.envelope.id === 'string' ? entry.envelope.id : undefined;
    }
  }

  if (!isTopicAllowed(core.options.scopes, 'publish', sidecar.appId, topic)) {
    return fail(pubsubErrors.forbidden(pubsubName, topic, sidecar.appId));
  }

  // daprd's default bulk publisher publishes the entries concurrently and collects failures.
  const results = await Promise.all(
    prepared.map((entry) =>
      writeToBroker(core, {
        pubsubName,
        topic,
        data: entry.data,
        contentType: entry.contentType,
        metadata: entry.metadata,
        publisherAppId: sidecar.appId,
        eventId: entry.eventId,
      }),
    ),
  );
  const failedEntries = prepared.flatMap((entry, i) => {
    const result = results[i]!;
    return result.ok ? [] : [{ entryId: entry.entryId, error: result.error }];
  });
  const status = failedEntries.length > 0 ? 500 : 204;
  prepared.forEach((entry, i) => {
    const result = results[i]!;
    core.recorder.publishes.push({
      ...base(status),
      accepted: result.ok,
      envelope: entry.envelope,
      body: entry.data,
      contentType: entry.contentType,
      metadata: entry.metadata,
      entryId: entry.entryId,
      ...(result.ok ? { messageId: result.messageId } : { error: result.error }),
    });
  });
  if (failedEntries.length === 0) return answers.empty();
  // BulkPublishResponse: a Go struct, fields in declaration order.
  const list = failedEntries.map((f) => `{"entryId":${goQuote(f.entryId)},"error":${goQuote(f.error)}}`).join(',');
  return answers.json(500, `{"failedEntries":[${list}],"errorCode":"ERR_PUBSUB_PUBLISH_MESSAGE"}`);
}
