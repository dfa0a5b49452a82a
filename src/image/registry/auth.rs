//! `WWW-Authenticate` parsing and the Bearer token flow.

use std::collections::BTreeMap;

/// One challenge of a `WWW-Authenticate` header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Challenge {
    /// Lowercased scheme: `bearer`, `basic`, ….
    pub scheme: String,
    /// Lowercased parameter names.
    pub params: BTreeMap<String, String>,
}

impl Challenge {
    pub fn param(&self, name: &str) -> Option<&str> {
        self.params.get(name).map(String::as_str)
    }
}

/// How a registry wants to be authenticated, learnt from its challenge.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AuthScheme {
    Anonymous,
    Basic,
    Bearer {
        realm: String,
        service: Option<String>,
    },
}

/// Picks the scheme we support from a header's challenges (Bearer first).
pub fn scheme_from_challenges(challenges: &[Challenge]) -> Option<AuthScheme> {
    let bearer = challenges.iter().find(|c| c.scheme == "bearer");
    if let Some(realm) = bearer.and_then(|c| c.param("realm")) {
        return Some(AuthScheme::Bearer {
            realm: realm.to_string(),
            service: bearer.and_then(|c| c.param("service")).map(str::to_string),
        });
    }
    challenges
        .iter()
        .any(|c| c.scheme == "basic")
        .then_some(AuthScheme::Basic)
}

/// Parses `Bearer realm="…",service="…",scope="a:b:pull,push", Basic realm="x"`.
/// Quoted strings may contain `,`, `=` and escaped quotes.
pub fn parse_www_authenticate(header: &str) -> Vec<Challenge> {
    let mut lexer = Lexer {
        chars: header.chars().collect(),
        pos: 0,
    };
    let mut challenges: Vec<Challenge> = Vec::new();
    loop {
        lexer.skip_separators();
        let Some(word) = lexer.token() else { break };
        lexer.skip_spaces();
        if lexer.peek() == Some('=') {
            // A parameter of the current challenge.
            lexer.pos += 1;
            lexer.skip_spaces();
            let value = if lexer.peek() == Some('"') {
                lexer.quoted()
            } else {
                lexer.token().unwrap_or_default()
            };
            if let Some(current) = challenges.last_mut() {
                current.params.insert(word.to_ascii_lowercase(), value);
            }
        } else {
            challenges.push(Challenge {
                scheme: word.to_ascii_lowercase(),
                params: BTreeMap::new(),
            });
        }
    }
    challenges
}

struct Lexer {
    chars: Vec<char>,
    pos: usize,
}

impl Lexer {
    fn peek(&self) -> Option<char> {
        self.chars.get(self.pos).copied()
    }
    fn skip_spaces(&mut self) {
        while self.peek().is_some_and(|c| c == ' ' || c == '\t') {
            self.pos += 1;
        }
    }
    fn skip_separators(&mut self) {
        while self
            .peek()
            .is_some_and(|c| c == ' ' || c == '\t' || c == ',')
        {
            self.pos += 1;
        }
    }
    fn token(&mut self) -> Option<String> {
        loop {
            let start = self.pos;
            while self
                .peek()
                .is_some_and(|c| !matches!(c, ' ' | '\t' | ',' | '=' | '"'))
            {
                self.pos += 1;
            }
            if self.pos > start {
                return Some(self.chars[start..self.pos].iter().collect());
            }
            // Skip a stray character so we always make progress.
            self.peek()?;
            self.pos += 1;
        }
    }
    fn quoted(&mut self) -> String {
        self.pos += 1; // opening quote
        let mut out = String::new();
        while let Some(c) = self.peek() {
            self.pos += 1;
            match c {
                '\\' => {
                    if let Some(next) = self.peek() {
                        out.push(next);
                        self.pos += 1;
                    }
                }
                '"' => break,
                other => out.push(other),
            }
        }
        out
    }
}

/// The token endpoint's answer (`token` or `access_token`).
#[derive(Debug, serde::Deserialize)]
pub struct TokenResponse {
    #[serde(default)]
    pub token: Option<String>,
    #[serde(default)]
    pub access_token: Option<String>,
    #[serde(default)]
    pub expires_in: Option<u64>,
}

impl TokenResponse {
    pub fn into_token(self) -> Option<(String, u64)> {
        let expires = self.expires_in.unwrap_or(60).max(10);
        self.token
            .or(self.access_token)
            .filter(|t| !t.is_empty())
            .map(|t| (t, expires))
    }
}

/// `repository:NAME:pull`.
pub fn pull_scope(repository: &str) -> String {
    format!("repository:{repository}:pull")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_multiple_challenges_and_quoted_strings() {
        let h = r#"Bearer realm="https://auth.example.com/token",service="registry.example.com",scope="repository:a/b:pull,push", Basic realm="x y""#;
        let c = parse_www_authenticate(h);
        assert_eq!(c.len(), 2);
        assert_eq!(c[0].scheme, "bearer");
        assert_eq!(c[0].param("realm"), Some("https://auth.example.com/token"));
        assert_eq!(c[0].param("service"), Some("registry.example.com"));
        assert_eq!(c[0].param("scope"), Some("repository:a/b:pull,push"));
        assert_eq!(c[1].scheme, "basic");
        assert_eq!(c[1].param("realm"), Some("x y"));
        assert_eq!(
            scheme_from_challenges(&c),
            Some(AuthScheme::Bearer {
                realm: "https://auth.example.com/token".into(),
                service: Some("registry.example.com".into())
            })
        );
    }

    #[test]
    fn parses_odd_but_valid_headers() {
        let c = parse_www_authenticate(r#"basic Realm=plain , error="a\"b""#);
        assert_eq!(c.len(), 1);
        assert_eq!(c[0].param("realm"), Some("plain"));
        assert_eq!(c[0].param("error"), Some("a\"b"));
        assert_eq!(scheme_from_challenges(&c), Some(AuthScheme::Basic));
        assert!(parse_www_authenticate("").is_empty());
        assert_eq!(
            scheme_from_challenges(&parse_www_authenticate("Negotiate")),
            None
        );
        // Bearer without a realm cannot be used.
        assert_eq!(
            scheme_from_challenges(&parse_www_authenticate(r#"Bearer service="x""#)),
            None
        );
    }

    #[test]
    fn token_or_access_token() {
        let t: TokenResponse = serde_json::from_str(r#"{"access_token":"abc"}"#).unwrap();
        assert_eq!(t.into_token(), Some(("abc".into(), 60)));
        let t: TokenResponse =
            serde_json::from_str(r#"{"token":"t","access_token":"a","expires_in":300}"#).unwrap();
        assert_eq!(t.into_token(), Some(("t".into(), 300)));
        let t: TokenResponse = serde_json::from_str(r#"{"token":""}"#).unwrap();
        assert_eq!(t.into_token(), None);
    }
}
