/** `trellis consumers`: the outbox's durable consumers, their positions and backlogs. */
import { CONSUMER_BEHIND_CAP } from '../../db/events.ts';
import { JSON_OPTION, type Command } from '../command.ts';
import { formatTime, table, toJson } from '../format.ts';

export const consumers: Command = {
  name: 'consumers',
  summary: 'list the outbox\'s durable consumers: acknowledged position, events kept after it, last ack',
  description: `The backlog counts events of every kind (a consumer's filter is given when it reads), up to ${CONSUMER_BEHIND_CAP}.`,
  options: { ...JSON_OPTION },
  async run({ options, client, io }) {
    const rows = await (await client()).consumers.list();
    if (options.json) return io.out(toJson(rows));
    io.out(rows.length
      ? table(['consumer', 'position', 'behind', 'last ack', 'created'], rows.map((r) => [
        r.name, r.position, r.behind >= CONSUMER_BEHIND_CAP ? `${CONSUMER_BEHIND_CAP}+` : String(r.behind), formatTime(r.updatedAt), formatTime(r.createdAt),
      ]))
      : 'no consumers (client.eventConsumer(name) or trellis.event_consumer_create makes one)\n');
  },
};
