//! The archive's schema (SPEC §5) and its statements.
//!
//! Invariants: the migration is idempotent (every statement is `IF NOT EXISTS`) and runs
//! under a transaction-scoped advisory lock, so any number of nodes starting at once
//! against one database converge on one schema without racing on the catalog. The SPEC's
//! columns stay exactly as specified (queryable as they are); `event_json` is added beside
//! them for byte-identical reads (archive/row.rs).

/// The advisory lock key the migration holds (an arbitrary constant: "starcite" in ASCII).
pub const MIGRATION_LOCK_KEY: i64 = 0x7374_6172_6369_7465;

/// The migration: one transaction, run once per archive thread before its first write.
pub const MIGRATION: &[&str] = &[
    "SELECT pg_advisory_xact_lock(8319381555582170213)",
    "CREATE TABLE IF NOT EXISTS events (
        session_id text,
        seq bigint,
        type text,
        payload jsonb,
        actor text,
        source text,
        metadata jsonb DEFAULT '{}',
        refs jsonb DEFAULT '{}',
        idempotency_key text,
        inserted_at timestamptz,
        PRIMARY KEY (session_id, seq)
    )",
    // The event's exact JSON text (archive/row.rs): what cold reads return.
    "ALTER TABLE events ADD COLUMN IF NOT EXISTS event_json text",
];

/// Insert a batch given as eleven parallel arrays (one element per row), skipping rows that
/// already exist (at-least-once delivery, exactly-once rows). Answers one row: rows
/// inserted and the bytes of their `event_json`.
///
/// UNNEST of arrays was chosen over COPY into a staging table: PERF.md, "Archive bulk path".
pub const INSERT_BATCH: &str = "WITH inserted AS (
    INSERT INTO events (session_id, seq, type, payload, actor, source, metadata, refs, idempotency_key, inserted_at, event_json)
    SELECT u.session_id, u.seq, u.type, u.payload::jsonb, u.actor, u.source, u.metadata::jsonb, u.refs::jsonb,
           u.idempotency_key, u.inserted_at::timestamptz, u.event_json
    FROM UNNEST($1::text[], $2::int8[], $3::text[], $4::text[], $5::text[], $6::text[], $7::text[], $8::text[],
                $9::text[], $10::text[], $11::text[])
         AS u(session_id, seq, type, payload, actor, source, metadata, refs, idempotency_key, inserted_at, event_json)
    ON CONFLICT (session_id, seq) DO NOTHING
    RETURNING octet_length(event_json) AS bytes
) SELECT count(*)::int8, coalesce(sum(bytes), 0)::int8 FROM inserted";

/// Sessions of a batch whose rows Postgres already had *with other content* (`ON CONFLICT
/// DO NOTHING` kept them): each session once, with its first such seq. Run only when a
/// batch inserted fewer rows than it sent; a re-sent row is identical, so any answer means
/// another writer (for example a second cluster with the same session ids) shares the table.
pub const DIFFERING_ROWS: &str = "SELECT DISTINCT ON (e.session_id) e.session_id, e.seq FROM events e
    JOIN UNNEST($1::text[], $2::int8[], $3::text[]) AS u(session_id, seq, event_json)
      ON e.session_id = u.session_id AND e.seq = u.seq
    WHERE e.event_json IS DISTINCT FROM u.event_json
    ORDER BY e.session_id, e.seq";

/// Whether Postgres accepts one text as jsonb (for the refused-value fallback).
pub const PROBE_JSONB: &str = "SELECT $1::text::jsonb";

/// A session's archived events after seq `$2`, in order, at most `$3`, their exact JSON
/// text: the first always, then each while the text before it stays under `$4` bytes
/// (the page's byte budget, applied before anything crosses the wire).
pub const READ_EVENTS: &str = "SELECT seq, event_json FROM (
    SELECT seq, event_json, sum(octet_length(event_json)) OVER (ORDER BY seq) - octet_length(event_json) AS before
    FROM events WHERE session_id = $1 AND seq > $2 ORDER BY seq LIMIT $3
) page WHERE before < $4 OR seq = $2 + 1 ORDER BY seq";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_lock_statement_uses_the_named_key() {
        assert!(MIGRATION[0].contains(&MIGRATION_LOCK_KEY.to_string()));
    }
}
