import assert from 'node:assert/strict';
import { readdirSync, readFileSync } from 'node:fs';
import { describe, it } from 'node:test';
import { SQLSTATES, toTrellisError } from '../../src/db/errors.ts';
import {
  ConfigurationError,
  DatabaseError,
  IllegalTransitionError,
  isTrellisError,
  LeaseLostError,
  NotFoundError,
  PayloadTooLargeError,
  SchemaVersionError,
  quoteValue,
  TrellisError,
  ValidationError,
} from '../../src/errors.ts';

/** What pg rejects with: an Error carrying the SQLSTATE in `code`. */
const pgError = (code: string, message = `failed with ${code}`) => Object.assign(new Error(message), { code });

describe('toTrellisError (SQLSTATE mapping)', () => {
  it('maps every TR code to its class, keeping the code, the message and the cause', () => {
    const expected: Record<string, new (m: string) => TrellisError> = {
      TR001: ValidationError,
      TR002: NotFoundError,
      TR003: LeaseLostError,
      TR004: IllegalTransitionError,
      TR005: PayloadTooLargeError,
      TR007: SchemaVersionError,
      TR008: ConfigurationError,
    };
    assert.deepEqual(Object.keys(SQLSTATES).sort(), Object.keys(expected).sort());
    for (const [sqlstate, Class] of Object.entries(SQLSTATES)) {
      const source = pgError(sqlstate, `message of ${sqlstate}`);
      const error = toTrellisError(source) as TrellisError;
      assert.ok(error instanceof expected[sqlstate]!, `${sqlstate} → ${error.constructor.name}`);
      assert.ok(error instanceof Class);
      assert.equal(error.code, new Class('x').code, sqlstate);
      assert.equal(error.name, Class.name);
      assert.equal(error.message, `message of ${sqlstate}`);
      assert.equal(error.details.sqlstate, sqlstate);
      assert.equal(error.cause, source);
      assert.ok(isTrellisError(error));
    }
  });

  it('knows every TR code the SQL functions raise', () => {
    const dir = new URL('../../sql/', import.meta.url);
    const raised = new Set<string>();
    for (const file of readdirSync(dir).filter((f) => f.endsWith('.sql'))) {
      for (const [, code] of readFileSync(new URL(file, dir), 'utf8').matchAll(/'(TR\d{3})'/g)) raised.add(code!);
    }
    assert.ok(raised.size >= 5, `found ${[...raised]}`);
    for (const code of raised) assert.ok(code in SQLSTATES, `${code} is raised in sql/ but not mapped`);
  });

  it('maps data exceptions (class 22) and check violations (23514) to ValidationError', () => {
    for (const sqlstate of ['22P02', '22003', '22007', '22023', '2201E', '23514']) {
      const error = toTrellisError(pgError(sqlstate));
      assert.ok(error instanceof ValidationError, `${sqlstate} → ${error.constructor.name}`);
      assert.equal(error.code, 'validation');
      assert.equal(error.details.sqlstate, sqlstate);
    }
  });

  it('maps any other SQLSTATE to DatabaseError, with the SQLSTATE in details', () => {
    for (const sqlstate of ['23505', '23503', '40001', '40P01', '57P01', '42P01', '53300', 'XX000']) {
      const error = toTrellisError(pgError(sqlstate));
      assert.ok(error instanceof DatabaseError, `${sqlstate} → ${error.constructor.name}`);
      assert.ok(!(error instanceof ValidationError), sqlstate);
      assert.equal(error.code, 'database');
      assert.equal(error.details.sqlstate, sqlstate);
    }
  });

  it('marks serialization failures, deadlocks and lost connections retryable, and nothing else', () => {
    for (const sqlstate of ['40001', '40P01', '08006', '08003', '57P01', '57P02', '57P03', '53300']) {
      const error = toTrellisError(pgError(sqlstate)) as DatabaseError;
      assert.ok(error instanceof DatabaseError, sqlstate);
      assert.equal(error.retryable, true, sqlstate);
    }
    for (const sqlstate of ['23505', '23503', '42P01', '42501', 'XX000', '57014']) {
      assert.equal((toTrellisError(pgError(sqlstate)) as DatabaseError).retryable, false, sqlstate);
    }
    for (const code of ['ECONNRESET', 'EPIPE']) assert.equal((toTrellisError(pgError(code)) as DatabaseError).retryable, true, code);
    assert.equal(new DatabaseError('x').retryable, false);
  });

  it('maps the code-less errors node-postgres throws for a lost or timed-out connection to a retryable DatabaseError', () => {
    for (const message of ['Connection terminated unexpectedly', 'Connection terminated', 'timeout exceeded when trying to connect',
      'Connection terminated due to connection timeout', 'Query read timeout', 'timeout expired',
      'Client has encountered a connection error and is not queryable']) {
      const error = toTrellisError(new Error(message));
      assert.ok(error instanceof DatabaseError, message);
      assert.equal(error.retryable, true, message);
      assert.equal(error.details.code, 'connection');
      // The pool's own timeout lost nothing: it says no connection came in time.
      assert.match(error.message, message.startsWith('timeout exceeded') ? /^no connection from the pool within its connectionTimeoutMillis/ : /^lost the connection to the database: /);
    }
    const other = new Error('something else went wrong');
    assert.equal(toTrellisError(other), other, 'other plain errors pass through');
    // A pool that was ended (its client, worker or test env closed): a typed ConfigurationError, not retryable.
    assert.ok(toTrellisError(new Error('Cannot use a pool after calling end on the pool')) instanceof ConfigurationError);
  });

  it('maps socket errors to DatabaseError and leaves everything else alone', () => {
    const refused = toTrellisError(pgError('ECONNREFUSED', 'connect ECONNREFUSED 127.0.0.1:1'));
    assert.ok(refused instanceof DatabaseError);
    assert.match(refused.message, /cannot reach the database/);
    assert.equal(refused.details.code, 'ECONNREFUSED');

    const trellis = new NotFoundError('gone');
    assert.equal(toTrellisError(trellis), trellis);
    const plain = new TypeError('a bug');
    assert.equal(toTrellisError(plain), plain);
    // Codes that are neither SQLSTATEs nor socket errors.
    for (const code of ['TR0011', 'abc', '22', '2200']) assert.equal(toTrellisError(pgError(code)).constructor, Error, code);
    const thrown = toTrellisError('a string was thrown');
    assert.ok(thrown instanceof DatabaseError);
    assert.equal(thrown.message, 'a string was thrown');
  });
});

