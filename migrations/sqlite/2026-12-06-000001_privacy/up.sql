-- Privacy: the history of every email consent change, the staff access audit
-- log, erasures (who was erased, under which pseudonym, and how far the
-- erasure has reached), and the erased flag on customers.
ALTER TABLE customers ADD COLUMN erased BOOLEAN NOT NULL DEFAULT FALSE;

CREATE TABLE consent_changes (
    id INTEGER PRIMARY KEY NOT NULL,
    -- No foreign key: a load records the change before it merges the row.
    customer_id TEXT NOT NULL,
    email_opt_in BOOLEAN NOT NULL,
    source TEXT NOT NULL CHECK (source IN ('crm', 'unsubscribe', 'staff', 'erasure')),
    at TIMESTAMP NOT NULL,
    record TEXT,
    recorded_at TIMESTAMP NOT NULL
);
CREATE INDEX consent_changes_customer ON consent_changes (customer_id, at, id);

-- What every customer's consent was before the history was kept: one change
-- each, from the CRM record that set it.
INSERT INTO consent_changes (customer_id, email_opt_in, source, at, record, recorded_at)
SELECT customer_id, email_opt_in, 'crm', consent_updated_at, 'before consent history',
       strftime('%Y-%m-%d %H:%M:%f', 'now')
FROM customers WHERE NOT is_guest AND consent_updated_at IS NOT NULL;

CREATE TABLE audit_log (
    id INTEGER PRIMARY KEY NOT NULL,
    at TIMESTAMP NOT NULL,
    actor TEXT NOT NULL,
    action TEXT NOT NULL CHECK (action IN ('read_personal', 'export', 'erase', 'consent')),
    detail TEXT
);
CREATE INDEX audit_log_at ON audit_log (at);
-- The customers each entry concerns (a page of 500 customers: 500 rows).
CREATE TABLE audit_log_customers (
    customer_id TEXT NOT NULL,
    audit_id BIGINT NOT NULL REFERENCES audit_log (id),
    PRIMARY KEY (customer_id, audit_id)
);
CREATE INDEX audit_log_customers_entry ON audit_log_customers (audit_id);

CREATE TABLE erasures (
    pseudonym TEXT PRIMARY KEY NOT NULL,
    erased_at TIMESTAMP NOT NULL,
    erased_by TEXT NOT NULL,
    reason TEXT NOT NULL,
    warehouse_done_at TIMESTAMP
);
-- Keyed hashes of an erased customer's normalised keys (their id, emails,
-- phones; never the keys themselves): how loads, the warehouse's erasure
-- ledger and hashed suppressions recognise the person later.
CREATE TABLE erasure_keys (
    pseudonym TEXT NOT NULL REFERENCES erasures (pseudonym),
    kind TEXT NOT NULL CHECK (kind IN ('customer_id', 'email', 'phone')),
    key_hash TEXT NOT NULL,
    PRIMARY KEY (pseudonym, kind, key_hash)
);
CREATE INDEX erasure_keys_hash ON erasure_keys (key_hash);
