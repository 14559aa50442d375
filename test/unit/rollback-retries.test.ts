/**
 * withRollbackRetries (src/db/transient.ts): a statement is run again only
 * after an error that rolled its transaction back for certain (40001,
 * 40P01), never after a lost connection (which may have hit the commit: a
 * keyless start run again would start a second run) or any other error.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { isRolledBack, withRollbackRetries } from '../../src/db/transient.ts';

const pgError = (code: string) => Object.assign(new Error(`pg ${code}`), { code, severity: 'ERROR' });

describe('withRollbackRetries', () => {
  it('runs again after a serialization failure or a deadlock, and returns the result', async () => {
    for (const code of ['40001', '40P01']) {
      let calls = 0;
      const value = await withRollbackRetries(async () => {
        calls++;
        if (calls < 3) throw pgError(code);
        return 'started';
      });
      assert.deepEqual([value, calls], ['started', 3], code);
    }
  });

  it('does not run again after a lost connection, a unique violation or a TR error; gives up after its attempts', async () => {
    for (const error of [pgError('08006'), pgError('57P01'), pgError('23505'), pgError('TR001'), new Error('Connection terminated unexpectedly')]) {
      let calls = 0;
      await assert.rejects(withRollbackRetries(async () => {
        calls++;
        throw error;
      }), (e) => e === error);
      assert.equal(calls, 1, error.message);
      assert.equal(isRolledBack(error), false);
    }
    let calls = 0;
    await assert.rejects(withRollbackRetries(async () => {
      calls++;
      throw pgError('40001');
    }, 2), { code: '40001' });
    assert.equal(calls, 2);
  });
});
