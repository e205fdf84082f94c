//! Container and pod identity from a cgroup path (pure, no I/O).
//!
//! Container runtimes name the cgroup of each container after its 64-hex id, with a
//! runtime-specific prefix under the systemd cgroup driver (`docker-<id>.scope`,
//! `cri-containerd-<id>.scope`, `crio-<id>.scope`, `libpod-<id>.scope`, ...) and bare
//! under the cgroupfs driver (`/docker/<id>`, `/kubepods/burstable/pod<uid>/<id>`).
//! The kubelet adds `kubepods` levels carrying the QoS class and the pod UID.
//!
//! The deepest path component naming a container wins, so a process in a sub-cgroup of
//! a container (`.../libpod-<id>.scope/container`) or a nested container is attributed
//! to the innermost one. Monitor processes (`libpod-conmon-`, `crio-conmon-`) are not
//! containers.

/// Which container runtime created the cgroup.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Runtime {
    /// Docker (`docker-<id>.scope`, `/docker/<id>`).
    Docker,
    /// containerd's CRI plugin or nerdctl (`cri-containerd-<id>.scope`, `nerdctl-<id>.scope`).
    Containerd,
    /// CRI-O (`crio-<id>.scope`).
    CriO,
    /// Podman (`libpod-<id>.scope`).
    Podman,
    /// A bare container id whose runtime the path does not name (the kubelet's
    /// cgroupfs driver, or an unknown parent).
    Unknown,
}

impl Runtime {
    /// The label value: `docker`, `containerd`, `cri-o`, `podman` or `unknown`.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Runtime::Docker => "docker",
            Runtime::Containerd => "containerd",
            Runtime::CriO => "cri-o",
            Runtime::Podman => "podman",
            Runtime::Unknown => "unknown",
        }
    }
}

/// A Kubernetes pod's QoS class.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Qos {
    /// Requests equal limits; the kubelet puts these pods directly under `kubepods`.
    Guaranteed,
    /// Under `kubepods/burstable`.
    Burstable,
    /// Under `kubepods/besteffort`.
    BestEffort,
}

impl Qos {
    /// The label value, spelled as Kubernetes' `status.qosClass`.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Qos::Guaranteed => "Guaranteed",
            Qos::Burstable => "Burstable",
            Qos::BestEffort => "BestEffort",
        }
    }
}

/// What a cgroup path says about the container a process runs in.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct ContainerInfo {
    /// The full 64-hex container id, lowercase.
    pub id: String,
    /// The runtime that created it.
    pub runtime: Runtime,
    /// The Kubernetes pod UID, with dashes (the systemd driver's underscores replaced).
    pub pod_uid: Option<String>,
    /// The Kubernetes QoS class; set exactly when the path is under `kubepods`.
    pub qos: Option<Qos>,
}

impl ContainerInfo {
    /// The 12-hex short id that `docker ps` and `crictl ps` show.
    #[must_use]
    pub fn short_id(&self) -> &str {
        // `id` is 64 ASCII hex digits (checked by `container_id`), so 12 is a char boundary.
        self.id.get(..12).unwrap_or(&self.id)
    }
}

/// Parses a cgroup path (as in `/proc/PID/cgroup`) into container and pod identity.
///
/// Returns `None` for paths outside any container (`/`, `/init.scope`,
/// `/user.slice/user-1000.slice/session-3.scope`, a pod's own slice) and for container
/// monitor scopes (`libpod-conmon-<id>.scope`).
///
/// ```
/// use profiler_sampler::procinfo::{parse_cgroup_path, Qos, Runtime};
/// let id = "0123456789abcdef".repeat(4);
/// let c = parse_cgroup_path(&format!(
///     "/kubepods.slice/kubepods-besteffort.slice/\
///      kubepods-besteffort-pod1b2c3d4e_5f60_7182_93a4_b5c6d7e8f901.slice/crio-{id}.scope"
/// ))
/// .expect("a CRI-O container");
/// assert_eq!(c.runtime, Runtime::CriO);
/// assert_eq!(c.pod_uid.as_deref(), Some("1b2c3d4e-5f60-7182-93a4-b5c6d7e8f901"));
/// assert_eq!(c.qos, Some(Qos::BestEffort));
/// assert_eq!(c.short_id(), "0123456789ab");
/// ```
#[must_use]
pub fn parse_cgroup_path(path: &str) -> Option<ContainerInfo> {
    let segments: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();

    // The innermost container wins.
    let (index, id, runtime) = segments.iter().enumerate().rev().find_map(|(i, seg)| {
        let parent = i.checked_sub(1).map(|p| segments[p]);
        container_segment(seg, parent).map(|(id, rt)| (i, id, rt))
    })?;

    let mut in_kubepods = false;
    let mut qos = None;
    let mut pod_uid = None;
    for seg in &segments[..index] {
        if let Some(slice) = seg.strip_suffix(".slice") {
            // systemd driver: `kubepods-burstable-pod<uid_with_underscores>.slice`, maybe
            // under a prefix (`kubelet-kubepods-...`); the uid itself has no dashes.
            let parts: Vec<&str> = slice.split('-').collect();
            if let Some(k) = parts.iter().position(|p| *p == "kubepods") {
                in_kubepods = true;
                for part in &parts[k + 1..] {
                    kube_part(part, &mut qos, &mut pod_uid);
                }
            }
        } else if *seg == "kubepods" {
            in_kubepods = true;
        } else if in_kubepods {
            // cgroupfs driver: `/kubepods/burstable/pod<uid-with-dashes>/<id>`.
            kube_part(seg, &mut qos, &mut pod_uid);
        }
    }
    let qos = in_kubepods.then_some(qos.unwrap_or(Qos::Guaranteed));

    Some(ContainerInfo {
        id,
        runtime,
        pod_uid,
        qos,
    })
}

