//! Data-driven tests of the shipped pack through the real Policy.
