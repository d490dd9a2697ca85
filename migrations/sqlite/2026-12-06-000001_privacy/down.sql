DROP TABLE erasure_keys;
DROP TABLE erasures;
DROP TABLE audit_log_customers;
DROP TABLE audit_log;
DROP TABLE consent_changes;
ALTER TABLE customers DROP COLUMN erased;
