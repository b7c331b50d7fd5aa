-- Evidence: what a check (a model-file scan, later validation, signatures, tests) found about
-- an artifact, addressed by the artifact's content digest, so a result follows the bytes
-- wherever they are registered. Rows are appended, never changed.
CREATE TABLE evidence (
    id           BIGSERIAL PRIMARY KEY,
    digest       TEXT   NOT NULL,
    kind         TEXT   NOT NULL,
    tool         TEXT   NOT NULL,
    verdict      TEXT   NOT NULL,
    worst        TEXT,
    body         TEXT   NOT NULL,
    created_by   TEXT   NOT NULL,
    created_time BIGINT NOT NULL
);
CREATE INDEX evidence_by_digest ON evidence (digest, kind, id);

-- Why a model version is held back from use (NULL: it is not); set from evidence, cleared only
-- by an explicit, audited release.
ALTER TABLE model_versions ADD COLUMN quarantine TEXT;
