import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { useFreshDatabase } from '../helpers/database-fixture.ts';
import { runExample } from '../helpers/examples.ts';


const fx = useFreshDatabase();

describe('tracing example', () => {
  it('exports one trace from the request through the run, its steps and its children to the console', async () => {
    const { code, stdout, stderr } = await runExample('examples/tracing/main.ts', fx.db.url);
    assert.equal(code, 0, `exit ${code}\nstdout:\n${stdout}\nstderr:\n${stderr}`);
    assert.match(stdout, /^result: \{"order":"A-17","parcels":\["mug@bin-3","teapot@bin-6"\]\}$/m);
    // Every exported span line names the same trace.
    const spans = stdout.split('\n').filter((l) => l.startsWith('span '));
    assert.equal(spans.length, 11);
    assert.equal(new Set(spans.map((l) => /trace=([0-9a-f]{32})/.exec(l)?.[1])).size, 1);
    assert.match(stdout, /^trace [0-9a-f]{32} has 11 spans in 1 trace\(s\)$/m);
    const tree = stdout.split('\n').filter((l) => l.startsWith('tree ')).map((l) => l.slice(5));
    assert.deepEqual(tree, [
      'POST /orders',
      '  workflow ship-order (wait)',
      '    step reserve',
      '    workflow pack-item (completed)',
      '      step locate',
      '      step pack',
      '    workflow pack-item (completed)',
      '      step locate',
      '      step pack',
      '  workflow ship-order (completed)',
      '    step ship',
    ]);
  });
});
