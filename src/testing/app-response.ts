/**
 * How daprd reads an app's answer to a delivery (dapr pkg/runtime/subscription/postman/http).
 * Both readers decode with Go's json.Decoder: the first JSON value only, struct fields matched
 * case-insensitively, and a value of the wrong type makes the whole decode fail.
 */
import { goField, GoObject, GoValue, isGoObject, parseFirstValue } from './go-json';
import { DeliveryOutcome } from './records';

export interface AnswerVerdict {
  outcome: DeliveryOutcome;
  /** Why the outcome is not SUCCESS (as daprd would log it). */
  error?: string;
}

/**
 * One delivery's answer. `status` is undefined when no HTTP answer came (connection error).
 *
 * | app response                                                | result  |
 * | 2xx, empty body, non-JSON body, or no/empty `status`        | SUCCESS |
 * | 2xx {"status":"SUCCESS"}                                     | SUCCESS |
 * | 2xx {"status":"RETRY"} or any other string ("success" too)  | RETRY   |
 * | 2xx {"status":"DROP"}                                        | DROP    |
 * | 404                                                          | DROP    |
 * | any other status, or a connection error                     | RETRY   |
 */
export function readAnswer(status: number | undefined, body: Buffer, connectionError?: string): AnswerVerdict {
  if (status === undefined) {
    return { outcome: 'RETRY', error: `error returned from app channel while sending pub/sub event to app: ${connectionError ?? 'no answer'}` };
  }
  if (status >= 200 && status <= 299) {
    const decoded = decodeStatus(body);
    if (decoded === undefined || decoded === '' || decoded === 'SUCCESS') return { outcome: 'SUCCESS' };
    if (decoded === 'DROP') return { outcome: 'DROP', error: 'DROP status returned from app' };
    if (decoded === 'RETRY') return { outcome: 'RETRY', error: 'RETRY status returned from app' };
    return { outcome: 'RETRY', error: `unknown status returned from app: ${decoded}` };
  }
  if (status === 404) return { outcome: 'DROP', error: `non-retriable error returned from app: status code 404: ${snippet(body)}` };
  return { outcome: 'RETRY', error: `retriable error returned from app: status code ${status}: ${snippet(body)}` };
}

/** The `status` string of `{"status": ...}`; undefined when the body does not decode (then daprd acks). */
function decodeStatus(body: Buffer): string | undefined {
  const parsed = parseFirstValue(body.toString('utf8'));
  if (!parsed.ok || !isGoObject(parsed.value)) return undefined;
  let status: string | undefined;
  for (const [key, value] of parsed.value) {
    if (key.toLowerCase() !== 'status') continue;
    if (value === null) continue;
    if (typeof value !== 'string') return undefined; // type error: the decode fails, daprd acks
    status = value;
  }
  return status;
}

export interface BulkVerdict {
  /** entryId -> outcome for every entry sent. */
  outcomes: Map<string, AnswerVerdict>;
  /** Set when the answer as a whole could not be used. */
  error?: string;
}

/**
 * A bulk delivery's answer: `{"statuses":[{"entryId","status"}]}`. A missing entry or an
 * unknown status is retried; an undecodable body retries all; 404 drops all; any other
 * non-2xx (or a connection error) retries all.
 */
export function readBulkAnswer(entryIds: readonly string[], status: number | undefined, body: Buffer, connectionError?: string): BulkVerdict {
  const all = (verdict: AnswerVerdict, error: string): BulkVerdict => ({
    outcomes: new Map(entryIds.map((id) => [id, verdict])),
    error,
  });
  if (status === undefined) {
    const error = `error from app channel while sending pub/sub event to app: ${connectionError ?? 'no answer'}`;
    return all({ outcome: 'RETRY', error }, error);
  }
  if (status < 200 || status > 299) {
    if (status === 404) {
      const error = 'non-retriable error returned from app while processing bulk pub/sub event: status code 404';
      return all({ outcome: 'DROP', error }, error);
    }
    const error = `retriable error returned from app while processing bulk pub/sub event: status code ${status}`;
    return all({ outcome: 'RETRY', error }, error);
  }
  const statuses = decodeBulkStatuses(body);
  if (!statuses.ok) {
    const error = `failed unmarshalling app response for bulk subscribe: ${statuses.error}`;
    return all({ outcome: 'RETRY', error }, error);
  }
  const wanted = new Set(entryIds);
  const outcomes = new Map<string, AnswerVerdict>();
  for (const { entryId, status: entryStatus } of statuses.entries) {
    if (!wanted.has(entryId)) continue; // daprd logs "Invalid entry id received from app" and ignores it
    if (entryStatus === 'SUCCESS') outcomes.set(entryId, { outcome: 'SUCCESS' });
    else if (entryStatus === 'DROP') outcomes.set(entryId, { outcome: 'DROP', error: 'DROP status returned from app' });
    else if (entryStatus === 'RETRY' || entryStatus === '') outcomes.set(entryId, { outcome: 'RETRY', error: 'RETRY required' });
    else outcomes.set(entryId, { outcome: 'RETRY', error: `unknown status returned from app: ${entryStatus}` });
  }
  for (const id of entryIds) {
    if (!outcomes.has(id)) outcomes.set(id, { outcome: 'RETRY', error: 'response not received, RETRY required' });
  }
  return { outcomes };
}

type DecodedStatuses = { ok: true; entries: Array<{ entryId: string; status: string }> } | { ok: false; error: string };

function decodeBulkStatuses(body: Buffer): DecodedStatuses {
  const parsed = parseFirstValue(body.toString('utf8'));
  if (!parsed.ok) return { ok: false, error: parsed.error };
  if (parsed.value === null) return { ok: true, entries: [] };
  if (!isGoObject(parsed.value)) return { ok: false, error: 'json: cannot unmarshal into Go value of type pubsub.AppBulkResponse' };
  const list = goField(parsed.value, 'statuses');
  if (list === undefined || list === null) return { ok: true, entries: [] };
  if (!Array.isArray(list)) return { ok: false, error: 'json: cannot unmarshal into Go struct field AppBulkResponse.statuses' };
  const entries: Array<{ entryId: string; status: string }> = [];
  for (const item of list) {
    if (item === null) continue;
    if (!isGoObject(item)) return { ok: false, error: 'json: cannot unmarshal into Go struct field AppBulkResponse.statuses' };
    const entryId = stringField(item, 'entryId');
    const status = stringField(item, 'status');
    if (entryId === undefined || status === undefined) {
      return { ok: false, error: 'json: cannot unmarshal into Go struct field AppBulkResponseEntry of type string' };
    }
    entries.push({ entryId, status });
  }
  return { ok: true, entries };
}

/** '' for a missing or null field, undefined for a value of the wrong type. */
function stringField(obj: GoObject, name: string): string | undefined {
  const value: GoValue | undefined = goField(obj, name);
  if (value === undefined || value === null) return '';
  return typeof value === 'string' ? value : undefined;
}

function snippet(body: Buffer): string {
  const text = body.toString('utf8');
  return text.length > 200 ? `${text.slice(0, 200)}...` : text;
}
