//! Who a sample belongs to, as a fleet backend sees it: the service name and the few
//! labels that make a series.
//!
//! `service_name` is the first of these that is known (the README lists the same order):
//!
//! 1. the Kubernetes workload: `NAMESPACE/WORKLOAD`, the workload being the pod's name
//!    without the suffixes its controller added (`checkout-7d9f8b6c5-x2x4q` of a
//!    Deployment → `checkout`, `web-0` of a StatefulSet → `web`, `agent-x2x4q` of a
//!    DaemonSet → `agent`): the pod and namespace labels, no API call;
//! 2. the container: `container/ID` (Ember knows a container by its id; a runtime's names
//!    need the runtime's API, which the agent does not use);
//! 3. the systemd unit: the `*.service` of a cgroup under `/system.slice`;
//! 4. the executable's file name, else the process name (`comm`).
//!
//! Series labels are `__name__` (`process_cpu` for CPU samples, `off_cpu` for off-CPU
//! time, the names Pyroscope gives them when it ingests the OpenTelemetry eBPF profiler's
//! profiles), `service_name`, `hostname`, and `namespace`, `pod`, `container` where known;
//! per-sample detail (pid, thread, comm) stays in the profile's sample labels so the
//! number of series stays low.

use std::collections::BTreeMap;

use profiler_model::{Labels, ProfileKind, keys};

/// The series name Pyroscope requires (`__name__`) of CPU samples.
pub const PROFILE_NAME: &str = "process_cpu";
/// The series name of off-CPU time: Pyroscope's for the off-CPU profiles of the
/// OpenTelemetry eBPF profiler (grafana/pyroscope#3875), apart from `process_cpu`.
pub const OFF_CPU_PROFILE_NAME: &str = "off_cpu";

/// The series name (`__name__`) of a profile of `kind`.
#[must_use]
pub fn profile_name(kind: ProfileKind) -> &'static str {
    match kind {
        ProfileKind::Cpu => PROFILE_NAME,
        ProfileKind::OffCpu => OFF_CPU_PROFILE_NAME,
    }
}

/// The labels of one series: sorted, `__name__` first.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct SeriesKey {
    /// `service_name`, as [`service_name`] derives it.
    pub service_name: String,
    /// Kubernetes namespace, when known.
    pub namespace: Option<String>,
    /// Kubernetes pod, when known.
    pub pod: Option<String>,
    /// Container id (short), when known.
    pub container: Option<String>,
}

impl SeriesKey {
    /// The series of a sample with `labels`.
    #[must_use]
    pub fn of(labels: &Labels) -> Self {
        SeriesKey {
            service_name: service_name(labels),
            namespace: labels.get(keys::NAMESPACE).map(str::to_owned),
            pod: labels.get(keys::POD).map(str::to_owned),
            container: labels.get(keys::CONTAINER_ID).map(str::to_owned),
        }
    }

    /// The series labels of a profile of `kind`, with the node's `host_name`, as (name,
    /// value) pairs.
    #[must_use]
    pub fn labels(&self, host_name: &str, kind: ProfileKind) -> BTreeMap<&'static str, String> {
        let mut out = BTreeMap::new();
        out.insert("__name__", profile_name(kind).to_owned());
        out.insert("service_name", self.service_name.clone());
        out.insert("hostname", host_name.to_owned());
        if let Some(v) = &self.namespace {
            out.insert("namespace", v.clone());
        }
        if let Some(v) = &self.pod {
            out.insert("pod", v.clone());
        }
        if let Some(v) = &self.container {
            out.insert("container", v.clone());
        }
        out
    }
}

/// The service a sample with `labels` belongs to; see the [module docs](self) for the
/// order.
#[must_use]
pub fn service_name(labels: &Labels) -> String {
    if let (Some(ns), Some(pod)) = (labels.get(keys::NAMESPACE), labels.get(keys::POD)) {
        return format!("{ns}/{}", workload_of(pod));
    }
    if let Some(id) = labels.get(keys::CONTAINER_ID) {
        return format!("container/{id}");
    }
    if let Some(unit) = labels.get(keys::CGROUP).and_then(systemd_service) {
        return unit.to_owned();
    }
    if let Some(exe) = labels.get(keys::EXE) {
        let name = exe.rsplit('/').next().unwrap_or(exe);
        // `readlink` of a replaced binary ends in ` (deleted)`.
        let name = name.strip_suffix(" (deleted)").unwrap_or(name);
        if !name.is_empty() {
            return name.to_owned();
        }
    }
    labels.get(keys::COMM).unwrap_or("unknown").to_owned()
}

