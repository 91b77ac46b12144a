/**
 * Publish metadata as daprd reads it from the query string (`metadata.<key>=value`), and the
 * few keys daprd itself interprets: rawPayload, ttlInSeconds and the cloudevent.* overrides.
 * Parsing follows Go's strconv so that a value daprd rejects is rejected here too.
 */

export type Metadata = Record<string, string>;

/** Sets an own property even for keys such as `__proto__`. */
export function setOwn<T>(target: Record<string, T>, key: string, value: T): void {
  Object.defineProperty(target, key, { value, enumerable: true, writable: true, configurable: true });
}

/** `metadata.<k>=v` query parameters -> { k: v }, first value of a repeated key (Go's Query().Get). */
export function metadataFromQuery(query: URLSearchParams): Metadata {
  const out: Metadata = {};
  for (const key of new Set(query.keys())) {
    if (key.startsWith('metadata.')) setOwn(out, key.slice('metadata.'.length), query.get(key) ?? '');
  }
  return out;
}

/** Go's strconv.ParseBool: exactly these twelve spellings, anything else is an error. */
export function parseGoBool(value: string): boolean | undefined {
  switch (value) {
    case '1':
    case 't':
    case 'T':
    case 'TRUE':
    case 'true':
    case 'True':
      return true;
    case '0':
    case 'f':
    case 'F':
    case 'FALSE':
    case 'false':
    case 'False':
      return false;
    default:
      return undefined;
  }
}

export type RawPayloadResult = { ok: true; raw: boolean } | { ok: false; error: string };

/** components-contrib metadata.IsRawPayload: key `rawPayload` (case-sensitive), empty = false. */
export function readRawPayload(metadata: Metadata): RawPayloadResult {
  if (!Object.prototype.hasOwnProperty.call(metadata, 'rawPayload')) return { ok: true, raw: false };
  const value = metadata.rawPayload!;
  if (value === '') return { ok: true, raw: false };
  const parsed = parseGoBool(value);
  if (parsed === undefined) return { ok: false, error: `rawPayload value must be a valid boolean: actual is '${value}'` };
  return { ok: true, raw: parsed };
}

/** Largest TTL whose nanoseconds fit an int64 (Go's time.Duration). */
const MAX_TTL_SECONDS = 9223372036;

/**
 * components-contrib metadata.TryGetTTL: a positive base-10 int64 in `ttlInSeconds`. daprd
 * ignores an invalid value at publish time, so this returns undefined for it.
 */
export function readTtlSeconds(metadata: Metadata): number | undefined {
  if (!Object.prototype.hasOwnProperty.call(metadata, 'ttlInSeconds')) return undefined;
  const value = metadata.ttlInSeconds!;
  if (!/^[+-]?\d+$/.test(value)) return undefined;
  const n = BigInt(value);
  if (n <= 0n || n > 9223372036854775807n) return undefined;
  return n > BigInt(MAX_TTL_SECONDS) ? MAX_TTL_SECONDS : Number(n);
}

export const OVERRIDABLE_ATTRIBUTES = ['id', 'source', 'type', 'subject', 'traceid', 'traceparent', 'tracestate'] as const;
export type OverridableAttribute = (typeof OVERRIDABLE_ATTRIBUTES)[number];

/**
 * The `cloudevent.<attr>` overrides (daprd decodes them with mapstructure.WeakDecode, which
 * matches keys case-insensitively). A present key overrides even with an empty value.
 */
export function readCloudEventOverrides(metadata: Metadata): Partial<Record<OverridableAttribute, string>> {
  const out: Partial<Record<OverridableAttribute, string>> = {};
  for (const attr of OVERRIDABLE_ATTRIBUTES) {
    const wanted = `cloudevent.${attr}`;
    if (Object.prototype.hasOwnProperty.call(metadata, wanted)) {
      out[attr] = metadata[wanted];
      continue;
    }
    for (const [key, value] of Object.entries(metadata)) {
      if (key.toLowerCase() === wanted) out[attr] = value;
    }
  }
  return out;
}
