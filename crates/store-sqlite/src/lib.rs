//! The embedded store: one SQLite file, in WAL mode, migrated on open.
//!
//! WAL with `synchronous = NORMAL` survives the process being killed at any point (a
//! committed transaction is in the log before `COMMIT` returns); a power cut may lose
//! the last few commits, which the engine tolerates because every step re-reads live
//! state and is idempotent.

use std::collections::BTreeMap;
use std::str::FromStr;
use std::time::Duration;

use async_trait::async_trait;
use launchway_store::{
    Approval, BuiltImage, Decision, DeploymentRecord, Event, EventBody, EventFilter, Lease, NewEvent, NewRelease,
    NewRun, NewToken, Pin, Published, Release, ReleaseId, ReleaseSource, Result, Role, Run, RunFilter, RunId, RunKind,
    RunState, Step, StepOutcome, Store, StoreError, Token, Transition, now_ms,
};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteRow, SqliteSynchronous};
use sqlx::{QueryBuilder, Row, Sqlite, SqlitePool};

/// A store in one SQLite database file.
#[derive(Clone)]
pub struct SqliteStore {
    pool: SqlitePool,
}

impl SqliteStore {
    /// Opens (creating if needed) and migrates the database at `location`: a file path,
    /// or a `sqlite:` URL.
    pub async fn open(location: &str) -> Result<SqliteStore> {
        let open_error =
            |source: sqlx::Error| StoreError::Open { location: location.to_owned(), source: Box::new(source) };
        let options = if location.starts_with("sqlite:") {
            SqliteConnectOptions::from_str(location).map_err(open_error)?
        } else {
            SqliteConnectOptions::new().filename(location)
        };
        let options = options
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Normal)
            .foreign_keys(true)
            // Several launchway processes may share one file; writers wait for each other.
            .busy_timeout(Duration::from_secs(10))
            // 256 KiB of page cache per connection instead of 2 MiB: the hot pages (runs
            // under way, recent events) fit, and the operating system caches the rest.
            .pragma("cache_size", "-256");
        // Setting up a new database is not safe to race: switching it to WAL can fail
        // with "database is locked" without waiting, and sqlx's SQLite migrator takes
        // no lock, so two processes would both create its tables. A lock file beside it
        // makes them take turns; the second finds everything done.
        let _setting_up = match options_path(location) {
            Some(path) => Some(
                MigrationLock::acquire(&path)
                    .await
                    .map_err(|source| StoreError::Open { location: location.to_owned(), source: Box::new(source) })?,
            ),
            None => None,
        };
        let pool = SqlitePoolOptions::new().max_connections(4).connect_with(options).await.map_err(open_error)?;
        sqlx::migrate!()
            .run(&pool)
            .await
            .map_err(|error| StoreError::Open { location: location.to_owned(), source: Box::new(error) })?;
        Ok(SqliteStore { pool })
    }

    /// Marks the run's steps left unfinished by a driver that is gone as interrupted:
    /// those of attempts before `attempt` (a new driver runs them again), or all of them
    /// (`None`: the run has ended).
    async fn interrupt_steps(executor: &mut sqlx::SqliteConnection, run: RunId, attempt: Option<i64>) -> Result<()> {
        sqlx::query(
            "UPDATE steps SET outcome = 'interrupted', finished_at = ?
             WHERE run_id = ? AND finished_at IS NULL AND (? IS NULL OR attempt < ?)",
        )
        .bind(now_ms())
        .bind(run)
        .bind(attempt)
        .bind(attempt)
        .execute(executor)
        .await
        .map_err(backend)?;
        Ok(())
    }

    async fn insert_event(executor: &mut sqlx::SqliteConnection, event: &NewEvent) -> Result<Event> {
        let at = now_ms();
        let (kind, data) = (event.body.kind(), event.body.data());
        let text = serde_json::to_string(&data).map_err(corrupt)?;
        let row = sqlx::query(
            "INSERT INTO events (at, run_id, app, env, kind, message, data) VALUES (?, ?, ?, ?, ?, ?, ?) RETURNING id",
        )
        .bind(at)
        .bind(event.run_id)
        .bind(&event.app)
        .bind(&event.env)
        .bind(kind.as_ref())
        .bind(&event.message)
        .bind(text)
        .fetch_one(&mut *executor)
        .await
        .map_err(backend)?;
        Ok(Event {
            id: row.get("id"),
            at,
            run_id: event.run_id,
            app: event.app.clone(),
            env: event.env.clone(),
            kind: kind.into_owned(),
            message: event.message.clone(),
            data,
        })
    }
}

#[async_trait]
impl Store for SqliteStore {
    async fn create_release(&self, release: NewRelease) -> Result<Release> {
        let mut connection = self.pool.acquire().await.map_err(backend)?;
        Self::insert_release(&mut connection, release).await
    }

    async fn release(&self, id: ReleaseId) -> Result<Release> {
        let row = sqlx::query("SELECT * FROM releases WHERE id = ?")
            .bind(id)
            .fetch_optional(&self.pool)
            .await
            .map_err(backend)?
            .ok_or(StoreError::NotFound { what: "release", id })?;
        release_from_row(&row)
    }

