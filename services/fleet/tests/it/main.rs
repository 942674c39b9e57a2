//! The fleet role against a real store.
