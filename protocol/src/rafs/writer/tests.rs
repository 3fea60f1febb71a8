//! Unit tests of the writers: structure checks on small synthetic trees.
