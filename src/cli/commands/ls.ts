/** `trellis ls`: runs, newest first, filtered and paged. */
import { RUN_STATES } from '../../db/tables.ts';
import { integer, runFilterOptions } from '../args.ts';
import { JSON_OPTION, type Command } from '../command.ts';
import { between, errorText, formatDuration, formatTime, table, toJson } from '../format.ts';

export const ls: Command = {
  name: 'ls',
  summary: 'list runs, newest first (filters by workflow, status, key, queue, time)',
  description: 'Pages with --limit; the next page\'s --cursor is printed on stderr (in --json: "nextCursor").',
  options: {
    workflow: { type: 'string', value: 'NAME', description: 'only runs of this workflow' },
    status: { type: 'string', value: 'S', multiple: true, description: `only runs in this status (${RUN_STATES.join(', ')}; also comma-separated)` },
    key: { type: 'string', value: 'KEY', description: 'only the run started with this key' },
    queue: { type: 'string', value: 'NAME', description: 'only runs on this queue' },
    since: { type: 'string', value: 'TIME', description: 'created after: an ISO time or a duration ago (1h, 7 days)' },
    until: { type: 'string', value: 'TIME', description: 'created before: an ISO time or a duration ago' },
    metadata: { type: 'string', value: 'JSON', description: 'only runs whose metadata contains this JSON object ({"tenant":"acme"})' },
    limit: { type: 'string', value: 'N', description: 'runs per page, 1-1000 (default 50)' },
    cursor: { type: 'string', value: 'CURSOR', description: 'the page after the one that printed this cursor' },
    ...JSON_OPTION,
  },
  async run({ options, client, io }) {
    const page = await (await client()).list({
      ...runFilterOptions(options),
      limit: integer(options.limit as string | undefined, 'limit', 1, 1000, 50),
      cursor: options.cursor as string | undefined,
    });
    if (options.json) {
      io.out(toJson({ runs: page.runs, nextCursor: page.nextCursor ?? null }));
      return;
    }
    if (!page.runs.length) {
      io.err('no runs match\n');
      return;
    }
    const now = new Date();
    io.out(table(['id', 'workflow', 'status', 'attempt', 'created', 'took', 'key', 'error'], page.runs.map((r) => [
      r.id, `${r.workflow}@${r.version}`, r.status, String(r.attempt), formatTime(r.createdAt),
      formatDuration(between(r.startedAt, r.finishedAt, now)), r.key ?? '', errorText(r.error, 80),
    ])));
    if (page.nextCursor) io.err(`more: add --cursor ${page.nextCursor}\n`);
  },
};
