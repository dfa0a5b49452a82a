//! End to end through the public API: config `[secrets]`, `--secret` and a
//! secrets file feed the store; a step command renders with the secrets;
//! its output, streamed in odd-sized chunks, comes out masked.

use std::collections::BTreeMap;
use std::ffi::OsString;

use corral::config::Config;
use corral::pipeline::expr::{parse_template, render, MapScope, Reference};
use corral::pipeline::secret::{Masker, SecretStore, MASK};

#[test]
fn secrets_flow_from_sources_to_masked_output() {
    let dir = tempfile::tempdir().unwrap();
    let key_file = dir.path().join("deploy.key");
    std::fs::write(
        &key_file,
        "-----BEGIN KEY-----\nMIIEvQIBADANBg\n-----END KEY-----\n",
    )
    .unwrap();
    let config_file = dir.path().join("config.toml");
    std::fs::write(
        &config_file,
        "[secrets]\ndeploy_key = \"file:deploy.key\"\nunused = \"env:CORRAL_TEST_UNSET_VAR\"\n",
    )
    .unwrap();
    let dotenv = dir.path().join("secrets.env");
    std::fs::write(&dotenv, "export api_token=\"tok en/with&chars\"\n").unwrap();

    let config = Config::load(Some(&config_file)).unwrap();
    let env: BTreeMap<&str, &str> = [("GH_PAT", "ghp_0123456789abcdef")].into();
    let env = |name: &str| env.get(name).map(OsString::from);
    let mut store = SecretStore::load_with_env(
        &["account.gh=env:GH_PAT".to_string()],
        Some(&dotenv),
        &config.secrets,
        &env,
    )
    .unwrap();

    let command = parse_template(
        "curl -H 'Authorization: Bearer <+secrets.getValue(\"account.gh\")>' \\\n\
         --data-urlencode t=<+secrets.getValue('api_token')> <+pipeline.variables.url>\n\
         echo \"<+secrets.getValue('deploy_key')>\" | tr a-z A-Z",
    )
    .unwrap();
    // The runner reads the config-file sources a pipeline needs first.
    for r in command.references() {
        if let Reference::Secret { scope, id } = r {
            assert!(store.require_with_env(scope, &id, &env).unwrap(), "{id}");
        }
    }
    let mut scope = MapScope::new().with_secrets(&store);
    scope.set("pipeline.variables.url", "https://example.test/upload");
    let rendered = render(&command, &scope).unwrap();
    assert!(rendered.has_secret);
    assert!(rendered.text.contains("Bearer ghp_0123456789abcdef"));
    assert!(!format!("{rendered:?}").contains("ghp_0123"));

    let mut masker = store.masker();
    for s in &rendered.secret_values {
        masker.add(s.expose());
    }
    // What a script might print: the values raw, URL-encoded, JSON-escaped
    // (with `/` escaped too), and the key one line at a time.
    let output = "auth ghp_0123456789abcdef\n\
                  form t=tok%20en%2Fwith%26chars\n\
                  json {\"t\":\"tok en\\/with&chars\"} {\"k\":\"-----BEGIN KEY-----\\nMIIEvQIBADANBg\"}\n\
                  -----BEGIN KEY-----\nMIIEvQIBADANBg\n-----END KEY-----\n\
                  done\n";
    let mut stream = Masker::line_stream(&masker);
    let mut lines = Vec::new();
    for chunk in output.as_bytes().chunks(7) {
        lines.extend(stream.push(chunk));
    }
    lines.extend(stream.finish());
    let shown = lines.join("\n");
    for leak in [
        "ghp_0123",
        "tok en",
        "tok%20en",
        "MIIEvQ",
        "BEGIN KEY",
        "END KEY",
    ] {
        assert!(!shown.contains(leak), "{leak} leaked in:\n{shown}");
    }
    assert!(shown.contains(&format!("auth {MASK}")), "{shown}");
    assert!(shown.ends_with("done"), "{shown}");
    // The unused config entry was never read, so its unset variable is no error.
    assert!(store.ids().any(|id| id == "unused"));
}
