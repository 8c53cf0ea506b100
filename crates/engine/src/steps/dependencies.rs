//! A pending run and the runs of the apps it depends on: go, wait, park behind an
//! approval, or stop.

use launchway_store::{Event, EventBody, EventFilter, NewEvent, Run, RunId, RunState};

use crate::{Engine, Result};

/// What a pending run does about the runs it waits for.
pub(crate) enum DependenciesGate {
    Go,
    /// Why the run fails.
    Stop(String),
    Wait(String),
    /// A run it waits for, directly or through others, waits for an approval: nobody
    /// drives this one until that is decided.
    Park(ParkedBehind),
}

/// Why a pending run is parked: the approval it waits for, somewhere down its chain of
/// dependencies.
#[derive(Debug, Clone)]
pub(crate) struct ParkedBehind {
    /// "api's run 4, which waits for approval", or through others: "api's run 5, which
    /// waits for migrate's run 4, which waits for approval".
    pub(crate) what: String,
    /// The run to approve (or reject) for this one to move.
    pub(crate) approval_run: RunId,
}

impl Engine {
    /// Whether the runs of the apps this one depends on let it start: all succeeded
    /// (go), one did not (the run fails, having changed nothing), some still going (wait),
    /// or one waits for an approval, itself or through the runs it waits for (park).
    pub(crate) async fn dependencies_gate(&self, run: &Run) -> Result<DependenciesGate> {
        let mut going = Vec::new();
        for id in &run.waits_for {
            let dependency = self.inner.store.run(*id).await?;
            let named = format!("{}'s run {}", dependency.app, dependency.id);
            match dependency.state {
                RunState::Succeeded => {}
                RunState::Failed | RunState::RolledBack | RunState::Rejected => {
                    let reason = format!(
                        "not deployed: {} depends on {}, whose run {} {}{}",
                        run.app,
                        dependency.app,
                        dependency.id,
                        match dependency.state {
                            RunState::RolledBack => "was rolled back",
                            RunState::Rejected => "was rejected",
                            _ => "failed",
                        },
                        dependency.reason.as_deref().map(|why| format!(" ({why})")).unwrap_or_default()
                    );
                    return Ok(DependenciesGate::Stop(reason));
                }
                RunState::AwaitingApproval => {
                    return Ok(DependenciesGate::Park(ParkedBehind {
                        what: format!("{named}, which waits for approval"),
                        approval_run: dependency.id,
                    }));
                }
                RunState::Pending => {
                    // A dependency parked behind an approval further down the chain
                    // parks this run too: waiting for it would wait for a person. (Runs
                    // wait only for runs created before them, so this ends.)
                    if let DependenciesGate::Park(behind) = Box::pin(self.dependencies_gate(&dependency)).await? {
                        return Ok(DependenciesGate::Park(ParkedBehind {
                            what: format!("{named}, which waits for {}", behind.what),
                            approval_run: behind.approval_run,
                        }));
                    }
                    going.push(format!("{named} ({})", dependency.state));
                }
                state => going.push(format!("{named} ({state})")),
            }
        }
        Ok(match going.is_empty() {
            true => DependenciesGate::Go,
            false => DependenciesGate::Wait(going.join(", ")),
        })
    }

    /// What a run waits for when nobody should drive it until a person decides: its own
    /// approval, or (pending) one down its chain of dependencies. `None`: it can move.
    pub(crate) async fn parked_behind(&self, run: &Run) -> Result<Option<ParkedBehind>> {
        match run.state {
            RunState::AwaitingApproval => {
                // Decided, or out of time: driving it now applies that.
                let due = self.inner.store.approval(run.id).await?.is_some_and(|approval| {
                    approval.decision.is_some() || approval.expires_at.is_some_and(|expires| expires <= self.now_ms())
                });
                Ok((!due).then(|| ParkedBehind { what: "approval".to_owned(), approval_run: run.id }))
            }
            RunState::Pending if !run.waits_for.is_empty() => Ok(match self.dependencies_gate(run).await? {
                DependenciesGate::Park(behind) => Some(behind),
                _ => None,
            }),
            _ => Ok(None),
        }
    }

    /// Records what a pending run waits for, unless its last event says so already (a
    /// parked run is looked at again by every sweep of the server).
    pub(crate) async fn say_waiting(&self, run: &Run, what: &str) -> Result<()> {
        let message = format!("waits for {what}");
        let filter = EventFilter { run_id: Some(run.id), last: Some(1), ..EventFilter::default() };
        let events = self.inner.store.events(&filter).await?;
        let said = |last: &&Event| matches!(last.body(), EventBody::RunWaiting { .. }) && last.message == message;
        if events.last().is_some_and(|last| said(&last)) {
            return Ok(());
        }
        let body = EventBody::RunWaiting { runs: run.waits_for.clone() };
        self.record(NewEvent::for_run(run, body, message)).await?;
        Ok(())
    }
}
