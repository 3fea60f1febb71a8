//! End-to-end tests of the server over a real unix socket.
