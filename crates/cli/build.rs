//! Build script: puts the version string, with the commit when built from
//! git, in `UPCASE_VERSION` for `upcase_cli::VERSION`.

#[path = "build_version.rs"]
mod build_version;

fn main() {
    let dir = std::path::PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR").unwrap_or_default());
    let pkg_version = std::env::var("CARGO_PKG_VERSION").unwrap_or_default();
    let described = build_version::describe(&dir, &pkg_version);
    println!("cargo:rustc-env=UPCASE_VERSION={}", described.version);
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-changed=build_version.rs");
    for path in described.watch {
        println!("cargo:rerun-if-changed={}", path.display());
    }
}
