/**
 * The subset of CEL that subscription routing rules use in practice:
 *
 *   expr := and ('||' and)*        and := cmp ('&&' cmp)*        cmp := term (('==' | '!=') term)?
 *   term := '(' expr ')' | literal | path | 'has(' path ')'      path := 'event' ('.' ident)+
 *   literal := "string" | 'string' | number | true | false | null
 *
 * Evaluation follows CEL where it shows: a missing key is an error, `&&`/`||` ignore an error
 * on the side that does not decide the result, numbers compare across int and double, values
 * of different types are unequal. Anything outside the subset is rejected when the rule is
 * compiled, with an error naming the expression, so a test never routes by a guess.
 */
import { EmulatorError } from './errors';

type Node =
  | { kind: 'literal'; value: unknown }
  | { kind: 'path'; keys: string[] }
  | { kind: 'has'; keys: string[] }
  | { kind: 'eq' | 'ne' | 'and' | 'or'; left: Node; right: Node };

type Token = { type: 'op' | 'ident' | 'string' | 'number' | 'eof'; text: string; value?: unknown; at: number };

/** A compiled `match` expression. */
export interface CelProgram {
  readonly source: string;
  /** `{ ok: true, value }` with the boolean result, or `{ ok: false, error }` as CEL would fail. */
  evaluate(event: unknown): { ok: true; value: boolean } | { ok: false; error: string };
}

/** Compiles `source`; throws EmulatorError('UNSUPPORTED_MATCH') naming it when it is outside the subset. */
export function compileCel(source: string): CelProgram {
  const fail = (why: string): never => {
    throw new EmulatorError(
      'UNSUPPORTED_MATCH',
      `unsupported match expression ${JSON.stringify(source)}: ${why} (the emulator supports ==, !=, &&, ||, parentheses, has() and string/number/bool/null literals over event.<attribute> and event.data.<field>)`,
      { details: { expression: source, reason: why } },
    );
  };
  const tokens = tokenize(source, fail);
  let i = 0;
  const peek = (): Token => tokens[i]!;
  const next = (): Token => tokens[i++]!;
  const describeToken = (t: Token): string => (t.type === 'eof' ? 'end of expression' : `${JSON.stringify(t.text)} at ${t.at}`);

  const parseOr = (): Node => {
    let left = parseAnd();
    while (peek().text === '||' && peek().type === 'op') {
      next();
      left = { kind: 'or', left, right: parseAnd() };
    }
    return left;
  };
  const parseAnd = (): Node => {
    let left = parseCmp();
    while (peek().text === '&&' && peek().type === 'op') {
      next();
      left = { kind: 'and', left, right: parseCmp() };
    }
    return left;
  };
  const parseCmp = (): Node => {
    const left = parseTerm();
    const t = peek();
    if (t.type === 'op' && (t.text === '==' || t.text === '!=')) {
      next();
      const right = parseTerm();
      const after = peek();
      if (after.type === 'op' && (after.text === '==' || after.text === '!=')) fail(`chained comparison at ${after.at}`);
      return { kind: t.text === '==' ? 'eq' : 'ne', left, right };
    }
    return left;
  };
  const parseTerm = (): Node => {
    const t = next();
    if (t.type === 'op' && t.text === '(') {
      const inner = parseOr();
      const close = next();
      if (close.type !== 'op' || close.text !== ')') fail(`expected ")" but found ${describeToken(close)}`);
      return inner;
    }
    if (t.type === 'string' || t.type === 'number') return { kind: 'literal', value: t.value };
    if (t.type === 'ident') {
      if (t.text === 'true' || t.text === 'false') return { kind: 'literal', value: t.text === 'true' };
      if (t.text === 'null') return { kind: 'literal', value: null };
      if (t.text === 'has' && peek().type === 'op' && peek().text === '(') {
        next();
        const first = next();
        if (first.type !== 'ident' || first.text !== 'event') fail(`has() takes a field path such as event.data.x (at ${first.at})`);
        const keys = parsePathKeys();
        const close = next();
        if (close.type !== 'op' || close.text !== ')') fail(`expected ")" but found ${describeToken(close)}`);
        return { kind: 'has', keys };
      }
      if (t.text !== 'event') fail(`unknown identifier ${JSON.stringify(t.text)} (only "event" is declared)`);
      return { kind: 'path', keys: parsePathKeys() };
    }
    return fail(`unexpected ${describeToken(t)}`);
  };
  const parsePathKeys = (): string[] => {
    const keys: string[] = [];
    while (peek().type === 'op' && peek().text === '.') {
      next();
      const key = next();
      if (key.type !== 'ident') fail(`expected a field name after "." but found ${describeToken(key)}`);
      keys.push(key.text);
    }
    if (keys.length === 0) fail('"event" must be followed by .<attribute>');
    if (peek().type === 'op' && peek().text === '(') fail(`function calls are not supported (at ${peek().at})`);
    return keys;
  };

  const root = parseOr();
  if (peek().type !== 'eof') fail(`unexpected ${describeToken(peek())}`);
  return {
    source,
    evaluate(event: unknown) {
      const result = evaluate(root, { event });
      if (!result.ok) return result;
      if (typeof result.value !== 'boolean') {
        return { ok: false, error: `the result of match expression ${source} was not a boolean` };
      }
      return { ok: true, value: result.value };
    },
  };
}

type Value = { ok: true; value: unknown } | { ok: false; error: string };

