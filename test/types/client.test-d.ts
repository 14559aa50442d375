/**
 * Compile-only type tests (checked by `npm run typecheck`, never run): the
 * types of a workflow's input and output flow from defineWorkflow's schemas
 * to client.start, run.result(), ctx.child and signals, and wrong input is a
 * type error. Each `@ts-expect-error` fails the typecheck if its line compiles.
 */
import { z } from 'zod';
import {
  type Client,
  defineSignal,
  defineWorkflow,
  type RunHandle,
  type SignalResult,
  type WorkflowContext,
  type WorkflowInput,
  type WorkflowOutput,
  type Stored,
} from '../../src/index.ts';

/** Compiles only if A and B are the same type (not merely assignable). */
type Equal<A, B> = (<T>() => T extends A ? 1 : 2) extends <T>() => T extends B ? 1 : 2 ? true : false;
const expectType = <A, B>(_proof: Equal<A, B>): void => undefined;

declare const client: Client;

// Output inferred from the function's return value.
const double = defineWorkflow({ name: 'double', input: z.object({ n: z.number() }) }, async (ctx, input) => {
  expectType<typeof input, { n: number }>(true);
  const doubled = await ctx.step('double', () => input.n * 2);
  expectType<typeof doubled, number>(true);
  return { doubled };
});
expectType<WorkflowInput<typeof double>, { n: number }>(true);
expectType<WorkflowOutput<typeof double>, { doubled: number }>(true);

// Output fixed by an output schema; input with defaults and transforms: the
// client passes the schema's input type, the function gets its output type.
const normalise = defineWorkflow({
  name: 'normalise',
  input: z.object({ email: z.string().transform((s) => s.toLowerCase().length), tries: z.number().default(3) }),
  output: z.object({ ok: z.boolean() }),
}, async (_ctx, input) => {
  expectType<typeof input, { email: number; tries: number }>(true);
  return { ok: input.tries > 0 };
});
expectType<WorkflowInput<typeof normalise>, { email: string; tries?: number | undefined }>(true);
expectType<WorkflowOutput<typeof normalise>, { ok: boolean }>(true);

// @ts-expect-error the function's return value must match the output schema
defineWorkflow({ name: 'bad-output', input: z.object({}), output: z.object({ ok: z.boolean() }) }, async () => ({ ok: 'yes' }));

export async function starts(): Promise<void> {
  const run = await client.start(double, { n: 1 });
  expectType<typeof run, RunHandle<{ doubled: number }>>(true);
  const out = await run.result({ timeout: '10s' });
  expectType<typeof out, { doubled: number }>(true);
  const ok: number = out.doubled;
  // @ts-expect-error the output is typed: doubled is a number
  const wrong: string = out.doubled;

  // @ts-expect-error n must be a number
  await client.start(double, { n: '1' });
  // @ts-expect-error n is required
  await client.start(double, {});
  // @ts-expect-error no such field
  await client.start(double, { n: 1, m: 2 });
  // @ts-expect-error input is required
  await client.start(double);

  await client.start(normalise, { email: 'Ada@Example.com' }); // tries has a default
  // @ts-expect-error email is the schema's input: a string, not the transformed number
  await client.start(normalise, { email: 5 });
  expectType<Awaited<ReturnType<Awaited<ReturnType<typeof client.start<typeof normalise>>>['result']>>, { ok: boolean }>(true);

  // By name, nothing is known: the result is unknown.
  const byName = await client.start('double', { anything: true });
  expectType<Awaited<ReturnType<typeof byName.result>>, unknown>(true);
  // client.result by id takes the type it is told.
  expectType<Awaited<ReturnType<typeof client.result<{ doubled: number }>>>, { doubled: number }>(true);
  void [ok, wrong];
}

// Children and signals carry their types into the parent workflow.
const approved = defineSignal('approved', z.object({ by: z.string() }));
export const parent = defineWorkflow({ name: 'parent', input: z.object({}) }, async (ctx) => {
  const child = await ctx.child(double, { n: 2 });
  expectType<typeof child, { doubled: number }>(true);
  // @ts-expect-error the child's input is checked too
  await ctx.child(double, { n: 'two' });
  const signal = await ctx.waitForSignal(approved, { timeout: '1 day' });
  expectType<typeof signal, SignalResult<{ by: string }>>(true);
  return signal.timedOut ? null : signal.payload.by;
});
expectType<WorkflowOutput<typeof parent>, string | null>(true);

