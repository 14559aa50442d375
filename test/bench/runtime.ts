/**
 * The Trellis runtime the benchmark measures: the compiled build in dist/
 * (what an application deploys; `npm run bench` builds it first), or the
 * TypeScript sources through tsx with BENCH_SOURCE=1. tsx's transform adds a
 * helper call to every function it creates, which costs the runtime about a
 * fifth of its CPU per run (measured: 2.45 s vs 3.1 s of worker CPU for
 * 20,000 one-step runs).
 */
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

type Index = typeof import('../../src/index.ts');
type Models = typeof import('../../src/models.ts');

const dist = fileURLToPath(new URL('../../dist/index.js', import.meta.url));
export const runtimeName = process.env.BENCH_SOURCE === '1' ? 'src (tsx)' : 'dist';
if (runtimeName === 'dist' && !existsSync(dist)) throw new Error('dist/ is missing: run `npm run build` (npm run bench does)');

const runtime: Index = runtimeName === 'dist' ? await import(dist) : await import('../../src/index.ts');
const models: Models = runtimeName === 'dist' ? await import(dist.replace(/index\.js$/, 'models.js')) : await import('../../src/models.ts');
export const { createClient, createWorker, defineWorkflow, silentLogger } = runtime;
export const { defineStateMachine, createStepRegistry, templateWorkflow } = models;
