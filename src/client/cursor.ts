/** Opaque keyset cursors for `list`: (created_at, id) of the last row, base64url. */
import { ValidationError } from '../errors.ts';

/** `createdAt` is the timestamp as Postgres prints it (microseconds kept). */
export function encodeCursor(createdAt: string, id: string): string {
  return Buffer.from(`${createdAt}|${id}`).toString('base64url');
}

export function decodeCursor(cursor: string): { createdAt: string; id: string } {
  const text = Buffer.from(cursor, 'base64url').toString();
  const [createdAt, id] = text.split('|');
  if (!createdAt || !id || Number.isNaN(Date.parse(createdAt)) || !/^[0-9a-f-]{36}$/.test(id)) {
    throw new ValidationError('invalid list cursor');
  }
  return { createdAt, id };
}
