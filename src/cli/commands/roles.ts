/** `trellis roles`: the role leases of singleton duties (who holds each, until when, how it last ran). */
import { JSON_OPTION, type Command } from '../command.ts';
import { formatTime, table, toJson } from '../format.ts';

export const roles: Command = {
  name: 'roles',
  summary: 'show the role leases (the purge, the schedule ticker, worker.role duties): holder, token, expiry, last outcome',
  options: { ...JSON_OPTION },
  async run({ options, client, io }) {
    const rows = await (await client()).roles.list();
    if (options.json) return io.out(toJson(rows));
    io.out(rows.length
      ? table(['role', 'holder', 'token', 'held', 'expires', 'last run', 'outcome'], rows.map((r) => [
        r.name, r.holder ?? '-', r.token, r.held ? 'yes' : 'no', formatTime(r.expiresAt), formatTime(r.lastRunAt),
        r.lastOutcome === 'failed' ? `failed: ${(r.lastError ?? '').slice(0, 60)}` : (r.lastOutcome ?? '-'),
      ]))
      : 'no roles yet (workers create them when they start)\n');
  },
};
