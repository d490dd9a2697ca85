DROP TABLE job_runs;
DROP TABLE outbox;
DROP TABLE unsubscribes;
DROP TABLE feedback;
DROP TABLE campaigns;
DROP TABLE staff_users;
DROP TABLE scores;
DROP TABLE customers;