    async fn releases(&self, ids: &[ReleaseId]) -> Result<Vec<Release>> {
        let mut releases = Vec::with_capacity(ids.len());
        // Within SQLite's limit on bound parameters.
        for chunk in ids.chunks(500) {
            let mut query = QueryBuilder::<Sqlite>::new("SELECT * FROM releases WHERE id IN (");
            let mut list = query.separated(", ");
            for id in chunk {
                list.push_bind(*id);
            }
            query.push(")");
            let rows = query.build().fetch_all(&self.pool).await.map_err(backend)?;
            for row in &rows {
                releases.push(release_from_row(row)?);
            }
        }
        Ok(releases)
    }

    async fn create_run(&self, run: NewRun, event: NewEvent) -> Result<(Run, Event)> {
        let mut tx = self.pool.begin().await.map_err(backend)?;
        let inserted = Self::insert_run(&mut tx, run, event).await?;
        self.commit_run(tx, inserted).await
    }

    async fn create_release_with_run(
        &self,
        release: NewRelease,
        mut run: NewRun,
        mut event: NewEvent,
    ) -> Result<(Release, Run, Event)> {
        let mut tx = self.pool.begin().await.map_err(backend)?;
        let release = Self::insert_release(&mut tx, release).await?;
        run.release_id = release.id;
        if let EventBody::RunCreated(created) = &mut event.body {
            created.release = release.id;
        }
        // Any error drops the transaction, and the release goes with it.
        let inserted = Self::insert_run(&mut tx, run, event).await?;
        let (run, event) = self.commit_run(tx, inserted).await?;
        Ok((release, run, event))
    }

    async fn run(&self, id: RunId) -> Result<Run> {
        let row = sqlx::query("SELECT * FROM runs WHERE id = ?")
            .bind(id)
            .fetch_optional(&self.pool)
            .await
            .map_err(backend)?
            .ok_or(StoreError::NotFound { what: "run", id })?;
        run_from_row(&row)
    }

    async fn runs(&self, filter: &RunFilter) -> Result<Vec<Run>> {
        // Only the conditions in use are written: `(? IS NULL OR app = ?)` would keep
        // SQLite from the (app, env, id) index and scan every run, every time.
        let mut query = QueryBuilder::<Sqlite>::new("SELECT * FROM runs WHERE 1 = 1");
        if let Some(app) = &filter.app {
            query.push(" AND app = ").push_bind(app.clone());
        }
        if let Some(env) = &filter.env {
            query.push(" AND env = ").push_bind(env.clone());
        }
        if filter.unfinished_only {
            query.push(" AND finished_at IS NULL");
        }
        if let Some(state) = filter.state {
            query.push(" AND state = ").push_bind(state.as_str());
        }
        if let Some(since) = filter.since {
            query.push(" AND created_at >= ").push_bind(since);
        }
        if let Some(before) = filter.before_id {
            query.push(" AND id < ").push_bind(before);
        }
        if filter.exclude_parked {
            query.push(" AND state != 'awaiting_approval'");
        }
        if let Some(kind) = filter.kind {
            query.push(" AND kind = ").push_bind(kind.as_str());
        }
        query.push(" ORDER BY id DESC LIMIT ").push_bind(filter.limit.map_or(-1, i64::from));
        let rows = query.build().fetch_all(&self.pool).await.map_err(backend)?;
        rows.iter().map(run_from_row).collect()
    }

    async fn latest_runs(&self) -> Result<Vec<Run>> {
        // MAX(id) per (app, env) is read from the runs_by_app_env index.
        let rows = sqlx::query("SELECT * FROM runs WHERE id IN (SELECT MAX(id) FROM runs GROUP BY app, env)")
            .fetch_all(&self.pool)
            .await
            .map_err(backend)?;
        rows.iter().map(run_from_row).collect()
    }

    async fn claim_run(&self, id: RunId, owner: &str, ttl_ms: i64, dead_owner: Option<&str>) -> Result<Option<Lease>> {
        let now = now_ms();
        let attempt: Option<i64> = sqlx::query_scalar(
            "UPDATE runs SET lease_owner = ?1, lease_expires_at = ?2, attempt = attempt + 1, updated_at = ?3
             WHERE id = ?4 AND finished_at IS NULL
               AND (lease_owner IS NULL OR lease_expires_at < ?3 OR lease_owner = ?1 OR lease_owner = ?5)
             RETURNING attempt",
        )
        .bind(owner)
        .bind(now + ttl_ms)
        .bind(now)
        .bind(id)
        .bind(dead_owner)
        .fetch_optional(&self.pool)
        .await
        .map_err(backend)?;
        Ok(attempt.map(|attempt| Lease { run_id: id, owner: owner.to_owned(), attempt }))
    }

    async fn renew_lease(&self, lease: &Lease, ttl_ms: i64) -> Result<()> {
        let now = now_ms();
        let updated = sqlx::query(
            "UPDATE runs SET lease_expires_at = ? WHERE id = ? AND lease_owner = ? AND attempt = ? AND finished_at IS NULL",
        )
        .bind(now + ttl_ms)
        .bind(lease.run_id)
        .bind(&lease.owner)
        .bind(lease.attempt)
        .execute(&self.pool)
        .await
        .map_err(backend)?;
        if updated.rows_affected() == 0 {
            return Err(StoreError::LeaseLost { run_id: lease.run_id });
        }
        Ok(())
    }

    async fn release_lease(&self, lease: &Lease) -> Result<()> {
        sqlx::query("UPDATE runs SET lease_owner = NULL, lease_expires_at = NULL WHERE id = ? AND lease_owner = ? AND attempt = ?")
            .bind(lease.run_id)
            .bind(&lease.owner)
            .bind(lease.attempt)
            .execute(&self.pool)
            .await
            .map_err(backend)?;
        Ok(())
    }

