//! The embedded backend decision: redb vs SQLite for what the store does, committing batches
//! of writes durably (fsync) and reading everything back at start.
//!
//! Run: `cargo bench -p rkube-store --bench backends`. Prints figures; asserts nothing.
//! Bounded: every case writes at most `TOTAL_WRITES` values.

use std::time::{Duration, Instant};

use redb::{ReadableDatabase, ReadableTable, TableDefinition};

const TOTAL_WRITES: usize = 20_000;
const VALUE_BYTES: usize = 2048;
const T: TableDefinition<&str, &[u8]> = TableDefinition::new("kv");

fn redb_case(dir: &std::path::Path, batch: usize) -> (Duration, Duration) {
    let db = redb::Database::builder().set_cache_size(8 << 20).create(dir.join("r.redb")).unwrap();
    let value = vec![7u8; VALUE_BYTES];
    let t0 = Instant::now();
    for chunk in 0..TOTAL_WRITES / batch {
        let txn = db.begin_write().unwrap();
        {
            let mut t = txn.open_table(T).unwrap();
            for i in 0..batch {
                t.insert(format!("/registry/core/pods/bench/p-{chunk}-{i}").as_str(), value.as_slice()).unwrap();
            }
        }
        txn.commit().unwrap();
    }
    let write = t0.elapsed();
    drop(db);
    let t1 = Instant::now();
    let db = redb::Database::builder().set_cache_size(8 << 20).create(dir.join("r.redb")).unwrap();
    let txn = db.begin_read().unwrap();
    let t = txn.open_table(T).unwrap();
    let n = t.iter().unwrap().count();
    assert_eq!(n, TOTAL_WRITES / batch * batch);
    (write, t1.elapsed())
}

fn sqlite_case(dir: &std::path::Path, batch: usize) -> (Duration, Duration) {
    let path = dir.join("s.sqlite");
    let mut c = rusqlite::Connection::open(&path).unwrap();
    c.execute_batch(
        "PRAGMA journal_mode=WAL; PRAGMA synchronous=FULL; CREATE TABLE kv (k TEXT PRIMARY KEY, v BLOB) WITHOUT ROWID;",
    )
    .unwrap();
    let value = vec![7u8; VALUE_BYTES];
    let t0 = Instant::now();
    for chunk in 0..TOTAL_WRITES / batch {
        let tx = c.transaction().unwrap();
        {
            let mut st = tx.prepare_cached("INSERT OR REPLACE INTO kv (k, v) VALUES (?1, ?2)").unwrap();
            for i in 0..batch {
                st.execute(rusqlite::params![format!("/registry/core/pods/bench/p-{chunk}-{i}"), value]).unwrap();
            }
        }
        tx.commit().unwrap();
    }
    let write = t0.elapsed();
    drop(c);
    let t1 = Instant::now();
    let c = rusqlite::Connection::open(&path).unwrap();
    let mut st = c.prepare("SELECT k, v FROM kv").unwrap();
    let n = st.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, Vec<u8>>(1)?))).unwrap().count();
    assert_eq!(n, TOTAL_WRITES / batch * batch);
    (write, t1.elapsed())
}

fn main() {
    println!("{TOTAL_WRITES} writes of {VALUE_BYTES} B, durable commits (fsync), then a full read at reopen");
    println!("| backend | batch | commits/s | writes/s | reopen + read all |");
    println!("| --- | --- | --- | --- | --- |");
    for batch in [1usize, 32, 256] {
        for (name, f) in [
            ("redb", redb_case as fn(&std::path::Path, usize) -> (Duration, Duration)),
            ("SQLite (WAL, synchronous=FULL)", sqlite_case),
        ] {
            let dir = tempfile::tempdir().unwrap();
            // Batch 1 is slow on both; cap it to keep the run short.
            let (w, r) = f(dir.path(), batch);
            let commits = (TOTAL_WRITES / batch) as f64;
            println!(
                "| {name} | {batch} | {:.0} | {:.0} | {:.1} ms |",
                commits / w.as_secs_f64(),
                commits * batch as f64 / w.as_secs_f64(),
                r.as_secs_f64() * 1000.0
            );
        }
    }
}
