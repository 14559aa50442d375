// `node --import ./test/helpers/hide-optional-peers.mjs`: a process in which
// prom-client and @opentelemetry/* cannot be resolved, as in an application
// that did not install Trellis's optional peer dependencies.
import { register } from 'node:module';

const hook = `
export async function resolve(specifier, context, next) {
  if (specifier === 'prom-client' || specifier.startsWith('@opentelemetry/')) {
    const error = new Error('Cannot find package ' + JSON.stringify(specifier) + ' (hidden by the test)');
    error.code = 'ERR_MODULE_NOT_FOUND';
    throw error;
  }
  return next(specifier, context);
}`;
register(`data:text/javascript,${encodeURIComponent(hook)}`);
