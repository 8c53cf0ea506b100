//! Approvals: a run whose environment requires one waits, parked and durable, until
//! someone allowed to decides, or until its time runs out.

use launchway_store::{
    Approval, ApprovalDecided, Decision, EventBody, NewEvent, Run, RunState, Transition, TransitionDetail,
};

use crate::run::Claim;
use crate::steps::Next;
use crate::{Engine, EngineError, Result};

impl Engine {
    /// Records a decision on a run waiting for approval. The caller then drives the run
    /// (the decision is applied by the run's next step, like everything else).
    ///
    /// # Errors
    /// [`EngineError::Forbidden`] when the environment forbids the release's author from
    /// approving it and `approver` is that author; [`EngineError::Invalid`] when the run
    /// is not waiting; store errors (a decision already made).
    pub async fn decide(
        &self,
        run_id: i64,
        decision: Decision,
        approver: &str,
        comment: Option<String>,
    ) -> Result<Approval> {
        let store = &self.inner.store;
        let run = store.run(run_id).await?;
        if run.state != RunState::AwaitingApproval {
            return Err(EngineError::Invalid(format!(
                "run {run_id} is not waiting for approval (it is {})",
                run.state
            )));
        }
        if decision == Decision::Approved && run.approval_policy.is_some_and(|policy| policy.forbid_author) {
            let release = store.release(run.release_id).await?;
            if let Some(author) = &release.source.author
                && same_person(approver, author)
            {
                return Err(EngineError::Forbidden(format!(
                    "{approver} wrote release {} and may not approve it; environment {} needs someone else",
                    release.id, run.env
                )));
            }
        }
        let verb = decision.as_str();
        let message = match &comment {
            Some(comment) => format!("{verb} by {approver}: {comment}"),
            None => format!("{verb} by {approver}"),
        };
        let decided = ApprovalDecided { by: approver.to_owned(), decision, comment: comment.clone() };
        let event = NewEvent::for_run(&run, EventBody::ApprovalDecided(decided), message);
        let (approval, event) = store.decide(run_id, decision, approver, comment, event).await?;
        self.announce(&event);
        Ok(approval)
    }

    /// Ends a run still waiting for approval because a newer desired state replaces it.
    pub(crate) async fn supersede(&self, run: &Run, revision: &str) -> Result<()> {
        let lease = match self.claim(run.id).await? {
            Claim::Held(lease) => lease,
            // Decided and driven to its end meanwhile: nothing left to supersede.
            Claim::Finished(_) => return Ok(()),
        };
        let reason = format!("superseded by revision {revision}");
        let rejected = EventBody::RunEntered {
            state: RunState::Rejected,
            detail: TransitionDetail { reason: Some(reason.clone()), ..TransitionDetail::default() },
        };
        let before = match run.state {
            RunState::AwaitingApproval => "before anyone approved it",
            _ => "while it waited for an approval",
        };
        let event = NewEvent::for_run(run, rejected, format!("{reason} {before}; nothing was changed"));
        let transition = Transition {
            to: RunState::Rejected,
            reason: Some(reason),
            plan: None,
            event,
            deployment: None,
            approval: None,
            release: None,
        };
        let (_, event) = self.inner.store.transition(&lease, transition).await?;
        self.announce(&event);
        Ok(())
    }

    /// Runs parked for approval that can move on: decided, or expired.
    pub async fn approvals_due(&self) -> Result<Vec<i64>> {
        Ok(self.inner.store.approvals_due(self.now_ms()).await?)
    }

    /// The step of a run waiting for approval: the decision once made, a rejection once
    /// expired, else `None` (stay parked).
    pub(crate) async fn approval_gate(&self, run: &Run) -> Result<Option<Next>> {
        let Some(approval) = self.inner.store.approval(run.id).await? else {
            return Err(EngineError::Invalid(format!("run {} waits for an approval it never asked for", run.id)));
        };
        let by = approval.decided_by.clone().unwrap_or_default();
        let comment = approval.comment.as_deref().map(|comment| format!(": {comment}")).unwrap_or_default();
        Ok(match approval.decision {
            Some(Decision::Approved) => Some(
                Next::to(RunState::Deploying, format!("approved by {by}{comment}"))
                    .because(format!("approved by {by}")),
            ),
            Some(Decision::Rejected) => Some(
                Next::to(RunState::Rejected, format!("rejected by {by}{comment}; nothing was changed"))
                    .because(format!("rejected by {by}{comment}")),
            ),
            None if approval.expires_at.is_some_and(|expires| expires <= self.now_ms()) => Some(
                Next::to(RunState::Rejected, "nobody approved it in time; nothing was changed")
                    .because("approval expired"),
            ),
            None => None,
        })
    }
}

/// Whether an approver is the person who wrote a release: by email when the author is
/// "Name <email>", else by the whole name, ignoring case.
fn same_person(approver: &str, author: &str) -> bool {
    let email = |text: &str| -> String {
        match (text.find('<'), text.rfind('>')) {
            (Some(start), Some(end)) if start < end => text[start + 1..end].trim().to_lowercase(),
            _ => text.trim().to_lowercase(),
        }
    };
    let approver = email(approver);
    !approver.is_empty() && (approver == email(author) || approver == author.trim().to_lowercase())
}

#[cfg(test)]
mod tests {
    use super::same_person;

    #[test]
    fn authors_are_recognised_by_email_or_name() {
        assert!(same_person("alice@example.com", "Alice Liddell <Alice@Example.com>"));
        assert!(same_person("Alice Liddell <alice@example.com>", "Alice Liddell <alice@example.com>"));
        assert!(!same_person("bob@example.com", "Alice Liddell <alice@example.com>"));
        assert!(same_person("ci-web", "ci-web"));
        assert!(!same_person("", "Alice <alice@example.com>"));
    }
}
