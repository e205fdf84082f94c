//! Packaging for the node (`deploy/`): the systemd unit passes `systemd-analyze verify`
//! and keeps the syscalls the agent makes; every Kubernetes manifest validates against
//! the Kubernetes API schemas (PyPI `kubernetes-validate`, strict); and the unit, the
//! DaemonSet and the image's file capabilities grant one and the same capability set,
//! never through `privileged`.
//!
//! These need no root, only the tools `scripts/bootstrap.sh --test` installs
//! (`systemd-analyze`, and tests/kubernetes/.venv). Without them a test skips with a
//! message on the terminal; in CI (`CI` set) a missing tool fails it.

use std::collections::BTreeSet;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::Value;

use crate::common::{repo_root, skip, tempdir};

/// Kubernetes versions the manifests are validated against: the oldest they support
/// (`securityContext.appArmorProfile` is a field since 1.30) and the newest the pinned
/// validator (tests/kubernetes/requirements.txt) has schemas for.
const KUBERNETES_VERSIONS: &[&str] = &["1.30.0", "1.37.0"];

/// Syscalls the agent makes that systemd's syscall groups hold (`bpf` is in
/// `@privileged`, `perf_event_open` in `@debug`, `setpriority` in `@resources`), and a few
/// it cannot run without at all; the unit's deny list must hold none of them.
const AGENT_SYSCALLS: &[&str] = &[
    "bpf",
    "perf_event_open",
    "setpriority",
    "openat",
    "read",
    "mmap",
    "munmap",
    "poll",
    "kill",
    "epoll_wait",
    "clone",
    "clone3",
];

fn unit_path() -> PathBuf {
    repo_root().join("deploy/systemd/ember.service")
}

fn kubernetes_dir() -> PathBuf {
    repo_root().join("deploy/kubernetes")
}

fn venv_bin(name: &str) -> PathBuf {
    repo_root().join("tests/kubernetes/.venv/bin").join(name)
}

/// Reports that `test` cannot run because `what` is missing: a failure in CI, elsewhere a
/// skip that reaches the terminal.
fn missing(test: &str, what: &str) {
    assert!(
        std::env::var_os("CI").is_none(),
        "{test}: {what} is missing, and in CI this test must run (scripts/bootstrap.sh --test installs it)"
    );
    skip(
        test,
        &format!("{what} is missing (scripts/bootstrap.sh --test installs it)"),
    );
}

/// Runs a tool; `None` (after [`missing`]) when it is not installed.
fn run_tool(test: &str, cmd: &mut Command) -> Option<Output> {
    match cmd.output() {
        Ok(out) => Some(out),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            missing(test, &format!("`{}`", cmd.get_program().to_string_lossy()));
            None
        }
        Err(e) => panic!("running {cmd:?}: {e}"),
    }
}

fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

// ---- the systemd unit ----------------------------------------------------------------

/// `Key=value` assignments of a unit file, in order (comments and sections skipped).
fn unit_assignments(unit: &str) -> Vec<(String, String)> {
    unit.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with(['#', ';', '[']))
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.trim().to_owned(), v.trim().to_owned()))
        .collect()
}

/// The value of a capability setting as systemd computes it: assignments add up, an empty
/// one resets, and a leading `~` would invert the set (which the unit must not use).
fn unit_capabilities(unit: &str, key: &str) -> BTreeSet<String> {
    let mut caps = BTreeSet::new();
    for (_, value) in unit_assignments(unit).into_iter().filter(|(k, _)| k == key) {
        if value.is_empty() {
            caps.clear();
            continue;
        }
        assert!(
            !value.starts_with('~'),
            "{key}= is an inverted list (`{value}`): list the capabilities granted"
        );
        caps.extend(value.split_whitespace().map(str::to_owned));
    }
    caps
}

/// Lines of `systemd-analyze verify` output that are about the unit under test.
fn warnings_about(output: &str, unit_name: &str) -> Vec<String> {
    output
        .lines()
        .filter(|l| l.contains(unit_name))
        .map(str::to_owned)
        .collect()
}

