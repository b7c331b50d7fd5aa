-- Versioned datasets. A version names its canonical Parquet by digest (of the plaintext), the
-- blob that holds it (the same digest, or the digest of its age ciphertext when the home
-- encrypts datasets), and its lineage: source, parent version, who and when. Versions are
-- appended, never changed.
CREATE TABLE dataset_names (
    name         TEXT   PRIMARY KEY,
    created_by   TEXT   NOT NULL,
    created_time BIGINT NOT NULL
);

CREATE TABLE dataset_versions (
    name           TEXT    NOT NULL REFERENCES dataset_names (name),
    version        BIGINT  NOT NULL,
    digest         TEXT    NOT NULL,
    blob_digest    TEXT    NOT NULL,
    encrypted      BIGINT  NOT NULL,
    bytes          BIGINT  NOT NULL,
    rows_count     BIGINT  NOT NULL,
    format         TEXT    NOT NULL,
    source         TEXT    NOT NULL,
    source_digest  TEXT    NOT NULL,
    schema_json    TEXT    NOT NULL,
    files_json     TEXT    NOT NULL,
    parent_version BIGINT,
    created_by     TEXT    NOT NULL,
    created_time   BIGINT  NOT NULL,
    PRIMARY KEY (name, version)
);
CREATE INDEX dataset_versions_by_digest ON dataset_versions (digest);
