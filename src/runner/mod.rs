//! Stage executor: turns validated pipelines into sandboxes, supervises them,
//! streams masked logs and reports results.
