/**
 * Operating Trellis from a terminal: the `trellis` command runs a worker for
 * workflows.ts (JSON log lines on stderr), starts a run, signals it, and reads
 * it back with `show`, `ls`, `stats` and `diagram`; then SIGTERM stops the
 * worker gracefully. The worker is the real program (bin/trellis.mjs); the
 * other commands run in this process through the CLI's `main()`, which
 * writes exactly what the program would. Each is printed with its output.
 * Uses DATABASE_URL when set, else an embedded PostgreSQL.
 *   npx tsx examples/operations/main.ts
 */
import { spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { captureIo } from '../../src/cli/io.ts';
import { main } from '../../src/cli/main.ts';
import { exampleDatabase } from '../support/database.ts';

const bin = fileURLToPath(new URL('../../bin/trellis.mjs', import.meta.url));
const database = await exampleDatabase();
const env = { ...process.env, DATABASE_URL: database.url };
const key = `exp-${process.pid}`;   // a new run on every try, also against the same DATABASE_URL

/** `trellis ...args`: print the command line, its output and exit code (unless quiet); return stdout. */
async function trellis(...args: string[]): Promise<string> {
  const io = captureIo(env);
  const code = await main(args, io);
  console.log(`$ trellis ${args.map((a) => (/^[\w@:./-]+$/.test(a) ? a : `'${a}'`)).join(' ')}`);
  process.stdout.write(io.stdout);
  if (io.stderr) process.stdout.write(`(stderr) ${io.stderr}`);
  console.log(`(exit ${code})\n`);
  return io.stdout.trim();
}

/** The run's status, as `trellis show --json` says (not printed). */
async function statusOf(id: string): Promise<string> {
  const io = captureIo(env);
  await main(['show', id, '--json'], io);
  return (JSON.parse(io.stdout) as { run: { status: string } }).run.status;
}

const worker = spawn(process.execPath, [bin, 'worker', fileURLToPath(new URL('workflows.ts', import.meta.url)), '--id', 'example-worker'],
  { env, stdio: ['ignore', 'inherit', 'pipe'] });
const logs: string[] = [];
try {
  await new Promise<void>((resolve, reject) => {
    let buffered = '';
    worker.stderr.on('data', (chunk: Buffer) => {
      buffered += chunk.toString();
      const lines = buffered.split('\n');
      buffered = lines.pop() ?? '';
      logs.push(...lines);
      if (lines.some((l) => l.includes('"worker started"'))) resolve();
    });
    worker.on('exit', (code) => reject(new Error(`the worker exited with ${code}: ${logs.join('\n')}`)));
  });

  const id = await trellis('start', 'expense', '{"id":"exp-7","amount":120}', '--key', key);
  while (['pending', 'running'].includes(await statusOf(id))) await new Promise((r) => setTimeout(r, 100));
  await trellis('signal', '--workflow', 'expense', '--key', key, 'approved', '{"by":"ada"}', '--id', 'mail-1');
  await trellis('start', 'expense', '{}', '--wait');                   // bad input: exit 2, nothing started
  const done = await trellis('start', 'expense', '{"id":"exp-7","amount":120}', '--key', key, '--wait', '--timeout', '30s');
  console.log(`the same key gives the same run: ${done.split('\n')[0] === id}\n`);
  await trellis('show', id);
  await trellis('ls', '--workflow', 'expense');
  await trellis('stats');
  await trellis('diagram', id);
  await trellis('resume', id);                                          // not paused: exit 4
} finally {
  const exited = new Promise((resolve) => worker.on('exit', resolve));
  worker.kill('SIGTERM');
  console.log(`worker exit code after SIGTERM: ${await exited}`);
  await database.stop();
}
console.log('worker log:');
for (const line of logs) console.log(line);