    async fn transition(&self, lease: &Lease, transition: Transition) -> Result<(Run, Event)> {
        let now = now_ms();
        let finished_at = transition.to.is_terminal().then_some(now);
        let plan = transition.plan.as_ref().map(serde_json::to_string).transpose().map_err(corrupt)?;
        let mut tx = self.pool.begin().await.map_err(backend)?;
        let release_id = match transition.release {
            Some(release) => Some(Self::insert_release(&mut tx, release).await?.id),
            None => None,
        };
        let row = sqlx::query(
            "UPDATE runs SET state = ?, reason = COALESCE(?, reason), plan = COALESCE(?, plan), updated_at = ?, finished_at = ?,
                release_id = COALESCE(?, release_id)
             WHERE id = ? AND lease_owner = ? AND attempt = ? AND finished_at IS NULL
             RETURNING *",
        )
        .bind(transition.to.as_str())
        .bind(&transition.reason)
        .bind(plan)
        .bind(now)
        .bind(finished_at)
        .bind(release_id)
        .bind(lease.run_id)
        .bind(&lease.owner)
        .bind(lease.attempt)
        .fetch_optional(&mut *tx)
        .await
        .map_err(backend)?
        .ok_or(StoreError::LeaseLost { run_id: lease.run_id })?;
        let run = run_from_row(&row)?;
        if finished_at.is_some() {
            Self::interrupt_steps(&mut tx, run.id, None).await?;
        }
        let event = Self::insert_event(&mut tx, &transition.event).await?;
        if let Some(request) = transition.approval {
            sqlx::query(
                "INSERT INTO approvals (run_id, requested_at, expires_at) VALUES (?, ?, ?)
                 ON CONFLICT (run_id) DO NOTHING",
            )
            .bind(run.id)
            .bind(now)
            .bind(request.expires_at)
            .execute(&mut *tx)
            .await
            .map_err(backend)?;
        }
        if let Some(update) = &transition.deployment {
            sqlx::query(
                "INSERT INTO deployments (app, env, current_release_id, good_release_id, commit_id, updated_at)
                 VALUES (?1, ?2, ?3, CASE WHEN ?4 THEN ?3 END, (SELECT commit_id FROM releases WHERE id = ?3), ?5)
                 ON CONFLICT (app, env) DO UPDATE SET
                    current_release_id = excluded.current_release_id,
                    good_release_id = CASE WHEN ?4 THEN excluded.current_release_id ELSE deployments.good_release_id END,
                    commit_id = excluded.commit_id,
                    updated_at = excluded.updated_at",
            )
            .bind(&run.app)
            .bind(&run.env)
            .bind(update.current_release_id)
            .bind(update.verified)
            .bind(now)
            .execute(&mut *tx)
            .await
            .map_err(backend)?;
        }
        tx.commit().await.map_err(backend)?;
        Ok((run, event))
    }

    async fn start_step(&self, lease: &Lease, step: &str, event: NewEvent) -> Result<Event> {
        let mut tx = self.pool.begin().await.map_err(backend)?;
        Self::interrupt_steps(&mut tx, lease.run_id, Some(lease.attempt)).await?;
        sqlx::query(
            "INSERT INTO steps (run_id, name, attempt, started_at) VALUES (?, ?, ?, ?)
             ON CONFLICT (run_id, name, attempt) DO NOTHING",
        )
        .bind(lease.run_id)
        .bind(step)
        .bind(lease.attempt)
        .bind(now_ms())
        .execute(&mut *tx)
        .await
        .map_err(backend)?;
        let event = Self::insert_event(&mut tx, &event).await?;
        tx.commit().await.map_err(backend)?;
        Ok(event)
    }

    async fn finish_step(
        &self,
        lease: &Lease,
        step: &str,
        outcome: StepOutcome,
        detail: Option<String>,
        event: NewEvent,
    ) -> Result<Event> {
        let mut tx = self.pool.begin().await.map_err(backend)?;
        sqlx::query(
            "UPDATE steps SET finished_at = ?, outcome = ?, detail = ? WHERE run_id = ? AND name = ? AND attempt = ?",
        )
        .bind(now_ms())
        .bind(outcome.as_str())
        .bind(detail)
        .bind(lease.run_id)
        .bind(step)
        .bind(lease.attempt)
        .execute(&mut *tx)
        .await
        .map_err(backend)?;
        let event = Self::insert_event(&mut tx, &event).await?;
        tx.commit().await.map_err(backend)?;
        Ok(event)
    }

    async fn steps(&self, run: RunId) -> Result<Vec<Step>> {
        let rows = sqlx::query("SELECT * FROM steps WHERE run_id = ? ORDER BY started_at, attempt")
            .bind(run)
            .fetch_all(&self.pool)
            .await
            .map_err(backend)?;
        rows.iter()
            .map(|row| {
                let outcome: Option<String> = row.get("outcome");
                Ok(Step {
                    run_id: row.get("run_id"),
                    name: row.get("name"),
                    attempt: row.get("attempt"),
                    started_at: row.get("started_at"),
                    finished_at: row.get("finished_at"),
                    outcome: match outcome.as_deref() {
                        None => None,
                        Some("succeeded") => Some(StepOutcome::Succeeded),
                        Some("failed") => Some(StepOutcome::Failed),
                        Some("interrupted") => Some(StepOutcome::Interrupted),
                        Some(other) => return Err(StoreError::Corrupt(format!("unknown step outcome {other:?}"))),
                    },
                    detail: row.get("detail"),
                })
            })
            .collect()
    }

