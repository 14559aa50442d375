import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { z } from 'zod';
import { defineStateMachine } from '../../src/state-machine/define.ts';
import { machineDiagram, runPathDiagram } from '../../src/state-machine/diagram.ts';
import { templateDiagram } from '../../src/templates/diagram.ts';
import { parseTemplate } from '../../src/templates/schema.ts';
import { ValidationError } from '../../src/errors.ts';

describe('diagrams', () => {
  it('a machine with a status that is not a plain word gets a quoted alias', () => {
    const machine = defineStateMachine({ name: 'm', status: z.enum(['new', 'in review', 'done']), object: z.object({}) })
      .step('new', () => 'in review', 'in review')
      .callback('in review', () => 'done', 'done')
      .build();
    assert.equal(machineDiagram(machine, { direction: 'TB' }), [
      'stateDiagram-v2', '  direction TB', '  state "in review" as s_in_review', '  [*] --> new',
      '  new --> s_in_review', '  s_in_review --> done: callback', '  done --> [*]', '',
    ].join('\n'));
  });

  it('a template flowchart shows jumps, continue and compensation edges', () => {
    const definition = parseTemplate('t', {
      steps: [
        { name: 'reserve', compensate: 'release', retry: { maxAttempts: 5 } },
        { name: 'charge', onFailure: 'compensate', timeout: '30s' },
        { name: 'notify', step: 'mail', onFailure: 'continue', next: 'end' },
        { name: 'unused' },
      ],
    });
    assert.equal(templateDiagram(definition), [
      'flowchart TB', '  start(((start)))', '  finish(((end)))',
      '  e0["reserve<br/>5 attempts"]', '  e1["charge<br/>timeout 30s"]', '  e2["notify<br/>step mail"]', '  e3["unused"]',
      '  start --> e0', '  e0 --> e1', '  e1 --> e2',
      '  c0["reserve compensate<br/>step release"]', '  e1 -. fails .-> c0', '  c0 -. then .-> failed(((failed)))',
      '  e2 --> finish', '  e2 -. fails .-> finish', '  e3 --> finish', '',
    ].join('\n'));
  });

  it('a run path lists the recorded calls in order, machine transitions labelled', () => {
    assert.equal(runPathDiagram([
      { seq: 1, name: 'awaiting callback', kind: 'step', status: 'completed', output: { from: 'awaiting', to: 'awaiting', outcome: 'skip' } },
      { seq: 0, name: 'created', kind: 'step', status: 'completed', output: { from: 'created', to: 'awaiting', outcome: 'transition' } },
      { seq: 2, name: 'nap', kind: 'sleep', status: 'waiting' },
    ]), [
      'flowchart LR', '  start(((start)))',
      '  c0["#0 step created created → awaiting · completed"]', '  start --> c0',
      '  c1["#1 step awaiting callback awaiting → awaiting (skip) · completed"]', '  c0 --> c1',
      '  c2["#2 sleep nap · waiting"]', '  c1 --> c2', '',
    ].join('\n'));
  });

  it('a template is checked without a database: cycles, duplicates, unknown next', () => {
    assert.throws(() => parseTemplate('t', { steps: [{ name: 'a', next: 'a' }] }), /cycle at a/);
    assert.throws(() => parseTemplate('t', { steps: [{ name: 'a' }, { name: 'a' }] }), /used twice/);
    assert.throws(() => parseTemplate('t', { steps: [{ name: 'a', next: 'b' }] }), ValidationError);
    assert.throws(() => parseTemplate('t', { steps: [{ name: "a'; drop" }] }), ValidationError);
  });
});
