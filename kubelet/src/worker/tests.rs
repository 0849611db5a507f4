//! Unit tests of the pod worker on the fake runtime and the fake API.
