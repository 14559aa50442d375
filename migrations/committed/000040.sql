--! Previous: sha1:c00f2abe7fb473abdddebe07527fb71b4b10ba6c
--! Hash: sha1:208ae9aea6df5dc2454db9d40c5012b36fda43c9

-- A signal id is looked for on every run of a key (decision 0043's and
-- 0044's amendment): the key's current holder and the runs that held it
-- before (former_key). This index finds the latter in the key's bucket.
create index if not exists runs_former_key_idx on trellis.runs (bucket, workflow, former_key) where former_key is not null;
