/**
 * A session that LISTENs on some channels and a sentinel channel, to show
 * that a NOTIFY was NOT sent without waiting and hoping: NOTIFYs are
 * delivered in commit order, so whatever was sent before a sentinel arrives
 * before it. `until()` sends (and commits) a new sentinel and returns the
 * payloads heard on `channel` up to it.
 */
import pg from 'pg';
import { waitFor } from './wait.ts';

export interface SentinelListener {
  /** The listening session (to run statements of its own, e.g. trellis.run_finished_watch()). */
  client: pg.Client;
  /** The payloads of `channel` heard since the last call, up to a sentinel sent now. */
  until(): Promise<string[]>;
  close(): Promise<void>;
}

export async function sentinelListener(url: string, channel: string): Promise<SentinelListener> {
  const client = new pg.Client({ connectionString: url });
  await client.connect();
  const heard: { channel: string; payload: string }[] = [];
  client.on('notification', (n) => heard.push({ channel: n.channel, payload: n.payload ?? '' }));
  await client.query(`listen ${pg.escapeIdentifier(channel)}; listen "test:sentinel"`);
  const sender = new pg.Client({ connectionString: url });
  await sender.connect();
  let sentinels = 0;
  const isMark = (mark: string) => (h: { channel: string; payload: string }) => h.channel === 'test:sentinel' && h.payload === mark;
  return {
    client,
    async until() {
      const mark = `s${++sentinels}`;
      await sender.query(`select pg_notify('test:sentinel', $1)`, [mark]);
      await waitFor(() => heard.some(isMark(mark)), { what: `sentinel ${mark}` });
      const upTo = heard.splice(0, heard.findIndex(isMark(mark)) + 1);
      return upTo.filter((h) => h.channel === channel).map((h) => h.payload);
    },
    async close() {
      await sender.end();
      await client.end();
    },
  };
}
