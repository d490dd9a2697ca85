-- What the campaign sender needs beyond the outbox's fate: the hash of each
-- recipient's unsubscribe token (how /u/{token} finds its row), the
-- recipient's scores when the audience was frozen (the baseline of
-- campaignUplift), and an index by status and lease (how expired leases
-- are found without a scan).
ALTER TABLE outbox ADD COLUMN unsubscribe_hash TEXT;
ALTER TABLE outbox ADD COLUMN base_orders BIGINT;
ALTER TABLE outbox ADD COLUMN base_revenue DOUBLE;
ALTER TABLE outbox ADD COLUMN base_p_alive DOUBLE;
CREATE UNIQUE INDEX outbox_unsubscribe_hash ON outbox (unsubscribe_hash);
CREATE INDEX outbox_status_lease ON outbox (status, lease_until);
-- A campaign's due rows in id order: a claim reads a few index entries, not every queued row.
CREATE INDEX outbox_claim ON outbox (campaign_id, status, id);
