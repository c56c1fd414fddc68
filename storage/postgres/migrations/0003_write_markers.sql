-- Write markers: every write transaction inserts a random token here, so
-- that when the answer to its COMMIT is lost the tracker can look for the
-- token and know whether the batch was written. A transaction id alone
-- cannot tell after a crash of the server, which may hand the id of a
-- transaction that never reached the WAL to a new one. The tracker deletes
-- markers older than an hour now and then; nothing else reads them.
CREATE TABLE write_markers (
    token      bigint      PRIMARY KEY,
    written_at timestamptz NOT NULL DEFAULT now()
);
