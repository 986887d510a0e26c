//! Prints the canonical tree of an unpacked root file system (see
//! `tests/it/support/tree.rs` for the format). scripts/record-oracle.sh runs it on
//! the oracles' images; the integration tests use the same code as a module.
//!
//! usage: cargo run --example tree -- ROOTFS

#[path = "../tests/it/support/tree.rs"]
mod tree;

fn main() {
    let Some(root) = std::env::args_os().nth(1) else {
        eprintln!("usage: tree ROOTFS");
        std::process::exit(2);
    };
    match tree::tree_of_image(std::path::Path::new(&root)) {
        Ok(t) => println!("{}", tree::tree_to_lines(&t)),
        Err(e) => {
            eprintln!("tree: cannot read {}: {e}", root.to_string_lossy());
            std::process::exit(1);
        }
    }
}