/// Verifies a copy of `unit` named `ember.service` whose `ExecStart=` binary is `binary`
/// (`systemd-analyze verify` checks that the binary exists and is executable); returns
/// the exit status and the lines about the unit, or `None` without `systemd-analyze`.
fn verify_unit(test: &str, unit: &str, binary: &Path) -> Option<(bool, Vec<String>)> {
    const INSTALLED: &str = "ExecStart=/usr/local/bin/ember ";
    let exec_lines = unit.lines().filter(|l| l.starts_with("ExecStart=")).count();
    assert_eq!(exec_lines, 1, "the unit has one ExecStart= line");
    assert!(
        unit.contains(INSTALLED),
        "the unit runs `/usr/local/bin/ember`, the path its header documents"
    );
    let copy = unit.replace(INSTALLED, &format!("ExecStart=\"{}\" ", binary.display()));
    let dir = tempdir();
    let path = dir.path().join("ember.service");
    std::fs::write(&path, copy).expect("writing the unit's copy");
    let out = run_tool(
        test,
        Command::new("systemd-analyze")
            .args(["verify", "--man=no"])
            .arg(&path),
    )?;
    let all = text(&out);
    let about = warnings_about(&all, "ember.service");
    let other: Vec<&str> = all
        .lines()
        .filter(|l| !l.contains("ember.service"))
        .collect();
    if !other.is_empty() {
        // Not about this unit (e.g. the machine's own units); shown, not judged.
        let _ = writeln!(
            std::io::stderr(),
            "systemd-analyze verify, lines about other units:\n{}",
            other.join("\n")
        );
    }
    Some((out.status.success(), about))
}

#[test]
fn systemd_unit_passes_systemd_analyze_verify_without_a_warning() {
    let test = "systemd_unit_passes_systemd_analyze_verify_without_a_warning";
    let unit = std::fs::read_to_string(unit_path()).expect("reading deploy/systemd/ember.service");
    let ember = Path::new(env!("CARGO_BIN_EXE_ember"));
    let Some((ok, warnings)) = verify_unit(test, &unit, ember) else {
        return;
    };
    assert!(
        ok && warnings.is_empty(),
        "systemd-analyze verify rejects deploy/systemd/ember.service (exit ok: {ok}):\n{}",
        warnings.join("\n")
    );

    // The check itself: verify exits 0 on an unknown key or a bad value and only prints a
    // line about it, so those lines are what must be looked at.
    let broken = unit.replace("ProtectHome=yes", "ProtectHome=maybe\nProtectHomes=yes");
    let (_, warnings) = verify_unit(test, &broken, ember).expect("systemd-analyze ran above");
    assert!(
        warnings.iter().any(|w| w.contains("ProtectHomes"))
            && warnings.iter().any(|w| w.contains("protect home")),
        "an unknown key and a bad value must be reported; got {warnings:?}"
    );
}

/// Sandboxing options that look like hardening but take away what the agent reads, each
/// with the value that does so and what is lost.
const UNIT_OPTIONS_THAT_BREAK_PROFILING: &[(&str, &[&str], &str)] = &[
    (
        "ProtectKernelTunables",
        &["yes", "true", "on", "1"],
        "makes /proc/kallsyms inaccessible (every kernel frame [unknown])",
    ),
    (
        "ProtectKernelLogs",
        &["yes", "true", "on", "1"],
        "drops CAP_SYSLOG (kernel frames [unknown] under kptr_restrict=1)",
    ),
    (
        "ProtectProc",
        &["invisible", "noaccess", "ptraceable"],
        "hides other users' /proc/PID",
    ),
    ("ProcSubset", &["pid"], "hides /proc/kallsyms and /proc/sys"),
    (
        "PrivateUsers",
        &["yes", "true", "on", "1", "self", "identity"],
        "capabilities would only hold in a new user namespace",
    ),
    (
        "PrivatePIDs",
        &["yes", "true", "on", "1"],
        "the agent would see none of the node's processes",
    ),
];

#[test]
fn systemd_unit_sets_no_option_that_hides_what_the_agent_reads() {
    // Found by running the unit under systemd 252 (deploy/systemd/check-in-nspawn.sh):
    // with ProtectKernelTunables=yes the agent read an empty /proc/kallsyms.
    let unit = std::fs::read_to_string(unit_path()).expect("reading deploy/systemd/ember.service");
    let set = unit_assignments(&unit);
    for (option, bad, why) in UNIT_OPTIONS_THAT_BREAK_PROFILING {
        if let Some((_, value)) = set.iter().rev().find(|(k, _)| k == option) {
            assert!(
                !bad.contains(&value.to_ascii_lowercase().as_str()),
                "the unit sets {option}={value}, which {why}"
            );
        }
    }
    // What ProtectKernelTunables would have done, minus kallsyms, is done by hand.
    let read_only: Vec<&str> = set
        .iter()
        .filter(|(k, _)| k == "ReadOnlyPaths")
        .flat_map(|(_, v)| v.split_whitespace())
        .collect();
    for path in ["/proc/sys", "/sys"] {
        assert!(
            read_only.contains(&path),
            "ReadOnlyPaths= makes {path} read-only: {read_only:?}"
        );
    }
    let hidden: Vec<&str> = set
        .iter()
        .filter(|(k, _)| k == "InaccessiblePaths")
        .flat_map(|(_, v)| v.split_whitespace())
        .map(|p| p.trim_start_matches(['-', '+']))
        .collect();
    assert!(
        !hidden.contains(&"/proc/kallsyms"),
        "InaccessiblePaths= hides /proc/kallsyms: {hidden:?}"
    );
}

