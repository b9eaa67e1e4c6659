//! Gives the linker the board's memory layout as `memory.x` (cortex-m-rt's
//! link.x includes it): `layouts/board.x` (the generic Cortex-M4F part) by
//! default, `layouts/qemu-mps2-an386.x` with feature `qemu`. The layouts
//! live in `layouts/` because the linker would find a `memory.x` in the
//! package directory before the one written here.

use std::{env, fs, path::PathBuf};

fn main() {
    let out = PathBuf::from(env::var_os("OUT_DIR").expect("OUT_DIR is set by cargo"));
    let layout = if env::var_os("CARGO_FEATURE_QEMU").is_some() {
        "layouts/qemu-mps2-an386.x"
    } else {
        "layouts/board.x"
    };
    fs::copy(layout, out.join("memory.x")).expect("the layouts are in layouts/");
    println!("cargo:rustc-link-search={}", out.display());
    println!("cargo:rerun-if-changed=layouts");
}
