--! Previous: sha1:a34964f1bc09c92f6d52ef4be6e7829c898784eb
--! Hash: sha1:c00f2abe7fb473abdddebe07527fb71b4b10ba6c

-- Trellis: requests (decision 0044). A request is a signal sent under the
-- request's id; the run's answer (ctx.reply / ctx.replyError, the value
-- reply:<id> of its history) is also kept on that signal's row, which lives
-- as long as the run (for the signal id's dedup), so an answer survives
-- continue-as-new and a repeat of the request reads it there.
alter table trellis.signals add column if not exists reply jsonb;
alter table trellis.signals add column if not exists replied_at timestamptz;
comment on column trellis.signals.reply is
  'For a request (a signal with an id, decision 0044): the run''s answer, {"value": ...} or {"error": {...}}, as its value reply:<signal_id>; null while unanswered. Removed by run_scrub.';
comment on column trellis.signals.replied_at is
  'When the run answered this request (see reply); null while unanswered.';
