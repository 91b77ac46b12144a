/**
 * The request path as daprd reads it, from Go's net/http to the route parameters:
 *
 * 1. net/http parses the request target; a malformed percent-escape anywhere in the path is a
 *    400 before any handler runs. URL.Path is the decoded path; URL.RawPath keeps the target as
 *    sent, but only when it is not Go's own encoding of URL.Path.
 * 2. chi routes on RawPath when it is set, else on the decoded Path.
 * 3. daprd unescapes every route parameter again with url.QueryUnescape ('+' becomes a space; a
 *    malformed escape is a 400 "failed to unescape request parameter").
 *
 * So a target that Go would have written itself is decoded twice: `rate%20100%25` routes as
 * `rate 100%`, whose second decoding fails. Publishers must keep that in mind (DaprPublisher
 * does); the emulator reproduces it so that tests see what a sidecar would do.
 */
import { goQuote } from './go-json';

export type PathResult = { ok: true; value: string } | { ok: false; error: string };

/** The path chi routes on, from a raw request target (`req.url`); a query string is ignored. */
export function routingPath(target: string): PathResult {
  const q = target.indexOf('?');
  const raw = q === -1 ? target : target.slice(0, q);
  const decoded = percentDecode(raw, false);
  if (!decoded.ok) return decoded;
  return { ok: true, value: goEscapePath(decoded.value) === raw ? decoded.value : raw };
}

/** Go's url.QueryUnescape, as daprd applies it to each route parameter. */
export function queryUnescape(s: string): PathResult {
  return percentDecode(s, true);
}

function percentDecode(s: string, plusIsSpace: boolean): PathResult {
  if (!s.includes('%') && !(plusIsSpace && s.includes('+'))) return { ok: true, value: s };
  const input = Buffer.from(s, 'utf8');
  const out: number[] = [];
  for (let i = 0; i < input.length; i++) {
    const c = input[i]!;
    if (c === 0x25) {
      const hi = hexValue(input[i + 1]);
      const lo = hexValue(input[i + 2]);
      if (hi === undefined || lo === undefined) {
        return { ok: false, error: `invalid URL escape ${goQuote(input.subarray(i, i + 3).toString('utf8'))}` };
      }
      out.push(hi * 16 + lo);
      i += 2;
    } else if (c === 0x2b && plusIsSpace) {
      out.push(0x20);
    } else {
      out.push(c);
    }
  }
  return { ok: true, value: Buffer.from(out).toString('utf8') };
}

function hexValue(c: number | undefined): number | undefined {
  if (c === undefined) return undefined;
  if (c >= 0x30 && c <= 0x39) return c - 0x30;
  if (c >= 0x41 && c <= 0x46) return c - 0x41 + 10;
  if (c >= 0x61 && c <= 0x66) return c - 0x61 + 10;
  return undefined;
}

/** Go's url escape in encodePath mode: everything but unreserved characters and `$&+,/:;=@`. */
function goEscapePath(path: string): string {
  let out = '';
  for (const byte of Buffer.from(path, 'utf8')) {
    const ch = String.fromCharCode(byte);
    out += /[A-Za-z0-9\-_.~$&+,/:;=@]/.test(ch) ? ch : `%${byte.toString(16).toUpperCase().padStart(2, '0')}`;
  }
  return out;
}
