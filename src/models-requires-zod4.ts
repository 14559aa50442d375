/**
 * Imported first by `trellis/models`: state machines and step templates are
 * built on zod 4's API. The core takes any Standard Schema library, so the
 * peer range admits zod 3 (3.24 and later, which implement Standard Schema);
 * an application on zod 3 that imports this entry gets a ConfigurationError
 * that says so, not a TypeError from inside zod.
 */
import * as zod from 'zod';
import { ConfigurationError } from './errors.ts';

if (typeof (zod as { z?: { core?: unknown } }).z?.core !== 'object') {
  throw new ConfigurationError('trellis/models (state machines, step templates) needs zod 4: the installed zod is older. '
    + 'The main entry (trellis) works with zod 3.24+ or any Standard Schema library; upgrade zod to ^4 to use trellis/models.');
}
