//! end-to-end tests
