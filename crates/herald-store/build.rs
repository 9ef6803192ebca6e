//! Rebuilds the crate when a migration is added: `sqlx::migrate!` embeds
//! the files it found, but Cargo only watches the ones already included.

fn main() {
    println!("cargo:rerun-if-changed=migrations");
}
