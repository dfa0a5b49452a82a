//! Platform selection from multi-arch indexes: `os/arch[/variant]`,
//! normalised (`aarch64` → `arm64`, arm64 without variant ≡ `v8`, arm ≡
//! `v7`, amd64 `v1` ≡ no variant), with the fallbacks containerd applies:
//! a lower variant of the same architecture (amd64 v3 → v2 → v1, arm v7 →
//! v6 → v5, arm64 v9 → v8), then arm64 → arm/v7.

use std::fmt;

use serde::{Deserialize, Serialize};

use super::manifest::Descriptor;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum PlatformError {
    #[error("invalid platform {value:?}: expected os/arch[/variant], e.g. linux/arm64/v8")]
    Parse { value: String },
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Platform {
    pub os: String,
    pub architecture: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub variant: Option<String>,
}

impl Platform {
    pub fn parse(value: &str) -> Result<Self, PlatformError> {
        let parts: Vec<&str> = value.split('/').collect();
        let valid = (2..=3).contains(&parts.len())
            && parts.iter().all(|p| {
                !p.is_empty() && p.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
            });
        if !valid {
            return Err(PlatformError::Parse {
                value: value.to_string(),
            });
        }
        Ok(Platform {
            os: parts[0].to_ascii_lowercase(),
            architecture: parts[1].to_ascii_lowercase(),
            variant: parts.get(2).map(|v| v.to_ascii_lowercase()),
        }
        .normalized())
    }

    /// The platform of this process.
    pub fn host() -> Self {
        let (architecture, variant) = match std::env::consts::ARCH {
            "x86_64" => ("amd64", None),
            "aarch64" => ("arm64", Some("v8")),
            "arm" => ("arm", Some("v7")),
            "x86" => ("386", None),
            "powerpc64" => ("ppc64le", None),
            "s390x" => ("s390x", None),
            "riscv64" => ("riscv64", None),
            other => (other, None),
        };
        Platform {
            os: std::env::consts::OS.to_string(),
            architecture: architecture.to_string(),
            variant: variant.map(str::to_string),
        }
    }

    pub fn normalized(mut self) -> Self {
        self.architecture = match self.architecture.as_str() {
            "aarch64" => "arm64".to_string(),
            "x86_64" | "x86-64" => "amd64".to_string(),
            "i386" | "i686" => "386".to_string(),
            other => other.to_string(),
        };
        if self.variant.as_deref() == Some("") {
            self.variant = None;
        }
        match (self.architecture.as_str(), &self.variant) {
            ("arm64", None) => self.variant = Some("v8".to_string()),
            ("arm", None) => self.variant = Some("v7".to_string()),
            ("arm", Some(v)) if v == "7" || v == "6" || v == "5" => {
                self.variant = Some(format!("v{v}"))
            }
            ("amd64", Some(v)) if v == "v1" => self.variant = None,
            _ => {}
        }
        self
    }

    /// The variants this (normalised) platform runs, best first.
    pub fn variant_preference(&self) -> Vec<Option<String>> {
        let level = self
            .variant
            .as_deref()
            .and_then(|v| v.strip_prefix('v'))
            .and_then(|n| n.parse::<u32>().ok());
        let down_to = |lowest: u32, top: u32| -> Vec<Option<String>> {
            (lowest..=top)
                .rev()
                .map(|i| Some(format!("v{i}")))
                .collect()
        };
        match (self.architecture.as_str(), level) {
            ("amd64", Some(n)) if (2..=4).contains(&n) => {
                let mut out = down_to(2, n);
                out.push(None);
                out
            }
            ("arm", Some(n)) if (5..=8).contains(&n) => down_to(5, n),
            ("arm64", Some(n)) if (8..=9).contains(&n) => down_to(8, n),
            _ => vec![self.variant.clone()],
        }
    }

    /// Whether a descriptor's platform fits what we want: same os and
    /// architecture, and a variant we run (see [`Self::variant_preference`]).
    /// A descriptor without a variant fits any; a want without one takes any.
    pub fn matches(&self, candidate: &Platform) -> bool {
        let want = self.clone().normalized();
        let have = candidate.clone().normalized();
        if want.os != have.os || want.architecture != have.architecture {
            return false;
        }
        want.variant.is_none()
            || have.variant.is_none()
            || want.variant_preference().contains(&have.variant)
    }

    /// Attestation manifests are listed as `unknown/unknown`.
    pub fn is_unknown(&self) -> bool {
        self.os == "unknown" || self.architecture == "unknown"
    }
}

/// Picks the entry for `want`, skipping attestations: the best variant
/// `want` runs, then an entry without a variant, then (arm64 only) arm/v7.
pub fn select_platform<'a>(entries: &'a [Descriptor], want: &Platform) -> Option<&'a Descriptor> {
    let want = want.clone().normalized();
    // arm64 hosts run arm/v7 binaries when no arm64 image exists (containerd does the same).
    let fallback = (want.architecture == "arm64").then(|| Platform {
        os: want.os.clone(),
        architecture: "arm".to_string(),
        variant: Some("v7".to_string()),
    });
    std::iter::once(&want)
        .chain(fallback.as_ref())
        .find_map(|p| select_for(entries, p))
}

