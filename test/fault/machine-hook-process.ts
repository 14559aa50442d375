/**
 * A worker in its own process serving the state machine of the
 * machine-hook fault test; its onComplete hook never returns, so the process
 * dies holding the delivery (or before claiming it) when it is SIGKILLed.
 * env: DATABASE_URL. Prints "ready" once claiming.
 */
import pg from 'pg';
import { createWorker } from '../../src/worker/worker.ts';
import { silentLogger } from '../../src/protocol/logger.ts';
import { hookedMachine } from './machine-hook-defs.ts';

const pool = new pg.Pool({ connectionString: process.env.DATABASE_URL, max: 4 });
const machine = hookedMachine(() => new Promise(() => {}));
const worker = createWorker({ pool, workflows: [machine.workflow], pollInterval: 100, logger: silentLogger, hookDelivery: { interval: 20 } });
await worker.start();
process.stdout.write('ready\n');
