//! Labels: who a sample belongs to (process, thread, container, ...).

use std::sync::Arc;

/// The label names samples carry: the process and thread from the sampler, the rest from
/// the agent's `/proc` and cgroup reads. A filter may name only these
/// ([`crate::LabelFilter::parse`]).
pub mod keys {
    /// Process id.
    pub const PID: &str = "pid";
    /// Thread id.
    pub const TID: &str = "tid";
    /// Process name (the main thread's `comm`).
    pub const COMM: &str = "comm";
    /// Thread name (the sampled thread's `comm`).
    pub const THREAD: &str = "thread";
    /// Executable path (`readlink /proc/PID/exe`).
    pub const EXE: &str = "exe";
    /// cgroup path of the process.
    pub const CGROUP: &str = "cgroup";
    /// Container id, shortened to 12 hex digits as `docker ps` shows it.
    pub const CONTAINER_ID: &str = "container_id";
    /// Container runtime (`docker`, `containerd`, `cri-o`, ...).
    pub const RUNTIME: &str = "runtime";
    /// Kubernetes pod UID, with dashes.
    pub const POD_UID: &str = "pod_uid";
    /// Kubernetes QoS class.
    pub const QOS: &str = "qos";
    /// Kubernetes pod name (the container's host name, read through `/proc/PID/root`).
    pub const POD: &str = "pod";
    /// Kubernetes namespace (the pod's service-account namespace file).
    pub const NAMESPACE: &str = "namespace";

    /// Every label name, in the order people filter by them.
    pub const ALL: &[&str] = &[
        COMM,
        PID,
        THREAD,
        TID,
        CONTAINER_ID,
        NAMESPACE,
        POD,
        POD_UID,
        RUNTIME,
        QOS,
        CGROUP,
        EXE,
    ];

    /// Labels whose values are process or thread ids: whole numbers.
    pub const NUMERIC: &[&str] = &[PID, TID];
}

/// A sorted set of `name=value` pairs, at most one value per name.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Labels(Vec<(Arc<str>, Arc<str>)>);

impl Labels {
    /// No labels.
    #[must_use]
    pub fn new() -> Self {
        Labels(Vec::new())
    }

    /// Sets `name` to `value`, replacing an earlier value.
    pub fn set(&mut self, name: impl Into<Arc<str>>, value: impl Into<Arc<str>>) {
        let name = name.into();
        let value = value.into();
        match self.0.binary_search_by(|(k, _)| k.as_ref().cmp(&name)) {
            Ok(i) => self.0[i].1 = value,
            Err(i) => self.0.insert(i, (name, value)),
        }
    }

    /// Builder form of [`Labels::set`].
    #[must_use]
    pub fn with(mut self, name: impl Into<Arc<str>>, value: impl Into<Arc<str>>) -> Self {
        self.set(name, value);
        self
    }

    /// The value of `name`, if set.
    #[must_use]
    pub fn get(&self, name: &str) -> Option<&str> {
        self.0
            .binary_search_by(|(k, _)| k.as_ref().cmp(name))
            .ok()
            .map(|i| &*self.0[i].1)
    }

    /// The pairs, sorted by name.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.0.iter().map(|(k, v)| (&**k, &**v))
    }

    /// Whether there are no labels.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The process id label, parsed.
    #[must_use]
    pub fn pid(&self) -> Option<u32> {
        self.get(keys::PID).and_then(|v| v.parse().ok())
    }

    /// Whether this is the kernel's idle task (pid 0).
    #[must_use]
    pub fn is_idle(&self) -> bool {
        self.pid() == Some(0)
    }
}

impl<K: Into<Arc<str>>, V: Into<Arc<str>>> FromIterator<(K, V)> for Labels {
    fn from_iter<I: IntoIterator<Item = (K, V)>>(iter: I) -> Self {
        let mut l = Labels::new();
        for (k, v) in iter {
            l.set(k, v);
        }
        l
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_stay_sorted_and_unique() {
        let l = Labels::new()
            .with("tid", "2")
            .with("comm", "x")
            .with("pid", "1")
            .with("comm", "y");
        let pairs: Vec<_> = l.iter().collect();
        assert_eq!(pairs, [("comm", "y"), ("pid", "1"), ("tid", "2")]);
        assert_eq!(l.pid(), Some(1));
        assert!(!l.is_idle());
        assert!(Labels::new().with("pid", "0").is_idle());
    }
}