describe('isTrellisError', () => {
  it('recognises errors of another copy of the package by the Symbol.for brand', async () => {
    // A second instance of the module, as a bundled or duplicated dependency would load it.
    const copy = (await import(`../../src/errors.ts?copy=${Date.now()}`)) as typeof import('../../src/errors.ts');
    assert.notEqual(copy.ValidationError, ValidationError);
    const foreign = new copy.ValidationError('from the other copy');
    assert.ok(!(foreign instanceof TrellisError));
    assert.ok(isTrellisError(foreign));
    assert.ok(copy.isTrellisError(new NotFoundError('from this copy')));
    // Already a Trellis error: passed through, not wrapped.
    assert.equal(toTrellisError(foreign), foreign);
  });

  it('is false for anything without the brand', () => {
    const lookalike = Object.assign(new Error('x'), { code: 'validation', name: 'ValidationError' });
    const otherSymbol = Object.assign(new Error('x'), { [Symbol('trellis.error')]: true });
    const wrongValue = Object.assign(new Error('x'), { [Symbol.for('trellis.error')]: 'yes' });
    for (const value of [lookalike, otherSymbol, wrongValue, new Error('x'), null, undefined, 'ValidationError', 42, {}]) {
      assert.equal(isTrellisError(value), false, String(value));
    }
  });
});

describe('quoteValue', () => {
  it('names NaN, the infinities and an invalid Date as they are, not as null', () => {
    assert.equal(quoteValue(Number.NaN), 'NaN');
    assert.equal(quoteValue(Number.POSITIVE_INFINITY), 'Infinity');
    assert.equal(quoteValue(Number.NEGATIVE_INFINITY), '-Infinity');
    assert.equal(quoteValue(new Date('nope')), 'Invalid Date');
    assert.equal(quoteValue(null), 'null');
    assert.equal(quoteValue(12), '12');
    assert.equal(quoteValue('x'), '"x"');
  });
});