    async fn append_event(&self, event: NewEvent) -> Result<Event> {
        let mut connection = self.pool.acquire().await.map_err(backend)?;
        Self::insert_event(&mut connection, &event).await
    }

    async fn events(&self, filter: &EventFilter) -> Result<Vec<Event>> {
        let limit = match (filter.limit, filter.last) {
            (Some(limit), Some(last)) => i64::from(limit.min(last)),
            (Some(limit), None) => i64::from(limit),
            (None, Some(last)) => i64::from(last),
            (None, None) => -1,
        };
        // As for runs: only the conditions in use, so the indexes serve them.
        let mut query = QueryBuilder::<Sqlite>::new("SELECT * FROM events WHERE 1 = 1");
        if let Some(run_id) = filter.run_id {
            query.push(" AND run_id = ").push_bind(run_id);
        }
        if let Some(app) = &filter.app {
            query.push(" AND app = ").push_bind(app.clone());
        }
        if let Some(env) = &filter.env {
            query.push(" AND env = ").push_bind(env.clone());
        }
        if let Some(after) = filter.after_id {
            query.push(" AND id > ").push_bind(after);
        }
        query.push(if filter.last.is_some() { " ORDER BY id DESC" } else { " ORDER BY id" });
        query.push(" LIMIT ").push_bind(limit);
        let mut rows = query.build().fetch_all(&self.pool).await.map_err(backend)?;
        if filter.last.is_some() {
            rows.reverse();
        }
        rows.iter()
            .map(|row| {
                let data: String = row.get("data");
                Ok(Event {
                    id: row.get("id"),
                    at: row.get("at"),
                    run_id: row.get("run_id"),
                    app: row.get("app"),
                    env: row.get("env"),
                    kind: row.get("kind"),
                    message: row.get("message"),
                    data: serde_json::from_str(&data).map_err(corrupt)?,
                })
            })
            .collect()
    }

    async fn deployment(&self, app: &str, env: &str) -> Result<Option<DeploymentRecord>> {
        let row = sqlx::query("SELECT * FROM deployments WHERE app = ? AND env = ?")
            .bind(app)
            .bind(env)
            .fetch_optional(&self.pool)
            .await
            .map_err(backend)?;
        Ok(row.as_ref().map(deployment_from_row))
    }

    async fn deployments(&self) -> Result<Vec<DeploymentRecord>> {
        let rows =
            sqlx::query("SELECT * FROM deployments ORDER BY app, env").fetch_all(&self.pool).await.map_err(backend)?;
        Ok(rows.iter().map(deployment_from_row).collect())
    }

    async fn unpin(&self, app: &str, env: &str, event: NewEvent) -> Result<Option<(Pin, Event)>> {
        let mut tx = self.pool.begin().await.map_err(backend)?;
        let row = sqlx::query("SELECT * FROM deployments WHERE app = ? AND env = ?")
            .bind(app)
            .bind(env)
            .fetch_optional(&mut *tx)
            .await
            .map_err(backend)?;
        let Some(pin) = row.as_ref().and_then(|row| deployment_from_row(row).pin) else {
            return Ok(None);
        };
        sqlx::query(
            "UPDATE deployments SET pinned_release_id = NULL, pinned_by = NULL, pinned_at = NULL, pin_reason = NULL
             WHERE app = ? AND env = ?",
        )
        .bind(app)
        .bind(env)
        .execute(&mut *tx)
        .await
        .map_err(backend)?;
        let event = Self::insert_event(&mut tx, &event).await?;
        tx.commit().await.map_err(backend)?;
        Ok(Some((pin, event)))
    }

    async fn approval(&self, run: RunId) -> Result<Option<Approval>> {
        let mut connection = self.pool.acquire().await.map_err(backend)?;
        Self::approval_row(&mut connection, run).await
    }

    async fn approvals_due(&self, now: i64) -> Result<Vec<RunId>> {
        sqlx::query_scalar(
            "SELECT approvals.run_id FROM approvals JOIN runs ON runs.id = approvals.run_id
             WHERE runs.state = 'awaiting_approval'
               AND (approvals.decision IS NOT NULL OR approvals.expires_at <= ?)
             ORDER BY approvals.run_id",
        )
        .bind(now)
        .fetch_all(&self.pool)
        .await
        .map_err(backend)
    }

    async fn decide(
        &self,
        run: RunId,
        decision: Decision,
        by: &str,
        comment: Option<String>,
        event: NewEvent,
    ) -> Result<(Approval, Event)> {
        let mut tx = self.pool.begin().await.map_err(backend)?;
        let state: Option<String> = sqlx::query_scalar("SELECT state FROM runs WHERE id = ?")
            .bind(run)
            .fetch_optional(&mut *tx)
            .await
            .map_err(backend)?;
        let Some(state) = state else {
            return Err(StoreError::NotFound { what: "run", id: run });
        };
        let Some(current) = Self::approval_row(&mut tx, run).await? else {
            return Err(StoreError::NotAwaitingApproval { run_id: run });
        };
        if let (Some(earlier), Some(earlier_by)) = (current.decision, &current.decided_by) {
            return Err(StoreError::AlreadyDecided { run_id: run, decision: earlier.as_str(), by: earlier_by.clone() });
        }
        if state != RunState::AwaitingApproval.as_str() {
            return Err(StoreError::NotAwaitingApproval { run_id: run });
        }
        let updated = sqlx::query(
            "UPDATE approvals SET decision = ?, decided_by = ?, comment = ?, decided_at = ?
             WHERE run_id = ? AND decision IS NULL",
        )
        .bind(decision.as_str())
        .bind(by)
        .bind(&comment)
        .bind(now_ms())
        .bind(run)
        .execute(&mut *tx)
        .await
        .map_err(backend)?;
        if updated.rows_affected() == 0 {
            return Err(StoreError::NotAwaitingApproval { run_id: run });
        }
        let event = Self::insert_event(&mut tx, &event).await?;
        let approval = Self::approval_row(&mut tx, run).await?.expect("just written");
        tx.commit().await.map_err(backend)?;
        Ok((approval, event))
    }

