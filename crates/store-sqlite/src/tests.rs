//! The store conformance story against a real SQLite file, plus what is SQLite's own.

use launchway_store::{AuditKind, NewEvent, Store, conformance};

use super::SqliteStore;

/// A store in a fresh file; the directory lives as long as the store is used.
async fn fresh() -> (SqliteStore, tempfile::TempDir) {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("launchway.db");
    let store = SqliteStore::open(path.to_str().expect("utf-8 path")).await.expect("store opens");
    (store, dir)
}

macro_rules! conformance_tests {
    ($($name:ident),* $(,)?) => {$(
        #[tokio::test]
        async fn $name() {
            let (store, _dir) = fresh().await;
            conformance::$name(&store).await;
        }
    )*};
}

conformance_tests!(
    releases_and_runs_round_trip,
    runs_are_listed_newest_first_a_page_at_a_time,
    releases_and_latest_runs_are_read_in_one_go,
    one_unfinished_run_per_app_and_environment,
    leases_are_exclusive_and_fence_out_stale_holders,
    finished_runs_record_the_deployment,
    rollbacks_pin_and_unpin_lifts_the_pin,
    a_release_and_its_run_are_created_together_or_not_at_all,
    steps_are_recorded_per_attempt,
    events_are_ordered_and_followable,
    approvals_are_requested_then_decided_once,
    tokens_are_kept_hashed_and_revocable,
    sessions_last_until_ended_or_expired,
    webhook_deliveries_are_seen_once,
    cursors_remember_where_each_reader_is,
    reader_leases_admit_one_holder,
    published_images_replace_earlier_ones,
    builds_are_recorded_once_and_move_the_run_to_what_they_built,
);

/// Regression (issue 8): sqlx's SQLite migrator takes no lock, and two processes
/// opening a new database at once failed with "table releases already exists".
#[tokio::test]
async fn two_stores_opening_a_new_database_at_once_both_open_it() {
    for trial in 0..30 {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("launchway.db");
        let path = path.to_str().expect("utf-8 path");
        let (first, second) = tokio::join!(SqliteStore::open(path), SqliteStore::open(path));
        first.unwrap_or_else(|error| panic!("trial {trial}: {error:?}"));
        second.unwrap_or_else(|error| panic!("trial {trial}: {error:?}"));
    }
}

#[tokio::test]
async fn the_event_log_refuses_updates_and_deletes() {
    let (store, _dir) = fresh().await;
    store
        .append_event(NewEvent::audit(AuditKind::SourceInvalid, "kept forever", serde_json::Value::Null))
        .await
        .expect("append");
    let update = sqlx::query("UPDATE events SET message = 'rewritten'").execute(&store.pool).await;
    assert!(update.expect_err("refused").to_string().contains("append-only"));
    let delete = sqlx::query("DELETE FROM events").execute(&store.pool).await;
    assert!(delete.expect_err("refused").to_string().contains("append-only"));
}

#[tokio::test]
async fn data_survives_reopening_the_file_and_migrations_are_idempotent() {
    let dir = tempfile::tempdir().expect("temp dir");
    let url = format!("sqlite://{}", dir.path().join("state.db").display());
    {
        let store = SqliteStore::open(&url).await.expect("opens");
        conformance::releases_and_runs_round_trip(&store).await;
    }
    let reopened = SqliteStore::open(&url).await.expect("reopens");
    assert_eq!(reopened.release(1).await.expect("release survives").app, "web");
}
