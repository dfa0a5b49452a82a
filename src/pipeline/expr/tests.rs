use std::collections::BTreeMap;

use super::*;

mod conditions;
mod statuses;

pub(super) struct TestScope {
    values: BTreeMap<String, Value>,
    secrets: BTreeMap<String, String>,
}

impl TestScope {
    pub(super) fn new() -> Self {
        let s = |v: &str| Value::Str(v.to_string());
        let mut values = BTreeMap::new();
        for (k, v) in [
            ("pipeline.variables.branch", s("Main")),
            ("pipeline.variables.x", s("MiXeD")),
            ("pipeline.variables.versions", s("18,20,22")),
            ("pipeline.variables.stagename", s("ci")),
            ("pipeline.variables.flag", s("true")),
            ("pipeline.variables.count", s("3")),
            ("pipeline.variables.empty", s("")),
            ("pipeline.variables.dev_url", s("http://dev")),
            ("pipeline.variables.ENV", s("prod")),
            ("pipeline.identifier", s("ci_pipe")),
            ("pipeline.sequenceId", Value::Num(7.0)),
            ("pipeline.stages.ci.status", s("Success")),
            ("stage.variables.name", s("dev_url")),
            ("stage.identifier", s("build")),
            ("step.identifier", s("Run_1")),
            ("steps.Run_1.output.outputVariables.types", s("A,B,C")),
            ("codebase.branch", s("feature/x")),
            ("matrix.nodeVersion", s("20")),
            ("strategy.iteration", Value::Num(2.0)),
            ("strategy.iterations", Value::Num(5.0)),
            ("trigger.branch", s("main")),
            ("trigger.prLabels", Value::Null),
        ] {
            values.insert(k.to_string(), v);
        }
        let mut secrets = BTreeMap::new();
        secrets.insert("token".to_string(), "s3cr3t-Value".to_string());
        secrets.insert("account.gh".to_string(), "acct-secret".to_string());
        secrets.insert("org.vault/prod#id".to_string(), "vaulted".to_string());
        TestScope { values, secrets }
    }
}

impl Scope for TestScope {
    fn lookup(&self, path: &[String]) -> Option<Value> {
        self.values.get(&path.join(".")).cloned()
    }
    fn secret(&self, scope: SecretScope, id: &str) -> Option<String> {
        let key = match scope {
            SecretScope::Project => id.to_string(),
            SecretScope::Org => format!("org.{id}"),
            SecretScope::Account => format!("account.{id}"),
        };
        self.secrets.get(&key).cloned()
    }
}

fn render_str(src: &str) -> Result<String, ExprError> {
    let t = parse_template(src)?;
    Ok(render(&t, &TestScope::new())?.text)
}