/// The syscalls of one `systemd-analyze syscall-filter` group, nested groups expanded.
fn syscall_group(test: &str, group: &str) -> Option<BTreeSet<String>> {
    let out = run_tool(
        test,
        Command::new("systemd-analyze").args(["syscall-filter", group]),
    )?;
    assert!(
        out.status.success(),
        "systemd-analyze syscall-filter {group}: {}",
        text(&out)
    );
    let mut calls = BTreeSet::new();
    // The first line is the group's name; then a comment and one name per line.
    for line in String::from_utf8_lossy(&out.stdout).lines().skip(1) {
        let name = line.trim();
        if name.is_empty() || name.starts_with('#') {
            continue;
        }
        if name.starts_with('@') {
            calls.extend(syscall_group(test, name)?);
        } else {
            calls.insert(name.to_owned());
        }
    }
    assert!(!calls.is_empty(), "systemd-analyze knows no group {group}");
    Some(calls)
}

#[test]
fn systemd_unit_syscall_filter_keeps_the_agents_syscalls() {
    let test = "systemd_unit_syscall_filter_keeps_the_agents_syscalls";
    let unit = std::fs::read_to_string(unit_path()).expect("reading deploy/systemd/ember.service");
    let filters: Vec<String> = unit_assignments(&unit)
        .into_iter()
        .filter(|(k, _)| k == "SystemCallFilter")
        .map(|(_, v)| v)
        .collect();
    assert_eq!(filters.len(), 1, "one SystemCallFilter= line: {filters:?}");
    let denied = filters[0].strip_prefix('~').expect(
        "SystemCallFilter= is a deny list (~...): an allow list would have to name every syscall",
    );
    let mut blocked = BTreeSet::new();
    for entry in denied.split_whitespace() {
        if entry.starts_with('@') {
            let Some(calls) = syscall_group(test, entry) else {
                return;
            };
            blocked.extend(calls);
        } else {
            blocked.insert(entry.to_owned());
        }
    }
    let needed: Vec<&&str> = AGENT_SYSCALLS
        .iter()
        .filter(|c| blocked.contains(**c))
        .collect();
    assert!(
        needed.is_empty(),
        "SystemCallFilter=~{denied} denies syscalls the agent makes: {needed:?}"
    );
    assert!(
        blocked.contains("init_module") && blocked.contains("mount"),
        "the deny list expanded to nothing useful: {blocked:?}"
    );
}

// ---- the Kubernetes manifests ---------------------------------------------------------

/// The YAML files of deploy/kubernetes, sorted.
fn manifest_files() -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(kubernetes_dir())
        .expect("reading deploy/kubernetes")
        .map(|e| e.expect("a directory entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml" || e == "yml"))
        .collect();
    files.sort();
    files
}

/// The YAML documents of `file` as JSON, parsed by the venv's PyYAML (the parser the
/// validator uses); `None` without the venv.
fn yaml_documents(test: &str, file: &Path) -> Option<Vec<Value>> {
    let python = venv_bin("python");
    if !python.exists() {
        missing(test, "tests/kubernetes/.venv");
        return None;
    }
    let out = Command::new(python)
        .args([
            "-c",
            "import json, sys, yaml\n\
             docs = [d for d in yaml.safe_load_all(open(sys.argv[1])) if d is not None]\n\
             json.dump(docs, sys.stdout)",
        ])
        .arg(file)
        .output()
        .expect("running the venv's python");
    assert!(
        out.status.success(),
        "{} is not valid YAML: {}",
        file.display(),
        text(&out)
    );
    match serde_json::from_slice(&out.stdout).expect("PyYAML's JSON") {
        Value::Array(docs) => Some(docs),
        other => panic!("expected a list of documents, got {other}"),
    }
}

/// Runs the pinned validator, strict, on `files` for one Kubernetes version.
fn kubernetes_validate(test: &str, version: &str, files: &[PathBuf]) -> Option<Output> {
    let validator = venv_bin("kubernetes-validate");
    if !validator.exists() {
        missing(test, "tests/kubernetes/.venv (kubernetes-validate)");
        return None;
    }
    Some(
        Command::new(validator)
            .args(["--strict", "--kubernetes-version", version])
            .args(files)
            .output()
            .expect("running kubernetes-validate"),
    )
}