function evaluate(node: Node, scope: { event: unknown }): Value {
  switch (node.kind) {
    case 'literal':
      return { ok: true, value: node.value };
    case 'path':
      return walk(scope.event, node.keys);
    case 'has': {
      // has(a.b.c): a.b must resolve to a map; true when it has key c.
      const parent = walk(scope.event, node.keys.slice(0, -1));
      if (!parent.ok) return parent;
      const last = node.keys[node.keys.length - 1]!;
      if (parent.value === null || typeof parent.value !== 'object' || Array.isArray(parent.value)) {
        return { ok: false, error: `invalid type for field selection: ${last}` };
      }
      return { ok: true, value: Object.prototype.hasOwnProperty.call(parent.value, last) };
    }
    case 'eq':
    case 'ne': {
      const left = evaluate(node.left, scope);
      if (!left.ok) return left;
      const right = evaluate(node.right, scope);
      if (!right.ok) return right;
      const equal = celEquals(left.value, right.value);
      return { ok: true, value: node.kind === 'eq' ? equal : !equal };
    }
    case 'and':
    case 'or': {
      const decisive = node.kind === 'or';
      const op = node.kind === 'or' ? '_||_' : '_&&_';
      const left = evaluate(node.left, scope);
      const right = evaluate(node.right, scope);
      if ((left.ok && left.value === decisive) || (right.ok && right.value === decisive)) return { ok: true, value: decisive };
      if (!left.ok) return left;
      if (!right.ok) return right;
      if (typeof left.value !== 'boolean' || typeof right.value !== 'boolean') {
        return { ok: false, error: `no matching overload for '${op}'` };
      }
      return { ok: true, value: !decisive };
    }
  }
}

function walk(root: unknown, keys: string[]): Value {
  let current = root;
  for (const key of keys) {
    if (current === null || typeof current !== 'object' || Array.isArray(current)) return { ok: false, error: `no such key: ${key}` };
    if (!Object.prototype.hasOwnProperty.call(current, key)) return { ok: false, error: `no such key: ${key}` };
    current = (current as Record<string, unknown>)[key];
  }
  return { ok: true, value: current };
}

/** CEL heterogeneous equality over JSON values. */
export function celEquals(a: unknown, b: unknown): boolean {
  if (typeof a === 'number' && typeof b === 'number') return a === b;
  if (a === null || b === null) return a === b;
  if (typeof a !== typeof b) return false;
  if (typeof a !== 'object') return a === b;
  if (Array.isArray(a) !== Array.isArray(b)) return false;
  if (Array.isArray(a)) {
    const bb = b as unknown[];
    return a.length === bb.length && a.every((item, i) => celEquals(item, bb[i]));
  }
  const ao = a as Record<string, unknown>;
  const bo = b as Record<string, unknown>;
  const keys = Object.keys(ao);
  return keys.length === Object.keys(bo).length && keys.every((k) => Object.prototype.hasOwnProperty.call(bo, k) && celEquals(ao[k], bo[k]));
}

function tokenize(source: string, fail: (why: string) => never): Token[] {
  const tokens: Token[] = [];
  let i = 0;
  while (i < source.length) {
    const c = source[i]!;
    if (/\s/.test(c)) {
      i++;
      continue;
    }
    const two = source.slice(i, i + 2);
    if (two === '==' || two === '!=' || two === '&&' || two === '||') {
      tokens.push({ type: 'op', text: two, at: i });
      i += 2;
      continue;
    }
    if (c === '(' || c === ')' || c === '.') {
      if (c === '.' && /[0-9]/.test(source[i + 1] ?? '')) fail(`unexpected number at ${i}`);
      tokens.push({ type: 'op', text: c, at: i });
      i++;
      continue;
    }
    if (c === '"' || c === "'") {
      const start = i;
      let value = '';
      i++;
      for (;;) {
        const ch = source[i];
        if (ch === undefined) fail(`unterminated string at ${start}`);
        if (ch === c) {
          i++;
          break;
        }
        if (ch === '\\') {
          const esc = source[i + 1];
          const map: Record<string, string> = { n: '\n', t: '\t', r: '\r', '"': '"', "'": "'", '\\': '\\' };
          if (esc === undefined || map[esc] === undefined) fail(`unsupported escape in string at ${i}`);
          value += map[esc]!;
          i += 2;
          continue;
        }
        value += ch;
        i++;
      }
      tokens.push({ type: 'string', text: source.slice(start, i), value, at: start });
      continue;
    }
    const num = /^-?(?:0|[1-9][0-9]*)(?:\.[0-9]+)?(?:[eE][+-]?[0-9]+)?u?/.exec(source.slice(i));
    if ((c === '-' || /[0-9]/.test(c)) && num) {
      const text = num[0];
      tokens.push({ type: 'number', text, value: Number(text.replace(/u$/, '')), at: i });
      i += text.length;
      continue;
    }
    const ident = /^[A-Za-z_][A-Za-z0-9_]*/.exec(source.slice(i));
    if (ident) {
      if (ident[0] === 'in') fail(`operator "in" is not supported (at ${i})`);
      tokens.push({ type: 'ident', text: ident[0], at: i });
      i += ident[0].length;
      continue;
    }
    fail(`unsupported token ${JSON.stringify(source.slice(i, i + 2))} at ${i}`);
  }
  tokens.push({ type: 'eof', text: '', at: source.length });
  return tokens;
}
