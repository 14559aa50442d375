/**
 * Every optional property of the package's public types admits `undefined`,
 * so an application compiled with `exactOptionalPropertyTypes` can pass
 * `{ token: process.env.TOKEN }` (the docs do) to an option typed
 * `token?: string | undefined`.
 */
import assert from 'node:assert/strict';
import { fileURLToPath } from 'node:url';
import { describe, it } from 'node:test';
import { optionalPropsWithoutUndefined } from '../helpers/optional-props.ts';

const root = fileURLToPath(new URL('../..', import.meta.url)).replace(/\/$/, '');

describe('the public types under exactOptionalPropertyTypes', () => {
  it('declare every optional property as T | undefined', () => {
    const bad = optionalPropsWithoutUndefined(root);
    assert.deepEqual(bad.map((p) => `${p.file}:${p.line} ${p.where}`), []);
  });
});
