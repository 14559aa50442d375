/**
 * Compile-only tests of the Duration type (checked by `npm run typecheck`):
 * it takes what the parser takes and rejects, where a template literal type
 * can, what the parser rejects. Each `@ts-expect-error` fails the typecheck
 * if its line compiles.
 */
import type { Duration } from '../../src/index.ts';

export const accepted: Duration[] = [
  250, '30s', '250ms', '5 minutes', '1.5 hours', '2 days', '1 week', '3 months', '7 years',
  '1 hour 30 minutes', '1 day 2 hours 3 minutes', '1y', '2 mons', 'PT1H30M', 'P1Y2M3DT4H5M6S',
];

// @ts-expect-error a string needs a unit ('5' would be 5 seconds in PostgreSQL)
export const bare: Duration = '5';
// @ts-expect-error not a unit of the grammar
export const fortnight: Duration = '1 fortnight';
// @ts-expect-error units are lowercase
export const upper: Duration = '1 Hour';
// @ts-expect-error not a number
export const soon: Duration = 'soon';
// @ts-expect-error no number before the unit
export const unitOnly: Duration = 'hours';