    async fn create_token(&self, token: NewToken) -> Result<Token> {
        let created_at = now_ms();
        sqlx::query(
            "INSERT INTO tokens (id, name, subject, role, apps, envs, secret_hash, created_at)
             VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
        )
        .bind(&token.id)
        .bind(&token.name)
        .bind(&token.subject)
        .bind(token.role.as_str())
        .bind(serde_json::to_string(&token.apps).map_err(corrupt)?)
        .bind(serde_json::to_string(&token.envs).map_err(corrupt)?)
        .bind(&token.secret_hash)
        .bind(created_at)
        .execute(&self.pool)
        .await
        .map_err(backend)?;
        Ok(Token {
            id: token.id,
            name: token.name,
            subject: token.subject,
            role: token.role,
            apps: token.apps,
            envs: token.envs,
            secret_hash: token.secret_hash,
            created_at,
            last_used_at: None,
            revoked_at: None,
        })
    }

    async fn token(&self, id: &str) -> Result<Option<Token>> {
        let row = sqlx::query("SELECT * FROM tokens WHERE id = ?")
            .bind(id)
            .fetch_optional(&self.pool)
            .await
            .map_err(backend)?;
        row.as_ref().map(token_from_row).transpose()
    }

    async fn tokens(&self) -> Result<Vec<Token>> {
        let rows =
            sqlx::query("SELECT * FROM tokens ORDER BY created_at").fetch_all(&self.pool).await.map_err(backend)?;
        rows.iter().map(token_from_row).collect()
    }

    async fn revoke_token(&self, id: &str) -> Result<bool> {
        let updated = sqlx::query("UPDATE tokens SET revoked_at = ? WHERE id = ? AND revoked_at IS NULL")
            .bind(now_ms())
            .bind(id)
            .execute(&self.pool)
            .await
            .map_err(backend)?;
        Ok(updated.rows_affected() == 1)
    }

    async fn touch_token(&self, id: &str) -> Result<()> {
        sqlx::query("UPDATE tokens SET last_used_at = ? WHERE id = ?")
            .bind(now_ms())
            .bind(id)
            .execute(&self.pool)
            .await
            .map_err(backend)?;
        Ok(())
    }

    async fn create_session(&self, id_hash: &str, token_id: &str, expires_at: i64) -> Result<()> {
        let now = now_ms();
        let mut tx = self.pool.begin().await.map_err(backend)?;
        // Sessions over are forgotten as new ones start.
        sqlx::query("DELETE FROM sessions WHERE expires_at <= ?").bind(now).execute(&mut *tx).await.map_err(backend)?;
        sqlx::query("INSERT INTO sessions (id_hash, token_id, created_at, expires_at) VALUES (?, ?, ?, ?)")
            .bind(id_hash)
            .bind(token_id)
            .bind(now)
            .bind(expires_at)
            .execute(&mut *tx)
            .await
            .map_err(backend)?;
        tx.commit().await.map_err(backend)
    }

    async fn session_token(&self, id_hash: &str, now: i64) -> Result<Option<String>> {
        let row = sqlx::query("SELECT token_id FROM sessions WHERE id_hash = ? AND expires_at > ?")
            .bind(id_hash)
            .bind(now)
            .fetch_optional(&self.pool)
            .await
            .map_err(backend)?;
        Ok(row.map(|row| row.get("token_id")))
    }

    async fn end_session(&self, id_hash: &str) -> Result<bool> {
        let deleted = sqlx::query("DELETE FROM sessions WHERE id_hash = ?")
            .bind(id_hash)
            .execute(&self.pool)
            .await
            .map_err(backend)?;
        Ok(deleted.rows_affected() == 1)
    }

    async fn record_delivery(&self, provider: &str, delivery_id: &str) -> Result<bool> {
        let inserted = sqlx::query(
            "INSERT INTO deliveries (provider, delivery_id, received_at) VALUES (?, ?, ?) ON CONFLICT DO NOTHING",
        )
        .bind(provider)
        .bind(delivery_id)
        .bind(now_ms())
        .execute(&self.pool)
        .await
        .map_err(backend)?;
        Ok(inserted.rows_affected() == 1)
    }

    async fn cursor(&self, name: &str) -> Result<Option<i64>> {
        sqlx::query_scalar("SELECT event_id FROM cursors WHERE name = ?")
            .bind(name)
            .fetch_optional(&self.pool)
            .await
            .map_err(backend)
    }

    async fn set_cursor(&self, name: &str, event_id: i64) -> Result<()> {
        sqlx::query("INSERT INTO cursors (name, event_id) VALUES (?, ?) ON CONFLICT (name) DO UPDATE SET event_id = excluded.event_id")
            .bind(name)
            .bind(event_id)
            .execute(&self.pool)
            .await
            .map_err(backend)?;
        Ok(())
    }

