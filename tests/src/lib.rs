//! Helpers for the end-to-end tests: paths to the built binaries, the shared
//! fixtures and scripts, and guards that clean up mounts and processes.
