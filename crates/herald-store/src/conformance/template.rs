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
