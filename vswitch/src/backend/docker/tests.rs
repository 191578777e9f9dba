//! Tests against the project's daemon (filled in below).