/// Records the QoS class or pod UID that one `kubepods` path part names.
fn kube_part(part: &str, qos: &mut Option<Qos>, pod_uid: &mut Option<String>) {
    match part {
        "burstable" => *qos = Some(Qos::Burstable),
        "besteffort" => *qos = Some(Qos::BestEffort),
        _ => {
            if let Some(uid) = part.strip_prefix("pod").and_then(pod_uid_of) {
                *pod_uid = Some(uid);
            }
        }
    }
}

/// A pod UID: a dashed UUID, or 32 hex digits for static pods; `_` becomes `-`.
fn pod_uid_of(raw: &str) -> Option<String> {
    let ok = !raw.is_empty()
        && raw
            .bytes()
            .all(|b| b.is_ascii_hexdigit() || b == b'-' || b == b'_');
    ok.then(|| raw.replace('_', "-").to_ascii_lowercase())
}

/// Runtime prefixes of systemd-driver scopes, longest first where one prefixes another.
const SCOPE_PREFIXES: &[(&str, Option<Runtime>)] = &[
    // Monitors, not containers.
    ("libpod-conmon-", None),
    ("crio-conmon-", None),
    ("cri-containerd-", Some(Runtime::Containerd)),
    ("nerdctl-", Some(Runtime::Containerd)),
    ("docker-", Some(Runtime::Docker)),
    ("crio-", Some(Runtime::CriO)),
    ("libpod-", Some(Runtime::Podman)),
];

/// The container id and runtime one path segment names, if any.
fn container_segment(seg: &str, parent: Option<&str>) -> Option<(String, Runtime)> {
    let name = seg.strip_suffix(".scope").unwrap_or(seg);
    for (prefix, runtime) in SCOPE_PREFIXES {
        if let Some(rest) = name.strip_prefix(prefix) {
            return runtime.and_then(|rt| container_id(rest).map(|id| (id, rt)));
        }
    }
    // A bare id: cgroupfs drivers. Only the parent says which runtime.
    let id = container_id(name)?;
    let runtime = match parent {
        Some("docker") => Runtime::Docker,
        Some("libpod_parent") => Runtime::Podman,
        _ => Runtime::Unknown,
    };
    Some((id, runtime))
}

/// `s` as a container id if it is exactly 64 hex digits.
fn container_id(s: &str) -> Option<String> {
    (s.len() == 64 && s.bytes().all(|b| b.is_ascii_hexdigit())).then(|| s.to_ascii_lowercase())
}

#[cfg(test)]
mod tests {
    use super::*;

    const ID: &str = "4f8a1c2b3d4e5f60718293a4b5c6d7e8f90123456789abcdef0123456789abcd";
    const UID_US: &str = "1b2c3d4e_5f60_7182_93a4_b5c6d7e8f901";
    const UID: &str = "1b2c3d4e-5f60-7182-93a4-b5c6d7e8f901";

    fn parse(path: &str) -> ContainerInfo {
        parse_cgroup_path(path).unwrap_or_else(|| panic!("`{path}` should name a container"))
    }

    fn plain(runtime: Runtime) -> ContainerInfo {
        ContainerInfo {
            id: ID.to_owned(),
            runtime,
            pod_uid: None,
            qos: None,
        }
    }

    fn pod(runtime: Runtime, qos: Qos) -> ContainerInfo {
        ContainerInfo {
            id: ID.to_owned(),
            runtime,
            pod_uid: Some(UID.to_owned()),
            qos: Some(qos),
        }
    }

    #[test]
    fn kubepods_systemd_driver_v2() {
        let burstable = format!(
            "/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod{UID_US}.slice/cri-containerd-{ID}.scope"
        );
        assert_eq!(parse(&burstable), pod(Runtime::Containerd, Qos::Burstable));

        let besteffort = format!(
            "/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod{UID_US}.slice/crio-{ID}.scope"
        );
        assert_eq!(parse(&besteffort), pod(Runtime::CriO, Qos::BestEffort));

        let guaranteed = format!("/kubepods.slice/kubepods-pod{UID_US}.slice/docker-{ID}.scope");
        assert_eq!(parse(&guaranteed), pod(Runtime::Docker, Qos::Guaranteed));

        // CRI-O on cgroup v2 may run the container in a `container` sub-cgroup.
        let sub = format!(
            "/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod{UID_US}.slice/crio-{ID}.scope/container"
        );
        assert_eq!(parse(&sub), pod(Runtime::CriO, Qos::Burstable));
    }

