--! Previous: sha1:b7d2feedf356cededa197051f6b3d09b5769604f
--! Hash: sha1:d98c1eb09047262ffdfc648f5a747b9082854375

-- Trellis: a release op may say its attempt never began (begun false): a
-- worker giving back a run it claimed but did not execute (stopping, or a
-- claim that brought back more runs than the slots a hand-off left). Such
-- a release does not count an attempt (runs.attempt goes back by one).
alter type trellis.checkpoint_op add attribute begun boolean;