#[test]
fn kubernetes_manifests_validate_against_the_api_schemas() {
    let test = "kubernetes_manifests_validate_against_the_api_schemas";
    let files = manifest_files();
    let kustomization = kubernetes_dir().join("kustomization.yaml");
    assert!(
        files.contains(&kustomization),
        "deploy/kubernetes has a kustomization.yaml"
    );

    // The kustomization is kustomize's, not an API object: no API schema covers it. It
    // must list every other manifest, so `kubectl apply -k` installs all that is checked.
    let Some(docs) = yaml_documents(test, &kustomization) else {
        return;
    };
    assert_eq!(docs.len(), 1, "kustomization.yaml is one document");
    assert_eq!(docs[0]["kind"], "Kustomization");
    let listed: BTreeSet<String> = docs[0]["resources"]
        .as_array()
        .expect("kustomization.yaml lists resources")
        .iter()
        .map(|r| r.as_str().expect("a resource is a file name").to_owned())
        .collect();
    let resources: Vec<PathBuf> = files
        .iter()
        .filter(|f| **f != kustomization)
        .cloned()
        .collect();
    let present: BTreeSet<String> = resources
        .iter()
        .map(|f| {
            f.file_name()
                .expect("a file name")
                .to_string_lossy()
                .into_owned()
        })
        .collect();
    assert_eq!(
        listed, present,
        "kustomization.yaml's resources are exactly the other manifests"
    );

    let mut objects = 0;
    for file in &resources {
        let docs = yaml_documents(test, file).expect("the venv was found above");
        assert!(!docs.is_empty(), "{} holds no object", file.display());
        objects += docs.len();
    }
    for version in KUBERNETES_VERSIONS {
        let out = kubernetes_validate(test, version, &resources).expect("the venv was found above");
        let report = text(&out);
        // A kind or apiVersion without a schema is only a WARN with exit status 0: any
        // line but a pass fails the test, and every object must have passed.
        let passed = report
            .lines()
            .filter(|l| l.starts_with("INFO ") && l.contains(" passed "))
            .count();
        let other: Vec<&str> = report
            .lines()
            .filter(|l| !(l.starts_with("INFO ") && l.contains(" passed ")))
            .collect();
        assert!(
            out.status.success() && other.is_empty() && passed == objects,
            "kubernetes-validate --strict for Kubernetes {version}: {passed} of {objects} objects passed\n{report}"
        );
    }

    // The check itself: strict validation rejects a misspelt field.
    let daemonset = std::fs::read_to_string(kubernetes_dir().join("daemonset.yaml"))
        .expect("reading daemonset.yaml");
    assert!(daemonset.contains("hostPID: true"));
    let dir = tempdir();
    let typo = dir.path().join("daemonset.yaml");
    std::fs::write(&typo, daemonset.replace("hostPID: true", "hostPid: true"))
        .expect("writing the misspelt copy");
    let out = kubernetes_validate(test, KUBERNETES_VERSIONS[0], &[typo]).expect("venv found above");
    assert!(
        !out.status.success() && text(&out).contains("'hostPid' was unexpected"),
        "kubernetes-validate --strict accepted `hostPid`: {}",
        text(&out)
    );
}

/// Every container of a pod spec, init containers included.
fn containers(pod: &Value) -> Vec<&Value> {
    ["initContainers", "containers"]
        .iter()
        .filter_map(|k| pod[*k].as_array())
        .flatten()
        .collect()
}

/// The capability names of a JSON list, as systemd spells them (`CAP_` + upper case).
fn cap_names(list: &Value) -> BTreeSet<String> {
    list.as_array()
        .expect("a list of capabilities")
        .iter()
        .map(|c| {
            let name = c.as_str().expect("a capability name").to_ascii_uppercase();
            if name.starts_with("CAP_") {
                name
            } else {
                format!("CAP_{name}")
            }
        })
        .collect()
}

/// The capabilities `setcap` gives the binary in deploy/Containerfile.
fn image_capabilities() -> BTreeSet<String> {
    let file = std::fs::read_to_string(repo_root().join("deploy/Containerfile"))
        .expect("reading deploy/Containerfile");
    let setcaps: Vec<&str> = file
        .lines()
        .map(str::trim)
        .filter(|l| l.starts_with("setcap "))
        .collect();
    assert_eq!(
        setcaps.len(),
        1,
        "one setcap in the Containerfile: {setcaps:?}"
    );
    let spec = setcaps[0]
        .split('\'')
        .nth(1)
        .expect("setcap's capability list in single quotes");
    let list = spec
        .strip_suffix("+ep")
        .expect("the capabilities are permitted and effective (+ep)");
    list.split(',')
        .map(|c| c.trim().to_ascii_uppercase())
        .collect()
}

