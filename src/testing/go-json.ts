/**
 * A JSON codec that reproduces what daprd's Go code does with JSON, byte for byte where it
 * matters to a subscriber:
 *
 * - `encoding/json` Marshal of a `map[string]interface{}` sorts the keys (byte order of UTF-8),
 *   escapes `<`, `>`, `&`, U+2028 and U+2029, and writes `\b` `\f` `\n` `\r` `\t` short escapes.
 * - `Decoder.UseNumber()` (components-contrib `unmarshalPrecise`) keeps a number's source text,
 *   so `1.0` or a 20-digit id survives the round trip; a plain `Unmarshal` goes through float64.
 * - `Decoder.Decode` reads the FIRST value only and ignores what follows it.
 *
 * JavaScript's JSON.parse/stringify differ on all three points, which is why this file exists.
 */

/** A JSON number kept as its source text (Go's `json.Number`). */
export class GoNumber {
  constructor(readonly text: string) {}
  toNumber(): number {
    return Number(this.text);
  }
}

/** A decoded JSON object: a Map keeps `__proto__` and other odd keys safe. */
export type GoObject = Map<string, GoValue>;
export type GoValue = null | boolean | string | GoNumber | GoValue[] | GoObject;

export type GoParseResult = { ok: true; value: GoValue; end: number } | { ok: false; error: string; eof: boolean };

const MAX_DEPTH = 10000; // Go's decoder limit

/**
 * Parses the first JSON value of `text` the way Go's `json.Decoder.Decode` does: leading
 * whitespace is skipped, the value must be complete, anything after it is left unread.
 */
export function parseFirstValue(text: string): GoParseResult {
  const parser = new Parser(text);
  try {
    parser.skipSpace();
    if (parser.pos >= text.length) return { ok: false, error: 'EOF', eof: true };
    const value = parser.value(0);
    return { ok: true, value, end: parser.pos };
  } catch (err) {
    if (err instanceof SyntaxFailure) return { ok: false, error: err.message, eof: false };
    throw err;
  }
}

/** Internal control-flow signal of the parser; never escapes parseFirstValue. */
class SyntaxFailure extends Error {}

class Parser {
  pos = 0;
  constructor(private readonly text: string) {}

  skipSpace(): void {
    const t = this.text;
    while (this.pos < t.length) {
      const c = t.charCodeAt(this.pos);
      if (c === 0x20 || c === 0x09 || c === 0x0a || c === 0x0d) this.pos++;
      else break;
    }
  }

  fail(what: string): never {
    if (this.pos >= this.text.length) throw new SyntaxFailure('unexpected end of JSON input');
    throw new SyntaxFailure(`invalid character ${quoteChar(this.text[this.pos]!)} ${what}`);
  }

  value(depth: number): GoValue {
    if (depth > MAX_DEPTH) throw new SyntaxFailure('exceeded max depth');
    const c = this.text[this.pos];
    switch (c) {
      case '{':
        return this.object(depth);
      case '[':
        return this.array(depth);
      case '"':
        return this.string();
      case 't':
        return this.literal('true', true);
      case 'f':
        return this.literal('false', false);
      case 'n':
        return this.literal('null', null);
      default:
        if (c === '-' || (c !== undefined && c >= '0' && c <= '9')) return this.number();
        return this.fail('looking for beginning of value');
    }
  }

  literal<T extends GoValue>(word: string, value: T): T {
    for (let i = 0; i < word.length; i++) {
      if (this.text[this.pos] !== word[i]) this.fail(`in literal ${word} (expecting ${quoteChar(word[i]!)})`);
      this.pos++;
    }
    return value;
  }

  number(): GoNumber {
    const t = this.text;
    const start = this.pos;
    if (t[this.pos] === '-') this.pos++;
    if (t[this.pos] === '0') this.pos++;
    else if (isDigit(t[this.pos])) while (isDigit(t[this.pos])) this.pos++;
    else this.fail('in numeric literal');
    if (t[this.pos] === '.') {
      this.pos++;
      if (!isDigit(t[this.pos])) this.fail('after decimal point in numeric literal');
      while (isDigit(t[this.pos])) this.pos++;
    }
    if (t[this.pos] === 'e' || t[this.pos] === 'E') {
      this.pos++;
      if (t[this.pos] === '+' || t[this.pos] === '-') this.pos++;
      if (!isDigit(t[this.pos])) this.fail('in exponent of numeric literal');
      while (isDigit(t[this.pos])) this.pos++;
    }
    return new GoNumber(t.slice(start, this.pos));
  }

