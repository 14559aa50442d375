/**
 * src/workflow/cron.ts: cron expressions in IANA time zones (croner), one
 * fire per wall-clock tick across DST changes, and the catch-up policy's
 * choice of due ticks.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { ValidationError } from '../../src/errors.ts';
import { dueTicks, parseCron } from '../../src/workflow/cron.ts';

/** Every tick in (from, to]. */
function ticks(cron: string, zone: string, from: string, to: string): string[] {
  const c = parseCron(cron, zone);
  const out: string[] = [];
  for (let t = c.nextTick(new Date(from)); t && t <= new Date(to); t = c.nextTick(t)) out.push(t.toISOString());
  return out;
}

describe('parseCron', () => {
  it('reads 5 fields, 6 with seconds first, and nicknames', () => {
    assert.equal(parseCron('0 7 * * *', 'UTC').nextTick(new Date('2026-01-01T07:00:00Z'))?.toISOString(), '2026-01-02T07:00:00.000Z');
    assert.equal(parseCron('*/10 * * * * *').nextTick(new Date('2026-01-01T00:00:00Z'))?.toISOString(), '2026-01-01T00:00:10.000Z');
    assert.equal(parseCron('@daily', 'Europe/Berlin').nextTick(new Date('2026-01-01T12:00:00Z'))?.toISOString(), '2026-01-01T23:00:00.000Z');
    // 29 February fires, in leap years.
    assert.equal(parseCron('0 0 29 2 *').nextTick(new Date('2026-03-01T00:00:00Z'))?.toISOString(), '2028-02-29T00:00:00.000Z');
  });

  for (const [what, cron, zone] of [
    ['a minute out of range', '61 * * * *', 'UTC'],
    ['too few fields', '* * *', 'UTC'],
    ['SQL in the expression', "0 0 * * *'; drop table x; --", 'UTC'],
    ['an unknown time zone', '0 0 * * *', 'Mars/Olympus'],
    ['a time zone with a quote', '0 0 * * *', "Europe/Berlin'"],
    ['a day no month has (30 February): it would never fire', '0 0 30 2 *', 'UTC'],
    ['31 April', '0 12 31 4 *', 'Europe/Berlin'],
  ] as const) {
    it(`refuses ${what} with a ValidationError`, () => {
      assert.throws(() => parseCron(cron, zone), ValidationError);
    });
  }
});

describe('DST', () => {
  it('Europe/Berlin: 02:30 on the spring-forward night (02:00 -> 03:00) fires once, at 03:00 CEST', () => {
    assert.deepEqual(ticks('30 2 * * *', 'Europe/Berlin', '2026-03-27T12:00:00Z', '2026-03-30T12:00:00Z'), [
      '2026-03-28T01:30:00.000Z', // 02:30 CET
      '2026-03-29T01:00:00.000Z', // 02:30 does not exist: 03:00 CEST
      '2026-03-30T00:30:00.000Z', // 02:30 CEST
    ]);
  });

  it('Europe/Berlin: 02:30 on the fall-back night (03:00 -> 02:00) fires once, not in the repeated hour again', () => {
    assert.deepEqual(ticks('30 2 * * *', 'Europe/Berlin', '2026-10-24T12:00:00Z', '2026-10-26T12:00:00Z'), [
      '2026-10-25T00:30:00.000Z', // 02:30 CEST, the first of the two
      '2026-10-26T01:30:00.000Z', // 02:30 CET
    ]);
  });

  it('Europe/Berlin: a half-hourly schedule fires each wall-clock time of the repeated hour once', () => {
    assert.deepEqual(ticks('*/30 * * * *', 'Europe/Berlin', '2026-10-24T23:45:00Z', '2026-10-25T02:15:00Z'), [
      '2026-10-25T00:00:00.000Z', // 02:00 CEST
      '2026-10-25T00:30:00.000Z', // 02:30 CEST
      // 02:00 and 02:30 CET (01:00Z, 01:30Z) are the same wall-clock ticks: not again
      '2026-10-25T02:00:00.000Z', // 03:00 CET
    ]);
  });

  it('Europe/Berlin: a cron of every minute, every 5 minutes or every second goes on past the repeated hour (it ended there)', () => {
    for (const [cron, last] of [['* * * * *', '2026-10-25T00:59:00.000Z'], ['*/5 * * * *', '2026-10-25T00:55:00.000Z'],
      ['* * * * * *', '2026-10-25T00:59:59.000Z']] as const) {
      const c = parseCron(cron, 'Europe/Berlin');
      assert.equal(c.nextTick(new Date(new Date(last).getTime() - 1))?.toISOString(), last, cron);
      // 02:00-02:59 CET (01:00Z-01:59Z) repeat 02:00-02:59 CEST: the next tick is 03:00 CET.
      assert.equal(c.nextTick(new Date(last))?.toISOString(), '2026-10-25T02:00:00.000Z', cron);
      // Asked from inside the repeated hour, too.
      assert.equal(c.nextTick(new Date('2026-10-25T01:17:30Z'))?.toISOString(), '2026-10-25T02:00:00.000Z', cron);
    }
  });

  it('Australia/Lord_Howe: a cron of every minute goes on past its repeated half hour', () => {
    // 02:00 LHDT (+11) falls back to 01:30 LHST (+10:30) on 5 April 2026 (15:00Z): 01:30-01:59 repeat.
    const c = parseCron('* * * * *', 'Australia/Lord_Howe');
    assert.equal(c.nextTick(new Date('2026-04-04T14:59:00Z'))?.toISOString(), '2026-04-04T15:30:00.000Z');
  });

  it('latest: the newest ticks at or before a time, never a repeat', () => {
    const c = parseCron('* * * * *', 'Europe/Berlin');
    assert.deepEqual(c.latest(new Date('2026-10-25T01:20:30Z'), 2).map((t) => t.toISOString()),
      ['2026-10-25T00:59:00.000Z', '2026-10-25T00:58:00.000Z']);
    assert.deepEqual(parseCron('0 * * * *').latest(new Date('2026-01-01T05:00:00Z'), 2).map((t) => t.toISOString()),
      ['2026-01-01T05:00:00.000Z', '2026-01-01T04:00:00.000Z']);
  });

  it('latest just after an autumn repeat: the tick after it, then the first occurrences before it (a repeated hour holds more ticks than it skipped)', () => {
    const c = parseCron('*/10 * * * *', 'Europe/Berlin'); // 2026-10-25: 02:00-02:59 is CEST (00:00Z-00:59Z), then CET (01:00Z-01:59Z)
    assert.deepEqual(c.latest(new Date('2026-10-25T02:05:00Z'), 3).map((t) => t.toISOString()),
      ['2026-10-25T02:00:00.000Z', '2026-10-25T00:50:00.000Z', '2026-10-25T00:40:00.000Z']);
    assert.deepEqual(parseCron('* * * * * *', 'Europe/Berlin').latest(new Date('2026-10-25T02:00:01Z'), 3).map((t) => t.toISOString()),
      ['2026-10-25T02:00:01.000Z', '2026-10-25T02:00:00.000Z', '2026-10-25T00:59:59.000Z'], 'an hour of 3,600 repeats is passed in one step');
    assert.deepEqual(parseCron('0 0 29 2 *').latest(new Date('2026-10-25T00:00:00Z'), 2).map((t) => t.toISOString()),
      ['2024-02-29T00:00:00.000Z', '2020-02-29T00:00:00.000Z'], 'a rare tick: as many as asked');
  });

  it('America/New_York: 02:30 on the spring-forward night fires once at 03:00 EDT', () => {
    assert.deepEqual(ticks('30 2 * * *', 'America/New_York', '2026-03-07T12:00:00Z', '2026-03-09T12:00:00Z'), [
      '2026-03-08T07:00:00.000Z',
      '2026-03-09T06:30:00.000Z',
    ]);
  });

  it('America/New_York: 01:30 on the fall-back night (02:00 -> 01:00) fires once', () => {
    assert.deepEqual(ticks('30 1 * * *', 'America/New_York', '2026-10-31T12:00:00Z', '2026-11-02T12:00:00Z'), [
      '2026-11-01T05:30:00.000Z', // 01:30 EDT; 01:30 EST (06:30Z) is the same tick
      '2026-11-02T06:30:00.000Z',
    ]);
  });
});

