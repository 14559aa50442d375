/**
 * Author migrations with graphile-migrate against a throwaway embedded server:
 *   npm run migrations -- commit      (migrations/current.sql -> committed/)
 *   npm run migrations -- status
 * With DATABASE_URL, SHADOW_DATABASE_URL and ROOT_DATABASE_URL set it uses
 * those servers instead. Afterwards run `npm run sql:bundle`.
 */
import { spawnSync } from 'node:child_process';
import pg from 'pg';
import { startEmbeddedPostgres } from '../src/testing/embedded-postgres.ts';

const args = process.argv.slice(2);
let stop: (() => Promise<void>) | undefined;
const env = { ...process.env };
if (!env.DATABASE_URL) {
  const server = await startEmbeddedPostgres();
  stop = server.stop;
  const admin = new pg.Client(server.connectionString);
  await admin.connect();
  await admin.query('create database trellis_dev');
  await admin.query('create database trellis_shadow');
  await admin.end();
  env.DATABASE_URL = server.urlFor('trellis_dev');
  env.SHADOW_DATABASE_URL = server.urlFor('trellis_shadow');
  env.ROOT_DATABASE_URL = server.connectionString;
}
const result = spawnSync('npx', ['graphile-migrate', ...args], { stdio: 'inherit', env });
await stop?.();
process.exit(result.status ?? 1);
