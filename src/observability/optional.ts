/**
 * Loading an optional peer dependency (prom-client, @opentelemetry/api) only
 * when a feature that needs it is turned on: the package is imported
 * dynamically, so Trellis loads and runs without it, and asking for the
 * feature without it installed is a ValidationError that says what to install.
 */
import { ValidationError } from '../errors.ts';

const NOT_FOUND = new Set(['ERR_MODULE_NOT_FOUND', 'MODULE_NOT_FOUND']);

/** `load()` (a dynamic import of `name`), or a ValidationError naming the package when it is not installed. */
export async function importOptional<M>(name: string, feature: string, load: () => Promise<M>): Promise<M> {
  try {
    const mod = (await load()) as M & { default?: M | undefined };
    // A CommonJS package may come as its module object or under `default`.
    return mod.default && typeof mod.default === 'object' ? { ...mod.default, ...mod } : mod;
  } catch (error) {
    const code = (error as { code?: unknown } | null)?.code;
    if (typeof code === 'string' && NOT_FOUND.has(code)) {
      throw new ValidationError(`${feature} needs the optional package ${name}, which is not installed: npm install ${name}`, {
        cause: error,
        details: { package: name },
      });
    }
    throw error;
  }
}
