//! Hardware behind traits, each with a simulator or replay implementation.
