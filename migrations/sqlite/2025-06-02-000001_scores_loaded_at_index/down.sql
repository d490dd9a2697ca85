DROP INDEX scores_loaded_at;
