/** Running an example the way a user would: `tsx examples/<name>/main.ts` with DATABASE_URL. */
import { spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';

const root = fileURLToPath(new URL('../..', import.meta.url));

export interface ExampleOutcome {
  code: number | null;
  stdout: string;
  stderr: string;
  /** Killed at `timeoutMs` (code null). */
  timedOut: boolean;
}

/** Run the example at `path` (relative to the repository) against `url` (and `env`); killed after `timeoutMs`. */
export function runExample(path: string, url: string, timeoutMs = 60_000, env: NodeJS.ProcessEnv = {}): Promise<ExampleOutcome> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, ['--import', 'tsx', path], {
      cwd: root,
      env: { ...process.env, ...env, DATABASE_URL: url },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    let timedOut = false;
    const timer = setTimeout(() => {
      timedOut = true;
      child.kill('SIGKILL');
    }, timeoutMs);
    child.on('error', reject);
    child.on('close', (code) => {
      clearTimeout(timer);
      resolve({ code, stdout, stderr, timedOut });
    });
  });
}
