--! Previous: sha1:bc817230f60047e6285f74f9f044b2b459a5a2de
--! Hash: sha1:430d8719dd158f14a94864d1a39733a3afce1590

-- Schedules with an infinite time. An older schedule_set stored ends_at,
-- next_at and next_from 'infinity' (or '-infinity'), which JavaScript cannot
-- read as a date: such a row stopped every schedule (the ticker crashed), and
-- after the fix of that, parked its own schedule with "endsAt.getTime is not
-- a function". The rows an older release stored are repaired here (an end at
-- infinity is no end; at -infinity it has ended; an infinite next tick is
-- computed again from now) and a CHECK keeps any writer from storing one.
update trellis.schedules set ends_at = case when ends_at = 'infinity' then null else now() end
 where not isfinite(ends_at);
update trellis.schedules set next_at = null, next_from = now() where not isfinite(next_at);
update trellis.schedules set next_from = now() where not isfinite(next_from);
alter table trellis.schedules drop constraint if exists schedules_finite_times;
alter table trellis.schedules add constraint schedules_finite_times
  check (isfinite(ends_at) and isfinite(next_at) and isfinite(next_from));
