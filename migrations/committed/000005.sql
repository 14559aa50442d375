--! Previous: sha1:11a8c81790ba74758c34d479e77d8d0a025f5d9d
--! Hash: sha1:2180bccfef11a7ba3229c68f3ff6e8f16c9a615f

-- Trellis 000005: the delivery order of results (docs/decisions/0010-delivery-order.md).
-- steps.delivered is the call's place in the order in which results were
-- handed to the workflow code within its execution (null: not delivered, or
-- recorded before this column); replays hand results back in that order.
alter table trellis.steps add column delivered integer;
alter type trellis.checkpoint_op add attribute delivered integer;
