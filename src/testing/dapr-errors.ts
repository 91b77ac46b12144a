/**
 * The error answers daprd's HTTP API gives, with the exact status, errorCode and message
 * (dapr pkg/api/errors/pubsub.go, healthz.go) and the body shape of dapr/kit errors:
 * `{"errorCode","message","details":[ResourceInfo?, ErrorInfo]}`.
 */
import { goQuote, marshalGo, Marshalable } from './go-json';
import { Metadata } from './request-metadata';

export interface ApiError {
  status: number;
  errorCode: string;
  message: string;
  /** The response body, as daprd writes it. */
  body: string;
}

const ERROR_INFO = 'type.googleapis.com/google.rpc.ErrorInfo';
const RESOURCE_INFO = 'type.googleapis.com/google.rpc.ResourceInfo';

function kitError(p: {
  status: number;
  errorCode: string;
  message: string;
  reason: string;
  metadata: Metadata | null;
  /** The pubsub name, when the error carries a ResourceInfo. */
  resourceName?: string;
}): ApiError {
  const details: Marshalable[] = [];
  if (p.resourceName !== undefined) {
    details.push({
      '@type': RESOURCE_INFO,
      resource_type: 'pubsub',
      resource_name: p.resourceName,
      owner: '',
      description: p.message,
    });
  }
  details.push({ '@type': ERROR_INFO, reason: p.reason, domain: 'dapr.io', metadata: p.metadata });
  const body = `{"errorCode":${goQuote(p.errorCode)},"message":${goQuote(p.message)},"details":${marshalGo(details)}}`;
  return { status: p.status, errorCode: p.errorCode, message: p.message, body };
}

/** Builders for the pubsub rows of the contract's error table. */
export const pubsubErrors = {
  nameEmpty: (metadata: Metadata): ApiError =>
    kitError({
      status: 404,
      errorCode: 'ERR_PUBSUB_EMPTY',
      message: 'pubsub name is empty',
      reason: 'DAPR_PUBSUB_NAME_EMPTY',
      metadata,
      resourceName: '',
    }),
  notFound: (name: string, metadata: Metadata): ApiError =>
    kitError({
      status: 404,
      errorCode: 'ERR_PUBSUB_NOT_FOUND',
      message: `pubsub ${name} is not found`,
      reason: 'DAPR_PUBSUB_NOT_FOUND',
      metadata,
    }),
  topicEmpty: (name: string, metadata: Metadata): ApiError =>
    kitError({
      status: 404,
      errorCode: 'ERR_TOPIC_NAME_EMPTY',
      message: `topic is empty in pubsub ${name}`,
      reason: 'DAPR_PUBSUB_TOPIC_NAME_EMPTY',
      metadata,
      resourceName: name,
    }),
  metadataDeserialize: (name: string, metadata: Metadata, error: string): ApiError =>
    kitError({
      status: 400,
      errorCode: 'ERR_PUBSUB_REQUEST_METADATA',
      message: `failed deserializing metadata. Error: ${error}`,
      reason: 'DAPR_PUBSUB_METADATA_DESERIALIZATION',
      metadata,
      resourceName: name,
    }),
  cloudEventCreation: (name: string, appId: string, error: string): ApiError =>
    kitError({
      status: 500,
      errorCode: 'ERR_PUBSUB_CLOUD_EVENTS_SER',
      message: 'cannot create cloudevent',
      reason: 'DAPR_PUBSUB_CLOUD_EVENT_CREATION',
      metadata: { appID: appId, error },
      resourceName: name,
    }),
  forbidden: (name: string, topic: string, appId: string): ApiError => {
    const message = `topic ${topic} is not allowed for app id ${appId}`;
    return kitError({
      status: 403,
      errorCode: 'ERR_PUBSUB_FORBIDDEN',
      message,
      reason: 'DAPR_PUBSUB_FORBIDDEN',
      metadata: { topic, error: message },
      resourceName: name,
    });
  },
  publishMessage: (name: string, topic: string, error: string): ApiError =>
    kitError({
      status: 500,
      errorCode: 'ERR_PUBSUB_PUBLISH_MESSAGE',
      message: `error when publishing to topic ${topic} in pubsub ${name}: ${error}`,
      reason: 'DAPR_PUBSUB_PUBLISH_MESSAGE',
      metadata: { topic, error },
      resourceName: name,
    }),
  /** Bulk publish: the request body is not a JSON array of entries. */
  unmarshalEvents: (name: string, topic: string, appId: string, error: string): ApiError =>
    kitError({
      status: 400,
      errorCode: 'ERR_PUBSUB_EVENTS_SER',
      message: `error when unmarshaling the request for topic ${topic} pubsub ${name}: ${error}`,
      reason: 'DAPR_PUBSUB_UNMARSHAL_EVENTS',
      metadata: { appID: appId },
      resourceName: name,
    }),
  /** Bulk publish: an entry's event does not fit its contentType. */
  marshalEnvelope: (name: string, topic: string, appId: string, error: string): ApiError =>
    kitError({
      status: 400,
      errorCode: 'ERR_PUBSUB_EVENTS_SER',
      message: `error when marshalling cloud event envelope for topic ${topic} pubsub ${name}: ${error}`,
      reason: 'DAPR_PUBSUB_MARSHAL_ENVELOPE',
      metadata: { appID: appId, error },
      resourceName: name,
    }),
  /** Bulk publish: an entryId is missing or repeated. */
  marshalEvents: (name: string, topic: string, appId: string, error: string): ApiError =>
    kitError({
      status: 400,
      errorCode: 'ERR_PUBSUB_EVENTS_SER',
      message: `error marshaling events to bytes for topic ${topic} pubsub ${name}. error: ${error}`,
      reason: 'DAPR_PUBSUB_MARSHAL_EVENTS',
      metadata: { appID: appId, error },
      resourceName: name,
    }),
};

export const healthErrors = {
  notReady: (): ApiError =>
    kitError({
      status: 500,
      errorCode: 'ERR_HEALTH_NOT_READY',
      message: 'dapr is not ready',
      reason: 'ERR_HEALTH_NOT_READY',
      metadata: null,
    }),
  outboundNotReady: (): ApiError =>
    kitError({
      status: 500,
      errorCode: 'ERR_OUTBOUND_HEALTH_NOT_READY',
      message: 'dapr outbound is not ready',
      reason: 'ERR_OUTBOUND_HEALTH_NOT_READY',
      metadata: null,
    }),
};
