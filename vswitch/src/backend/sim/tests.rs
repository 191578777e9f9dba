//! Tests of the sim backend.
