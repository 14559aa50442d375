/**
 * Debian's chromium driven by playwright-core, with a fresh profile. A
 * missing chromium is an error that says how to install it, never a skip:
 * CI installs it (.ci/run).
 */
import { existsSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { type BrowserContext, chromium } from 'playwright-core';

export const CHROMIUM = process.env.TRELLIS_CHROMIUM ?? '/usr/bin/chromium';

const ARGS = [
  '--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
  '--disable-background-networking', '--disable-component-update', '--disable-sync',
];

export interface Browser {
  context: BrowserContext;
  close(): Promise<void>;
}

/** Launch chromium with a fresh --user-data-dir (a persistent context on a new temporary directory). */
export async function launchChromium(options: { viewport?: { width: number; height: number } | undefined } = {}): Promise<Browser> {
  if (!existsSync(CHROMIUM)) {
    throw new Error(`chromium is not installed at ${CHROMIUM}: the dashboard's browser tests need it. `
      + 'Install it with `apt-get update && apt-get install -y --no-install-recommends chromium` (.ci/run does), '
      + 'or point TRELLIS_CHROMIUM at a chromium binary.');
  }
  const profile = await mkdtemp(join(tmpdir(), 'trellis-chromium-'));
  try {
    const context = await chromium.launchPersistentContext(profile, {
      executablePath: CHROMIUM,
      headless: true,
      args: ARGS,
      viewport: options.viewport ?? { width: 1100, height: 800 },
      // A first launch on a loaded 2-core machine (CI runs two test files at
      // once; a fresh install builds its font cache) took over 20 s once.
      timeout: 60_000,
    });
    return {
      context,
      async close() {
        await context.close();
        await rm(profile, { recursive: true, force: true });
      },
    };
  } catch (error) {
    await rm(profile, { recursive: true, force: true });
    throw error;
  }
}
