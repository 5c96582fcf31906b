//! The fleet sync server.
