/**
 * An independent record of every run status change, for the tests of run
 * events: a trigger on trellis.runs the engine knows nothing about (test
 * databases only) writes public.status_log (seq, run_id, from_status,
 * to_status); a new run's from_status is '[*]'.
 */
import type pg from 'pg';

export async function logStatusChanges(pool: pg.Pool): Promise<void> {
  await pool.query(`create table public.status_log (seq bigserial primary key, run_id uuid, from_status text, to_status text)`);
  await pool.query(`create function public.log_status() returns trigger language plpgsql as $$
    begin
      if tg_op = 'INSERT' then
        insert into public.status_log (run_id, from_status, to_status) values (new.id, '[*]', new.status);
      elsif old.status is distinct from new.status then
        insert into public.status_log (run_id, from_status, to_status) values (new.id, old.status, new.status);
      end if;
      return new;
    end $$`);
  await pool.query(`create trigger log_status after insert or update on trellis.runs for each row execute function public.log_status()`);
}
