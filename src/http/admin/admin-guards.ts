/**
 * What stands before every admin route: the authorize hook (closed by default), the read-only
 * switch, the same-origin JSON + CSRF header rule for mutations, and the security headers.
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import { sendJson } from '../router/statuses';

/** The header every mutation must carry (any non-empty value); a plain HTML form cannot set it. */
export const CSRF_HEADER = 'x-outbox-csrf';

/**
 * The page and its assets load from this origin only: no inline script or style, nothing from
 * elsewhere, not framed.
 */
export const CONTENT_SECURITY_POLICY =
  "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; " +
  "base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

export function setSecurityHeaders(res: ServerResponse): void {
  res.setHeader('Content-Security-Policy', CONTENT_SECURITY_POLICY);
  res.setHeader('X-Content-Type-Options', 'nosniff');
  res.setHeader('X-Frame-Options', 'DENY');
  res.setHeader('Referrer-Policy', 'no-referrer');
  res.setHeader('Cache-Control', 'no-store');
  res.setHeader('Cross-Origin-Resource-Policy', 'same-origin');
}

export function answerError(res: ServerResponse, status: number, error: string, message: string, extra: Record<string, unknown> = {}): void {
  sendJson(res, status, { error, message, ...extra });
}

/**
 * Why a mutation is refused as a possible cross-site request, or undefined when it is allowed:
 * it must carry the CSRF header, be JSON, and, where the browser says where it comes from
 * (Origin, Sec-Fetch-Site), come from this origin.
 */
export function crossSiteReason(req: IncomingMessage): string | undefined {
  const h = req.headers;
  const csrf = h[CSRF_HEADER];
  if (typeof csrf !== 'string' || csrf === '') return `the ${CSRF_HEADER} header is required`;
  const type = String(h['content-type'] ?? '').split(';')[0]!.trim().toLowerCase();
  if (type !== 'application/json') return 'the body must be application/json';
  const site = h['sec-fetch-site'];
  if (site !== undefined && site !== 'same-origin' && site !== 'none') return `a ${String(site)} request may not change anything`;
  const origin = h.origin;
  if (origin !== undefined) {
    let host: string | undefined;
    try {
      host = new URL(origin).host;
    } catch {
      host = undefined;
    }
    const own = String(h['x-forwarded-host'] ?? h.host ?? '').split(',')[0]!.trim();
    if (!host || host !== own) return `origin ${origin} is not this server's`;
  }
  return undefined;
}
