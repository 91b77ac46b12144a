/**
 * The Go-compatible JSON codec behind the envelope bytes: Go's Decoder/Marshal behaviour that
 * JavaScript's JSON does not share.
 */
import assert from 'node:assert/strict';
import { GoNumber, marshalGo, parseFirstValue, toPlain } from '../../src/testing/go-json';

function parse(text: string): unknown {
  const r = parseFirstValue(text);
  if (!r.ok) throw new Error(r.error);
  return r.value;
}

describe('emulator: Go-compatible JSON', () => {
  it('sorts object keys by UTF-8 bytes and keeps arrays in order', () => {
    assert.equal(marshalGo(parse('{"b":1,"a":[3,2,1],"B":0,"é":1,"z":{"y":1,"x":2}}') as never), '{"B":0,"a":[3,2,1],"b":1,"z":{"x":2,"y":1},"é":1}');
  });

  it('keeps number text (UseNumber), or writes float64 like Go when asked', () => {
    const v = parse('[1.0, 1e3, 12345678901234567890, -0, 0.0000001]') as never;
    assert.equal(marshalGo(v), '[1.0,1e3,12345678901234567890,-0,0.0000001]');
    assert.equal(marshalGo(v, { float64Numbers: true }), '[1,1000,12345678901234567000,-0,1e-7]');
    assert.ok((parse('5') as GoNumber) instanceof GoNumber);
  });

  it('escapes like encoding/json: HTML characters, control characters, U+2028/9, lone surrogates', () => {
    assert.equal(marshalGo('<a href="x">&</a>'), '"\\u003ca href=\\"x\\"\\u003e\\u0026\\u003c/a\\u003e"');
    assert.equal(marshalGo('\b\f\n\r\t\u0001\u001f\u007f'), '"\\b\\f\\n\\r\\t\\u0001\\u001f\u007f"');
    assert.equal(marshalGo('\u2028\u2029'), '"\\u2028\\u2029"');
    assert.equal(marshalGo('ok \ud83d\ude00 \ud800'), '"ok \ud83d\ude00 \\ufffd"');
  });

  it('reads the first value only, like json.Decoder.Decode', () => {
    const r = parseFirstValue('  {"a":1} trailing');
    assert.ok(r.ok);
    assert.deepEqual(toPlain(r.value), { a: 1 });
    assert.equal(r.end, 9);
    assert.deepEqual(parseFirstValue(''), { ok: false, error: 'EOF', eof: true });
  });

  it('rejects what Go rejects, and keeps odd keys safe', () => {
    for (const bad of ['{"a":1,}', '[01]', '{"a" 1}', '"\u0001"', "{'a':1}", '{"a":tru}', '"\\x"']) {
      assert.equal(parseFirstValue(bad).ok, false, bad);
    }
    const plain = toPlain(parse('{"__proto__":{"x":1},"a":"\\ud83d\\ude00\\ud800"}') as never) as Record<string, unknown>;
    assert.deepEqual(Object.keys(plain), ['__proto__', 'a']);
    assert.equal(Object.getPrototypeOf(plain), Object.prototype);
    assert.equal(plain.a, '\ud83d\ude00\ufffd');
  });

  it('duplicate keys: the last one wins', () => {
    assert.equal(marshalGo(parse('{"a":1,"a":2}') as never), '{"a":2}');
  });
});