/// The `*.service` unit of a system cgroup path (`/system.slice/nginx.service/...`).
fn systemd_service(cgroup: &str) -> Option<&str> {
    let rest = cgroup.strip_prefix("/system.slice/")?;
    let unit = rest.split('/').next()?;
    unit.ends_with(".service").then_some(unit)
}

/// The workload a pod's name comes from: the name without a ReplicaSet's template hash
/// and a pod's random suffix, or a StatefulSet's ordinal.
#[must_use]
pub fn workload_of(pod: &str) -> &str {
    let parts: Vec<&str> = pod.split('-').collect();
    let n = parts.len();
    let random = |s: &str| s.len() == 5 && s.bytes().all(|b| b.is_ascii_alphanumeric());
    let template_hash =
        |s: &str| (6..=10).contains(&s.len()) && s.bytes().all(|b| b.is_ascii_alphanumeric());
    let ordinal = |s: &str| !s.is_empty() && s.len() <= 5 && s.bytes().all(|b| b.is_ascii_digit());
    let keep = if n >= 3 && random(parts[n - 1]) && template_hash(parts[n - 2]) {
        n - 2
    } else if n >= 2 && (random(parts[n - 1]) || ordinal(parts[n - 1])) {
        n - 1
    } else {
        n
    };
    let len: usize = parts[..keep].iter().map(|p| p.len()).sum::<usize>() + keep.saturating_sub(1);
    &pod[..len]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(pairs: &[(&str, &str)]) -> Labels {
        let mut l = Labels::new();
        for (k, v) in pairs {
            l.set(*k, *v);
        }
        l
    }

    #[test]
    fn the_service_name_follows_the_documented_order() {
        let all = [
            (keys::NAMESPACE, "shop"),
            (keys::POD, "checkout-7d9f8b6c5-x2x4q"),
            (keys::CONTAINER_ID, "4f8a1c2b3d4e"),
            (keys::CGROUP, "/system.slice/containerd.service"),
            (keys::EXE, "/usr/bin/checkout"),
            (keys::COMM, "checkout"),
        ];
        assert_eq!(service_name(&labels(&all)), "shop/checkout");
        assert_eq!(service_name(&labels(&all[2..])), "container/4f8a1c2b3d4e");
        assert_eq!(service_name(&labels(&all[3..])), "containerd.service");
        assert_eq!(service_name(&labels(&all[4..])), "checkout");
        assert_eq!(
            service_name(&labels(&[
                (keys::CGROUP, "/user.slice/user-0.slice/session-3.scope"),
                (keys::EXE, "/tmp/split (deleted)"),
            ])),
            "split"
        );
        assert_eq!(
            service_name(&labels(&[(keys::COMM, "kworker/0:1")])),
            "kworker/0:1"
        );
        assert_eq!(service_name(&Labels::new()), "unknown");
    }

    #[test]
    fn workloads_lose_their_controllers_suffixes() {
        assert_eq!(workload_of("checkout-7d9f8b6c5-x2x4q"), "checkout");
        assert_eq!(workload_of("my-api-5b9c7f6d8-abcde"), "my-api");
        assert_eq!(workload_of("web-0"), "web");
        assert_eq!(workload_of("ember-x2x4q"), "ember");
        assert_eq!(workload_of("standalone"), "standalone");
        assert_eq!(workload_of("a-b-c"), "a-b-c");
    }

    #[test]
    fn series_labels_name_the_profile_and_the_node() {
        let key = SeriesKey::of(&labels(&[
            (keys::NAMESPACE, "shop"),
            (keys::POD, "web-0"),
            (keys::PID, "42"),
        ]));
        let l = key.labels("node-7", ProfileKind::Cpu);
        assert_eq!(
            key.labels("node-7", ProfileKind::OffCpu)["__name__"],
            "off_cpu"
        );
        assert_eq!(l["__name__"], "process_cpu");
        assert_eq!(l["service_name"], "shop/web");
        assert_eq!(l["hostname"], "node-7");
        assert_eq!(l["pod"], "web-0");
        assert!(!l.contains_key("pid") && !l.contains_key("container"));
    }
}
