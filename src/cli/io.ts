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

// Control characters but newline and tab (and, on stderr, the carriage
// return the progress line redraws with): C0, DEL and C1; and Unicode's
// bidirectional controls (embeddings, overrides, isolates, marks), which
// reorder the text around them ("…\u202Eevil" reads as "live…"), and its
// line and paragraph separators.
const CONTROL_OUT = /[\u0000-\u0008\u000b-\u001f\u007f-\u009f\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069\u2028\u2029]/g;
const CONTROL_ERR = /[\u0000-\u0008\u000b\u000c\u000e-\u001f\u007f-\u009f\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069\u2028\u2029]/g;

/**
 * `text` with every control character written as its JSON escape
 * (`\u001b`), so a run key or an error message from outside cannot drive
 * the terminal (retitle it, clear it, move the cursor, recolour it) or
 * reorder what it shows (`\u202e`). In --json output the escape is valid
 * JSON for the same character.
 *
 * @example
 * terminalSafe('k\u001b[2J');   // 'k\\u001b[2J'
 */
export function terminalSafe(text: string, keepCarriageReturn = false): string {
  const pattern = keepCarriageReturn ? CONTROL_ERR : CONTROL_OUT;
  pattern.lastIndex = 0;
  if (!pattern.test(text)) return text;
  pattern.lastIndex = 0;
  return text.replace(pattern, (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`);
}

/** The process's own stdout and stderr. */
export function processIo(): Io {
  return {
    out: (text) => void process.stdout.write(terminalSafe(text)),
    err: (text) => void process.stderr.write(terminalSafe(text, true)),
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
    out: (text: string) => void (io.stdout += terminalSafe(text)),
    err: (text: string) => void (io.stderr += terminalSafe(text, true)),
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
    if ((stream as { destroyed?: boolean | undefined }).destroyed) return resolve();
    stream.write('', () => resolve());
  });
}
