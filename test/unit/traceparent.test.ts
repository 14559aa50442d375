import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { formatTraceparent, parseTraceparent } from '../../src/observability/tracing.ts';

describe('traceparent', () => {
  it('formats a span context as a W3C traceparent and parses it back', () => {
    const sc = { traceId: '0af7651916cd43dd8448eb211c80319c', spanId: 'b7ad6b7169203331', traceFlags: 1 };
    const text = formatTraceparent(sc);
    assert.equal(text, '00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01');
    assert.deepEqual(parseTraceparent(text), sc);
    assert.equal(formatTraceparent({ ...sc, traceFlags: 0 }).slice(-3), '-00');
  });

  it('ignores anything in metadata that is not a valid traceparent (the run then starts a trace of its own)', () => {
    for (const bad of [
      undefined, null, 42, {}, '', 'garbage',
      '00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331',          // no flags
      '01-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01',       // unknown version
      '00-0AF7651916CD43DD8448EB211C80319C-b7ad6b7169203331-01',       // upper case
      '00-00000000000000000000000000000000-b7ad6b7169203331-01',       // all-zero trace id
      '00-0af7651916cd43dd8448eb211c80319c-0000000000000000-01',       // all-zero span id
      ' 00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01',      // padding
      `00-${'a'.repeat(10_000)}`,
    ]) {
      assert.equal(parseTraceparent(bad), undefined, String(bad).slice(0, 60));
    }
  });
});
