--! Previous: sha1:3ac9e709300595fef64e3d48534c5207cf809fce
--! Hash: sha1:bb5226897746295bb09587ce5386698a1feff9c9

-- trellis._check_json_depth takes the levels the engine wraps around a
-- value (sql/000_support.sql): its three-argument form goes, so no call is
-- ambiguous between the two.
drop function if exists trellis._check_json_depth(jsonb, text, text);
