//! Shell-word expansion with BuildKit's rules (placeholder, being written).
