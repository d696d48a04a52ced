//! The remote store: the store port spoken over a framed byte stream.
