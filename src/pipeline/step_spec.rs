//! The `spec` of Run and Background steps.

use super::fields::{self, check_identifier, list, number_setting, one_of, Fields};
use super::location::{Diagnostics, DocPath};
use super::model::{
    Limits, OutputType, OutputVariable, PortBinding, PullPolicy, Setting, Shell, StepKind,
    StepSpec, Str,
};
use super::yaml::Node;

const COMMON_FIELDS: &[&str] = &[
    "connectorRef",
    "image",
    "shell",
    "command",
    "envVariables",
    "privileged",
    "runAsUser",
    "imagePullPolicy",
    "resources",
    "reports",
];
const RUN_ONLY: &[&str] = &["outputVariables", "registryRef", "outputAlias"];
const BACKGROUND_ONLY: &[&str] = &["entrypoint", "portBindings"];

const SHELLS: &[(&str, Shell)] = &[
    ("Sh", Shell::Sh),
    ("Bash", Shell::Bash),
    ("Powershell", Shell::Powershell),
    ("Pwsh", Shell::Pwsh),
    ("Python", Shell::Python),
];

const PULL_POLICIES: &[(&str, PullPolicy)] = &[
    ("Always", PullPolicy::Always),
    ("Never", PullPolicy::Never),
    ("IfNotPresent", PullPolicy::IfNotPresent),
];

pub fn step_spec(
    d: &mut Diagnostics,
    node: &Node,
    path: &DocPath,
    kind: StepKind,
) -> Option<StepSpec> {
    let (own, other, kind_name) = match kind {
        StepKind::Run => (RUN_ONLY, BACKGROUND_ONLY, "Run"),
        StepKind::Background => (BACKGROUND_ONLY, RUN_ONLY, "Background"),
    };
    // Fields of the other kind get their own error below, not a warning.
    let known: Vec<&str> = COMMON_FIELDS
        .iter()
        .chain(own)
        .chain(other)
        .copied()
        .collect();
    let f = Fields::of(d, node, path, &format!("a {kind_name} step `spec`"), &known)?;
    for key in other {
        if let Some(e) = f.entry(key) {
            let what = match *key {
                "entrypoint" | "portBindings" => "Background",
                _ => "Run",
            };
            d.error_hint(
                e.key_loc,
                &path.key(key),
                format!("`{key}` is only allowed on {what} steps, not on {kind_name} steps"),
                format!("remove `{key}` or make this a {what} step"),
            );
        }
    }
    let mut spec = StepSpec {
        connector_ref: f.string(d, "connectorRef"),
        image: f.string(d, "image"),
        command: f
            .string(d, "command")
            .filter(|c| !c.value.trim().is_empty()),
        ..StepSpec::default()
    };
    if let Some((n, p)) = f.get("shell") {
        spec.shell = one_of(d, n, &p, "shell", SHELLS).unwrap_or_default();
    }
    if let Some((n, p)) = f.get("envVariables") {
        spec.env = fields::string_map(d, n, &p);
    }
    if let Some((n, p)) = f.get("privileged") {
        spec.privileged = fields::bool_setting(d, n, &p);
    }
    if let Some((n, p)) = f.get("runAsUser") {
        spec.run_as_user = number_setting(d, n, &p, "runAsUser");
    }
    if let Some((n, p)) = f.get("imagePullPolicy") {
        spec.image_pull_policy = one_of(d, n, &p, "image pull policy", PULL_POLICIES);
    }
    if let Some((n, p)) = f.get("resources") {
        spec.limits = resources(d, n, &p);
    }
    if let Some((n, p)) = f.get("reports") {
        spec.reports = reports(d, n, &p);
    }
    if kind == StepKind::Background {
        if let Some((n, p)) = f.get("entrypoint") {
            spec.entrypoint = fields::string_list(d, n, &p);
        }
        if let Some((n, p)) = f.get("portBindings") {
            spec.port_bindings = port_bindings(d, n, &p);
        }
    } else if let Some((n, p)) = f.get("outputVariables") {
        spec.output_variables = output_variables(d, n, &p);
    }
    if spec.image.is_none() && spec.command.is_none() && spec.entrypoint.is_empty() {
        d.error_hint(
            node.loc,
            path,
            format!("this {kind_name} step has nothing to run: no `command` and no `image`"),
            "add a `command`, or an `image` whose entrypoint does the work",
        );
    }
    Some(spec)
}

fn reports(d: &mut Diagnostics, node: &Node, path: &DocPath) -> Vec<Str> {
    let Some(f) = Fields::of(d, node, path, "`reports`", &["type", "spec"]) else {
        return Vec::new();
    };
    if let Some((n, p)) = f.get("type") {
        one_of(d, n, &p, "report type", &[("JUnit", ())]);
    }
    f.get("spec")
        .and_then(|(n, p)| Fields::of(d, n, &p, "`reports.spec`", &["paths"]))
        .and_then(|s| s.get("paths").map(|(n, p)| fields::string_list(d, n, &p)))
        .unwrap_or_default()
}

