//! The plan of a pull (or merge) request, where it is reviewed: when one is opened or
//! pushed to, launchway plans its head commit against the live state of each environment
//! its base branch deploys to, and keeps one comment on it with that plan (found again by
//! a marker and edited, never duplicated) and a `launchway/plan` commit status on its
//! head.
//!
//! Where to post, and with which token, comes from the base branch's manifest (a
//! `github:` or `gitlab:` notification): never from the request's own changes, which
//! could otherwise send the token anywhere.

use std::sync::Arc;

use anyhow::{Context as _, Result, bail};
use launchway_engine::Selection;
use launchway_manifest::{Manifest, NotificationSink};
use launchway_notify::{CommentOutcome, Destination, Notifier};
use launchway_secrets::Secrets;
use launchway_store::AppPlan;

use crate::hooks::{Provider, PullRequest};
use crate::reconciler::Reconciler;

/// The marker that finds launchway's comment again.
pub const MARKER: &str = "<!-- launchway:plan -->";

/// What planning pull requests needs beside the reconciler.
pub struct PullRequestPlans {
    pub notifier: Notifier,
    pub secrets: Secrets,
}

impl PullRequestPlans {
    /// Plans the request's head and says so on it; returns what was done, for the audit log.
    pub async fn plan(&self, reconciler: &Arc<Reconciler>, provider: Provider, pull: &PullRequest) -> Result<String> {
        let head_ref = match provider {
            Provider::GitHub => format!("refs/pull/{}/head", pull.number),
            Provider::GitLab => format!("refs/merge-requests/{}/head", pull.number),
        };
        reconciler
            .fetch_with(vec![format!("+{head_ref}:refs/launchway/pulls/{}", pull.number)])
            .await
            .context("could not fetch the request's head")?;
        let base = format!("refs/heads/{}", pull.base_branch);
        let Some(trusted) = reconciler.snapshot_of(&base).await? else {
            bail!("the manifest of {} is invalid: nothing is posted", pull.base_branch);
        };
        let Some(destination) = self.destination(&trusted.manifest, provider).await? else {
            return Ok(format!(
                "no {} notification in the manifest of {}: the plan is not posted",
                provider.as_str(),
                pull.base_branch
            ));
        };
        let short = &pull.head[..pull.head.len().min(7)];
        // The head is read contacting only the repositories the base already builds
        // from; its own additions reach out nowhere before it is merged.
        let allowed = trusted
            .manifest
            .apps
            .values()
            .filter_map(|app| Some(app.build.as_ref()?.source.as_ref()?.repo.clone()))
            .collect();
        let (body, planned, summary) = match reconciler.review_snapshot(&pull.head, allowed).await {
            Ok(Ok(head)) => {
                let (body, summary) = self.plans(reconciler, &trusted.manifest, &head.manifest, &base, short).await?;
                (body, true, summary)
            }
            Ok(Err(problems)) => (
                format!(
                    "{MARKER}\n### launchway plan for `{short}`\n\n❌ The manifest at `{short}` cannot be planned: nothing would deploy from it.\n\n```\n{}\n```\n",
                    problems.join("\n")
                ),
                false,
                "the manifest cannot be planned".to_owned(),
            ),
            Err(error) => bail!("the request's head {short} is not in the config repo: {error:#}"),
        };
        let outcome = self
            .notifier
            .upsert_comment(&destination, pull.number, MARKER, &body)
            .await
            .map_err(|error| anyhow::anyhow!("could not comment on request {}: {error}", pull.number))?;
        let status =
            self.notifier.commit_status(&destination, &pull.head, "launchway/plan", planned, &summary, None).await;
        let commented = match outcome {
            CommentOutcome::Created => "commented",
            CommentOutcome::Updated => "updated its comment",
        };
        let status = match status.error {
            None => "set its status".to_owned(),
            Some(error) => format!("could not set its status ({error})"),
        };
        Ok(format!("planned request {} at {short}: {summary}; {commented}, {status}", pull.number))
    }

    /// The plan of `head` in each environment the base branch deploys to, as markdown,
    /// and a line for the commit status.
    async fn plans(
        &self,
        reconciler: &Arc<Reconciler>,
        trusted: &Manifest,
        head: &Manifest,
        base: &str,
        short: &str,
    ) -> Result<(String, String)> {
        let mut body = format!("{MARKER}\n### launchway plan for `{short}`\n");
        // Planned against the targets the base branch names: a request that changes an
        // environment's target (another Docker host, another AWS account) gets it
        // shown, not contacted.
        let mut planned = head.clone();
        for (name, environment) in &mut planned.environments {
            if let Some(current) = trusted.environments.get(name)
                && current.target != environment.target
            {
                body.push_str(&format!(
                    "\n⚠️ This request changes where **{name}** runs; planned against where it runs now (the new target is contacted only once merged).\n"
                ));
                environment.target = current.target.clone();
            }
        }
        let mut counts = Vec::new();
        for (name, environment) in &trusted.environments {
            if !environment.source.accepts(base, reconciler.branch()) || !planned.environments.contains_key(name) {
                continue;
            }
            let selection = Selection { env: Some(name.clone()), apps: Vec::new() };
            let plans = reconciler.engine().plan(&planned, &selection).await?;
            let changing: Vec<&AppPlan> = plans.iter().filter(|plan| !plan.is_no_op()).collect();
            counts.push(format!("{} in {name}", changing.len()));
            body.push_str(&format!(
                "\n**{name}**: {} app{} would change, {} unchanged\n",
                changing.len(),
                if changing.len() == 1 { "" } else { "s" },
                plans.len() - changing.len()
            ));
            if !changing.is_empty() {
                body.push_str("```diff\n");
                for plan in changing {
                    body.push_str(&format!("! {}: {}\n", plan.app, plan.summary));
                    for change in &plan.changes {
                        body.push_str(&format!("{change}\n"));
                    }
                }
                body.push_str("```\n");
            }
        }
        if counts.is_empty() {
            body.push_str("\nNo environment deploys from this branch.\n");
            return Ok((body, "no environment deploys from this branch".to_owned()));
        }
        Ok((body, format!("changes: {}", counts.join(", "))))
    }

    /// The forge the trusted manifest posts to, its token resolved.
    async fn destination(&self, manifest: &Manifest, provider: Provider) -> Result<Option<Destination>> {
        let sink = manifest.notifications.iter().map(|notification| &notification.sink).find(|sink| {
            matches!(
                (sink, provider),
                (NotificationSink::GitHub(_), Provider::GitHub) | (NotificationSink::GitLab(_), Provider::GitLab)
            )
        });
        let Some(sink) = sink else { return Ok(None) };
        Ok(Some(launchway_notify::dispatch::destination(&self.secrets, sink).await?))
    }
}
