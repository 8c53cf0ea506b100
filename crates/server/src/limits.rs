//! Failed authentication, per source: refused webhooks and wrong tokens.
//!
//! Each refusal used to become an audit row of its own (20,000 bad-signature posts in
//! seven seconds, 20,000 rows that can never be deleted), and wrong token secrets met
//! no limit at all. Per source address and per minute, the first few failures of a kind
//! are audited one by one; past that, the source is answered 429 for the rest of the
//! minute (even what would have succeeded, so guessing stops too), and what it tried is
//! audited as one summary when the minute ends. Across all sources, too, only so many
//! refusals a minute are audited one by one, and only so many summaries written (the
//! rest in one more): a flood from many addresses cannot fill the audit log. Requests
//! that authenticate are never held back by any of this (the server's callers check
//! credentials first and consult the limiter only for failures), so one client's
//! failures cannot lock out others who share its address.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// What failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Failure {
    /// A webhook whose signature or token did not verify.
    Webhook,
    /// An API call with a token that is unknown, revoked or wrong.
    Token,
}

impl Failure {
    pub fn as_str(self) -> &'static str {
        match self {
            Failure::Webhook => "webhook",
            Failure::Token => "token",
        }
    }
}

/// What to do with a request from a source, as far as its failures go.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Standing {
    /// Go ahead.
    Allowed,
    /// Too many failures lately: answer 429, retrying after this long.
    Limited { retry_after: Duration },
}

/// Whether a failure is audited on its own.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Audit {
    Each,
    /// Counted into the source's summary instead.
    Summarised,
}

/// Failures a source had in a window that went beyond the individually audited ones.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Summary {
    pub failure: Failure,
    /// The source; `None` for the summary of many sources at once (`sources` of them).
    pub source: Option<IpAddr>,
    pub sources: usize,
    /// Failures not audited one by one (refused with 429, or past the limit).
    pub suppressed: u64,
    pub window: Duration,
}

#[derive(Debug, Clone, Copy)]
pub struct Policy {
    pub window: Duration,
    /// Failures per source and window that are audited one by one; the next is
    /// refused with 429 until the window ends.
    pub audited: u64,
    /// Sources tracked at once; the oldest windows are dropped (and summarised) first.
    pub sources: usize,
    /// Failures per window audited one by one across all sources.
    pub audited_everywhere: u64,
    /// Summaries written per look at ended windows; the rest are merged into one.
    pub summaries: usize,
}

impl Default for Policy {
    fn default() -> Policy {
        Policy { window: Duration::from_secs(60), audited: 10, sources: 10_000, audited_everywhere: 100, summaries: 20 }
    }
}

#[derive(Debug)]
struct Window {
    started: Instant,
    failures: u64,
    suppressed: u64,
}

#[derive(Debug)]
pub struct FailureLimiter {
    policy: Policy,
    windows: Mutex<HashMap<(Failure, IpAddr), Window>>,
    /// Failures audited one by one across all sources, in the current window.
    everywhere: Mutex<Option<Window>>,
}

impl FailureLimiter {
    pub fn new(policy: Policy) -> FailureLimiter {
        FailureLimiter { policy, windows: Mutex::new(HashMap::new()), everywhere: Mutex::new(None) }
    }

    /// Whether the budget of failures audited one by one across all sources has room
    /// for one more (and takes it).
    fn audit_everywhere(&self, now: Instant) -> bool {
        let mut everywhere = self.everywhere.lock().expect("not poisoned");
        let window = match everywhere.as_mut() {
            Some(window) if now < window.started + self.policy.window => window,
            _ => everywhere.insert(Window { started: now, failures: 0, suppressed: 0 }),
        };
        window.failures += 1;
        window.failures <= self.policy.audited_everywhere
    }

    /// Whether a request of this kind from `source` may go ahead; one that may not is
    /// counted into the source's summary.
    pub fn standing(&self, failure: Failure, source: IpAddr, now: Instant) -> Standing {
        let mut windows = self.windows.lock().expect("not poisoned");
        match windows.get_mut(&(failure, source)) {
            Some(window) if now < window.started + self.policy.window && window.failures >= self.policy.audited => {
                window.suppressed += 1;
                Standing::Limited { retry_after: window.started + self.policy.window - now }
            }
            _ => Standing::Allowed,
        }
    }

    /// Records a failure from `source`; says whether to audit it on its own.
    pub fn failed(&self, failure: Failure, source: IpAddr, now: Instant) -> Audit {
        let mut windows = self.windows.lock().expect("not poisoned");
        if windows.len() >= self.policy.sources && !windows.contains_key(&(failure, source)) {
            // Many sources at once: forget the oldest windows (their summaries are lost;
            // a warning in the log says so).
            let oldest = windows.iter().min_by_key(|(_, window)| window.started).map(|(key, _)| *key);
            if let Some(oldest) = oldest {
                tracing::warn!(source = %oldest.1, "too many sources failing authentication; forgetting the oldest");
                windows.remove(&oldest);
            }
        }
        let window = windows.entry((failure, source)).or_insert(Window { started: now, failures: 0, suppressed: 0 });
        if now >= window.started + self.policy.window {
            // A new window. Failures the old one suppressed are still counted: `ended`
            // has not taken its summary yet, so they go into this one's.
            *window = Window { started: now, failures: 0, suppressed: window.suppressed };
        }
        window.failures += 1;
        if window.failures <= self.policy.audited && self.audit_everywhere(now) {
            Audit::Each
        } else {
            window.suppressed += 1;
            Audit::Summarised
        }
    }

