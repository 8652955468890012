use super::*;
use crate::{Store, TombstoneFn, ValueFn};

fn val(s: &'static str) -> ValueFn {
    Box::new(move |_| Ok(Bytes::from_static(s.as_bytes())))
}

fn tomb(s: &'static str) -> TombstoneFn {
    Box::new(move |_| Bytes::from_static(s.as_bytes()))
}

fn open(dir: &tempfile::TempDir) -> EmbeddedStore {
    EmbeddedStore::open(&dir.path().join("store.redb")).expect("open")
}

async fn create(s: &EmbeddedStore, key: &str, v: &'static str) -> Result<KeyValue, StoreError> {
    s.txn(Op::Create { key: key.into(), value: val(v) }).await
}

#[tokio::test]
async fn guarded_writes_follow_etcd_semantics() {
    let dir = tempfile::tempdir().unwrap();
    let s = open(&dir);
    let a = create(&s, "/r/a", "1").await.unwrap();
    assert_eq!((a.create_revision, a.mod_revision), (1, 1));
    assert_eq!(create(&s, "/r/a", "x").await, Err(StoreError::AlreadyExists));
    let upd = Op::Update { key: "/r/a".into(), expected: Some(7), value: val("2") };
    assert_eq!(s.txn(upd).await, Err(StoreError::Conflict { current: 1 }));
    let upd = Op::Update { key: "/r/a".into(), expected: Some(1), value: val("2") };
    let a2 = s.txn(upd).await.unwrap();
    assert_eq!((a2.create_revision, a2.mod_revision, &a2.value[..]), (1, 2, &b"2"[..]));
    let missing = Op::Update { key: "/r/zz".into(), expected: None, value: val("2") };
    assert_eq!(s.txn(missing).await, Err(StoreError::NotFound));
    let del = Op::Delete { key: "/r/a".into(), expected: Some(2), tombstone: tomb("gone") };
    let t = s.txn(del).await.unwrap();
    assert_eq!((t.mod_revision, &t.value[..]), (3, &b"gone"[..]));
    assert!(s.get("/r/a").is_none());
    assert_eq!(s.revision(), 3);
}

#[tokio::test]
async fn writes_survive_reopen_and_revision_continues() {
    let dir = tempfile::tempdir().unwrap();
    {
        let s = open(&dir);
        for i in 0..20 {
            let key = format!("/r/{i:02}");
            s.txn(Op::Create { key, value: Box::new(move |rev| Ok(Bytes::from(format!("{i}@{rev}")))) }).await.unwrap();
        }
        s.txn(Op::Delete { key: "/r/05".into(), expected: None, tombstone: tomb("") }).await.unwrap();
        s.close().await;
    }
    let s = open(&dir);
    assert_eq!(s.revision(), 21);
    assert_eq!(s.len(), 19);
    assert_eq!(&s.get("/r/07").unwrap().value[..], b"7@8");
    // History is not persisted: the reopened store is compacted at its revision.
    assert!(matches!(s.watch("/r/", 3), Err(StoreError::Compacted { .. })));
    let k = create(&s, "/r/new", "n").await.unwrap();
    assert_eq!(k.mod_revision, 22);
}

#[tokio::test]
async fn list_pages_and_reads_old_revisions() {
    let dir = tempfile::tempdir().unwrap();
    let s = open(&dir);
    for k in ["/p/a", "/p/b", "/p/c", "/q/a"] {
        create(&s, k, "v").await.unwrap();
    }
    let page = s.list("/p/", &ListOptions { limit: 2, ..Default::default() }).unwrap();
    assert_eq!(page.items.len(), 2);
    assert_eq!(page.remaining, 1);
    let next = s
        .list("/p/", &ListOptions { limit: 2, start_after: Some("/p/b".into()), at_revision: Some(page.revision) })
        .unwrap();
    assert_eq!(next.items.iter().map(|k| &*k.key).collect::<Vec<_>>(), ["/p/c"]);
    assert_eq!(next.remaining, 0);
    // Change things, then read the snapshot at revision 2 (only /p/a and /p/b existed).
    s.txn(Op::Delete { key: "/p/a".into(), expected: None, tombstone: tomb("") }).await.unwrap();
    s.txn(Op::Update { key: "/p/b".into(), expected: None, value: val("new") }).await.unwrap();
    let old = s.list("/p/", &ListOptions { at_revision: Some(2), ..Default::default() }).unwrap();
    let got: Vec<_> = old.items.iter().map(|k| (&*k.key, &k.value[..])).collect();
    assert_eq!(got, [("/p/a", &b"v"[..]), ("/p/b", &b"v"[..])]);
    s.compact(3);
    assert!(matches!(
        s.list("/p/", &ListOptions { at_revision: Some(2), ..Default::default() }),
        Err(StoreError::Compacted { .. })
    ));
    assert!(matches!(
        s.list("/p/", &ListOptions { at_revision: Some(99), ..Default::default() }),
        Err(StoreError::FutureRevision { .. })
    ));
}

