-- The portal's tables (documented in shared/src/db/mod.rs): surveys, one
-- invitation per survey and customer, at most one answer per invitation, and
-- staff API tokens. Replaces the initial feedback and staff_users tables,
-- which nothing had written to (invitations and answers were one row there,
-- so the database could not enforce one answer per invitation).

DROP TABLE feedback;
DROP TABLE staff_users;

CREATE TABLE surveys (
    id INTEGER PRIMARY KEY NOT NULL,
    name TEXT NOT NULL,
    question TEXT NOT NULL,
    csat_question TEXT,
    comment_prompt TEXT,
    opens_at TIMESTAMP NOT NULL,
    closes_at TIMESTAMP,
    status TEXT NOT NULL CHECK (status IN ('open', 'closed')),
    created_by TEXT NOT NULL,
    created_at TIMESTAMP NOT NULL,
    closed_at TIMESTAMP
);

CREATE TABLE invitations (
    id INTEGER PRIMARY KEY NOT NULL,
    survey_id BIGINT NOT NULL REFERENCES surveys (id),
    customer_id TEXT NOT NULL REFERENCES customers (customer_id),
    token_hash TEXT NOT NULL UNIQUE,
    created_at TIMESTAMP NOT NULL,
    expires_at TIMESTAMP NOT NULL,
    campaign_id BIGINT REFERENCES campaigns (id),
    UNIQUE (survey_id, customer_id)
);
CREATE INDEX invitations_customer ON invitations (customer_id);
CREATE INDEX invitations_campaign ON invitations (campaign_id);

CREATE TABLE answers (
    id INTEGER PRIMARY KEY NOT NULL,
    invitation_id BIGINT NOT NULL UNIQUE REFERENCES invitations (id),
    score INTEGER NOT NULL CHECK (score BETWEEN 0 AND 10),
    csat INTEGER CHECK (csat BETWEEN 1 AND 5),
    comment TEXT,
    answered_at TIMESTAMP NOT NULL,
    updated_at TIMESTAMP NOT NULL
);
CREATE INDEX answers_updated ON answers (updated_at);

CREATE TABLE api_tokens (
    id INTEGER PRIMARY KEY NOT NULL,
    name TEXT NOT NULL,
    role TEXT NOT NULL CHECK (role IN ('viewer', 'marketer', 'admin')),
    token_hash TEXT NOT NULL UNIQUE,
    created_at TIMESTAMP NOT NULL,
    last_used_at TIMESTAMP,
    revoked_at TIMESTAMP
);
CREATE INDEX api_tokens_name ON api_tokens (name);
