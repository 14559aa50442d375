--! Previous: sha1:aea7c40a16681dec397823fc001b6dea59ca2109
--! Hash: sha1:b00bf3b2b2c5674668db999140a92b0f9cc99951

-- The bulk controls' filter parser gained an out parameter (metadata):
-- PostgreSQL cannot change a function's result type in place, so the one
-- a database installed before it is dropped (sql/520_control_many.sql makes it again).
drop function if exists trellis._run_filter(jsonb);
