DROP TABLE unsubscribes;
DROP TABLE suppressions;
DROP TABLE outbox;
CREATE TABLE campaigns_old (
    id INTEGER PRIMARY KEY NOT NULL,
    name TEXT NOT NULL,
    segment TEXT NOT NULL,
    subject TEXT NOT NULL,
    template TEXT NOT NULL,
    status TEXT NOT NULL CHECK (status IN ('draft', 'queued', 'sending', 'sent', 'cancelled')),
    created_by TEXT NOT NULL,
    created_at TIMESTAMP NOT NULL,
    sent_at TIMESTAMP
);
DROP TABLE campaigns;
ALTER TABLE campaigns_old RENAME TO campaigns;
CREATE TABLE unsubscribes (
    id INTEGER PRIMARY KEY NOT NULL,
    customer_id TEXT REFERENCES customers (customer_id),
    email TEXT NOT NULL,
    at TIMESTAMP NOT NULL,
    source TEXT NOT NULL
);
CREATE INDEX unsubscribes_email ON unsubscribes (email);
CREATE INDEX unsubscribes_customer ON unsubscribes (customer_id);
CREATE TABLE outbox (
    id INTEGER PRIMARY KEY NOT NULL,
    campaign_id BIGINT NOT NULL REFERENCES campaigns (id),
    customer_id TEXT NOT NULL REFERENCES customers (customer_id),
    to_email TEXT NOT NULL,
    subject TEXT NOT NULL,
    body TEXT NOT NULL,
    status TEXT NOT NULL CHECK (status IN ('queued', 'sent', 'failed')),
    attempts INTEGER NOT NULL DEFAULT 0,
    last_error TEXT,
    created_at TIMESTAMP NOT NULL,
    sent_at TIMESTAMP,
    UNIQUE (campaign_id, customer_id)
);
CREATE INDEX outbox_status ON outbox (status, id);
