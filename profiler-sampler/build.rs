//! Builds the eBPF program (`profiler-ebpf`) for the bpf target with the nightly toolchain
//! and bpf-linker, through aya-build, and leaves it in `OUT_DIR/ember-sampler` for
//! the loader's `include_bytes_aligned!`.
//!
//! With `AYA_BUILD_SKIP=1` (clippy and doc runs without the eBPF toolchain) an empty file
//! stands in for the object, and loading it fails at run time with a message that says how
//! to build Ember properly.
use anyhow::{Context as _, anyhow};

fn main() -> anyhow::Result<()> {
    let out_dir = std::env::var_os("OUT_DIR").context("OUT_DIR not set")?;
    let object = std::path::Path::new(&out_dir).join("ember-sampler");
    let skip =
        std::env::var("AYA_BUILD_SKIP").is_ok_and(|v| v == "1" || v.eq_ignore_ascii_case("true"));
    if skip {
        if !object.exists() {
            std::fs::write(&object, b"").context("writing the stub eBPF object")?;
        }
        println!("cargo:rerun-if-env-changed=AYA_BUILD_SKIP");
        return Ok(());
    }
    let metadata = cargo_metadata::MetadataCommand::new()
        .no_deps()
        .exec()
        .context("cargo metadata")?;
    let ebpf = metadata
        .packages
        .into_iter()
        .find(|p| p.name.as_str() == "profiler-ebpf")
        .ok_or_else(|| anyhow!("the `profiler-ebpf` package is missing from the workspace"))?;
    let root_dir = ebpf
        .manifest_path
        .parent()
        .context("profiler-ebpf has no directory")?
        .as_str()
        .to_owned();
    // aya-build watches the eBPF crate's own directory; the types it shares with userspace
    // live in profiler-common, and a change there (a map value's layout) must rebuild the
    // object too, or the loader meets maps of the old size.
    let common = metadata
        .workspace_root
        .join("profiler-common")
        .into_std_path_buf();
    println!("cargo:rerun-if-changed={}", common.display());
    // The nested nightly cargo's progress lines would each become a `cargo:warning`.
    // SAFETY: build scripts are single-threaded; nothing reads the environment concurrently.
    unsafe { std::env::set_var("CARGO_TERM_QUIET", "true") };
    aya_build::build_ebpf(
        [aya_build::Package {
            name: ebpf.name.as_str(),
            root_dir: &root_dir,
            ..Default::default()
        }],
        aya_build::Toolchain::default(),
    )
    .context(
        "building the eBPF program failed; run `scripts/bootstrap.sh` to install the nightly \
         toolchain with rust-src and bpf-linker",
    )
}
