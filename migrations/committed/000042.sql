--! Previous: sha1:10994aced7d22f5b226519537f30105e49992fd7
--! Hash: sha1:fd85a02f9858400c44cfe807086b34ea9f47e19e

-- Manual ticks (decision 0045): a tick that a trigger or a backfill buffered
-- (overlap buffer_one) remembers that it is manual, so the ticker starts it
-- as the call would have (at once, metadata manual), on a paused schedule
-- too. The tick helpers take whether a tick is manual; the old two-argument
-- forms go (sql/750_schedules.sql defines the new ones).
alter table trellis.schedules add column if not exists buffered_manual text
  check (buffered_manual in ('trigger', 'backfill'));
drop function if exists trellis._schedule_try_start(trellis.schedules, timestamptz);
drop function if exists trellis._schedule_start(trellis.schedules, timestamptz);