export async function signals(runId: string): Promise<void> {
  await client.signal(runId, approved, { by: 'ada' });
  // @ts-expect-error the payload must match the signal's schema
  await client.signal(runId, approved, { by: 42 });
  const upgraded = defineSignal('upgraded', z.enum(['pro', 'team']));
  await client.signal(runId, upgraded, 'team');
  // @ts-expect-error a literal outside the enum does not widen the payload type
  await client.signal(runId, upgraded, 'free');
  await client.signal(runId, 'by-name', { anything: true });
}

// continueAsNew takes what the input schema takes (before a transform or a default).
export const paged = defineWorkflow({ name: 'paged', input: z.object({ cursor: z.string(), page: z.number().default(1) }) },
  async (ctx, { cursor, page }) => {
    if (page > 9) return cursor;
    await ctx.continueAsNew({ cursor: `${cursor}+` });
    await ctx.continueAsNew({ cursor, page: page + 1 });
    // @ts-expect-error the next execution's input is checked against the schema's input type
    await ctx.continueAsNew({ cursor: 7 });
    return cursor;
  });
/** A helper for any workflow's context still takes each one. */
const helper = (ctx: WorkflowContext) => ctx.runId;
export const usesHelper = defineWorkflow({ name: 'uses-helper', input: z.object({ n: z.number() }) }, async (ctx) => helper(ctx));

// Step results and run outputs are what comes back from the stored JSON: a Date is its string, a Map is {}.
export const stored = defineWorkflow({ name: 'stored', input: z.object({}) }, async (ctx) => {
  const when = await ctx.step('when', () => new Date());
  expectType<typeof when, string>(true);
  // @ts-expect-error a step's Date comes back as its ISO string
  when.getUTCFullYear();
  const shape = await ctx.step('shape', () => ({ at: new Date(), tags: new Map<string, number>(), n: 1, maybe: undefined as string | undefined, fn: () => 1 }));
  // A property that may be undefined is optional: JSON drops it then.
  expectType<typeof shape, { at: string; tags: Record<string, never>; n: number; maybe?: string }>(true);
  // @ts-expect-error possibly absent after the round trip
  shape.maybe.length;
  const list = await ctx.step('list', () => [new Date(), null, 2] as const);
  expectType<typeof list, [string, null, 2]>(true);
  const nothing = await ctx.step('nothing', () => undefined);
  expectType<typeof nothing, null>(true);
  // A body that returns nothing (void) resolves to void: `return ctx.step(…)` from a Promise<void> function compiles.
  const sent = await ctx.step('send', async () => { /* side effect */ });
  expectType<typeof sent, void>(true);
  // JSON types go through unchanged, recursive ones included.
  type Json = string | number | boolean | null | Json[] | { [key: string]: Json };
  const doc = await ctx.step('doc', (): Json => ({ a: [1, { b: null }] }));
  expectType<typeof doc, Json>(true);
  const loose = await ctx.step('loose', (): unknown => 1);
  expectType<typeof loose, unknown>(true);
  const side = await ctx.sideEffect(() => new Date());
  expectType<typeof side, string>(true);
  return { at: when, day: new Date() };
});
/** A helper of the workflow's own that returns a step of nothing, as Promise<void>. */
export async function sendIt(ctx: WorkflowContext): Promise<void> {
  return ctx.step('send-it', async () => undefined as void);
}
/** A generic helper says what comes back: Stored<T>. */
export function stepOf<T>(ctx: WorkflowContext, name: string, fn: () => Promise<T>): Promise<Stored<T>> {
  return ctx.step(name, fn);
}
export async function storedOutput(): Promise<void> {
  const out = await (await client.start(stored, {})).result();
  expectType<typeof out, { at: string; day: string }>(true);
}

