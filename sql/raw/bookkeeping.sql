-- Raw tables live in the raw file (catalog raw, schema main: see pipelines/warehouse.py);
-- quarantine and build bookkeeping in the working file.

-- Which export file was loaded into which stream, so each file is loaded once.
CREATE TABLE IF NOT EXISTS raw.main.loaded_files (
    source     VARCHAR NOT NULL,
    stream     VARCHAR NOT NULL,
    file_name  VARCHAR NOT NULL,
    sha256     VARCHAR NOT NULL,
    size_bytes BIGINT NOT NULL,
    row_count  BIGINT NOT NULL,
    batch_id   BIGINT NOT NULL,
    loaded_at  TIMESTAMP NOT NULL,
    PRIMARY KEY (source, stream, file_name)
);
-- The file's modification time (ns) when loaded or last found unchanged: a file with the same
-- size and time is not hashed again. Null in files made before it was recorded: hashed once.
ALTER TABLE raw.main.loaded_files ADD COLUMN IF NOT EXISTS modified_ns BIGINT;
-- How the file was read: a fingerprint of its source's reading settings (profile, column map,
-- stage lists, date order, decimal mark, currency, time zone). When they change, every file of
-- that source's stream is read again, so a corrected config takes effect on the next run.
ALTER TABLE raw.main.loaded_files ADD COLUMN IF NOT EXISTS read_as VARCHAR;

-- Rows that failed a row rule in staging, with the reason and the row as landed.
-- Rebuilt per table with its staging table, in the same transaction.
CREATE TABLE IF NOT EXISTS quarantine.rejected_rows (
    table_name  VARCHAR NOT NULL,
    source      VARCHAR NOT NULL,
    key         VARCHAR,
    reason      VARCHAR NOT NULL,
    payload     JSON NOT NULL,
    file_name   VARCHAR,
    row_number  BIGINT,
    batch_id    BIGINT,
    rejected_at TIMESTAMP NOT NULL
);

-- The incremental cursor of each API source stream, moved in the transaction
-- that commits the rows it covers.
CREATE TABLE IF NOT EXISTS raw.main.sync_state (
    source     VARCHAR NOT NULL,
    stream     VARCHAR NOT NULL,
    cursor     VARCHAR NOT NULL,
    updated_at TIMESTAMP NOT NULL,
    PRIMARY KEY (source, stream)
);
-- The first batch of a full sync not yet ended (null otherwise). A full sync cut short
-- resumes from its cursor, and still knows at its end which keys it has returned.
ALTER TABLE raw.main.sync_state ADD COLUMN IF NOT EXISTS full_sync_from BIGINT;

-- What each staging table was last built from: its model's fingerprint (model,
-- macros, run settings, upstream tables) and the raw table's state. A table whose
-- inputs are unchanged is not rebuilt; one whose raw table only gained rows since
-- (raw_rows rows up to raw_last_batch) is rebuilt for the keys the new rows touch;
-- only rows from batches after validated_batch are checked again.
CREATE TABLE IF NOT EXISTS bookkeeping.build_state (
    table_name      VARCHAR PRIMARY KEY,
    model_fingerprint VARCHAR NOT NULL,
    raw_rows        BIGINT NOT NULL,
    raw_last_batch  BIGINT,
    built_at        TIMESTAMP NOT NULL,
    validated_batch BIGINT
);
-- The last raw batch whose rows passed the rejected-share check: the share is taken over the
-- rows landed after it, so a run that quarantined too much keeps failing until it is fixed.
ALTER TABLE bookkeeping.build_state ADD COLUMN IF NOT EXISTS accepted_batch BIGINT;
