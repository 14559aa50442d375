/**
 * Where the CLI writes: stdout for results, stderr for errors and progress.
 * Commands write through an `Io` so tests capture it; `processIo()` is the
 * real one, and `flush()` waits until the kernel took every byte before the
 * process exits (an exit while a pipe is still being written cuts it short).
 */

export interface Io {
  out(text: string): void;
  err(text: string): void;
  /** stdout is a terminal (progress bars, colours), not a pipe or a file. */
  readonly isTTY: boolean;
  readonly env: NodeJS.ProcessEnv;
}

/** The process's own stdout and stderr. */
export function processIo(): Io {
  return {
    out: (text) => void process.stdout.write(text),
    err: (text) => void process.stderr.write(text),
    isTTY: process.stderr.isTTY === true && process.stdout.isTTY === true,
    env: process.env,
  };
}

/**
 * An Io that keeps what is written (for tests and embedding).
 *
 * @example
 * const io = captureIo({ DATABASE_URL: url });
 * const code = await main(['ls', '--json'], io);
 * const { runs } = JSON.parse(io.stdout);
 */
export function captureIo(env: NodeJS.ProcessEnv = process.env): Io & { stdout: string; stderr: string } {
  const io = {
    stdout: '',
    stderr: '',
    isTTY: false,
    env,
    out: (text: string) => void (io.stdout += text),
    err: (text: string) => void (io.stderr += text),
  };
  return io;
}

/**
 * Resolves once everything written to `stream` so far has been handed to the kernel (or the stream failed).
 *
 * @example
 * process.stdout.write(script);
 * await flush(process.stdout);   // only now may the process exit without cutting a pipe short
 * process.exit(0);
 */
export function flush(stream: NodeJS.WritableStream): Promise<void> {
  return new Promise((resolve) => {
    if ((stream as { destroyed?: boolean }).destroyed) return resolve();
    stream.write('', () => resolve());
  });
}
