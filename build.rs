//! Links the `corral` binary as a position-dependent executable: a PIE
//! makes the dynamic loader apply ~15,000 relative relocations and
//! copy-on-write ~60 pages at every start, a third of a millisecond on
//! each `corral exec`. Libraries, heap and stack stay randomized. The
//! trade-off is small: our only code beside sandboxed programs is init and
//! the stage holder, which parse nothing those programs send (they wait,
//! signal, and copy forwarded port bytes).
fn main() {
    if std::env::var("CARGO_CFG_TARGET_OS").as_deref() == Ok("linux") {
        println!("cargo:rustc-link-arg-bins=-no-pie");
    }
    println!("cargo:rerun-if-changed=build.rs");
    // An input of the link when scripts/build.sh orders functions: a new
    // list must relink the binary.
    println!("cargo:rerun-if-changed=scripts/exec-symbols.txt");
}
