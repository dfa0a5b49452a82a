//! Platform selection from multi-arch indexes: `os/arch[/variant]`,
//! normalised (`aarch64` → `arm64`, arm64 without variant ≡ `v8`).

use std::fmt;

use serde::{Deserialize, Serialize};

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
            _ => {}
        }
        self
    }

    /// Whether a descriptor's platform fits what we want. A descriptor
    /// without a variant matches any wanted variant of amd64 and friends.
    pub fn matches(&self, candidate: &Platform) -> bool {
        let want = self.clone().normalized();
        let have = candidate.clone().normalized();
        if want.os != have.os || want.architecture != have.architecture {
            return false;
        }
        match (&want.variant, &have.variant) {
            (Some(w), Some(h)) => w == h,
            _ => true,
        }
    }

    /// Attestation manifests are listed as `unknown/unknown`.
    pub fn is_unknown(&self) -> bool {
        self.os == "unknown" || self.architecture == "unknown"
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
        assert!(p("linux/amd64").matches(&p("linux/amd64")));
        assert!(!p("windows/amd64").matches(&p("linux/amd64")));
    }

    #[test]
    fn host_is_normalised() {
        let host = Platform::host();
        assert_eq!(host.clone().normalized(), host);
    }
}
