/**
 * components-contrib `contenttype`: a type matches when it equals the expected one or its part
 * before `;` does, compared case-insensitively.
 */

export const CLOUDEVENT_CONTENT_TYPE = 'application/cloudevents+json';
export const JSON_CONTENT_TYPE = 'application/json';
export const OCTET_STREAM_CONTENT_TYPE = 'application/octet-stream';

function isContentType(contentType: string, expected: string): boolean {
  const lower = contentType.toLowerCase();
  if (lower === expected) return true;
  const semi = lower.indexOf(';');
  return semi >= 0 && lower.slice(0, semi) === expected;
}

export const isCloudEventContentType = (ct: string): boolean => isContentType(ct, CLOUDEVENT_CONTENT_TYPE);
export const isJsonContentType = (ct: string): boolean => isContentType(ct, JSON_CONTENT_TYPE);
export const isBinaryContentType = (ct: string): boolean => isContentType(ct, OCTET_STREAM_CONTENT_TYPE);
/** text/* or application/xml. */
export const isStringContentType = (ct: string): boolean =>
  ct.toLowerCase().startsWith('text/') || isContentType(ct, 'application/xml');