fn select_for<'a>(entries: &'a [Descriptor], want: &Platform) -> Option<&'a Descriptor> {
    let candidates: Vec<(&Descriptor, Platform)> = entries
        .iter()
        .filter(|d| !d.annotations.contains_key("vnd.docker.reference.type"))
        .filter_map(|d| Some((d, d.platform.clone()?.normalized())))
        .filter(|(_, p)| !p.is_unknown() && want.matches(p))
        .collect();
    want.variant_preference()
        .iter()
        .find_map(|v| candidates.iter().find(|(_, p)| p.variant == *v))
        .or_else(|| candidates.iter().find(|(_, p)| p.variant.is_none()))
        .or(candidates.first())
        .map(|(d, _)| *d)
}

/// The platforms an index offers, for the error when none fits.
pub fn available_platforms(entries: &[Descriptor]) -> String {
    let list: Vec<String> = entries
        .iter()
        .filter_map(|d| d.platform.as_ref())
        .filter(|p| !p.is_unknown())
        .map(|p| p.to_string())
        .collect();
    if list.is_empty() {
        "none".to_string()
    } else {
        list.join(", ")
    }
}

impl fmt::Display for Platform {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.os, self.architecture)?;
        if let Some(v) = &self.variant {
            write!(f, "/{v}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> Platform {
        Platform::parse(s).unwrap()
    }

    #[test]
    fn parse_and_normalise() {
        assert_eq!(p("linux/aarch64").to_string(), "linux/arm64/v8");
        assert_eq!(p("linux/arm64").to_string(), "linux/arm64/v8");
        assert_eq!(p("linux/x86_64").to_string(), "linux/amd64");
        assert_eq!(p("linux/arm").to_string(), "linux/arm/v7");
        assert_eq!(p("Linux/AMD64").to_string(), "linux/amd64");
        for bad in ["linux", "linux/", "/amd64", "a/b/c/d", "linux/am d64"] {
            assert!(Platform::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn matching() {
        let arm64_plain = Platform {
            os: "linux".into(),
            architecture: "arm64".into(),
            variant: None,
        };
        assert!(p("linux/arm64/v8").matches(&arm64_plain));
        assert!(p("linux/arm64").matches(&arm64_plain));
        assert!(!p("linux/amd64").matches(&arm64_plain));
        assert!(!p("linux/arm/v6").matches(&p("linux/arm/v7")));
        assert!(p("linux/arm/v7").matches(&p("linux/arm/v6")));
        assert!(p("linux/amd64/v3").matches(&p("linux/amd64/v2")));
        assert!(!p("linux/amd64/v2").matches(&p("linux/amd64/v3")));
        assert!(p("linux/arm64/v9").matches(&p("linux/arm64")));
        assert!(p("linux/amd64").matches(&p("linux/amd64")));
        assert!(!p("windows/amd64").matches(&p("linux/amd64")));
    }

    #[test]
    fn host_is_normalised() {
        let host = Platform::host();
        assert_eq!(host.clone().normalized(), host);
    }

    fn desc(platform: &str, annotated: bool) -> Descriptor {
        let mut d: Descriptor = serde_json::from_str(&format!(
            r#"{{"mediaType":"{}","digest":"{}","size":1}}"#,
            super::super::manifest::OCI_MANIFEST,
            crate::image::Digest::sha256_of(format!("{platform}{annotated}").as_bytes())
        ))
        .unwrap();
        let parts: Vec<&str> = platform.split('/').collect();
        d.platform = Some(Platform {
            os: parts[0].into(),
            architecture: parts[1].into(),
            variant: parts.get(2).map(|v| v.to_string()),
        });
        if annotated {
            d.annotations.insert(
                "vnd.docker.reference.type".into(),
                "attestation-manifest".into(),
            );
        }
        d
    }

    fn pick(entries: &[Descriptor], want: &str) -> Option<String> {
        select_platform(entries, &p(want))
            .map(|d| d.platform.clone().unwrap().normalized().to_string())
    }

    #[test]
    fn selects_platform_and_skips_attestations() {
        let entries = vec![
            desc("unknown/unknown", true),
            desc("linux/amd64", false),
            desc("linux/arm64", false),
            desc("linux/arm/v7", false),
            desc("linux/amd64", true),
        ];
        let chosen = |w: &str| select_platform(&entries, &p(w)).cloned();
        assert_eq!(chosen("linux/amd64"), Some(entries[1].clone()));
        assert_eq!(chosen("linux/arm64/v8"), Some(entries[2].clone()));
        assert_eq!(chosen("linux/arm"), Some(entries[3].clone()));
        assert_eq!(chosen("linux/s390x"), None);
        assert_eq!(chosen("unknown/unknown"), None);
        // Without an arm64 entry, arm64 falls back to arm/v7.
        let no_arm64: Vec<_> = entries
            .iter()
            .filter(|d| d.platform.as_ref().unwrap().architecture != "arm64")
            .cloned()
            .collect();
        assert_eq!(
            select_platform(&no_arm64, &p("linux/arm64")),
            Some(&entries[3])
        );
        assert_eq!(
            available_platforms(&entries),
            "linux/amd64, linux/arm64, linux/arm/v7, linux/amd64"
        );
    }

    #[test]
    fn arm64_with_and_without_v8() {
        for listed in ["linux/arm64", "linux/arm64/v8", "linux/aarch64"] {
            let entries = vec![desc("linux/amd64", false), desc(listed, false)];
            for want in ["linux/arm64", "linux/arm64/v8", "linux/aarch64"] {
                assert_eq!(
                    pick(&entries, want).as_deref(),
                    Some("linux/arm64/v8"),
                    "{listed} {want}"
                );
            }
        }
        // v9 hosts take v8 images; v8 hosts do not take v9 ones.
        let v8 = vec![desc("linux/arm64", false)];
        assert_eq!(
            pick(&v8, "linux/arm64/v9").as_deref(),
            Some("linux/arm64/v8")
        );
        let v9 = vec![desc("linux/arm64/v9", false), desc("linux/arm/v7", false)];
        assert_eq!(pick(&v9, "linux/arm64").as_deref(), Some("linux/arm/v7"));
    }

    #[test]
    fn amd64_variants_fall_back_downwards() {
        let entries = vec![
            desc("linux/amd64", false),
            desc("linux/amd64/v2", false),
            desc("linux/amd64/v3", false),
        ];
        assert_eq!(
            pick(&entries, "linux/amd64/v3").as_deref(),
            Some("linux/amd64/v3")
        );
        assert_eq!(
            pick(&entries, "linux/amd64/v2").as_deref(),
            Some("linux/amd64/v2")
        );
        assert_eq!(
            pick(&entries, "linux/amd64").as_deref(),
            Some("linux/amd64")
        );
        assert_eq!(
            pick(&entries, "linux/amd64/v1").as_deref(),
            Some("linux/amd64")
        );
        assert_eq!(
            pick(&entries[..2], "linux/amd64/v4").as_deref(),
            Some("linux/amd64/v2")
        );
        // Only variant builds listed: a plain amd64 want still takes one,
        // a v2 want never takes v3.
        assert_eq!(
            pick(&entries[2..], "linux/amd64").as_deref(),
            Some("linux/amd64/v3")
        );
        assert_eq!(pick(&entries[2..], "linux/amd64/v2"), None);
    }

    #[test]
    fn arm_variants_fall_back_downwards() {
        let entries = vec![desc("linux/arm/v5", false), desc("linux/arm/v6", false)];
        assert_eq!(
            pick(&entries, "linux/arm/v7").as_deref(),
            Some("linux/arm/v6")
        );
        assert_eq!(
            pick(&entries, "linux/arm/v6").as_deref(),
            Some("linux/arm/v6")
        );
        assert_eq!(
            pick(&entries, "linux/arm/v5").as_deref(),
            Some("linux/arm/v5")
        );
        assert_eq!(pick(&entries[1..], "linux/arm/v5"), None);
    }
}