  string(): string {
    const t = this.text;
    this.pos++; // opening quote
    let out = '';
    let chunk = this.pos;
    for (;;) {
      if (this.pos >= t.length) this.fail('in string literal');
      const code = t.charCodeAt(this.pos);
      if (code === 0x22) {
        out += t.slice(chunk, this.pos);
        this.pos++;
        return out;
      }
      if (code < 0x20) this.fail('in string literal');
      if (code !== 0x5c) {
        this.pos++;
        continue;
      }
      out += t.slice(chunk, this.pos);
      this.pos++;
      const esc = t[this.pos];
      const simple = esc === undefined ? undefined : SIMPLE_UNESCAPES[esc];
      if (simple !== undefined) {
        out += simple;
        this.pos++;
      } else if (esc === 'u') {
        this.pos++;
        const hi = this.hex4();
        if (hi >= 0xd800 && hi <= 0xdbff && t[this.pos] === '\\' && t[this.pos + 1] === 'u') {
          const save = this.pos;
          this.pos += 2;
          const lo = this.hex4();
          if (lo >= 0xdc00 && lo <= 0xdfff) out += String.fromCharCode(hi, lo);
          else {
            out += '\ufffd';
            this.pos = save;
          }
        } else if (hi >= 0xd800 && hi <= 0xdfff) out += '\ufffd';
        else out += String.fromCharCode(hi);
      } else this.fail('in string escape code');
      chunk = this.pos;
    }
  }

  hex4(): number {
    const digits = this.text.slice(this.pos, this.pos + 4);
    if (!/^[0-9a-fA-F]{4}$/.test(digits)) this.fail('in \\u hexadecimal character escape');
    this.pos += 4;
    return parseInt(digits, 16);
  }

  array(depth: number): GoValue[] {
    this.pos++;
    const out: GoValue[] = [];
    this.skipSpace();
    if (this.text[this.pos] === ']') {
      this.pos++;
      return out;
    }
    for (;;) {
      this.skipSpace();
      out.push(this.value(depth + 1));
      this.skipSpace();
      const c = this.text[this.pos];
      if (c === ',') this.pos++;
      else if (c === ']') {
        this.pos++;
        return out;
      } else this.fail('after array element');
    }
  }

  object(depth: number): GoObject {
    this.pos++;
    const out: GoObject = new Map();
    this.skipSpace();
    if (this.text[this.pos] === '}') {
      this.pos++;
      return out;
    }
    for (;;) {
      this.skipSpace();
      if (this.text[this.pos] !== '"') this.fail('looking for beginning of object key string');
      const key = this.string();
      this.skipSpace();
      if (this.text[this.pos] !== ':') this.fail('after object key');
      this.pos++;
      this.skipSpace();
      out.set(key, this.value(depth + 1)); // duplicate keys: the last one wins, as in Go
      this.skipSpace();
      const c = this.text[this.pos];
      if (c === ',') this.pos++;
      else if (c === '}') {
        this.pos++;
        return out;
      } else this.fail('after object key:value pair');
    }
  }
}

const SIMPLE_UNESCAPES: Record<string, string> = {
  '"': '"',
  '\\': '\\',
  '/': '/',
  b: '\b',
  f: '\f',
  n: '\n',
  r: '\r',
  t: '\t',
};

function isDigit(c: string | undefined): boolean {
  return c !== undefined && c >= '0' && c <= '9';
}

function quoteChar(c: string): string {
  return c === "'" ? `'\\''` : `'${c}'`;
}

export interface MarshalOptions {
  /**
   * Write every number as Go writes a float64 (the value went through `json.Unmarshal` into an
   * `interface{}` without UseNumber, as bulk publish entries do). Default false: numbers keep
   * their source text.
   */
  float64Numbers?: boolean;
}

/** Anything marshalGo accepts: decoded Go values plus plain JavaScript data built by the emulator. */
export type Marshalable =
  | GoValue
  | number
  | undefined
  | readonly Marshalable[]
  | ReadonlyMap<string, Marshalable>
  | { readonly [key: string]: Marshalable };

/** Serialises like Go's `json.Marshal` of `interface{}` values: map keys sorted, HTML escaped. */
export function marshalGo(value: Marshalable, options: MarshalOptions = {}): string {
  const parts: string[] = [];
  write(value, parts, options.float64Numbers === true);
  return parts.join('');
}

