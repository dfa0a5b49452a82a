//! Config file (TOML): store path, registries, mirrors, credentials, connectors, secrets.
