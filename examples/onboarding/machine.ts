/**
 * The onboarding machine and the sign-up form workflow feeding it, in a module
 * of their own (no side effects on import), so that main.ts runs them and
 * `trellis diagram --machine onboarding --module examples/onboarding/machine.ts`
 * draws the machine.
 */
import { z } from 'zod';
import { defineWorkflow, type RunEvent } from '../../src/index.ts';
import { defineStateMachine, outboxConnector } from '../../src/models.ts';

const Status = z.enum(['created', 'emailed', 'reminded', 'verified', 'welcomed', 'abandoned']);
const Signup = z.object({
  email: z.string().email(),
  code: z.string(),
  signedUpAt: z.string(),
  mails: z.array(z.string()),
});

// A sign-up form handled by an ordinary workflow; its completed events carry its output.
export const signupForm = defineWorkflow({ name: 'signup-form', input: z.object({ email: z.string().email() }), eventPayloads: true },
  async (ctx, { email }) => ctx.step('store', () => ({ email, code: email.slice(0, 2).toUpperCase() })));

/** The mails sent, in order. */
export const sent: string[] = [];
let hooked: () => void = () => undefined;
/** Resolved when the durable onComplete hook of user-ada's run was delivered. */
export const adaHooked = new Promise<void>((resolve) => (hooked = resolve));
const mail = (to: string, what: string) => sent.push(`${what} -> ${to}`);

/** One run per user (the foreign id): verify the email by a callback, remind and give up by timeouts. */
export const onboarding = defineStateMachine({ name: 'onboarding', status: Status, object: Signup })
  .step('created', (run) => {
    mail(run.object.email, `verify with code ${run.object.code}`);
    run.object.mails.push('verify');
    return 'emailed';
  }, 'emailed')
  // The link in the mail calls back with the code it carries.
  .callback('emailed', (run, payload) => ((payload as { code?: string | undefined }).code === run.object.code ? 'verified' : run.skip()), 'verified')
  .timeout('emailed', { after: '2 days' }, (run) => {
    mail(run.object.email, 'reminder');
    run.object.mails.push('reminder');
    return 'reminded';
  }, 'reminded')
  .callback('reminded', (run, payload) => ((payload as { code?: string | undefined }).code === run.object.code ? 'verified' : run.skip()), 'verified')
  // A week after sign-up, whenever the reminder went out.
  .timeout('reminded', { at: (run) => new Date(Date.parse(run.object.signedUpAt) + 7 * 86_400_000) }, () => 'abandoned', 'abandoned')
  .step('verified', (run) => {
    mail(run.object.email, 'welcome');
    run.object.mails.push('welcome');
    return 'welcomed';
  }, 'welcomed')
  .onComplete(({ foreignId, status }) => {
    console.log(`hook: ${foreignId} completed in ${status}`);
    if (foreignId === 'user-ada') hooked();
  })
  // Each completed sign-up form (run key: the user id) starts the user's onboarding.
  .connector(outboxConnector({ name: 'forms-to-onboarding', workflows: ['signup-form'], kinds: ['completed'] }), (event, api) => {
    const form = event.payload as RunEvent;
    const { email, code } = form.body.output as { email: string; code: string };
    return api.trigger(event.foreignId, { object: { email, code, signedUpAt: form.createdAt.toISOString(), mails: [] } });
  })
  .deleteData((object) => ({ ...object, email: 'deleted@invalid', code: '' }))
  .build();

