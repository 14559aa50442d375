/**
 * One duration grammar in TypeScript and SQL: every string `toMs` accepts is
 * valid PostgreSQL `interval` input worth the same milliseconds
 * (`extract(epoch from s::interval)`), strings it rejects are rejected with
 * a ValidationError, and the forms PostgreSQL takes but the grammar leaves
 * out are listed here with what PostgreSQL makes of them (docs/workflows.md).
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import pg from 'pg';
import { ValidationError } from '../../src/errors.ts';
import { toMs } from '../../src/protocol/duration.ts';
import { adminUrl } from '../helpers/db.ts';

const UNITS = [
  'ms', 'msec', 'msecs', 'millisecond', 'milliseconds', 's', 'sec', 'secs', 'second', 'seconds',
  'm', 'min', 'mins', 'minute', 'minutes', 'h', 'hr', 'hrs', 'hour', 'hours', 'd', 'day', 'days',
  'w', 'week', 'weeks', 'mon', 'mons', 'month', 'months', 'y', 'yr', 'yrs', 'year', 'years',
];

const ACCEPTED = [
  ...UNITS.flatMap((u) => [`1 ${u}`, `2${u}`, `1.5 ${u}`]),
  '0s', '0 ms', '250ms', '30s', '5 minutes', '7 years', '1 hour 30 minutes', '1 day 2 hours 3 minutes 4 seconds 5 ms',
  '1 year 1 month', '1.5 years 2 months', '1 week 2 days', '1 ms 1 second', '1 second 1 week', '  2 hours  ', '2  hours',
  '0.25 years', '0.75 years', '0.5 years', '1.25 years', '2.5 years', '3.3333 months',
  '1.75 months', '0.3 weeks', '1.0000001 hours', '1.23456789 s', '0.0015 s', '1.5 ms', '100000 years', '1hour', '30 s',
  'PT1H30M', 'P1Y2M3DT4H5M6.5S', 'P2W', 'P1.5D', 'PT0.5S', 'P1Y', 'P1W2D', 'PT1.5H', 'P0.5Y', 'P1.5M', 'P1DT1H', 'P0D',
  // Twelve months are a year (365.25 days) there, whatever field they came in.
  '12 months', '18 months', '24 months', '25 months', '13.5 months', '1 year 11 months', '1 year 12 months', '0.5 years 6 months',
  '0.75 years 5 months', 'P12M', 'P18M', 'P1Y11M', 'P0.5Y7M', '120 months', '1.0000005 s', '0.0000005 s', '0.0000015 s', '0.0000025 s', '0.0000000004 hours',
];

/** Rejected by both. */
const REJECTED_BY_BOTH = [
  '', ' ', 'soon', 'hours', '1 fortnight', '1 hours 1 hours', '1 min 1 m', '1 ms 1 msec', '1 day 1 days', '1 week 1 week',
  '1e3 s', '1 minutes30 seconds', '1 hour30 minutes', 'P', 'p1d', 'pt1h', 'P1H', 'PT1D', '1 day and 2 hours',
];

/**
 * Fractions of a year that do not come to whole months: PostgreSQL 13
 * truncates the rest of the months and 14+ rounds it, so the grammar refuses
 * them rather than mean different times on different servers.
 */
const YEAR_FRACTIONS = ['0.1 years', '0.05 years', '0.04 years', '0.125 years', '0.375 years', '1.0417 years', 'P0.1Y'];

/** PostgreSQL takes these (the value it gives, in ms); the grammar leaves them out. */
const POSTGRES_ONLY: [string, number][] = [
  ['5', 5000], // a bare number is seconds there; a number (not a string) is milliseconds here
  ['-1 day', -86_400_000], ['+1 day', 86_400_000], ['1 day ago', -86_400_000], // no signs: durations are not negative
  ['1:30', 5_400_000], ['01:02:03', 3_723_000], // clock forms (is '1:30' minutes or hours?)
  ['1h30m', 5_400_000], ['2d3h', 183_600_000], // glued terms: PostgreSQL takes some ('1h30m') and not others ('1week2days')
  ['1 HOUR', 3_600_000], ['1 Day', 86_400_000], // units are lowercase here
  ['.5 hours', 1_800_000], ['1 decade', 315_576_000_000], ['PT', 0], ['P1DT', 86_400_000], ['PT1H1H', 7_200_000],
  ['1,5 hours', 104_400_000], // a comma is a separator there: 1 day 5 hours
];

let client: pg.Client;
before(async () => {
  client = new pg.Client({ connectionString: adminUrl() });
  await client.connect();
});
after(() => client.end());

async function postgresMs(text: string): Promise<number | Error> {
  try {
    const { rows } = await client.query<{ ms: number }>('select extract(epoch from $1::interval)::float8 * 1000 as ms', [text]);
    return rows[0]?.ms as number;
  } catch (error) {
    return error as Error;
  }
}

function tsMs(text: string): number | Error {
  try {
    return toMs(text as never);
  } catch (error) {
    return error as Error;
  }
}

describe('the duration grammar in TypeScript and PostgreSQL', () => {
  it(`gives the same milliseconds for each of ${ACCEPTED.length} accepted strings`, async () => {
    const differ: string[] = [];
    for (const text of ACCEPTED) {
      const [ts, sql] = [tsMs(text), await postgresMs(text)];
      if (typeof ts !== 'number' || typeof sql !== 'number' || Math.abs(ts - sql) > 0.001) {
        differ.push(`${JSON.stringify(text)}: TypeScript ${String(ts)}, PostgreSQL ${String(sql)}`);
      }
    }
    assert.deepEqual(differ, []);
  });

  it('rejects with ValidationError what PostgreSQL rejects too, quoting a bounded prefix', async () => {
    for (const text of REJECTED_BY_BOTH) {
      assert.ok(tsMs(text) instanceof ValidationError, `TypeScript takes ${JSON.stringify(text)}`);
      assert.ok(await postgresMs(text) instanceof Error, `PostgreSQL takes ${JSON.stringify(text)}`);
    }
    const long = tsMs(`1 hour ${'x'.repeat(500)}`) as Error;
    assert.ok(long instanceof ValidationError);
    assert.ok(long.message.length < 250, long.message);
  });

  it('refuses a fraction of a year that does not come to whole months, which PostgreSQL 13 and 14+ read differently', async () => {
    for (const text of YEAR_FRACTIONS) {
      const refused = tsMs(text);
      assert.ok(refused instanceof ValidationError && /whole months/.test(refused.message), `TypeScript takes ${JSON.stringify(text)}`);
      assert.ok(!(await postgresMs(text) instanceof Error), `PostgreSQL takes ${JSON.stringify(text)} (with a version-dependent value)`);
    }
  });

  it('rejects the forms only PostgreSQL takes, which PostgreSQL reads as documented', async () => {
    for (const [text, ms] of POSTGRES_ONLY) {
      assert.ok(tsMs(text) instanceof ValidationError, `TypeScript takes ${JSON.stringify(text)}`);
      assert.equal(await postgresMs(text), ms, `PostgreSQL reads ${JSON.stringify(text)}`);
    }
  });

  it('takes numbers as milliseconds and refuses negative or non-finite ones', () => {
    assert.equal(toMs(250), 250);
    assert.equal(toMs(0), 0);
    for (const bad of [-1, Number.NaN, Number.POSITIVE_INFINITY]) assert.throws(() => toMs(bad), ValidationError);
  });
});