    async fn lease_reader(&self, name: &str, owner: &str, ttl_ms: i64, dead_owner: Option<&str>) -> Result<String> {
        let now = now_ms();
        sqlx::query(
            "INSERT INTO reader_leases (name, owner, expires_at) VALUES (?, ?, ?)
             ON CONFLICT (name) DO UPDATE SET owner = excluded.owner, expires_at = excluded.expires_at
             WHERE reader_leases.owner = excluded.owner OR reader_leases.expires_at < ? OR reader_leases.owner = ?",
        )
        .bind(name)
        .bind(owner)
        .bind(now + ttl_ms)
        .bind(now)
        .bind(dead_owner.unwrap_or_default())
        .execute(&self.pool)
        .await
        .map_err(backend)?;
        sqlx::query_scalar("SELECT owner FROM reader_leases WHERE name = ?")
            .bind(name)
            .fetch_one(&self.pool)
            .await
            .map_err(backend)
    }

    async fn release_reader(&self, name: &str, owner: &str) -> Result<()> {
        sqlx::query("DELETE FROM reader_leases WHERE name = ? AND owner = ?")
            .bind(name)
            .bind(owner)
            .execute(&self.pool)
            .await
            .map_err(backend)?;
        Ok(())
    }

    async fn publish_images(&self, published: Published) -> Result<()> {
        sqlx::query(
            "INSERT INTO published_images (app, env, images, published_by, published_at, commit_id, author)
             VALUES (?, ?, ?, ?, ?, ?, ?)
             ON CONFLICT (app, env) DO UPDATE SET images = excluded.images, published_by = excluded.published_by,
                published_at = excluded.published_at, commit_id = excluded.commit_id, author = excluded.author",
        )
        .bind(&published.app)
        .bind(&published.env)
        .bind(serde_json::to_string(&published.images).map_err(corrupt)?)
        .bind(&published.published_by)
        .bind(published.published_at)
        .bind(&published.commit)
        .bind(&published.author)
        .execute(&self.pool)
        .await
        .map_err(backend)?;
        Ok(())
    }

    async fn published_images(&self) -> Result<Vec<Published>> {
        let rows = sqlx::query("SELECT * FROM published_images ORDER BY app, env")
            .fetch_all(&self.pool)
            .await
            .map_err(backend)?;
        rows.iter()
            .map(|row| {
                let images: String = row.get("images");
                Ok(Published {
                    app: row.get("app"),
                    env: row.get("env"),
                    images: serde_json::from_str(&images).map_err(corrupt)?,
                    published_by: row.get("published_by"),
                    published_at: row.get("published_at"),
                    commit: row.get("commit_id"),
                    author: row.get("author"),
                })
            })
            .collect()
    }

    async fn record_built_image(&self, built: BuiltImage) -> Result<BuiltImage> {
        sqlx::query(
            "INSERT INTO built_images (reference, image, app, container, run_id, built_at) VALUES (?, ?, ?, ?, ?, ?)
             ON CONFLICT (reference) DO NOTHING",
        )
        .bind(&built.reference)
        .bind(&built.image)
        .bind(&built.app)
        .bind(&built.container)
        .bind(built.run_id)
        .bind(built.built_at)
        .execute(&self.pool)
        .await
        .map_err(backend)?;
        let mut recorded = self.built_images(std::slice::from_ref(&built.reference)).await?;
        recorded.remove(&built.reference).ok_or(StoreError::NotFound { what: "built image", id: built.run_id })
    }

    async fn built_images(&self, references: &[String]) -> Result<BTreeMap<String, BuiltImage>> {
        let mut built = BTreeMap::new();
        for chunk in references.chunks(500) {
            let mut query = QueryBuilder::<Sqlite>::new("SELECT * FROM built_images WHERE reference IN (");
            let mut list = query.separated(", ");
            for reference in chunk {
                list.push_bind(reference);
            }
            query.push(")");
            for row in query.build().fetch_all(&self.pool).await.map_err(backend)? {
                let image = BuiltImage {
                    reference: row.get("reference"),
                    image: row.get("image"),
                    app: row.get("app"),
                    container: row.get("container"),
                    run_id: row.get("run_id"),
                    built_at: row.get("built_at"),
                };
                built.insert(image.reference.clone(), image);
            }
        }
        Ok(built)
    }
}

