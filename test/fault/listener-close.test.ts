/**
 * A LISTEN connection closed while it is reconnecting (the server went away)
 * stops trying: before, pg-listen's reconnect loop went on for ever after
 * close() and kept the process alive.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { Listener } from '../../src/db/listener.ts';
import { silentLogger } from '../../src/protocol/logger.ts';
import { useFreshDatabase } from '../helpers/database-fixture.ts';
import { startProxy, throughProxy } from '../helpers/tcp-proxy.ts';
import { waitFor } from '../helpers/wait.ts';

const fx = useFreshDatabase();

describe('a listener closed while reconnecting', () => {
  it('makes no more connection attempts', async () => {
    const proxy = await startProxy({ host: '127.0.0.1', port: Number(new URL(fx.db.url).port) });
    const listener = new Listener({
      connection: { connectionString: throughProxy(fx.db.url, proxy.port) },
      channels: ['trellis:run_ready'],
      onNotify: () => undefined,
      onConnect: () => undefined,
      log: silentLogger,
      applicationName: 'closing-listener',
      healthCheckMs: 500,
    });
    try {
      await listener.start();
      // The server goes away: the connection drops and every new one is refused.
      proxy.refusing = true;
      for (const p of proxy.pipes) p.cut();
      const before = proxy.accepted;
      await waitFor(() => proxy.accepted >= before + 2, { what: 'reconnect attempts' });
      await listener.close();
      const atClose = proxy.accepted;
      // The loop's backoff is at most a few seconds here: give it time to show itself.
      await new Promise((r) => setTimeout(r, 3000));
      assert.ok(proxy.accepted <= atClose + 1, `attempts after close: ${proxy.accepted - atClose}`);
    } finally {
      await listener.close();
      await proxy.close();
    }
  });
});
