--! Previous: sha1:b00bf3b2b2c5674668db999140a92b0f9cc99951
--! Hash: sha1:e1b2b088179f39115e8b571cd8a89d7af106a01b

-- The bulk controls' helper took one more argument (resume_at: a pause
-- holds a parked run): the old signature goes (sql/520_control_many.sql
-- makes the new one).
drop function if exists trellis._run_control_applies(text, text, timestamptz, timestamptz, timestamptz, text);
