-- Initial cvm schema for SQLite (documented in shared/src/db/mod.rs).
-- Types as diesel maps them on SQLite: Bool -> INTEGER 0/1, Date -> TEXT
-- YYYY-MM-DD, Timestamp -> TEXT 'YYYY-MM-DD HH:MM:SS[.ffffff]' (UTC),
-- BigInt/Integer -> INTEGER, Double -> REAL.

CREATE TABLE customers (
    customer_id TEXT PRIMARY KEY NOT NULL,
    is_guest BOOLEAN NOT NULL,
    email TEXT,
    phone TEXT,
    first_name TEXT,
    last_name TEXT,
    country TEXT,
    signup_date DATE,
    birth_date DATE,
    email_opt_in BOOLEAN NOT NULL DEFAULT 0,
    consent_updated_at TIMESTAMP,
    first_seen TIMESTAMP,
    channels TEXT NOT NULL DEFAULT '',
    active BOOLEAN NOT NULL DEFAULT 1,
    loaded_at TIMESTAMP NOT NULL
) WITHOUT ROWID;
CREATE INDEX customers_email ON customers (email);
CREATE INDEX customers_active ON customers (active);

CREATE TABLE scores (
    customer_id TEXT PRIMARY KEY NOT NULL REFERENCES customers (customer_id),
    as_of DATE NOT NULL,
    orders BIGINT NOT NULL,
    frequency BIGINT NOT NULL,
    recency DOUBLE NOT NULL,
    t DOUBLE NOT NULL,
    monetary_avg DOUBLE NOT NULL,
    total_revenue TEXT NOT NULL,
    first_purchase DATE,
    last_purchase DATE,
    days_since_last_purchase INTEGER,
    r_score INTEGER,
    f_score INTEGER,
    m_score INTEGER,
    rfm_segment TEXT NOT NULL,
    p_alive DOUBLE,
    expected_purchases_90d DOUBLE,
    expected_purchases_365d DOUBLE,
    expected_avg_value DOUBLE,
    clv_12m DOUBLE,
    churn_risk DOUBLE,
    nps_last INTEGER,
    nps_class TEXT,
    engagement_90d BIGINT NOT NULL,
    lifecycle_stage TEXT,
    value_tier TEXT,
    loyalty_index DOUBLE,
    loaded_at TIMESTAMP NOT NULL
) WITHOUT ROWID;
CREATE INDEX scores_lifecycle_stage ON scores (lifecycle_stage);
CREATE INDEX scores_value_tier ON scores (value_tier);
CREATE INDEX scores_rfm_segment ON scores (rfm_segment);

CREATE TABLE staff_users (
    id INTEGER PRIMARY KEY NOT NULL,
    email TEXT NOT NULL UNIQUE,
    role TEXT NOT NULL CHECK (role IN ('admin', 'marketer', 'viewer')),
    token_hash TEXT NOT NULL UNIQUE,
    created_at TIMESTAMP NOT NULL
);

CREATE TABLE campaigns (
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

CREATE TABLE feedback (
    id INTEGER PRIMARY KEY NOT NULL,
    customer_id TEXT NOT NULL REFERENCES customers (customer_id),
    survey TEXT NOT NULL CHECK (survey IN ('nps', 'csat')),
    score INTEGER,
    comment TEXT,
    created_at TIMESTAMP NOT NULL,
    answered_at TIMESTAMP,
    campaign_id BIGINT REFERENCES campaigns (id),
    token TEXT NOT NULL UNIQUE
);
CREATE INDEX feedback_customer ON feedback (customer_id, answered_at);
CREATE INDEX feedback_campaign ON feedback (campaign_id);

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

CREATE TABLE job_runs (
    run_id TEXT PRIMARY KEY NOT NULL,
    command TEXT NOT NULL,
    status TEXT NOT NULL CHECK (status IN ('running', 'succeeded', 'failed')),
    started_at TIMESTAMP NOT NULL,
    finished_at TIMESTAMP,
    as_of DATE,
    summary TEXT,
    error TEXT
);
CREATE INDEX job_runs_started ON job_runs (command, started_at);
