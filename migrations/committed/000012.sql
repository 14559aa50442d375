--! Previous: sha1:6b1618c1d9a18ee556ec1c58e3bd92c50dada6e4
--! Hash: sha1:0dce2e1e7fbe06488aa1e082c3a63e09c9c21037

-- Trellis: child runs start with metadata (docs/observability.md). A child
-- op may carry the metadata its run begins with; the worker puts the W3C
-- trace context of the parent's execution there when tracing is on, so a
-- child's spans join its parent's trace in whichever process runs it.
alter type trellis.checkpoint_op add attribute metadata jsonb;