function write(value: Marshalable, out: string[], float64: boolean): void {
  if (value === null || value === undefined) out.push('null');
  else if (typeof value === 'boolean') out.push(value ? 'true' : 'false');
  else if (typeof value === 'string') out.push(goQuote(value));
  else if (typeof value === 'number') out.push(formatFloat64(value));
  else if (value instanceof GoNumber) out.push(float64 ? formatFloat64(value.toNumber()) : value.text);
  else if (Array.isArray(value)) {
    out.push('[');
    value.forEach((item: Marshalable, i: number) => {
      if (i > 0) out.push(',');
      write(item, out, float64);
    });
    out.push(']');
  } else {
    const entries: Array<[string, Marshalable]> =
      value instanceof Map ? [...(value as ReadonlyMap<string, Marshalable>).entries()] : Object.entries(value);
    entries.sort((a, b) => compareUtf8(a[0], b[0]));
    out.push('{');
    entries.forEach(([key, item], i) => {
      if (i > 0) out.push(',');
      out.push(goQuote(key), ':');
      write(item, out, float64);
    });
    out.push('}');
  }
}

/** Go sorts map keys with `sort.Strings`: byte order of their UTF-8 encoding. */
export function compareUtf8(a: string, b: string): number {
  return Buffer.compare(Buffer.from(a, 'utf8'), Buffer.from(b, 'utf8'));
}

const HEX = '0123456789abcdef';

/** Go's `encoding/json` string encoder with `escapeHTML` on (the Marshal default). */
export function goQuote(s: string): string {
  let out = '"';
  let chunk = 0;
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    let rep: string | undefined;
    if (c < 0x20) {
      rep = SHORT_ESCAPES[c] ?? `\\u00${HEX[c >> 4]}${HEX[c & 0xf]}`;
    } else if (c === 0x22) rep = '\\"';
    else if (c === 0x5c) rep = '\\\\';
    else if (c === 0x3c || c === 0x3e || c === 0x26) rep = `\\u00${HEX[c >> 4]}${HEX[c & 0xf]}`;
    else if (c === 0x2028 || c === 0x2029) rep = `\\u${c.toString(16)}`;
    else if (c >= 0xd800 && c <= 0xdbff) {
      const next = s.charCodeAt(i + 1);
      if (next >= 0xdc00 && next <= 0xdfff) {
        i++; // a valid pair is written as is
        continue;
      }
      rep = '\\ufffd';
    } else if (c >= 0xdc00 && c <= 0xdfff) rep = '\\ufffd';
    if (rep !== undefined) {
      out += s.slice(chunk, i) + rep;
      chunk = i + 1;
    }
  }
  return out + s.slice(chunk) + '"';
}

const SHORT_ESCAPES: Record<number, string> = { 0x08: '\\b', 0x0c: '\\f', 0x0a: '\\n', 0x0d: '\\r', 0x09: '\\t' };

/**
 * Go's float64 encoding: shortest representation, exponent form below 1e-6 and from 1e21 on.
 * JavaScript's Number#toString uses the same thresholds and digits; only -0 differs.
 */
export function formatFloat64(n: number): string {
  if (Object.is(n, -0)) return '-0';
  return String(n);
}

/** Converts a decoded Go value to plain JavaScript data (numbers become float64). */
export function toPlain(value: GoValue): unknown {
  if (value === null || typeof value !== 'object') return value;
  if (value instanceof GoNumber) return value.toNumber();
  if (Array.isArray(value)) return value.map(toPlain);
  const out: Record<string, unknown> = {};
  for (const [key, item] of value) {
    Object.defineProperty(out, key, { value: toPlain(item), enumerable: true, writable: true, configurable: true });
  }
  return out;
}

/** True for a decoded JSON object. */
export function isGoObject(value: GoValue | undefined): value is GoObject {
  return value instanceof Map;
}

/**
 * Looks a struct field up the way Go's decoder matches keys to a field: exact name first,
 * otherwise a case-insensitive match (the last such key in the object wins).
 */
export function goField(obj: GoObject, name: string): GoValue | undefined {
  if (obj.has(name)) return obj.get(name);
  let found: GoValue | undefined;
  const lower = name.toLowerCase();
  for (const [key, value] of obj) if (key.toLowerCase() === lower) found = value;
  return found;
}

/** Go's name for a JSON value's kind in an UnmarshalTypeError ("cannot unmarshal X into ..."). */
export function goKind(value: GoValue): string {
  if (value === null) return 'null';
  if (typeof value === 'boolean') return 'bool';
  if (typeof value === 'string') return 'string';
  if (value instanceof GoNumber) return 'number';
  if (Array.isArray(value)) return 'array';
  return 'object';
}
