DROP INDEX outbox_claim;
DROP INDEX outbox_status_lease;
DROP INDEX outbox_unsubscribe_hash;
ALTER TABLE outbox DROP COLUMN base_p_alive;
ALTER TABLE outbox DROP COLUMN base_revenue;
ALTER TABLE outbox DROP COLUMN base_orders;
ALTER TABLE outbox DROP COLUMN unsubscribe_hash;
