//! Stored templates: versions kept, the latest by default, deletion.

use time::macros::datetime;

use crate::{NewTemplate, Store};

fn new(name: &str, subject: &str) -> NewTemplate {
    NewTemplate {
        name: name.into(),
        subject: subject.into(),
        text: Some(format!("text of {subject}")),
        html: None,
        layout: Some("base".into()),
        created_at: datetime!(2026-01-02 03:04:05 UTC),
    }
}

/// Each put is the next version; every version can be read back, the
/// latest by default; the list shows the latest of each name.
pub async fn templates_keep_every_version<S: Store>(store: S) {
    let first = store.put_template(new("reset", "v1")).await.expect("put");
    assert_eq!(first.version, 1);
    let second = store.put_template(new("reset", "v2")).await.expect("put");
    assert_eq!(second.version, 2);
    let other = store.put_template(new("welcome", "w1")).await.expect("put");
    assert_eq!(other.version, 1);

    let latest = store.template("reset", None).await.expect("get");
    assert_eq!(latest, Some(second.clone()));
    let old = store.template("reset", Some(1)).await.expect("get");
    assert_eq!(old, Some(first));
    assert_eq!(store.template("reset", Some(3)).await.expect("get"), None);
    assert_eq!(store.template("nope", None).await.expect("get"), None);

    let all = store.templates().await.expect("list");
    assert_eq!(all, vec![second, other]);

    assert!(store.delete_template("reset").await.expect("delete"));
    assert!(!store.delete_template("reset").await.expect("delete"));
    assert_eq!(store.template("reset", Some(1)).await.expect("get"), None);
    let again = store
        .put_template(new("reset", "v1 again"))
        .await
        .expect("put");
    assert_eq!(again.version, 1, "a deleted name starts over");
}

/// Concurrent puts of one name get distinct versions.
pub async fn concurrent_template_versions_are_distinct<S: Store>(store: S) {
    let store = std::sync::Arc::new(store);
    let tasks: Vec<_> = (0..8)
        .map(|i| {
            let store = std::sync::Arc::clone(&store);
            tokio::spawn(async move {
                store
                    .put_template(new("busy", &format!("v{i}")))
                    .await
                    .expect("put")
                    .version
            })
        })
        .collect();
    let mut versions = Vec::new();
    for task in tasks {
        versions.push(task.await.expect("task"));
    }
    versions.sort_unstable();
    assert_eq!(versions, (1..=8).collect::<Vec<u32>>());
}

/// The latest version read is the latest stored, whatever was read
/// before: a backend that keeps templates in memory forgets a name at
/// each change, and a read racing a change never keeps the old version.
pub async fn the_latest_template_is_never_stale<S: Store>(store: S) {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};

    let store = Arc::new(store);
    let latest = || async { store.template("alert", None).await.expect("get") };
    let v1 = store.put_template(new("alert", "v1")).await.expect("put");
    assert_eq!(latest().await, Some(v1.clone()));
    assert_eq!(latest().await, Some(v1.clone()), "read twice");
    let v2 = store.put_template(new("alert", "v2")).await.expect("put");
    assert_eq!(latest().await, Some(v2.clone()));
    let version = |v| store.template("alert", Some(v));
    assert_eq!(version(1).await.expect("get"), Some(v1));
    assert_eq!(version(2).await.expect("get"), Some(v2));

    assert!(store.delete_template("alert").await.expect("delete"));
    assert_eq!(latest().await, None, "deleted");
    assert_eq!(version(2).await.expect("get"), None);
    let reborn = store
        .put_template(new("alert", "reborn"))
        .await
        .expect("put");
    assert_eq!(latest().await, Some(reborn), "created again: 1, new text");

    // Readers hammer the name while it changes; once the changes end, the
    // latest read is the last change.
    let stop = Arc::new(AtomicBool::new(false));
    let readers: Vec<_> = (0..4)
        .map(|_| {
            let (store, stop) = (Arc::clone(&store), Arc::clone(&stop));
            tokio::spawn(async move {
                while !stop.load(Ordering::Relaxed) {
                    store.template("alert", None).await.expect("get");
                    tokio::task::yield_now().await;
                }
            })
        })
        .collect();
    let mut last = None;
    for i in 0..30 {
        let put = store.put_template(new("alert", &format!("race {i}")));
        last = Some(put.await.expect("put"));
        tokio::task::yield_now().await;
    }
    stop.store(true, Ordering::Relaxed);
    for reader in readers {
        reader.await.expect("reader");
    }
    assert_eq!(latest().await, last);
}
