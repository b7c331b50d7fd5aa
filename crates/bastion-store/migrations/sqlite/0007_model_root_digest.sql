-- The OpenSSF model-signing root digest of a model version's files, computed when the version
-- is registered; signatures and provenance are evidence on this digest.
ALTER TABLE model_versions ADD COLUMN root_digest TEXT;
