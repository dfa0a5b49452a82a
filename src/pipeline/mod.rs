//! Harness CI pipeline YAML: raw parsing (`yaml`), validated model (`model`),
//! expressions (`expr`) and secrets (`secret`).

pub mod expr;
pub mod secret;