    /// Summaries of windows that have ended with failures not audited one by one, the
    /// biggest first and at most `summaries` of them per kind, the rest merged into one;
    /// those windows are forgotten.
    pub fn ended(&self, now: Instant) -> Vec<Summary> {
        let mut windows = self.windows.lock().expect("not poisoned");
        let mut summaries = Vec::new();
        windows.retain(|(failure, source), window| {
            if now < window.started + self.policy.window {
                return true;
            }
            if window.suppressed > 0 {
                summaries.push(Summary {
                    failure: *failure,
                    source: Some(*source),
                    sources: 1,
                    suppressed: window.suppressed,
                    window: self.policy.window,
                });
            }
            false
        });
        summaries.sort_by_key(|summary| std::cmp::Reverse(summary.suppressed));
        let mut kept: Vec<Summary> = Vec::new();
        let mut rest: Vec<Summary> = Vec::new();
        for summary in summaries {
            match kept.iter().filter(|kept| kept.failure == summary.failure).count() < self.policy.summaries {
                true => kept.push(summary),
                false => match rest.iter_mut().find(|merged| merged.failure == summary.failure) {
                    Some(merged) => {
                        merged.sources += 1;
                        merged.suppressed += summary.suppressed;
                    }
                    None => rest.push(Summary { source: None, ..summary }),
                },
            }
        }
        kept.extend(rest);
        kept
    }
}

#[cfg(test)]
mod tests {
    use std::net::Ipv4Addr;

    use super::*;

    fn limiter() -> FailureLimiter {
        FailureLimiter::new(Policy {
            window: Duration::from_secs(60),
            audited: 3,
            sources: 100,
            audited_everywhere: 100,
            summaries: 20,
        })
    }

    #[test]
    fn the_first_failures_are_audited_then_the_source_is_refused_until_the_window_ends() {
        let limiter = limiter();
        let source = IpAddr::V4(Ipv4Addr::new(203, 0, 113, 7));
        let start = Instant::now();
        for _ in 0..3 {
            assert_eq!(limiter.standing(Failure::Webhook, source, start), Standing::Allowed);
            assert_eq!(limiter.failed(Failure::Webhook, source, start), Audit::Each);
        }
        let later = start + Duration::from_secs(20);
        assert_eq!(
            limiter.standing(Failure::Webhook, source, later),
            Standing::Limited { retry_after: Duration::from_secs(40) }
        );
        assert_eq!(limiter.standing(Failure::Token, source, later), Standing::Allowed, "kinds are apart");
        let other = IpAddr::V4(Ipv4Addr::new(203, 0, 113, 8));
        assert_eq!(limiter.standing(Failure::Webhook, other, later), Standing::Allowed, "sources are apart");
        assert!(limiter.ended(later).is_empty(), "the window is still open");

        let after = start + Duration::from_secs(61);
        let summaries = limiter.ended(after);
        assert_eq!(
            summaries,
            [Summary {
                failure: Failure::Webhook,
                source: Some(source),
                sources: 1,
                suppressed: 1,
                window: Duration::from_secs(60)
            }]
        );
        assert_eq!(limiter.standing(Failure::Webhook, source, after), Standing::Allowed, "a new window");
    }

    #[test]
    fn a_window_without_refusals_ends_without_a_summary() {
        let limiter = limiter();
        let source = IpAddr::V4(Ipv4Addr::LOCALHOST);
        let start = Instant::now();
        limiter.failed(Failure::Token, source, start);
        assert!(limiter.ended(start + Duration::from_secs(61)).is_empty());
    }

    /// Issue 22, item 8: 500 addresses × 12 tries wrote 5,000 audit rows and 500
    /// summaries in 4.3 s. Across all sources only so many are audited one by one, and
    /// only so many summaries are written, the rest merged into one.
    #[test]
    fn a_flood_from_many_addresses_is_audited_within_a_budget() {
        let limiter = FailureLimiter::new(Policy {
            window: Duration::from_secs(60),
            audited: 10,
            sources: 10_000,
            audited_everywhere: 100,
            summaries: 20,
        });
        let start = Instant::now();
        let mut audited = 0;
        for address in 0..500u32 {
            let source = IpAddr::V4(Ipv4Addr::from(0x7f00_0000 + address));
            for _ in 0..12 {
                if limiter.standing(Failure::Token, source, start) == Standing::Allowed
                    && limiter.failed(Failure::Token, source, start) == Audit::Each
                {
                    audited += 1;
                }
            }
        }
        assert_eq!(audited, 100);
        let summaries = limiter.ended(start + Duration::from_secs(61));
        assert_eq!(summaries.len(), 21, "twenty, and one for the rest");
        let rest = summaries.last().unwrap();
        assert_eq!((rest.source, rest.sources), (None, 500 - 20));
        let suppressed: u64 = summaries.iter().map(|summary| summary.suppressed).sum();
        assert_eq!(suppressed, 500 * 12 - 100, "every refusal is counted somewhere");
    }
}
