import assert from 'node:assert/strict';
import { createServer } from 'node:net';
import { describe, it } from 'node:test';
import { isTrellisError } from '../../src/errors.ts';
import { Listener } from '../../src/db/listener.ts';
import { freePort } from '../../src/testing/embedded-postgres.ts';
import { loggerFrom } from '../../src/protocol/logger.ts';

describe('Listener', () => {
  it('rejects start() with a typed error when it cannot connect, and stops trying', async () => {
    const port = await freePort(); // nothing listens there
    const warnings: string[] = [];
    const log = loggerFrom((level, m) => void (level === 'warn' || level === 'error' ? warnings.push(m) : undefined));
    const listener = new Listener({
      connection: { host: '127.0.0.1', port, user: 'nobody', database: 'nothing', connectionTimeoutMillis: 500 },
      channels: ['trellis:run_ready'],
      onNotify: () => undefined,
      onConnect: () => assert.fail('never connected'),
      log,
      applicationName: 'trellis-test-listener',
    });
    await assert.rejects(listener.start(), (e) => isTrellisError(e));
    // A server now appears on that port: a listener still retrying in the
    // background would connect to it; a closed one never does.
    let connections = 0;
    const server = createServer((socket) => {
      connections++;
      socket.destroy();
    });
    await new Promise<void>((resolve) => server.listen(port, '127.0.0.1', resolve));
    try {
      const retried = await new Promise<boolean>((resolve) => {
        const timer = setTimeout(() => resolve(false), 1500); // longer than pg-listen's first retry intervals
        server.once('connection', () => {
          clearTimeout(timer);
          resolve(true);
        });
      });
      assert.equal(retried, false, `the listener kept reconnecting (${connections} connection(s))`);
    } finally {
      await new Promise((r) => server.close(r));
    }
  });
});
