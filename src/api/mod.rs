//! The operator API's wire types (JSON), shared by the server, the CLI and the tests.

pub mod changes;
