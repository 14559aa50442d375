--! Previous: sha1:d997ea388dfb3de513de9f32aa55983572703c64
--! Hash: sha1:15b1dda44886e94030cc8a4c23149eef54c999e0

-- Trellis 000007: the hot tables keep their pages when autovacuum empties
-- the end of the file. Truncating it takes an ACCESS EXCLUSIVE lock that
-- stops every claim and checkpoint on the table until it is released; with
-- runs purged (000006) whole tail pages empty out often, and at a steady
-- rate the space is reused anyway.
alter table trellis.runs set (vacuum_truncate = false);
alter table trellis.steps set (vacuum_truncate = false);
alter table trellis.signals set (vacuum_truncate = false);
