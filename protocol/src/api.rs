//! Admin HTTP API bodies (reference §6.3 and §10), field names as upstream.
