//! `bastion audit verify` on SQLite reads the log straight from the database file: sqlx hands
//! rows over one at a time through its worker thread (microseconds each, several times the cost
//! of checking an entry), while a plain SQLite cursor lends each row's text in place. One
//! thread reads and decodes pages of entries while another verifies the previous page.

use std::path::Path;
use std::sync::mpsc;
use std::time::Duration;

use bastion_audit::tree_head::SignedTreeHead;
use bastion_audit::verify::{StoredEntry, Tamper, Verifier, VerifyReport};
use ed25519_dalek::VerifyingKey;
use rusqlite::types::ValueRef;
use rusqlite::{Connection, OpenFlags, Row};

use super::audit::{ENTRY_COLUMNS, PackedEntry};
use crate::error::{StoreError, StoreResult};

/// Entries handed from the reader to the verifier at a time.
const PAGE: usize = 4096;
/// Pages the reader may run ahead.
const AHEAD: usize = 4;

/// A page of decoded entries, or the position of a row that could not be decoded.
type Page = Result<Vec<StoredEntry>, Tamper>;

fn sqlite_error(e: rusqlite::Error) -> StoreError {
    StoreError::Corrupt(format!("reading the audit log: {e}"))
}

/// Verifies every entry of the log in the SQLite database at `path` against `heads`.
pub(super) fn verify(
    path: &Path,
    heads: &[SignedTreeHead],
    key: &VerifyingKey,
) -> StoreResult<Result<VerifyReport, Tamper>> {
    let mut verifier = match Verifier::new(heads, key) {
        Ok(v) => v,
        Err(t) => return Ok(Err(t)),
    };
    let conn = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .map_err(sqlite_error)?;
    conn.busy_timeout(Duration::from_secs(15))
        .map_err(sqlite_error)?;
    conn.pragma_update(None, "query_only", true)
        .map_err(sqlite_error)?;
    let (pages, received) = mpsc::sync_channel::<Page>(AHEAD);
    std::thread::scope(|scope| {
        let reader = scope.spawn(move || read_pages(&conn, &pages));
        let mut verdict = Ok(());
        for page in received {
            let checked = page.and_then(|entries| {
                entries
                    .into_iter()
                    .try_for_each(|stored| verifier.push(stored))
            });
            if let Err(t) = checked {
                verdict = Err(t);
                break;
            }
        }
        // Dropping the receiver (on a verdict) ends the reader at its next page.
        let read = reader
            .join()
            .map_err(|_| StoreError::Corrupt("the audit reader thread failed".into()))?;
        match (verdict, read) {
            (Err(t), _) => Ok(Err(t)),
            (Ok(()), Err(e)) => Err(e),
            (Ok(()), Ok(())) => Ok(verifier.finish()),
        }
    })
}

/// Reads the whole log in one read transaction (a consistent snapshot) and sends it in pages.
fn read_pages(conn: &Connection, pages: &mpsc::SyncSender<Page>) -> StoreResult<()> {
    conn.execute_batch("BEGIN").map_err(sqlite_error)?;
    let mut stmt = conn
        .prepare(&format!(
            "SELECT {ENTRY_COLUMNS} FROM audit_log ORDER BY seq"
        ))
        .map_err(sqlite_error)?;
    let mut rows = stmt.query([]).map_err(sqlite_error)?;
    let mut page = Vec::with_capacity(PAGE);
    let mut expected: u64 = 0;
    while let Some(row) = rows.next().map_err(sqlite_error)? {
        match decode(row) {
            Some(stored) => {
                expected = stored.entry.seq + 1;
                page.push(stored);
            }
            None => {
                // Report the entries before it first: an earlier tampering wins.
                let seq = row.get::<_, i64>(0).map_or(expected, |s| s.max(0) as u64);
                if !page.is_empty() && pages.send(Ok(std::mem::take(&mut page))).is_err() {
                    return Ok(());
                }
                let _ = pages.send(Err(Tamper::Modified { seq }));
                return Ok(());
            }
        }
        if page.len() == PAGE
            && pages
                .send(Ok(std::mem::replace(&mut page, Vec::with_capacity(PAGE))))
                .is_err()
        {
            return Ok(());
        }
    }
    if !page.is_empty() {
        let _ = pages.send(Ok(page));
    }
    Ok(())
}

/// The row as an entry; `None` if a column holds what the log never writes (a wrong type,
/// text that is not UTF-8, a malformed hash).
fn decode(row: &Row<'_>) -> Option<StoredEntry> {
    let int = |i: usize| match row.get_ref(i).ok()? {
        ValueRef::Integer(v) => Some(v),
        _ => None,
    };
    let text = |i: usize| match row.get_ref(i).ok()? {
        ValueRef::Text(t) => std::str::from_utf8(t).ok(),
        _ => None,
    };
    let body = match row.get_ref(7).ok()? {
        ValueRef::Null => None,
        ValueRef::Text(t) => Some(std::str::from_utf8(t).ok()?),
        _ => return None,
    };
    PackedEntry(
        int(0)?,
        int(1)?,
        text(2)?.into(),
        text(3)?.into(),
        text(4)?.into(),
        text(5)?.into(),
        text(6)?,
        body,
        text(8)?,
        text(9)?,
    )
    .unpack()
}
