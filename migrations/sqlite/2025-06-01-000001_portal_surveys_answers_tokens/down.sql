DROP TABLE api_tokens;
DROP TABLE answers;
DROP TABLE invitations;
DROP TABLE surveys;

CREATE TABLE staff_users (
    id INTEGER PRIMARY KEY NOT NULL,
    email TEXT NOT NULL UNIQUE,
    role TEXT NOT NULL CHECK (role IN ('admin', 'marketer', 'viewer')),
    token_hash TEXT NOT NULL UNIQUE,
    created_at TIMESTAMP NOT NULL
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
