--! Previous: sha1:430d8719dd158f14a94864d1a39733a3afce1590
--! Hash: sha1:c9d7ced06683649f4decfa6b39ea2c219a01ee45

-- Key policies (decision 0036). A start with key_policy 'reuse' or
-- 'replace' may take the key of a finished run: that run's key moves here,
-- so the unique (bucket, workflow, key) index keeps one holder per key and
-- the finished run still says which key it had.
alter table trellis.runs add column if not exists former_key text;
comment on column trellis.runs.former_key is
  'The key this run was started with, after a later start with key_policy reuse or replace took it (key is then null); null otherwise.';