#[tokio::test]
async fn watch_replays_then_follows_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let s = open(&dir);
    create(&s, "/w/a", "1").await.unwrap();
    create(&s, "/x/a", "1").await.unwrap();
    create(&s, "/w/b", "1").await.unwrap();
    let mut w = s.watch("/w/", 1).unwrap();
    let e = w.next().await.unwrap();
    assert_eq!((&*e.kv.key, e.revision()), ("/w/b", 3));
    s.txn(Op::Delete { key: "/w/a".into(), expected: None, tombstone: tomb("t") }).await.unwrap();
    let e = w.next().await.unwrap();
    assert_eq!((e.event_type, e.revision(), e.prev.as_ref().map(|p| p.mod_revision)), (EventType::Delete, 4, Some(1)));
    assert!(w.try_next().is_none());
    assert_eq!(s.watcher_count(), 1);
    drop(w);
    assert_eq!(s.watcher_count(), 0);
}

#[tokio::test]
async fn concurrent_writers_get_distinct_contiguous_revisions() {
    let dir = tempfile::tempdir().unwrap();
    let s = Arc::new(open(&dir));
    let mut w = s.watch("/c/", 0).unwrap();
    let mut tasks = Vec::new();
    for i in 0..200 {
        let s = s.clone();
        tasks.push(tokio::spawn(async move {
            s.txn(Op::Create { key: format!("/c/{i}"), value: val("v") }).await.unwrap().mod_revision
        }));
    }
    let mut revs = Vec::new();
    for t in tasks {
        revs.push(t.await.unwrap());
    }
    revs.sort();
    assert_eq!(revs, (1..=200).collect::<Vec<_>>());
    for expected in 1..=200 {
        assert_eq!(w.next().await.unwrap().revision(), expected);
    }
}

#[tokio::test]
async fn refuses_a_data_format_it_does_not_know() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("store.redb");
    open(&dir).close().await;
    {
        let db = redb::Database::create(&path).unwrap();
        let txn = db.begin_write().unwrap();
        txn.open_table(META).unwrap().insert(META_FORMAT, FORMAT_VERSION + 1).unwrap();
        txn.commit().unwrap();
    }
    match EmbeddedStore::open(&path) {
        Err(StoreError::Io(m)) => assert!(m.contains("format version"), "{m}"),
        Err(other) => panic!("unexpected error {other:?}"),
        Ok(_) => panic!("opened a store of an unknown format"),
    }
}

#[tokio::test]
async fn a_refused_value_changes_nothing_and_takes_no_revision() {
    let dir = tempfile::tempdir().unwrap();
    let s = open(&dir);
    create(&s, "/r/a", "1").await.unwrap();
    let refuse = |m: &'static str| -> ValueFn { Box::new(move |_| Err(m.to_string())) };
    let mut w = s.watch("/r/", 1).unwrap();
    // Refused writes in the same batch as accepted ones: only the accepted ones commit,
    // with contiguous revisions.
    let (r1, ok, r2) = tokio::join!(
        s.txn(Op::Create { key: "/r/b".into(), value: refuse("too big") }),
        s.txn(Op::Update { key: "/r/a".into(), expected: Some(1), value: val("2") }),
        s.txn(Op::Update { key: "/r/a".into(), expected: None, value: refuse("no") }),
    );
    assert_eq!(r1, Err(StoreError::Refused("too big".into())));
    assert_eq!(r2, Err(StoreError::Refused("no".into())));
    assert_eq!(ok.unwrap().mod_revision, 2);
    assert_eq!(s.revision(), 2);
    assert!(s.get("/r/b").is_none());
    assert_eq!(&s.get("/r/a").unwrap().value[..], b"2");
    assert_eq!(w.next().await.unwrap().revision(), 2);
    assert_eq!(create(&s, "/r/c", "3").await.unwrap().mod_revision, 3);
}

#[tokio::test]
async fn a_watcher_too_many_bytes_behind_is_closed_and_lets_go() {
    let dir = tempfile::tempdir().unwrap();
    let s = open(&dir);
    let mut w = s.watch("/r/", 0).unwrap();
    let big = Bytes::from(vec![b'x'; 1 << 20]);
    // 20 MiB of events the watcher does not read, past WATCH_QUEUE_BYTES_MAX (16 MiB).
    for i in 0..20 {
        let v = big.clone();
        s.txn(Op::Create { key: format!("/r/{i}"), value: Box::new(move |_| Ok(v)) }).await.unwrap();
    }
    assert_eq!(s.watcher_count(), 0, "the store let the watcher go");
    assert!(w.next().await.is_none(), "it ends at once, without delivering what it had queued");
    assert!(!w.has_queued());
    // One that keeps up is not closed.
    let mut w = s.watch("/r/", s.revision()).unwrap();
    for i in 20..40 {
        let v = big.clone();
        s.txn(Op::Create { key: format!("/r/{i}"), value: Box::new(move |_| Ok(v)) }).await.unwrap();
        assert_eq!(w.next().await.unwrap().kv.key.as_ref(), format!("/r/{i}"));
    }
    assert_eq!(s.watcher_count(), 1);
}

