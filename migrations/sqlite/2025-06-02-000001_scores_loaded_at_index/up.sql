-- The version of the scores (the latest write's loaded_at and as_of) is read
-- by every page of a customer listing ordered by scores: an index lookup, not a scan.
CREATE INDEX scores_loaded_at ON scores (loaded_at);
