/**
 * Every page of the dashboard. Adding a page: write src/dashboard/pages/<name>.ts
 * exporting a `DashboardPage` (see src/dashboard/page.ts) and list it here.
 */
import type { DashboardPage } from '../page.ts';
import { outboxPage } from './outbox.ts';
import { overviewPage } from './overview.ts';
import { queuesPage } from './queues.ts';
import { rolesPage } from './roles.ts';
import { runPage } from './run.ts';
import { runsPage } from './runs.ts';
import { schedulesPage } from './schedules.ts';

/** The pages, routed in this order. */
export const PAGES: readonly DashboardPage[] = [
  overviewPage,
  runsPage,
  runPage,
  queuesPage,
  schedulesPage,
  outboxPage,
  rolesPage,
];