/// A redb backend in memory that makes each `sync_data` (redb's fsync) wait for the test:
/// it says a sync has begun and waits to be let go, so the test can look at the write's
/// acknowledgement while the committer is inside the fsync.
#[derive(Debug)]
struct GatedSync {
    inner: redb::backends::InMemoryBackend,
    gate: std::sync::Mutex<Option<(tokio::sync::mpsc::UnboundedSender<()>, std::sync::mpsc::Receiver<()>)>>,
}

impl redb::StorageBackend for GatedSync {
    fn len(&self) -> Result<u64, std::io::Error> {
        self.inner.len()
    }
    fn read(&self, offset: u64, out: &mut [u8]) -> Result<(), std::io::Error> {
        self.inner.read(offset, out)
    }
    fn set_len(&self, len: u64) -> Result<(), std::io::Error> {
        self.inner.set_len(len)
    }
    fn write(&self, offset: u64, data: &[u8]) -> Result<(), std::io::Error> {
        self.inner.write(offset, data)
    }
    fn sync_data(&self) -> Result<(), std::io::Error> {
        let gate = self.gate.lock().unwrap();
        if let Some((began, release)) = gate.as_ref() {
            let _ = began.send(());
            // Bounded: a test that stopped listening does not hang the committer.
            let _ = release.recv_timeout(Duration::from_secs(30));
        }
        drop(gate);
        self.inner.sync_data()
    }
}

/// A write is acknowledged only after its batch is durable: while redb's fsync of the
/// batch has not returned, the caller has no answer (checked at every fsync of the
/// commit, with the committer held inside it), and at least one fsync happens between
/// the write being sent and its answer.
#[tokio::test]
async fn a_write_is_acknowledged_only_after_its_fsync_returned() {
    // redb owns its backend; this one is shared through a handle so that the gate can be
    // installed once the store is open (opening syncs too, ungated).
    let backend = Arc::new(GatedSync { inner: redb::backends::InMemoryBackend::new(), gate: Default::default() });
    #[derive(Debug)]
    struct Handle(Arc<GatedSync>);
    impl redb::StorageBackend for Handle {
        fn len(&self) -> Result<u64, std::io::Error> {
            self.0.len()
        }
        fn read(&self, offset: u64, out: &mut [u8]) -> Result<(), std::io::Error> {
            self.0.read(offset, out)
        }
        fn set_len(&self, len: u64) -> Result<(), std::io::Error> {
            self.0.set_len(len)
        }
        fn write(&self, offset: u64, data: &[u8]) -> Result<(), std::io::Error> {
            self.0.write(offset, data)
        }
        fn sync_data(&self) -> Result<(), std::io::Error> {
            self.0.sync_data()
        }
    }
    let s = EmbeddedStore::open_with_backend(Handle(backend.clone())).expect("open");
    let (began_tx, mut began) = tokio::sync::mpsc::unbounded_channel();
    let (release, release_rx) = std::sync::mpsc::channel();
    *backend.gate.lock().unwrap() = Some((began_tx, release_rx));

    let mut write = s.txn(Op::Create { key: "/r/durable".into(), value: val("v") });
    let mut syncs = 0;
    let answer = loop {
        enum Step {
            Fsync,
            Answered(Result<KeyValue, StoreError>),
        }
        let step = tokio::select! {
            biased;
            b = began.recv() => {
                b.expect("backend gate");
                Step::Fsync
            }
            r = &mut write => Step::Answered(r),
            _ = tokio::time::sleep(Duration::from_secs(30)) => panic!("no answer and no fsync within 30 s"),
        };
        match step {
            Step::Answered(r) => break r,
            Step::Fsync => {
                // The committer is inside fsync: nothing may have been answered yet.
                let polled = std::future::poll_fn(|cx| std::task::Poll::Ready(write.as_mut().poll(cx))).await;
                assert!(polled.is_pending(), "the write was acknowledged before its fsync returned: {polled:?}");
                syncs += 1;
                release.send(()).unwrap();
            }
        }
    };
    let kv = answer.expect("the write commits");
    assert!(syncs >= 1, "the write was acknowledged without any fsync");
    assert_eq!(s.get("/r/durable").map(|k| k.mod_revision), Some(kv.mod_revision));
    *backend.gate.lock().unwrap() = None;
}
