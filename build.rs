//! Generates `include/wsbroker.h` with cbindgen.
//!
//! The header is committed. A build writes a fresh generation to
//! `$OUT_DIR/wsbroker.h` (a unit test compares it with the committed one);
//! `WSB_UPDATE_HEADER=1` (`make header`) also rewrites `include/wsbroker.h`.

use std::env;
use std::path::PathBuf;

fn main() {
    let crate_dir = PathBuf::from(env::var("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR"));
    let out = PathBuf::from(env::var("OUT_DIR").expect("cargo sets OUT_DIR")).join("wsbroker.h");
    println!("cargo:rerun-if-changed=src/ffi");
    println!("cargo:rerun-if-changed=cbindgen.toml");
    println!("cargo:rerun-if-env-changed=WSB_UPDATE_HEADER");

    let mut config = cbindgen::Config::from_file(crate_dir.join("cbindgen.toml")).expect("cbindgen.toml is valid");
    let v = |k: &str| env::var(k).expect("cargo sets the version variables");
    let (major, minor, patch) = (
        v("CARGO_PKG_VERSION_MAJOR"),
        v("CARGO_PKG_VERSION_MINOR"),
        v("CARGO_PKG_VERSION_PATCH"),
    );
    let number = major.parse::<u32>().unwrap_or(0) * 10000
        + minor.parse::<u32>().unwrap_or(0) * 100
        + patch.parse::<u32>().unwrap_or(0);
    config.after_includes = Some(format!(
        "\n#define WSB_VERSION_MAJOR {major}\n#define WSB_VERSION_MINOR {minor}\n#define WSB_VERSION_PATCH {patch}\n\
         #define WSB_VERSION_STRING \"{major}.{minor}.{patch}\"\n#define WSB_VERSION_NUMBER {number}\n"
    ));
    let bindings = cbindgen::Builder::new()
        .with_crate(&crate_dir)
        .with_config(config)
        .generate()
        .expect("cbindgen could not generate the header");
    bindings.write_to_file(&out);
    if env::var("WSB_UPDATE_HEADER").is_ok_and(|v| v == "1") {
        bindings.write_to_file(crate_dir.join("include/wsbroker.h"));
    }
}