// A lifecycle hook's output is the workflow's output type.
export const hooked = defineWorkflow({
  name: 'hooked', input: z.object({}),
  hooks: {
    onComplete: ({ output }) => {
      expectType<typeof output, { ok: boolean } | undefined>(true);
      // @ts-expect-error the output is { ok: boolean }, not a Date
      const wrong: Date | undefined = output?.ok;
      return wrong;
    },
  },
}, async () => ({ ok: true }));

// A schedule of a workflow whose input schema needs a value must give one.
export async function schedules(): Promise<void> {
  await client.schedules.set('nightly', { cron: '0 3 * * *', workflow: double, input: { n: 2 } });
  // @ts-expect-error input is required: set() refuses a missing one at run time
  await client.schedules.set('nightly', { cron: '0 3 * * *', workflow: double });
  const optional = defineWorkflow({ name: 'optional-input', input: z.object({ n: z.number() }).optional() }, async () => 1);
  await client.schedules.set('loose', { cron: '0 3 * * *', workflow: optional });
  await client.schedules.set('by-name', { cron: '0 3 * * *', workflow: 'double' });
}

// expectType itself must be able to fail.
// @ts-expect-error number is not string
expectType<number, string>(true);
// @ts-expect-error assignable is not enough: { a: 1 } is not { a: number }
expectType<{ a: 1 }, { a: number }>(true);

// ctx.transaction: the result is the body's; tx runs queries and is what the client calls take as `tx`.
defineWorkflow({ name: 'tx-types', input: z.object({ order: z.string() }) }, async (ctx, { order }) => {
  const id = await ctx.transaction('book', async ({ tx, attempt, idempotencyKey }) => {
    const { rows, rowCount } = await tx.query<{ id: number }>('insert into orders (ref) values ($1) returning id', [order]);
    expectType<typeof rowCount, number | null>(true);
    expectType<typeof attempt, number>(true);
    expectType<typeof idempotencyKey, string>(true);
    await client.start(double, { n: 1 }, { tx });
    await client.signal('run-id', 'paid', { order }, { tx });
    return rows[0]?.id ?? 0;
  }, { isolation: 'serializable', retry: { maxAttempts: 3 }, timeout: '5s' });
  expectType<typeof id, number>(true);
  // @ts-expect-error: not an isolation level PostgreSQL names
  await ctx.transaction('bad', () => 1, { isolation: 'snapshot' });
  return id;
});

// A signal defined with { reply }: ctx.reply takes its schema's input, client.request resolves to its output; the payload is typed.
const withdrawTyped = defineSignal('withdraw-typed', z.object({ amount: z.number() }), { reply: z.object({ balance: z.number(), note: z.string().default('') }) });
export const teller = defineWorkflow({ name: 'teller-typed', input: z.object({}), signals: [withdrawTyped] }, async (ctx) => {
  const ask = await ctx.waitForSignal(withdrawTyped);
  if (ask.timedOut) return 'idle';
  await ctx.reply(ask, { balance: 70 - ask.payload.amount });
  // @ts-expect-error the answer's schema wants a number balance
  await ctx.reply(ask, { balance: 'seventy' });
  const plain = await ctx.waitForSignal(defineSignal('plain-typed', z.object({ n: z.number() })));
  await ctx.reply(plain, 'anything goes without { reply }');
  await ctx.reply('request-id-1', { any: 'value' });
  return 'answered';
});
export async function typedRequests(): Promise<void> {
  const answer = await client.request('00000000-0000-4000-8000-000000000000', withdrawTyped, { amount: 30 });
  expectType<typeof answer, { balance: number; note: string }>(true);
  // @ts-expect-error the payload is checked against the signal's schema
  await client.request('00000000-0000-4000-8000-000000000000', withdrawTyped, { amount: 'thirty' });
  // Without { reply }: unknown, or the type argument given (the payload then checked at run time only).
  const loose = await client.request('00000000-0000-4000-8000-000000000000', defineSignal('loose', z.object({ n: z.number() })), { n: 1 });
  expectType<typeof loose, unknown>(true);
  const named = await client.request<{ ok: boolean }>('00000000-0000-4000-8000-000000000000', 'by-name', { any: 1 });
  expectType<typeof named, { ok: boolean }>(true);
}
