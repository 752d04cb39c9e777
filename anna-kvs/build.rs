//! Compiles the one C file: INCRBYFLOAT's `long double` arithmetic (see
//! `src/redis/long_double.rs`).

fn main() {
    println!("cargo:rerun-if-changed=csrc/long_double.c");
    cc::Build::new().file("csrc/long_double.c").warnings(true).compile("anna_long_double");
}
