--! Previous: sha1:1632748251d9d1946d10c1112f2e1ce178f1224b
--! Hash: sha1:0c8d99a3d7ce8e3a7389011c3c99667496a90fa0

-- Trellis: a start's event and its wake-up gate are written by _run_start
-- itself (sql/200_runs.sql), not by two helper functions called on every
-- start (issue 18: a start's backend CPU, measured with
-- test/bench/cycle-ab.ts). The helpers are dropped.
drop function if exists trellis._run_started(trellis.runs);
drop function if exists trellis._notify_ready(text, text, text, uuid, boolean);