#[test]
fn renders_templates() {
    let cases: &[(&str, &str)] = &[
        ("plain text, no expressions", "plain text, no expressions"),
        ("a > b < c", "a > b < c"),
        ("<+pipeline.variables.branch>", "Main"),
        ("x-<+pipeline.variables.branch>-y", "x-Main-y"),
        ("<+ pipeline.variables.branch >", "Main"),
        ("<+pipeline.sequenceId>", "7"),
        ("v<+pipeline.sequenceId>.<+pipeline.sequenceId>", "v7.7"),
        (
            "<+pipeline.identifier>/<+stage.identifier>/<+step.identifier>",
            "ci_pipe/build/Run_1",
        ),
        ("<+steps.Run_1.output.outputVariables.types>", "A,B,C"),
        ("<+codebase.branch>", "feature/x"),
        ("setup_<+matrix.nodeVersion>.x", "setup_20.x"),
        ("<+strategy.iteration + 1>", "3"),
        ("<+strategy.iterations>", "5"),
        ("<+strategy.iteration * 2 - 1>", "3"),
        ("<+pipeline.variables.count + 1>", "4"),
        ("<+pipeline.variables.branch + \"-x\">", "Main-x"),
        ("<+pipeline.variables.x.toLowerCase()>", "mixed"),
        ("<+pipeline.variables.x.toUpperCase()>", "MIXED"),
        ("<+pipeline.variables.x.length()>", "5"),
        ("<+pipeline.variables.x.contains(\"Xe\")>", "true"),
        ("<+pipeline.variables.x.startsWith('Mi')>", "true"),
        ("<+pipeline.variables.x.endsWith('Mi')>", "false"),
        ("<+pipeline.variables.x.replace('X', 'x')>", "MixeD"),
        ("<+pipeline.variables.x.concat('!')>", "MiXeD!"),
        ("<+pipeline.variables.versions.split(\",\")[1]>", "20"),
        (
            "<+pipeline.variables.versions.split(\",\")>",
            "[18, 20, 22]",
        ),
        ("<+pipeline.variables.versions.split(',').length()>", "3"),
        ("<+pipeline.variables.x.substring(1, 3)>", "iX"),
        (
            "<+pipeline.variables.x.toLowerCase().toUpperCase()>",
            "MIXED",
        ),
        ("<+'lit'>", "lit"),
        ("<+\"a\\\"b\">", "a\"b"),
        ("<+(pipeline.sequenceId > 5)>", "true"),
        ("<+pipeline.variables.flag == 'true' ? 'yes' : 'no'>", "yes"),
        // nested expressions
        ("<+<+pipeline.variables.x>.toLowerCase()>", "mixed"),
        (
            "<+pipeline.variables.<+stage.variables.name>>",
            "http://dev",
        ),
        (
            "<+pipeline.stages.<+pipeline.variables.stagename>.status>",
            "Success",
        ),
        // the `<path>` form of file 053
        (
            "<+pipeline.stages.<pipeline.variables.stagename>.status>",
            "Success",
        ),
        // `<+X>.split(',')` as a whole field (file 051's matrix axis)
        (
            "<+steps.Run_1.output.outputVariables.types>.split(',')",
            "[A, B, C]",
        ),
        // elsewhere a trailing `.name` is text
        ("<+pipeline.variables.versions>.split(',')[2]", "22"),
        ("x[0] <+pipeline.variables.branch>[0]", "x[0] Main[0]"),
        ("<+pipeline.variables.branch>.txt", "Main.txt"),
        (
            "<+pipeline.variables.branch>.split(',') and more",
            "Main.split(',') and more",
        ),
        // runtime inputs with defaults
        ("<+input>.default(qa).allowedValues(qa,dev,prod)", "qa"),
        ("<+input>.default(1)", "1"),
        (
            "<+input>.default(mcrecruits.run.tags.TagsSimulation)",
            "mcrecruits.run.tags.TagsSimulation",
        ),
        ("<+input>.default([\"usw\",\"use\"])", "[usw, use]"),
        ("<+input>.default('a, b')", "a, b"),
        ("<+input>.default(main).executionInput()", "main"),
        (
            "unicode é <+pipeline.variables.branch> ü",
            "unicode é Main ü",
        ),
    ];
    let mut failures = Vec::new();
    for (src, want) in cases {
        match render_str(src) {
            Ok(got) if got == *want => {}
            other => failures.push(format!("{src:?}: want {want:?}, got {other:?}")),
        }
    }
    assert!(
        failures.is_empty(),
        "{} failures:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

#[test]
fn renders_secrets_and_reports_them() {
    let cases: &[(&str, &str)] = &[
        ("Bearer <+secrets.getValue('token')>", "Bearer s3cr3t-Value"),
        ("<+secrets.getValue(\"token\")>", "s3cr3t-Value"),
        ("<+secrets.getValue(\"account.gh\")>", "acct-secret"),
        (
            "<+secrets.getValue(\"org.vault/<+pipeline.variables.ENV>#id\")>",
            "vaulted",
        ),
        ("<+secrets.getValue('token').toLowerCase()>", "s3cr3t-value"),
    ];
    for (src, want) in cases {
        let t = parse_template(src).unwrap();
        let r = render(&t, &TestScope::new()).unwrap();
        assert_eq!(r.text, *want, "{src}");
        assert!(r.has_secret, "{src}");
        assert!(
            r.secret_values.iter().any(|s| r.text.contains(s.expose())),
            "{src}: the rendered secret must be listed for masking"
        );
        let debug = format!("{r:?}");
        assert!(
            !debug.contains(want.trim_start_matches("Bearer ")),
            "{src}: {debug}"
        );
    }
    let plain = render(
        &parse_template("<+pipeline.variables.x>").unwrap(),
        &TestScope::new(),
    )
    .unwrap();
    assert!(!plain.has_secret);
}

#[test]
fn rejects_malformed_templates_with_offsets() {
    // (source, byte offset of the error, words the message must contain)
    let cases: &[(&str, usize, &str)] = &[
        ("abc <+pipeline.variables.x", 4, "unclosed `<+`"),
        ("<+", 0, "unclosed"),
        ("ab<+>", 2, "empty expression"),
        ("<+ >", 0, "empty expression"),
        ("<+secrets.getValue('x)>", 19, "unterminated string"),
        ("<+secrets.getValue(\"x')>", 19, "unterminated string"),
        (
            "<+pipeline.variables.x.frobnicate()>",
            23,
            "unknown method `frobnicate()`",
        ),
        (
            "<+pipeline.variables.x.toLowerCase(1)>",
            23,
            "takes 0 argument",
        ),
        (
            "<+pipeline.variables.x.replace('a')>",
            23,
            "takes 2 argument",
        ),
        ("<+secrets.getValue()>", 10, "one quoted secret id"),
        ("<+secrets.getValue(token)>", 19, "quoted string"),
        ("<+secrets.getValue('')>", 19, "empty secret id"),
        ("<+foo.getValue('x')>", 6, "secrets.getValue"),
        ("<+a.>", 4, "expected a name"),
        ("<+a b>", 4, "expected `>`"),
        ("<+a == >", 7, "expected a value"),
        ("<+a = 1>", 4, "expected `>`"),
        ("<+var x = 1; return x>", 2, "JEXL scripts"),
        (
            "<+ var x=[...];for (i: [0,1]) { x.add(i);}; return x.toString()>",
            3,
            "JEXL scripts",
        ),
        ("<+eventPayload.commits[]>", 23, "expected a value"),
        ("<+eventPayload.commits[0>", 22, "unclosed `[`"),
        ("<+eventPayload.commits[0 1]>", 25, "expected `]`"),
        ("<+(a>", 2, "unclosed `(`"),
        ("<+input>.frob(1)", 8, "unknown runtime input modifier"),
        ("<+input>.default(a", 8, "unclosed `(`"),
        ("<+input>.default(a,b)", 8, "exactly one value"),
        ("x <+a.b.<c.d>", 2, "unclosed `<+`"),
        ("<+1abc>", 2, "cannot start with a digit"),
        ("<+a ? b>", 7, "expected `:`"),
        ("<+<+a>.b>", 7, "property `b` of a computed value"),
        ("<+a === b>", 4, "`===`"),
    ];
    let mut failures = Vec::new();
    for (src, offset, words) in cases {
        match parse_template(src) {
            Err(e @ ExprError::Parse { .. })
                if e.offset() == *offset && e.to_string().contains(words) => {}
            other => failures.push(format!(
                "{src:?}: want offset {offset} {words:?}, got {other:?}"
            )),
        }
    }
    assert!(
        failures.is_empty(),
        "{} failures:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

#[test]
fn evaluation_errors_name_the_reference() {
    let scope = TestScope::new();
    let cases: &[(&str, &str, usize)] = &[
        (
            "x <+pipeline.variables.nope>",
            "unknown reference `pipeline.variables.nope`",
            4,
        ),
        (
            "<+secrets.getValue('missing')>",
            "secret `missing` was not given",
            2,
        ),
        (
            "<+secrets.getValue('org.missing')>",
            "secret `org.missing` was not given",
            2,
        ),
        ("<+input>", "needs a value", 2),
        ("<+input>.allowedValues(a,b)", "needs a value", 2),
        (
            "<+pipeline.variables.versions.split(',')[7]>",
            "out of range",
            2,
        ),
        ("<+pipeline.variables.x[0]>", "only lists", 2),
        ("<+pipeline.sequenceId / 0>", "division by zero", 2),
        (
            "<+pipeline.variables.<+stage.variables.nope>>",
            "unknown reference `stage.variables.nope`",
            23,
        ),
        // a path or id computed from a secret does not show the secret
        (
            "<+pipeline.variables.<+secrets.getValue('token')>>",
            "unknown reference `pipeline.variables.**************`",
            2,
        ),
        (
            "<+secrets.getValue(\"<+secrets.getValue('token')>\")>",
            "secret `**************` was not given",
            2,
        ),
    ];
    for (src, words, offset) in cases {
        let t = parse_template(src).unwrap();
        let err = render(&t, &scope).unwrap_err();
        assert!(err.to_string().contains(words), "{src}: {err}");
        assert_eq!(err.offset(), *offset, "{src}: {err}");
    }
}

#[test]
fn lists_references() {
    let t = parse_template(
        "<+pipeline.variables.a> <+secrets.getValue('account.tok')> <+input> \
         <+steps.s1.output.outputVariables.v.toLowerCase()> <+pipeline.variables.<+stage.variables.n>> \
         <+secrets.getValue(\"org.x<+matrix.k>\")> <+pipeline.variables.a>",
    )
    .unwrap();
    let p = |s: &str| Reference::Path(s.split('.').map(String::from).collect());
    assert_eq!(
        t.references(),
        vec![
            p("pipeline.variables.a"),
            Reference::Secret {
                scope: SecretScope::Account,
                id: "tok".into()
            },
            Reference::Input,
            p("steps.s1.output.outputVariables.v"),
            p("stage.variables.n"),
            p("matrix.k"),
        ]
    );
    let c = parse_condition("<+trigger.branch> == 'main' && codebase.branch != null").unwrap();
    assert_eq!(
        c.references(),
        vec![p("trigger.branch"), p("codebase.branch")]
    );
}

#[test]
fn input_spec_of_runtime_inputs() {
    let t = parse_template("<+input>.default(qa).allowedValues(qa,dev,prod)").unwrap();
    let spec = t.as_input().unwrap();
    assert_eq!(spec.default.as_deref(), Some("qa"));
    assert_eq!(spec.allowed, vec!["qa", "dev", "prod"]);
    assert!(!spec.execution_input);
    let t = parse_template("<+input>.executionInput()").unwrap();
    assert!(t.as_input().unwrap().execution_input);
    assert!(parse_template("x <+input>").unwrap().as_input().is_none());
    assert!(parse_template("no expr").unwrap().is_literal());
}

#[test]
fn evaluates_typed_values() {
    let scope = TestScope::new();
    let v = evaluate(
        &parse_template("<+pipeline.variables.versions.split(\",\")>").unwrap(),
        &scope,
    )
    .unwrap();
    assert_eq!(
        v,
        Value::List(vec![
            Value::Str("18".into()),
            Value::Str("20".into()),
            Value::Str("22".into())
        ])
    );
    let v = evaluate(
        &parse_template("<+input>.default([\"usw\",\"use\"])").unwrap(),
        &scope,
    )
    .unwrap();
    assert_eq!(
        v,
        Value::List(vec![Value::Str("usw".into()), Value::Str("use".into())])
    );
    let v = evaluate(
        &parse_template("<+strategy.iteration + 1>").unwrap(),
        &scope,
    )
    .unwrap();
    assert_eq!(v, Value::Num(3.0));
    let v = evaluate(&parse_template("a<+strategy.iteration>").unwrap(), &scope).unwrap();
    assert_eq!(v, Value::Str("a2".into()));
}

#[test]
fn line_col_counts_characters() {
    let src = "a\nbé<+x";
    assert_eq!(line_col(src, 0), (1, 1));
    assert_eq!(line_col(src, 2), (2, 1));
    assert_eq!(line_col(src, 5), (2, 3));
    assert_eq!(line_col(src, 999), (2, 6));
}

#[test]
fn parses_every_expression_of_the_corpus_files_we_support() {
    // Real fields from /work/shared/corpus/harness-real.
    for src in [
        "<+pipeline.variables.RUNNER_IMAGE_REPO>:<+pipeline.variables.GO_VERSION>-tf<+pipeline.variables.TERRAFORM_VERSION>",
        "<+secrets.getValue(\"org.hashicorpvault://vault<+pipeline.stages.build.variables.ENV>/testops/manual/teams/platform/auth-test#ClientId\")>",
        "Gatling:::<+pipeline.stages.build.spec.execution.steps.Send_Gatling_results_to_bucket_using_OIDC.output.outputVariables.perfLink>",
        "<+input>.default(TRUE).allowedValues(TRUE,FALSE)",
        "-d '{\"state\":\"pending\",\"target_url\":\"<+pipeline.execution.url>\",\"description\":\"Is running <+step.identifier>\"}'",
        "<+pipeline.stages.DetermineMatrix.spec.execution.steps.Run_1.output.outputVariables.types>.split(',')",
        "<+execution.steps.SG.steps.ID.output.outputVariables.V>",
        "<+pipeline.variables.nodeVersions.split(\",\")>",
        "echo <+repeat.item>",
        "<+account.identifier>/<+org.identifier>",
    ] {
        parse_template(src).unwrap_or_else(|e| panic!("{src}: {e}"));
    }
    for src in [
        "(<+trigger.branch> == \"main\" || (<+trigger.prLabels> != null && <+trigger.prLabels>.contains(\"load-test\")))",
        "<+pipeline.variables.mvnTestCompileOnly> == \"false\"",
        "<+trigger.branch> != \"main\"",
    ] {
        parse_condition(src).unwrap_or_else(|e| panic!("{src}: {e}"));
    }
}

#[test]
fn deep_nesting_is_an_error_not_a_crash() {
    for src in [
        format!("<+{}1{}>", "(".repeat(10_000), ")".repeat(10_000)),
        format!("<+{}x>", "!".repeat(10_000)),
        format!("{}x{}", "<+".repeat(10_000), ">".repeat(10_000)),
        format!("<+'{}'>", "<+'".repeat(10_000)),
    ] {
        let err = parse_template(&src).unwrap_err();
        assert!(err.to_string().contains("nests deeper"), "{err}");
    }
    let err = parse_condition(&"(".repeat(10_000)).unwrap_err();
    assert!(err.to_string().contains("nests deeper"), "{err}");
    // Ordinary depth is fine.
    let src = format!("<+{}1{}>", "(".repeat(20), ")".repeat(20));
    assert_eq!(render_str(&src).unwrap(), "1");
}

/// Random text over the characters that matter to the parser: it must
/// never panic, and whatever parses must render without panicking.
#[test]
fn random_input_never_panics() {
    const ALPHABET: &[&str] = &[
        "<+",
        ">",
        "<",
        "(",
        ")",
        "[",
        "]",
        "{",
        "}",
        "'",
        "\"",
        "\\",
        ".",
        ",",
        "!",
        "=",
        "&&",
        "||",
        "?",
        ":",
        ";",
        " ",
        "é",
        "\n",
        "a",
        "input",
        "pipeline",
        "variables",
        "x",
        "secrets",
        "getValue",
        "toLowerCase",
        "split",
        "default",
        "1",
        "-",
        "+",
        "*",
        "/",
    ];
    let scope = TestScope::new();
    let mut rng = fastrand::Rng::with_seed(7);
    for _ in 0..20_000 {
        let len = rng.usize(0..24);
        let src: String = (0..len)
            .map(|_| ALPHABET[rng.usize(..ALPHABET.len())])
            .collect();
        if let Ok(t) = parse_template(&src) {
            let _ = render(&t, &scope);
            let _ = evaluate(&t, &scope);
            let _ = t.references();
        }
        if let Ok(c) = parse_condition(&src) {
            let _ = eval_condition(&c, &scope);
        }
        if let Err(e) = parse_template(&src) {
            assert!(e.offset() <= src.len(), "{src:?}: {e:?}");
            let _ = line_col(&src, e.offset());
        }
    }
}
