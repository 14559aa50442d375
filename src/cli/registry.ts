/**
 * The commands of `trellis`, in the order `trellis --help` lists them.
 * Adding a command: one file in commands/ and one line here.
 */
import type { Command } from './command.ts';
import { cancel } from './commands/cancel.ts';
import { consumers } from './commands/consumers.ts';
import { dashboard } from './commands/dashboard.ts';
import { diagram } from './commands/diagram.ts';
import { replayCheck } from './commands/replay-check.ts';
import { events } from './commands/events.ts';
import { fork } from './commands/fork.ts';
import { hooks } from './commands/hooks.ts';
import { ls } from './commands/ls.ts';
import { metadata } from './commands/metadata.ts';
import { migrate } from './commands/migrate.ts';
import { pause } from './commands/pause.ts';
import { purge } from './commands/purge.ts';
import { request } from './commands/request.ts';
import { resume } from './commands/resume.ts';
import { retry } from './commands/retry.ts';
import { roles } from './commands/roles.ts';
import { schedules } from './commands/schedules.ts';
import { show } from './commands/show.ts';
import { signal } from './commands/signal.ts';
import { sql } from './commands/sql.ts';
import { start } from './commands/start.ts';
import { stats } from './commands/stats.ts';
import { status } from './commands/status.ts';
import { stream } from './commands/stream.ts';
import { worker } from './commands/worker.ts';

export const COMMANDS: readonly Command[] = [
  migrate,
  sql,
  status,
  worker,
  start,
  signal,
  request,
  cancel,
  pause,
  resume,
  retry,
  fork,
  metadata,
  ls,
  show,
  stats,
  purge,
  diagram,
  replayCheck,
  schedules,
  roles,
  events,
  stream,
  hooks,
  consumers,
  dashboard,
];
