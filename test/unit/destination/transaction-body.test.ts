import { describe, expect, it } from 'vitest';
import { composeBody } from '../../../services/destination/transaction-body.js';
import { encodeCommands, RestoreCommand, type RespArg } from '../../../services/destination/resp-codec.js';
import { EventOrigin, type Op } from '../../../services/destination/translate.js';

const op = (db: number | null, args: RespArg[], extra: Partial<Op> = {}): Op => ({ args, db, slot: null, origin: new EventOrigin(0, 0, String(args[0])), ...extra });

describe('composeBody', () => {
  it('SELECTs each op\'s db when it changes, again after a script that selects inside, and says where it ends', () => {
    const ops = [op(0, ['SET', 'a', '1']), op(0, ['SET', 'b', '2']), op(3, ['INCR', 'n']), op(null, ['PUBLISH', 'c', 'm']), op(3, ['EVAL', 's', '0'], { clobbersDb: true }), op(3, ['DEL', 'x'])];
    const body = composeBody(ops, 0, true);
    const expected = [['SET', 'a', '1'], ['SET', 'b', '2'], ['SELECT', '3'], ['INCR', 'n'], ['PUBLISH', 'c', 'm'], ['EVAL', 's', '0'], ['SELECT', '3'], ['DEL', 'x']];
    expect(body.commands).toEqual(expected);
    expect(body.origins.map((o) => o?.name ?? null)).toEqual(['SET', 'SET', null, 'INCR', 'PUBLISH', 'EVAL', null, 'DEL']);
    expect(body.endDb).toBe(3);
    expect(body.wire.count).toBe(expected.length);
    expect(Buffer.concat(body.wire.chunks).equals(encodeCommands(expected))).toBe(true);
    // a script last: the db is unknown afterwards
    expect(composeBody(ops.slice(0, 5), 0, true).endDb).toBe(-1);
  });

  it('cluster transactions never SELECT; nothing is encoded unless asked', () => {
    const body = composeBody([op(0, ['SET', 'a', '1']), op(5, ['SET', 'b', '2'])], null, false);
    expect(body.commands).toEqual([['SET', 'a', '1'], ['SET', 'b', '2']]);
    expect(body.endDb).toBeNull();
    expect(body.wire).toEqual({ chunks: [], count: 0 });
  });

  it('a RESTORE op goes as its template, an encoded one as its bytes', () => {
    const restore = new RestoreCommand(Buffer.from('k'), '0', Buffer.from([1, 2, 3]), true);
    const resp = encodeCommands([['SET', 'x', 'y']]);
    const encoded = { resp, respStart: 0, respEnd: resp.length } as unknown as Op['encoded'];
    const body = composeBody([op(1, restore.argList(), { restore }), op(1, ['SET', 'x', 'y'], { encoded })], 1, true);
    expect(body.commands[0]).toBe(restore);
    expect(body.commands[1]).toBe(encoded);
    expect(Buffer.concat(body.wire.chunks).equals(encodeCommands([restore.argList(), ['SET', 'x', 'y']]))).toBe(true);
  });
});
