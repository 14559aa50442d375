/**
 * The schedule ticker's plan for one schedule (planFire): a value it cannot
 * compute with is that schedule's error, never an exception that would
 * fail the whole tick and stop every other schedule.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { planFire } from '../../src/worker/roles/schedule-ticker.ts';

describe('planFire', () => {
  const due = {
    name: 'daily', cron: '0 7 * * *', time_zone: 'UTC', next_at: new Date('2026-01-02T07:00:00Z'), next_from: null,
    catch_up: 0, ends_at: null as Date | null, now: new Date('2026-01-02T07:00:01Z'),
  };

  it('plans a due tick and the next one', () => {
    const fire = planFire(due, new Map());
    assert.deepEqual(fire.ticks, ['2026-01-02T07:00:00.000Z']);
    assert.equal(fire.next, '2026-01-03T07:00:00.000Z');
    assert.equal(fire.error, null);
  });

  it('turns a value it cannot compute with (an infinite ends_at, read as a number) into that schedule\'s error', () => {
    const fire = planFire({ ...due, ends_at: Infinity as unknown as Date }, new Map());
    assert.deepEqual(fire.ticks, []);
    assert.match(fire.error ?? '', /^the ticker could not compute this schedule: /);
    assert.equal(fire.next_at, '2026-01-02T07:00:00.000Z', 'as read, so schedule_fire finds the row unchanged and records the error');
  });
});