#[test]
fn unit_daemonset_and_image_grant_the_same_capabilities_and_nothing_privileged() {
    let test = "unit_daemonset_and_image_grant_the_same_capabilities_and_nothing_privileged";
    let unit = std::fs::read_to_string(unit_path()).expect("reading deploy/systemd/ember.service");
    let ambient = unit_capabilities(&unit, "AmbientCapabilities");
    let bounding = unit_capabilities(&unit, "CapabilityBoundingSet");
    assert!(!ambient.is_empty(), "the unit grants capabilities");
    assert_eq!(
        ambient, bounding,
        "the unit's ambient and bounding sets are the same: nothing held that is not used"
    );
    assert!(
        !ambient.contains("CAP_SYS_ADMIN"),
        "CAP_SYS_ADMIN is what the capability set replaces"
    );

    let Some(docs) = yaml_documents(test, &kubernetes_dir().join("daemonset.yaml")) else {
        return;
    };
    let daemonsets: Vec<&Value> = docs.iter().filter(|d| d["kind"] == "DaemonSet").collect();
    assert_eq!(daemonsets.len(), 1, "daemonset.yaml holds one DaemonSet");
    let pod = &daemonsets[0]["spec"]["template"]["spec"];
    assert_eq!(pod["hostPID"], true, "the agent sees the node's processes");
    assert_ne!(
        pod["securityContext"]["runAsUser"], 0,
        "the agent is not root"
    );
    assert_eq!(pod["securityContext"]["runAsNonRoot"], true);

    let all = containers(pod);
    assert!(!all.is_empty());
    for c in &all {
        let name = &c["name"];
        let sc = &c["securityContext"];
        assert_ne!(sc["privileged"], true, "container {name} is privileged");
        assert_eq!(
            cap_names(&sc["capabilities"]["drop"]),
            BTreeSet::from(["CAP_ALL".to_owned()]),
            "container {name} drops every capability it does not add"
        );
        assert_eq!(sc["readOnlyRootFilesystem"], true, "container {name}");
    }
    let agent: Vec<&&Value> = all.iter().filter(|c| c["name"] == "agent").collect();
    assert_eq!(agent.len(), 1, "one container named `agent`");
    let granted = cap_names(&agent[0]["securityContext"]["capabilities"]["add"]);
    assert_eq!(
        granted, ambient,
        "deploy/kubernetes/daemonset.yaml and deploy/systemd/ember.service grant the same capabilities"
    );
    assert_eq!(
        image_capabilities(),
        ambient,
        "the image's file capabilities (deploy/Containerfile) are the set the DaemonSet adds"
    );
    // What Ember itself says it needs (`ember doctor --json`, from the probe's list) and what
    // the README tells a person to setcap are that set too.
    let out = Command::new(env!("CARGO_BIN_EXE_ember"))
        .args(["doctor", "--json"])
        .output()
        .expect("running ember doctor --json");
    let doctor: Value = serde_json::from_slice(&out.stdout).expect("doctor prints JSON");
    let named: BTreeSet<String> = doctor["privileges"]
        .as_array()
        .expect("a privileges list")
        .iter()
        .filter_map(|p| p["name"].as_str().map(str::to_owned))
        .collect();
    assert_eq!(
        named, ambient,
        "ember doctor's privileges are the unit's set"
    );
    let readme = std::fs::read_to_string(repo_root().join("README.md")).expect("README.md");
    let setcap: BTreeSet<String> = readme
        .lines()
        .find_map(|l| l.trim().strip_prefix("sudo setcap "))
        .and_then(|l| l.split_whitespace().next())
        .and_then(|l| l.strip_suffix("+ep"))
        .expect("the README's setcap line")
        .split(',')
        .map(str::to_ascii_uppercase)
        .collect();
    assert_eq!(
        setcap, ambient,
        "the README's setcap line grants the unit's set"
    );
    // The only other container hands the store to the agent's user, and nothing more.
    for c in all.iter().filter(|c| c["name"] != "agent") {
        let added = cap_names(&c["securityContext"]["capabilities"]["add"]);
        assert!(
            added.is_subset(&BTreeSet::from([
                "CAP_CHOWN".to_owned(),
                "CAP_FOWNER".to_owned()
            ])),
            "container {} adds {added:?}",
            c["name"]
        );
        assert_eq!(c["securityContext"]["allowPrivilegeEscalation"], false);
    }
}