impl SqliteStore {
    async fn insert_release(executor: &mut sqlx::SqliteConnection, release: NewRelease) -> Result<Release> {
        let created_at = now_ms();
        let revision = release.spec.revision().0;
        let spec = serde_json::to_string(&release.spec).map_err(corrupt)?;
        let target = serde_json::to_string(&release.target).map_err(corrupt)?;
        let build = release.build.as_ref().map(serde_json::to_string).transpose().map_err(corrupt)?;
        let row = sqlx::query(
            "INSERT INTO releases (app, env, revision, spec, target, commit_id, summary, author, committed_at, origin, build, created_at)
             VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) RETURNING id",
        )
        .bind(&release.app)
        .bind(&release.env)
        .bind(&revision)
        .bind(spec)
        .bind(target)
        .bind(&release.source.commit)
        .bind(&release.source.summary)
        .bind(&release.source.author)
        .bind(release.source.committed_at)
        .bind(&release.source.origin)
        .bind(build)
        .bind(created_at)
        .fetch_one(&mut *executor)
        .await
        .map_err(backend)?;
        Ok(Release {
            id: row.get("id"),
            app: release.app,
            env: release.env,
            revision,
            spec: release.spec,
            target: release.target,
            source: release.source,
            build: release.build,
            created_at,
        })
    }

    /// Inserts a run, its pin and its creation event. A unique violation comes back as
    /// `Ok(Err(app, env))`, for the caller to turn into [`StoreError::RunInProgress`]
    /// once its transaction is gone.
    async fn insert_run(
        executor: &mut sqlx::SqliteConnection,
        run: NewRun,
        event: NewEvent,
    ) -> Result<std::result::Result<(Run, Event), (String, String)>> {
        let now = now_ms();
        // The check and the insert are one statement under the write lock: no run can
        // slip in between.
        let inserted = sqlx::query(
            "INSERT INTO runs (app, env, kind, state, release_id, previous_release_id, trigger, approval_policy,
                created_at, updated_at, waits_for)
             SELECT ?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?9, ?11
             WHERE ?10 IS NULL OR COALESCE((SELECT MAX(id) FROM runs WHERE app = ?1 AND env = ?2), 0) = ?10
             RETURNING *",
        )
        .bind(&run.app)
        .bind(&run.env)
        .bind(run.kind.as_str())
        .bind(RunState::Pending.as_str())
        .bind(run.release_id)
        .bind(run.previous_release_id)
        .bind(&run.trigger)
        .bind(run.approval_policy.map(|policy| serde_json::to_string(&policy)).transpose().map_err(corrupt)?)
        .bind(now)
        .bind(run.decided_after)
        .bind((!run.waits_for.is_empty()).then(|| serde_json::to_string(&run.waits_for)).transpose().map_err(corrupt)?)
        .fetch_optional(&mut *executor)
        .await;
        let row = match inserted {
            Ok(Some(row)) => row,
            Ok(None) => {
                // Refused as stale; one still in progress is the more useful answer.
                let unfinished: Option<RunId> =
                    sqlx::query_scalar("SELECT id FROM runs WHERE app = ? AND env = ? AND finished_at IS NULL")
                        .bind(&run.app)
                        .bind(&run.env)
                        .fetch_optional(&mut *executor)
                        .await
                        .map_err(backend)?;
                return match unfinished {
                    Some(_) => Ok(Err((run.app, run.env))),
                    None => Err(StoreError::DecidedOnStale { app: run.app, env: run.env }),
                };
            }
            Err(sqlx::Error::Database(error)) if error.is_unique_violation() => {
                return Ok(Err((run.app, run.env)));
            }
            Err(error) => return Err(backend(error)),
        };
        let created = run_from_row(&row)?;
        if let Some(pin) = &run.pin {
            let pinned = sqlx::query(
                "UPDATE deployments SET pinned_release_id = ?, pinned_by = ?, pinned_at = ?, pin_reason = ?
                 WHERE app = ? AND env = ?",
            )
            .bind(run.release_id)
            .bind(&pin.by)
            .bind(now)
            .bind(&pin.reason)
            .bind(&run.app)
            .bind(&run.env)
            .execute(&mut *executor)
            .await
            .map_err(backend)?;
            if pinned.rows_affected() == 0 {
                return Err(StoreError::NotFound { what: "deployment to pin for run", id: created.id });
            }
        }
        let event = NewEvent { run_id: Some(created.id), ..event };
        let event = Self::insert_event(&mut *executor, &event).await?;
        Ok(Ok((created, event)))
    }

    /// Commits the transaction a run went into, or names the run in progress that kept
    /// it out.
    async fn commit_run(
        &self,
        tx: sqlx::Transaction<'_, Sqlite>,
        inserted: std::result::Result<(Run, Event), (String, String)>,
    ) -> Result<(Run, Event)> {
        match inserted {
            Ok(created) => {
                tx.commit().await.map_err(backend)?;
                Ok(created)
            }
            Err((app, env)) => {
                drop(tx);
                Err(self.in_progress(app, env).await)
            }
        }
    }

    /// The error for a run refused because another is in progress, naming that run
    /// (0 if it finished in the meantime).
    async fn in_progress(&self, app: String, env: String) -> StoreError {
        let existing: std::result::Result<Option<RunId>, _> =
            sqlx::query_scalar("SELECT id FROM runs WHERE app = ? AND env = ? AND finished_at IS NULL")
                .bind(&app)
                .bind(&env)
                .fetch_optional(&self.pool)
                .await;
        match existing {
            Ok(run_id) => StoreError::RunInProgress { run_id: run_id.unwrap_or_default(), app, env },
            Err(error) => backend(error),
        }
    }

    async fn approval_row(executor: &mut sqlx::SqliteConnection, run: RunId) -> Result<Option<Approval>> {
        let row = sqlx::query("SELECT * FROM approvals WHERE run_id = ?")
            .bind(run)
            .fetch_optional(&mut *executor)
            .await
            .map_err(backend)?;
        row.as_ref().map(approval_from_row).transpose()
    }
}

fn approval_from_row(row: &SqliteRow) -> Result<Approval> {
    let decision: Option<String> = row.get("decision");
    Ok(Approval {
        run_id: row.get("run_id"),
        requested_at: row.get("requested_at"),
        expires_at: row.get("expires_at"),
        decision: match decision.as_deref() {
            None => None,
            Some("approved") => Some(Decision::Approved),
            Some("rejected") => Some(Decision::Rejected),
            Some(other) => return Err(StoreError::Corrupt(format!("unknown approval decision {other:?}"))),
        },
        decided_by: row.get("decided_by"),
        comment: row.get("comment"),
        decided_at: row.get("decided_at"),
    })
}

