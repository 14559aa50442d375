/**
 * User onboarding as a typed state machine (the luno/workflow model on the
 * Trellis core). A run per user (the foreign id): send a verification mail,
 * wait for the link to be clicked (a callback), remind after 2 days (a
 * timeout), give up a week after sign-up (a timeout at a computed time),
 * welcome verified users. It shows:
 * - the machine's Mermaid diagram (also in README.md);
 * - a callback with a wrong code skipped, the right one moving the run on;
 * - a user who never clicks: reminded after 2 days, abandoned after 7;
 * - a second sign-up refused while the first run is unfinished;
 * - the status and object of every run read with plain SQL;
 * - the abandoned user's data deleted, the path kept;
 * - the durable onComplete hook, delivered by the worker after the commit;
 * - a connector: an ordinary `signup-form` workflow's completed runs start
 *   onboarding runs, read from the outbox (each event's id is the trigger
 *   key, so a redelivered event starts nothing).
 * Days pass in milliseconds on the test kit's virtual clock.
 *
 *   npx tsx examples/onboarding/main.ts
 * The machine itself is in machine.ts (a module without side effects, which
 * `trellis diagram --machine onboarding --module examples/onboarding/machine.ts`
 * can load).
 * Creates its database on DATABASE_URL's server when set, else on an
 * embedded PostgreSQL.
 */
import { IllegalTransitionError } from '../../src/index.ts';
import { connectMachine, machineConnectorStep, machineDiagram } from '../../src/models.ts';
import { createTestEnv } from '../../src/testing/index.ts';
import { adaHooked, onboarding, sent, signupForm } from './machine.ts';

console.log(machineDiagram(onboarding));

const env = await createTestEnv({ workflows: [onboarding.workflow, signupForm], hookDelivery: { interval: 50 } });
try {
  const users = connectMachine(env.client, onboarding);
  const now = (await env.now()).toISOString();

  // Ada clicks her link (after a wrong one).
  const ada = await users.trigger('user-ada', { object: { email: 'ada@example.com', code: 'A1', signedUpAt: now, mails: [] } });
  await env.waitFor(ada, 'waiting');
  try {
    await users.trigger('user-ada', { object: { email: 'ada@example.com', code: 'A2', signedUpAt: now, mails: [] } });
  } catch (error) {
    if (!(error instanceof IllegalTransitionError)) throw error;
    console.log(`second sign-up refused: ${error.name} (TR004)`);
  }
  await users.callback('user-ada', 'emailed', { code: 'WRONG' });
  await users.callback('user-ada', 'emailed', { code: 'A1' });
  const welcomed = await users.await('user-ada', ada, 'welcomed', { timeout: '20s' });
  console.log(`ada: ${welcomed.status} ${JSON.stringify(welcomed.object.mails)}`);
  await adaHooked; // delivered by the worker's hook loop once the run's end committed

  // Cy signs up through the form; the connector starts her onboarding.
  await env.waitFor(await env.client.start(signupForm, { email: 'cy@example.com' }, { key: 'user-cy' }), 'completed');
  while ((await machineConnectorStep({ client: env.client, machine: onboarding })) === 0) await new Promise((r) => setTimeout(r, 20));
  const cy = await users.get('user-cy');
  await env.waitFor(cy.runId, 'waiting');
  console.log(`cy: started by the form, ${(await users.get('user-cy')).status} with code ${cy.object.code}`);

  // Bo never clicks.
  const bo = await users.trigger('user-bo', { object: { email: 'bo@example.com', code: 'B1', signedUpAt: now, mails: [] } });
  await env.waitFor(bo, 'waiting');
  await env.advance('2 days');
  await users.await('user-bo', bo, 'reminded', { timeout: '20s' });
  await env.waitFor(bo, 'waiting');
  console.log(`bo after 2 days: ${(await users.get('user-bo')).status}`);
  await env.advance('5 days');
  await env.waitFor(bo, 'completed');
  console.log(`bo after 7 days: ${(await users.get('user-bo')).status}`);

  // Plain SQL sees every run's status and object.
  const { rows } = await env.pool.query(
    `select foreign_id, status, run_status, object->>'email' as email from trellis.machine_runs order by foreign_id`);
  for (const r of rows) console.log(`sql: ${r.foreign_id} ${r.status} ${r.run_status} ${r.email}`);

  // Bo's data is deleted; his path stays.
  await users.deleteData('user-bo', bo);
  const deleted = await users.get('user-bo');
  console.log(`bo deleted: ${deleted.status} ${deleted.object.email} ${deleted.dataDeleted}`);
  const path = await env.pool.query(
    `select string_agg(output->>'from' || '>' || (output->>'to'), ' ' order by seq) as path
       from trellis.steps where run_id = $1 and kind = 'step'`, [bo]);
  console.log(`bo path: ${path.rows[0].path}`);
  console.log(`mails: ${sent.join('; ')}`);
} finally {
  await env.close();
}
