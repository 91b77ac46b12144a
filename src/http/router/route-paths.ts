/**
 * Route paths of subscriptions. The default route of a topic is
 * `<prefix>/<pubsub>/<topic>` with both names percent-encoded as ONE path segment each, so two
 * (pubsub, topic) pairs never map to the same path (`a/b` + `c` and `a` + `b/c` differ: the `/`
 * inside a name is `%2F`).
 *
 * Paths are matched in a canonical form (each segment decoded, then encoded the same way), so
 * a sender that escapes more or fewer characters (`(` vs `%28`, `%2f` vs `%2F`) still reaches the
 * route. Express's own path matching is not used: topic names may hold characters that
 * path-to-regexp treats as syntax.
 */

/** The prefix of default routes. */
export const DEFAULT_ROUTE_PREFIX = '/dapr-outbox';

/** The discovery endpoint daprd calls once at start. */
export const SUBSCRIBE_PATH = '/dapr/subscribe';

/**
 * Encodes one name as one path segment: encodeURIComponent, plus the characters it leaves alone
 * that URL parsers or routers may treat specially (`!'()*`).
 */
export function encodeSegment(name: string): string {
  return encodeURIComponent(name).replace(/[!'()*]/g, (c) => `%${c.charCodeAt(0).toString(16).toUpperCase()}`);
}

/**
 * `.` and `..` (also escaped, `%2e`) are removed by URL parsers (WHATWG URL, daprd's Go client
 * after path cleaning), so a route must not have such a segment.
 */
export function isDotSegment(name: string): boolean {
  return /^(\.|%2e){1,2}$/i.test(name);
}

/** `<prefix>/<encoded pubsub>/<encoded topic>`. */
export function defaultRoute(prefix: string, pubsubName: string, topic: string): string {
  return `${prefix}/${encodeSegment(pubsubName)}/${encodeSegment(topic)}`;
}

/** The path of the i-th rule of a topic that gives no path of its own. */
export function defaultRulePath(route: string, index: number): string {
  return `${route}/rules/${index}`;
}

/**
 * The form paths are compared in. A segment that does not decode (a stray `%`) is kept as it
 * is. Returns undefined for something that is not an absolute path.
 */
export function canonicalPath(path: string): string | undefined {
  if (!path.startsWith('/')) return undefined;
  return path
    .split('/')
    .map((segment) => {
      try {
        return encodeSegment(decodeURIComponent(segment));
      } catch {
        return segment;
      }
    })
    .join('/');
}

/**
 * Checks a route given as an option: an absolute path without query or fragment. A missing
 * leading slash is added (daprd joins routes with `/` either way).
 */
export function normalizeRoute(route: string): string | undefined {
  if (typeof route !== 'string') return undefined;
  const r = route.startsWith('/') ? route : `/${route}`;
  if (r === '/' || /[?#\s]/.test(r) || r.includes('//') || r.split('/').some(isDotSegment)) return undefined;
  return r;
}
