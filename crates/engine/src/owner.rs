//! Who holds a run's lease: this process, named so that another launchway process on
//! the same host can tell when the holder has died and take the run over at once,
//! instead of waiting for the lease to expire.
//!
//! Seeing another process die needs the host's process table; that is read from
//! `/proc` on Linux only. Elsewhere no holder is ever presumed dead: its runs wait for
//! its lease to expire, which is slower but never wrong.

use std::sync::atomic::{AtomicU32, Ordering};

/// The identity of an engine holding leases:
/// `launchway:<host>:<pid>:<start time>:<engine number>`. The start time (in clock ticks
/// since boot) tells a dead process from a new one that reuses its pid; the engine
/// number keeps two engines in one process (tests, a future server) apart.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Owner {
    pub id: String,
    host: String,
}

impl Owner {
    pub fn of_this_process() -> Owner {
        static ENGINES: AtomicU32 = AtomicU32::new(0);
        let host = host::name();
        let pid = std::process::id();
        let start = host::process_start_time(pid).unwrap_or_default();
        let engine = ENGINES.fetch_add(1, Ordering::Relaxed);
        Owner { id: format!("launchway:{host}:{pid}:{start}:{engine}"), host }
    }

    /// Whether `other` names a process on this host that no longer runs.
    pub fn sees_dead(&self, other: &str) -> bool {
        if !host::SEES_PROCESSES {
            return false;
        }
        let mut parts = other.split(':');
        let (Some("launchway"), Some(host), Some(pid), Some(start)) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return false;
        };
        if host != self.host {
            return false;
        }
        let Ok(pid) = pid.parse::<u32>() else {
            return false;
        };
        match host::process_start_time(pid) {
            None => true,
            Some(now_start) => now_start.to_string() != start,
        }
    }
}

#[cfg(target_os = "linux")]
mod host {
    use std::fs;

    pub(super) const SEES_PROCESSES: bool = true;

    pub(super) fn name() -> String {
        fs::read_to_string("/proc/sys/kernel/hostname")
            .or_else(|_| fs::read_to_string("/etc/hostname"))
            .map(|name| name.trim().replace(':', "-"))
            .unwrap_or_else(|_| "localhost".to_owned())
    }

    /// Field 22 of /proc/<pid>/stat, after the parenthesised command name; `None` when
    /// no such process runs.
    pub(super) fn process_start_time(pid: u32) -> Option<u64> {
        let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
        let after_name = &stat[stat.rfind(')')? + 1..];
        after_name.split_whitespace().nth(19)?.parse().ok()
    }
}

#[cfg(not(target_os = "linux"))]
mod host {
    pub(super) const SEES_PROCESSES: bool = false;

    pub(super) fn name() -> String {
        std::env::var("HOSTNAME").map(|name| name.replace(':', "-")).unwrap_or_else(|_| "localhost".to_owned())
    }

    pub(super) fn process_start_time(_pid: u32) -> Option<u64> {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[cfg(target_os = "linux")]
    #[test]
    fn this_process_is_alive_and_a_finished_one_is_dead() {
        let me = Owner::of_this_process();
        assert!(!me.sees_dead(&me.id));
        let mut child = std::process::Command::new("true").spawn().expect("spawn true");
        let pid = child.id();
        let start = host::process_start_time(pid).unwrap_or_default();
        child.wait().expect("wait");
        let host = me.id.split(':').nth(1).expect("host part");
        assert!(me.sees_dead(&format!("launchway:{host}:{pid}:{start}:0")));
        assert_ne!(Owner::of_this_process(), me, "each engine is its own owner");
    }

    #[test]
    fn holders_on_other_hosts_or_unknown_forms_are_never_presumed_dead() {
        let me = Owner::of_this_process();
        assert!(!me.sees_dead("launchway:some-other-host:1:1"));
        assert!(!me.sees_dead("worker-a"));
    }
}