fn token_from_row(row: &SqliteRow) -> Result<Token> {
    let role: String = row.get("role");
    let apps: String = row.get("apps");
    let envs: String = row.get("envs");
    Ok(Token {
        id: row.get("id"),
        name: row.get("name"),
        subject: row.get("subject"),
        role: Role::parse(&role).ok_or_else(|| StoreError::Corrupt(format!("unknown role {role:?}")))?,
        apps: serde_json::from_str(&apps).map_err(corrupt)?,
        envs: serde_json::from_str(&envs).map_err(corrupt)?,
        secret_hash: row.get("secret_hash"),
        created_at: row.get("created_at"),
        last_used_at: row.get("last_used_at"),
        revoked_at: row.get("revoked_at"),
    })
}

/// The database file a location names, when it is a file (not `:memory:`).
fn options_path(location: &str) -> Option<std::path::PathBuf> {
    let path = location.strip_prefix("sqlite://").or_else(|| location.strip_prefix("sqlite:")).unwrap_or(location);
    let path = path.split('?').next().unwrap_or(path);
    (!path.is_empty() && !path.contains(":memory:")).then(|| std::path::PathBuf::from(path))
}

/// An exclusive lock on `<database>.lock`, held while migrations run.
struct MigrationLock {
    _file: std::fs::File,
}

impl MigrationLock {
    async fn acquire(database: &std::path::Path) -> std::io::Result<MigrationLock> {
        let mut name = database.as_os_str().to_owned();
        name.push(".lock");
        let path = std::path::PathBuf::from(name);
        tokio::task::spawn_blocking(move || {
            let file = std::fs::OpenOptions::new().create(true).truncate(false).write(true).open(&path)?;
            // Blocks while another process migrates; released when the file closes.
            file.lock()?;
            Ok(MigrationLock { _file: file })
        })
        .await
        .map_err(std::io::Error::other)?
    }
}

fn backend(error: sqlx::Error) -> StoreError {
    StoreError::Backend(Box::new(error))
}

fn corrupt(error: serde_json::Error) -> StoreError {
    StoreError::Corrupt(error.to_string())
}

fn release_from_row(row: &SqliteRow) -> Result<Release> {
    let spec: String = row.get("spec");
    let target: String = row.get("target");
    let build: Option<String> = row.get("build");
    Ok(Release {
        id: row.get("id"),
        app: row.get("app"),
        env: row.get("env"),
        revision: row.get("revision"),
        spec: serde_json::from_str(&spec).map_err(corrupt)?,
        target: serde_json::from_str(&target).map_err(corrupt)?,
        source: ReleaseSource {
            commit: row.get("commit_id"),
            summary: row.get("summary"),
            author: row.get("author"),
            committed_at: row.get("committed_at"),
            origin: row.get("origin"),
        },
        build: build.map(|build| serde_json::from_str(&build)).transpose().map_err(corrupt)?,
        created_at: row.get("created_at"),
    })
}

fn run_from_row(row: &SqliteRow) -> Result<Run> {
    let kind: String = row.get("kind");
    let state: String = row.get("state");
    let plan: Option<String> = row.get("plan");
    let approval_policy: Option<String> = row.get("approval_policy");
    let waits_for: Option<String> = row.get("waits_for");
    Ok(Run {
        id: row.get("id"),
        app: row.get("app"),
        env: row.get("env"),
        kind: RunKind::parse(&kind).ok_or_else(|| StoreError::Corrupt(format!("unknown run kind {kind:?}")))?,
        state: RunState::parse(&state).ok_or_else(|| StoreError::Corrupt(format!("unknown run state {state:?}")))?,
        release_id: row.get("release_id"),
        previous_release_id: row.get("previous_release_id"),
        reason: row.get("reason"),
        // A plan is what the run showed before acting; one written in a shape this
        // version does not read is left out rather than making the run unreadable.
        plan: plan.and_then(|plan| serde_json::from_str(&plan).ok()),
        trigger: row.get("trigger"),
        approval_policy: approval_policy.map(|policy| serde_json::from_str(&policy)).transpose().map_err(corrupt)?,
        waits_for: waits_for.map(|ids| serde_json::from_str(&ids)).transpose().map_err(corrupt)?.unwrap_or_default(),
        attempt: row.get("attempt"),
        lease_owner: row.get("lease_owner"),
        lease_expires_at: row.get("lease_expires_at"),
        created_at: row.get("created_at"),
        updated_at: row.get("updated_at"),
        finished_at: row.get("finished_at"),
    })
}

fn deployment_from_row(row: &SqliteRow) -> DeploymentRecord {
    DeploymentRecord {
        app: row.get("app"),
        env: row.get("env"),
        current_release_id: row.get("current_release_id"),
        good_release_id: row.get("good_release_id"),
        commit: row.get("commit_id"),
        updated_at: row.get("updated_at"),
        pin: row.get::<Option<i64>, _>("pinned_release_id").map(|release_id| Pin {
            release_id,
            by: row.get::<Option<String>, _>("pinned_by").unwrap_or_default(),
            at: row.get::<Option<i64>, _>("pinned_at").unwrap_or_default(),
            reason: row.get("pin_reason"),
        }),
    }
}

#[cfg(test)]
mod tests;
