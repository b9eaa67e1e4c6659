//! The committed C header is what cbindgen generates from the code today.

use std::path::PathBuf;

#[test]
fn header_is_current() {
    let crate_dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let config =
        cbindgen::Config::from_file(crate_dir.join("cbindgen.toml")).expect("cbindgen.toml parses");
    let mut generated = Vec::new();
    cbindgen::Builder::new()
        .with_crate(&crate_dir)
        .with_config(config)
        .generate()
        .expect("cbindgen generates the header")
        .write(&mut generated);
    let path = crate_dir.join("include/paywall_auth.h");
    if std::env::var_os("PAYWALL_AUTH_UPDATE_HEADER").is_some() {
        std::fs::write(&path, &generated).expect("header written");
        return;
    }
    let committed = std::fs::read(&path).unwrap_or_default();
    assert!(
        committed == generated,
        "{} is out of date with the code; regenerate it with\n\
         \n    PAYWALL_AUTH_UPDATE_HEADER=1 cargo test -p paywall-auth-ffi --test header\n\
         \nand commit the result.",
        path.display()
    );
}
