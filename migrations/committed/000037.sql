--! Previous: sha1:3d2285ee7b63d394adaf8919db5e9147d7e45041
--! Hash: sha1:effe03909c2b84ee7001c7d3384f0121d6c0ac86

-- Trellis: a cap on automatic resumes (a definition's maxResumes beside its
-- resumeAfter; decision 0038's amendment). runs.auto_resumes counts the
-- times the trellis.resumes duty resumed the run since an operator last
-- resumed or retried it; a park whose op carries max_resumes is resumed
-- later only while the count is below it, and otherwise stays parked for
-- an operator.
alter table trellis.runs add column if not exists auto_resumes integer not null default 0;
comment on column trellis.runs.auto_resumes is
  'How many times the trellis.resumes duty resumed this run (resumeAfter) since an operator last resumed or retried it.';
do $$
begin
  if not exists (select 1 from pg_catalog.pg_attribute
                  where attrelid = 'trellis.checkpoint_op'::regclass and attname = 'max_resumes' and not attisdropped) then
    alter type trellis.checkpoint_op add attribute max_resumes integer;
  end if;
end $$;