    #[test]
    fn kubepods_under_a_custom_cgroup_root() {
        // kind/minikube: `--cgroup-root=/kubelet`.
        let path = format!(
            "/kubelet.slice/kubelet-kubepods.slice/kubelet-kubepods-besteffort.slice/kubelet-kubepods-besteffort-pod{UID_US}.slice/cri-containerd-{ID}.scope"
        );
        assert_eq!(parse(&path), pod(Runtime::Containerd, Qos::BestEffort));
    }

    #[test]
    fn kubepods_cgroupfs_driver() {
        let burstable = format!("/kubepods/burstable/pod{UID}/{ID}");
        assert_eq!(parse(&burstable), pod(Runtime::Unknown, Qos::Burstable));

        let besteffort = format!("/kubepods/besteffort/pod{UID}/{ID}");
        assert_eq!(parse(&besteffort), pod(Runtime::Unknown, Qos::BestEffort));

        let guaranteed = format!("/kubepods/pod{UID}/{ID}");
        assert_eq!(parse(&guaranteed), pod(Runtime::Unknown, Qos::Guaranteed));

        // CRI-O with the cgroupfs driver keeps its prefix.
        let crio = format!("/kubepods/burstable/pod{UID}/crio-{ID}");
        assert_eq!(parse(&crio), pod(Runtime::CriO, Qos::Burstable));
    }

    #[test]
    fn static_pod_uid_is_32_hex() {
        let uid = "0123456789abcdef0123456789abcdef";
        let path = format!(
            "/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod{uid}.slice/cri-containerd-{ID}.scope"
        );
        assert_eq!(parse(&path).pod_uid.as_deref(), Some(uid));
    }

    #[test]
    fn docker() {
        assert_eq!(parse(&format!("/docker/{ID}")), plain(Runtime::Docker));
        assert_eq!(
            parse(&format!("/system.slice/docker-{ID}.scope")),
            plain(Runtime::Docker)
        );
        // Rootless Docker under the user's systemd.
        assert_eq!(
            parse(&format!(
                "/user.slice/user-1000.slice/user@1000.service/user.slice/docker-{ID}.scope"
            )),
            plain(Runtime::Docker)
        );
    }

    #[test]
    fn docker_in_docker_names_the_inner_container() {
        let outer = "ab".repeat(32);
        let info = parse(&format!("/docker/{outer}/docker/{ID}"));
        assert_eq!(info, plain(Runtime::Docker));
    }

    #[test]
    fn podman() {
        assert_eq!(
            parse(&format!("/machine.slice/libpod-{ID}.scope")),
            plain(Runtime::Podman)
        );
        assert_eq!(
            parse(&format!("/machine.slice/libpod-{ID}.scope/container")),
            plain(Runtime::Podman)
        );
        assert_eq!(
            parse(&format!(
                "/user.slice/user-1000.slice/user@1000.service/user.slice/libpod-{ID}.scope"
            )),
            plain(Runtime::Podman)
        );
        assert_eq!(
            parse(&format!("/libpod_parent/libpod-{ID}")),
            plain(Runtime::Podman)
        );
        assert_eq!(
            parse(&format!("/libpod_parent/{ID}")),
            plain(Runtime::Podman)
        );
    }

    #[test]
    fn containerd_without_kubernetes() {
        assert_eq!(
            parse(&format!("/system.slice/nerdctl-{ID}.scope")),
            plain(Runtime::Containerd)
        );
    }

    #[test]
    fn monitors_are_not_containers() {
        for path in [
            format!("/machine.slice/libpod-conmon-{ID}.scope"),
            format!(
                "/user.slice/user-1000.slice/user@1000.service/user.slice/libpod-conmon-{ID}.scope"
            ),
            format!("/kubepods.slice/kubepods-pod{UID_US}.slice/crio-conmon-{ID}.scope"),
        ] {
            assert_eq!(parse_cgroup_path(&path), None, "{path}");
        }
    }

    #[test]
    fn non_container_paths() {
        for path in [
            "",
            "/",
            "/init.scope",
            "/user.slice/user-1000.slice/session-3.scope",
            "/user.slice/user-1000.slice/user@1000.service/app.slice/app-gnome-firefox-1234.scope",
            "/system.slice/docker.service",
            "/system.slice/containerd.service",
            "/process_api/5d7a1201a4fced1210e7e9031d5b9e05",
            // A pod's own slice, with no container below it.
            "/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod1b2c3d4e_5f60_7182_93a4_b5c6d7e8f901.slice",
            // Not 64 hex digits.
            "/docker/4f8a1c2b3d4e",
            "/system.slice/docker-zz8a1c2b3d4e5f60718293a4b5c6d7e8f90123456789abcdef0123456789abcd.scope",
        ] {
            assert_eq!(parse_cgroup_path(path), None, "{path}");
        }
    }

    #[test]
    fn uppercase_ids_are_lowercased() {
        let info = parse(&format!("/docker/{}", ID.to_ascii_uppercase()));
        assert_eq!(info.id, ID);
        assert_eq!(info.short_id(), "4f8a1c2b3d4e");
    }
}
