--! Previous: sha1:c9d7ced06683649f4decfa6b39ea2c219a01ee45
--! Hash: sha1:aea7c40a16681dec397823fc001b6dea59ca2109

-- Parked runs resumed automatically (decision 0038): a run its own code
-- parked (pauseAfter, ParkRunRequest) under a definition with resumeAfter
-- is resumed by the trellis.resumes duty once resume_at has passed. Null for
-- every other run; an operator's pause, resume or cancel clears it.
alter table trellis.runs add column if not exists resume_at timestamptz;
comment on column trellis.runs.resume_at is
  'When a paused run its code parked is resumed by the trellis.resumes duty (the definition''s resumeAfter); null otherwise.';
create index if not exists runs_resume_at_idx on trellis.runs (resume_at) where resume_at is not null;
