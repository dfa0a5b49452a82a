//! Every string field and `when.condition` of the real-pipeline corpus goes
//! through the expression parser: what we support parses, and what we
//! reject (JEXL scripts, malformed `eventPayload` probes) fails with an
//! offset inside the offending expression.

mod common;

use corral::pipeline::expr::{line_col, parse_condition, parse_template, ExprError};
use corral::pipeline::yaml;

fn strings(node: &yaml::Node, key: Option<&str>, out: &mut Vec<(Option<String>, String)>) {
    match &node.value {
        yaml::Value::Scalar(s) => out.push((key.map(String::from), s.text.clone())),
        yaml::Value::Seq(items) => items.iter().for_each(|v| strings(v, key, out)),
        yaml::Value::Map(entries) => {
            for entry in entries {
                // Keys may be expressions too (file 051 has one as a tag).
                out.push((None, entry.key.clone()));
                strings(&entry.value, Some(&entry.key), out);
            }
        }
    }
}

#[test]
fn corpus_expressions_parse_or_fail_clearly() {
    let Some(shared) = common::shared_dir() else {
        common::skip(
            "corpus_expressions_parse_or_fail_clearly",
            "no shared corpus",
        );
        return;
    };
    let dir = shared.join("corpus/harness-real");
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .collect();
    files.sort();
    assert!(files.len() >= 50, "corpus has {} files", files.len());
    let (mut templates, mut conditions) = (0, 0);
    let mut rejected = Vec::new();
    for file in &files {
        let name = file.file_name().unwrap().to_string_lossy().to_string();
        let text = std::fs::read_to_string(file).unwrap();
        let Ok(doc) = yaml::parse(&text) else {
            continue;
        };
        let mut out = Vec::new();
        strings(&doc.root, None, &mut out);
        for (key, s) in out {
            if key.as_deref() == Some("condition") {
                conditions += 1;
                parse_condition(&s).unwrap_or_else(|e| panic!("{name}: condition {s:?}: {e}"));
            }
            if !s.contains("<+") {
                continue;
            }
            templates += 1;
            match parse_template(&s) {
                Ok(_) => {}
                Err(e @ ExprError::Parse { .. }) => {
                    let (line, col) = line_col(&s, e.offset());
                    let line_text = s.lines().nth(line - 1).unwrap_or_default().to_string();
                    rejected.push(format!("{name}: {line}:{col}: {e} in {line_text:?}"));
                }
                Err(e) => panic!("{name}: parse gave a non-parse error {e}"),
            }
        }
    }
    assert!(templates > 100, "only {templates} templates found");
    assert!(conditions >= 8, "only {conditions} conditions found");
    // Only file 051 holds expressions we reject: JEXL scripts and
    // `eventPayload.commits[]{}` probes (in shell comments, which Harness
    // still evaluates).
    for r in &rejected {
        assert!(r.starts_with("051-"), "unexpected rejection: {r}");
    }
    eprintln!(
        "{templates} templates, {conditions} conditions, rejected:\n{}",
        rejected.join("\n")
    );
}
