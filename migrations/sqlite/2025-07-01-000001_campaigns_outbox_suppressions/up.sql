-- Retention campaigns (documented in shared/src/db/mod.rs): the campaign
-- with its audience and templates, one outbox row per (campaign, customer)
-- holding that recipient's fate, the suppression list keyed by normalised
-- address, and unsubscribe events. Reshapes the initial campaigns, outbox
-- and unsubscribes tables, which nothing had written to.
--
-- SQLite cannot change a table's CHECK constraints in place: campaigns is
-- rebuilt (new table, drop, rename), the procedure of SQLite's ALTER TABLE
-- documentation; invitations' reference to it holds again after the rename.

DROP TABLE outbox;
DROP TABLE unsubscribes;

CREATE TABLE campaigns_new (
    id INTEGER PRIMARY KEY NOT NULL,
    name TEXT NOT NULL,
    status TEXT NOT NULL CHECK (status IN ('draft', 'scheduled', 'sending', 'paused', 'sent', 'cancelled')),
    audience TEXT NOT NULL,
    subject TEXT NOT NULL,
    text_template TEXT NOT NULL,
    html_template TEXT,
    survey_id BIGINT REFERENCES surveys (id),
    offer_code TEXT,
    control_share DOUBLE PRECISION NOT NULL DEFAULT 0 CHECK (control_share >= 0 AND control_share <= 0.5),
    frequency_cap_days INTEGER CHECK (frequency_cap_days >= 0),
    send_at TIMESTAMP,
    seed BIGINT,
    exclusions TEXT,
    created_by TEXT NOT NULL,
    created_at TIMESTAMP NOT NULL,
    updated_at TIMESTAMP NOT NULL,
    started_at TIMESTAMP,
    finished_at TIMESTAMP
);
DROP TABLE campaigns;
ALTER TABLE campaigns_new RENAME TO campaigns;
CREATE INDEX campaigns_status ON campaigns (status, send_at);

CREATE TABLE outbox (
    id INTEGER PRIMARY KEY NOT NULL,
    campaign_id BIGINT NOT NULL REFERENCES campaigns (id),
    customer_id TEXT NOT NULL REFERENCES customers (customer_id),
    address TEXT,
    status TEXT NOT NULL CHECK (status IN ('queued', 'sending', 'sent', 'failed', 'suppressed', 'in_doubt', 'control')),
    message_id TEXT UNIQUE,
    attempts INTEGER NOT NULL DEFAULT 0 CHECK (attempts >= 0),
    last_error TEXT,
    suppressed_reason TEXT,
    next_attempt_at TIMESTAMP,
    lease_owner TEXT,
    lease_until TIMESTAMP,
    queued_at TIMESTAMP NOT NULL,
    sent_at TIMESTAMP,
    UNIQUE (campaign_id, customer_id),
    CHECK (status = 'control' OR address IS NOT NULL)
);
CREATE INDEX outbox_due ON outbox (campaign_id, status, next_attempt_at, id);
CREATE INDEX outbox_address_sent ON outbox (address, sent_at);
CREATE INDEX outbox_customer ON outbox (customer_id);

CREATE TABLE suppressions (
    address TEXT PRIMARY KEY NOT NULL,
    reason TEXT NOT NULL CHECK (reason IN ('unsubscribed', 'hard_bounced', 'erased', 'staff')),
    customer_id TEXT,
    campaign_id BIGINT REFERENCES campaigns (id),
    at TIMESTAMP NOT NULL
);

CREATE TABLE unsubscribes (
    id INTEGER PRIMARY KEY NOT NULL,
    customer_id TEXT REFERENCES customers (customer_id),
    campaign_id BIGINT REFERENCES campaigns (id),
    address TEXT NOT NULL,
    source TEXT NOT NULL CHECK (source IN ('page', 'one_click', 'mailto', 'staff')),
    at TIMESTAMP NOT NULL
);
CREATE INDEX unsubscribes_campaign ON unsubscribes (campaign_id);
CREATE INDEX unsubscribes_customer ON unsubscribes (customer_id);