describe('dueTicks', () => {
  const hourly = parseCron('0 * * * *', 'UTC');
  const first = new Date('2026-01-01T00:00:00Z');
  const now = new Date('2026-01-01T05:30:00Z');

  it('catch-up 0 starts only the latest due tick and skips the missed ones', () => {
    const due = dueTicks(hourly, first, now, 0, null);
    assert.deepEqual(due.ticks.map((t) => t.toISOString()), ['2026-01-01T05:00:00.000Z']);
    assert.equal(due.skipped, 5);
    assert.equal(due.next?.toISOString(), '2026-01-01T06:00:00.000Z');
  });

  it('catch-up N starts the N latest missed ticks too, oldest first', () => {
    const due = dueTicks(hourly, first, now, 2, null);
    assert.deepEqual(due.ticks.map((t) => t.toISOString()), ['2026-01-01T03:00:00.000Z', '2026-01-01T04:00:00.000Z', '2026-01-01T05:00:00.000Z']);
    assert.equal(due.skipped, 3);
  });

  it('a long backlog that ends just after an autumn repeat: the latest ticks, not walked ones from months before', () => {
    const everyMinute = parseCron('* * * * *', 'Europe/Berlin');
    const due = dueTicks(everyMinute, new Date('2026-12-11T07:33:00Z'), new Date('2027-10-31T02:00:30Z'), 2, null);
    assert.deepEqual(due.ticks.map((t) => t.toISOString()), ['2027-10-31T00:58:00.000Z', '2027-10-31T00:59:00.000Z', '2027-10-31T02:00:00.000Z']);
  });

  it('a cron of every second after a day of downtime: the latest tick, the walked ones skipped, without walking the day', () => {
    const everySecond = parseCron('* * * * * *', 'UTC');
    const at = new Date('2026-01-02T00:00:00.500Z');
    const due = dueTicks(everySecond, new Date('2026-01-01T00:00:00Z'), at, 0, null);
    assert.deepEqual(due.ticks.map((t) => t.toISOString()), ['2026-01-02T00:00:00.000Z']);
    assert.equal(due.skipped, 1000);
    assert.equal(due.next?.toISOString(), '2026-01-02T00:00:01.000Z');
    const three = dueTicks(everySecond, new Date('2026-01-01T00:00:00Z'), at, 2, null);
    assert.deepEqual(three.ticks.map((t) => t.toISOString()),
      ['2026-01-01T23:59:58.000Z', '2026-01-01T23:59:59.000Z', '2026-01-02T00:00:00.000Z']);
    assert.equal(three.skipped, 1000);
    const ended = dueTicks(everySecond, new Date('2026-01-01T00:00:00Z'), at, 0, new Date('2026-01-01T12:00:00Z'));
    assert.deepEqual(ended.ticks.map((t) => t.toISOString()), ['2026-01-01T12:00:00.000Z']);
    assert.equal(ended.next, null);
  });

  it('stops at the end date, with no next tick', () => {
    const due = dueTicks(hourly, first, now, 100, new Date('2026-01-01T02:30:00Z'));
    assert.equal(due.ticks.length, 3);
    assert.equal(due.next, null);
  });
});
