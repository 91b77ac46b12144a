/**
 * Runs a topic's validation hook. Every kind of rejection (false, a throw, a schema error) means
 * the data can never be handled: the router answers DROP with the reason logged. A function hook
 * that cannot decide now (its schema registry is down, say) returns 'RETRY' instead.
 */
import { RETRY } from './statuses';
import type { DeliveryContext, TopicValidator } from './types';

export type Validated = { ok: true; data: unknown } | { ok: false; reason: string; retry?: boolean };

export async function runValidator(validator: TopicValidator, data: unknown, ctx: DeliveryContext): Promise<Validated> {
  try {
    if (typeof validator === 'function') {
      const result = await validator(data, ctx);
      if (result === RETRY) return { ok: false, reason: 'the validation hook answered RETRY', retry: true };
      if (result === false) return { ok: false, reason: `validation failed${errorsOf(validator)}` };
      return { ok: true, data };
    }
    const schema = validator as Record<string, (d: unknown) => unknown>;
    // zod, valibot-style wrappers: parse returns the (possibly transformed) value or throws.
    if (typeof schema.parse === 'function') return { ok: true, data: await schema.parse(data) };
    if (typeof schema.safeParse === 'function') {
      const r = (await schema.safeParse(data)) as { success?: boolean; data?: unknown; error?: unknown };
      return r?.success ? { ok: true, data: 'data' in r ? r.data : data } : { ok: false, reason: reasonOf(r?.error) };
    }
    // joi answers { value, error } at once; yup answers a promise of the value that rejects on error.
    const answer = schema.validate!(data);
    const isPromise = answer !== null && typeof answer === 'object' && typeof (answer as { then?: unknown }).then === 'function';
    const r = await answer;
    if (!isPromise && r !== null && typeof r === 'object' && ('error' in r || 'value' in r)) {
      const { error, value } = r as { error?: unknown; value?: unknown };
      if (error) return { ok: false, reason: reasonOf(error) };
      return { ok: true, data: 'value' in r ? value : data };
    }
    if (r === false) return { ok: false, reason: 'validation failed' };
    return { ok: true, data: r === undefined || r === true ? data : r };
  } catch (err) {
    return { ok: false, reason: reasonOf(err) };
  }
}

function reasonOf(err: unknown): string {
  if (err instanceof Error) return `validation failed: ${err.message}`;
  if (err === undefined || err === null) return 'validation failed';
  try {
    return `validation failed: ${typeof err === 'string' ? err : JSON.stringify(err)}`;
  } catch {
    return 'validation failed';
  }
}

/** Ajv-compiled validators keep their errors on the function. */
function errorsOf(fn: unknown): string {
  const errors = (fn as { errors?: unknown }).errors;
  if (!errors) return '';
  try {
    return `: ${JSON.stringify(errors)}`;
  } catch {
    return '';
  }
}