fn output_variables(d: &mut Diagnostics, node: &Node, path: &DocPath) -> Vec<OutputVariable> {
    let mut out = Vec::new();
    for (i, item) in list(d, node, path, "`outputVariables`").iter().enumerate() {
        let p = path.index(i);
        let Some(f) = Fields::of(
            d,
            item,
            &p,
            "an output variable",
            &["name", "type", "value"],
        ) else {
            continue;
        };
        let Some(name) = f.required(d, "name", "an output variable") else {
            continue;
        };
        check_identifier(d, &name, &p.key("name"), "output variable name");
        let kind = f
            .get("type")
            .and_then(|(n, tp)| {
                one_of(
                    d,
                    n,
                    &tp,
                    "output variable type",
                    &[
                        ("String", OutputType::String),
                        ("Secret", OutputType::Secret),
                    ],
                )
            })
            .unwrap_or_default();
        out.push(OutputVariable {
            name,
            kind,
            value: f.string(d, "value"),
        });
    }
    out
}

fn port(d: &mut Diagnostics, s: &Str, path: &DocPath, side: &str) -> Option<Setting<u16>> {
    if s.is_expression() {
        return Some(Setting::Expr(s.clone()));
    }
    match s.value.trim().parse::<u16>() {
        Ok(p) if p > 0 => Some(Setting::Value(p)),
        _ => {
            d.error_hint(
                s.loc,
                path,
                format!("{side} port `{}` is not a port number", s.value),
                "ports are whole numbers from 1 to 65535",
            );
            None
        }
    }
}

/// `portBindings`: host port -> container port.
fn port_bindings(d: &mut Diagnostics, node: &Node, path: &DocPath) -> Vec<PortBinding> {
    let mut out = Vec::new();
    for (host, container) in fields::string_map(d, node, path) {
        let p = path.key(&host.value);
        let h = port(d, &host, &p, "host");
        let c = port(d, &container, &p, "container");
        if let (Some(host_port), Some(container_port)) = (h, c) {
            out.push(PortBinding {
                host: host_port,
                container: container_port,
                loc: host.loc,
            });
        }
    }
    out
}

fn resources(d: &mut Diagnostics, node: &Node, path: &DocPath) -> Limits {
    let mut limits = Limits::default();
    let Some(f) = Fields::of(d, node, path, "`resources`", &["limits", "requests"]) else {
        return limits;
    };
    let Some((n, p)) = f.get("limits") else {
        return limits;
    };
    let Some(l) = Fields::of(d, n, &p, "`resources.limits`", &["memory", "cpu"]) else {
        return limits;
    };
    if let Some(m) = l.string(d, "memory") {
        limits.memory_bytes = quantity(
            d,
            &m,
            &p.key("memory"),
            parse_memory,
            "memory limit",
            "such as `500Mi` or `2Gi`",
        );
    }
    if let Some(c) = l.string(d, "cpu") {
        limits.cpu_millis = quantity(
            d,
            &c,
            &p.key("cpu"),
            parse_cpu,
            "cpu limit",
            "such as `400m`, `0.5` or `2`",
        );
    }
    limits
}

fn quantity(
    d: &mut Diagnostics,
    s: &Str,
    path: &DocPath,
    parse: fn(&str) -> Option<u64>,
    what: &str,
    example: &str,
) -> Option<Setting<u64>> {
    if s.is_expression() {
        return Some(Setting::Expr(s.clone()));
    }
    match parse(s.value.trim()) {
        Some(v) if v > 0 => Some(Setting::Value(v)),
        _ => {
            d.error_hint(
                s.loc,
                path,
                format!("{what} `{}` is not a valid quantity", s.value),
                format!("write it as Kubernetes does, {example}"),
            );
            None
        }
    }
}

/// Kubernetes memory quantities: `500Mi`, `1Gi`, `512M`, `1000000`.
pub fn parse_memory(s: &str) -> Option<u64> {
    let split = s
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let n: f64 = num.parse().ok()?;
    let factor: f64 = match unit {
        "" => 1.0,
        "K" | "k" => 1e3,
        "M" => 1e6,
        "G" => 1e9,
        "T" => 1e12,
        "Ki" => 1024.0,
        "Mi" => 1024.0 * 1024.0,
        "Gi" => 1024.0 * 1024.0 * 1024.0,
        "Ti" => 1024.0 * 1024.0 * 1024.0 * 1024.0,
        _ => return None,
    };
    let bytes = n * factor;
    (bytes.is_finite() && bytes < u64::MAX as f64).then_some(bytes as u64)
}

/// CPU quantities in millicores: `400m`, `0.5`, `2`.
pub fn parse_cpu(s: &str) -> Option<u64> {
    if let Some(m) = s.strip_suffix('m') {
        return m.parse().ok();
    }
    let cores: f64 = s.parse().ok()?;
    (cores.is_finite() && cores > 0.0 && cores < 1e9).then_some((cores * 1000.0).round() as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn memory_and_cpu_quantities() {
        let mem = [
            ("500Mi", Some(524_288_000)),
            ("1Gi", Some(1 << 30)),
            ("512M", Some(512_000_000)),
            ("1000", Some(1000)),
            ("lots", None),
            ("5Xi", None),
        ];
        for (s, want) in mem {
            assert_eq!(parse_memory(s), want, "{s}");
        }
        let cpu = [
            ("400m", Some(400)),
            ("0.5", Some(500)),
            ("1", Some(1000)),
            ("2.25", Some(2250)),
            ("x", None),
            ("-1", None),
        ];
        for (s, want) in cpu {
            assert_eq!(parse_cpu(s), want, "{s}");
        }
    }
}
