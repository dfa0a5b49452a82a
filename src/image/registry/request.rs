//! Sending requests: the `/v2/` ping, Basic and Bearer authorization with
//! a token cache, re-authentication on 401, and retries with backoff.

use std::time::{Duration, Instant};

use reqwest::header::{HeaderMap, AUTHORIZATION, RETRY_AFTER, WWW_AUTHENTICATE};
use reqwest::{RequestBuilder, Response, StatusCode};

use super::auth::{self, parse_www_authenticate, pull_scope, scheme_from_challenges, AuthScheme};
use super::{credentials, Client, Credentials, Endpoint, RegistryError, Token};

impl Client {
    /// `GET /v2/` once per endpoint to learn its auth scheme.
    async fn ping(&self, ep: &Endpoint) -> Result<AuthScheme, RegistryError> {
        if let Some(s) = self
            .schemes
            .lock()
            .ok()
            .and_then(|m| m.get(&ep.base).cloned())
        {
            return Ok(s);
        }
        let url = format!("{}/v2/", ep.base);
        let resp = self
            .retrying(ep, "the /v2/ ping", || self.http.get(&url))
            .await?;
        let scheme = match resp.status() {
            s if s.is_success() => AuthScheme::Anonymous,
            StatusCode::UNAUTHORIZED => scheme_of(resp.headers()).unwrap_or(AuthScheme::Anonymous),
            s => {
                return Err(RegistryError::NotARegistry {
                    url,
                    status: s.as_u16(),
                })
            }
        };
        if let Ok(mut m) = self.schemes.lock() {
            m.insert(ep.base.clone(), scheme.clone());
        }
        Ok(scheme)
    }

    /// Sends an authenticated request for `repository`, re-authenticating
    /// once on 401 and retrying 429/5xx/connection errors.
    pub async fn send(
        &self,
        ep: &Endpoint,
        repository: &str,
        what: &str,
        make: impl Fn(&reqwest::Client) -> RequestBuilder,
    ) -> Result<Response, RegistryError> {
        let mut scheme = self.ping(ep).await?;
        let scope = pull_scope(repository);
        let mut reauthenticated = false;
        loop {
            let resp = {
                let auth = self.authorization(ep, &scheme, &scope).await?;
                self.retrying(ep, what, || {
                    let req = make(&self.http);
                    match &auth {
                        Some(value) => req.header(AUTHORIZATION, value),
                        None => req,
                    }
                })
                .await?
            };
            let status = resp.status();
            let denied = status == StatusCode::UNAUTHORIZED
                || (status == StatusCode::FORBIDDEN && matches!(scheme, AuthScheme::Bearer { .. }));
            if denied && !reauthenticated {
                reauthenticated = true;
                if let Some(s) = scheme_of(resp.headers()) {
                    scheme = s;
                }
                if let Ok(mut tokens) = self.tokens.lock() {
                    tokens.remove(&(ep.base.clone(), scope.clone()));
                }
                continue;
            }
            if denied {
                return Err(RegistryError::Unauthorized {
                    registry: ep.host.clone(),
                    repository: repository.to_string(),
                    status: status.as_u16(),
                });
            }
            return Ok(resp);
        }
    }

    /// The `Authorization` value for a request, fetching a token if needed.
    async fn authorization(
        &self,
        ep: &Endpoint,
        scheme: &AuthScheme,
        scope: &str,
    ) -> Result<Option<String>, RegistryError> {
        match scheme {
            AuthScheme::Anonymous => Ok(None),
            AuthScheme::Basic => Ok(self.credentials_for(ep)?.map(|c| basic(&c))),
            AuthScheme::Bearer { realm, service } => {
                let key = (ep.base.clone(), scope.to_string());
                if let Some(t) = self.tokens.lock().ok().and_then(|m| m.get(&key).cloned()) {
                    if t.expires > Instant::now() {
                        return Ok(Some(format!("Bearer {}", t.value)));
                    }
                }
                let token = self
                    .fetch_token(ep, realm, service.as_deref(), scope)
                    .await?;
                if let Ok(mut m) = self.tokens.lock() {
                    m.insert(key, token.clone());
                }
                Ok(Some(format!("Bearer {}", token.value)))
            }
        }
    }

    async fn fetch_token(
        &self,
        ep: &Endpoint,
        realm: &str,
        service: Option<&str>,
        scope: &str,
    ) -> Result<Token, RegistryError> {
        let mut url = reqwest::Url::parse(realm).map_err(|_| RegistryError::BadRealm {
            registry: ep.host.clone(),
            realm: realm.to_string(),
        })?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err(RegistryError::BadRealm {
                registry: ep.host.clone(),
                realm: realm.to_string(),
            });
        }
        {
            let mut q = url.query_pairs_mut();
            if let Some(s) = service {
                q.append_pair("service", s);
            }
            q.append_pair("scope", scope);
        }
        let creds = self.credentials_for(ep)?;
        // An identity token is an OAuth2 refresh token: exchanged by POST.
        let refresh = creds
            .as_ref()
            .filter(|c| c.username == credentials::IDENTITY_TOKEN_USER)
            .map(|c| c.password.clone());
        let resp = self
            .retrying(ep, "a token", || match &refresh {
                Some(token) => {
                    let mut form = vec![
                        ("grant_type", "refresh_token"),
                        ("client_id", "corral"),
                        ("scope", scope),
                        ("refresh_token", token.as_str()),
                    ];
                    if let Some(s) = service {
                        form.push(("service", s));
                    }
                    self.http.post(realm).form(&form)
                }
                None => {
                    let req = self.http.get(url.clone());
                    match &creds {
                        Some(c) => req.basic_auth(&c.username, Some(&c.password)),
                        None => req,
                    }
                }
            })
            .await
            .map_err(|e| match e {
                RegistryError::Request { source, .. } => RegistryError::TokenRequest {
                    realm: realm.to_string(),
                    source,
                },
                other => other,
            })?;
        if !resp.status().is_success() {
            return Err(RegistryError::TokenStatus {
                realm: realm.to_string(),
                scope: scope.to_string(),
                status: resp.status().as_u16(),
            });
        }
        let body: auth::TokenResponse =
            resp.json()
                .await
                .map_err(|source| RegistryError::TokenRequest {
                    realm: realm.to_string(),
                    source,
                })?;
        let (value, expires_in) = body.into_token().ok_or_else(|| RegistryError::NoToken {
            realm: realm.to_string(),
            scope: scope.to_string(),
        })?;
        // Renew a little early so a token never expires in flight.
        let lifetime = Duration::from_secs(expires_in.saturating_sub(5).max(5));
        Ok(Token {
            value,
            expires: Instant::now() + lifetime,
        })
    }

    /// Sends a request, retrying connection errors, 429 and 5xx with
    /// jittered exponential backoff (honouring `Retry-After`). The last
    /// retryable response is returned as is.
    async fn retrying(
        &self,
        ep: &Endpoint,
        what: &str,
        make: impl Fn() -> RequestBuilder,
    ) -> Result<Response, RegistryError> {
        let attempts = self.options.max_attempts.max(1);
        let mut attempt = 0;
        loop {
            attempt += 1;
            match make().send().await {
                Err(source) => {
                    if attempt >= attempts {
                        return Err(RegistryError::Request {
                            registry: ep.host.clone(),
                            what: what.to_string(),
                            source,
                        });
                    }
                    tracing::debug!("{what} from {}: {source}; retrying", ep.host);
                    tokio::time::sleep(self.backoff(attempt, None)).await;
                }
                Ok(resp) => {
                    let status = resp.status();
                    let retryable =
                        status == StatusCode::TOO_MANY_REQUESTS || status.is_server_error();
                    if !retryable || attempt >= attempts {
                        return Ok(resp);
                    }
                    let hint = retry_after(resp.headers());
                    tracing::debug!("{what} from {}: {status}; retrying", ep.host);
                    tokio::time::sleep(self.backoff(attempt, hint)).await;
                }
            }
        }
    }

    /// Delay before retry number `attempt` (1-based).
    pub fn backoff(&self, attempt: u32, retry_after: Option<Duration>) -> Duration {
        let max = self.options.max_retry_delay;
        if let Some(hint) = retry_after {
            return hint.min(max);
        }
        let base = self.options.retry_base_delay.as_secs_f64() * 2f64.powi(attempt as i32 - 1);
        let jittered = base * (0.5 + fastrand::f64());
        Duration::from_secs_f64(jittered).min(max)
    }
}

fn scheme_of(headers: &HeaderMap) -> Option<AuthScheme> {
    let mut challenges = Vec::new();
    for value in headers.get_all(WWW_AUTHENTICATE) {
        if let Ok(text) = value.to_str() {
            challenges.extend(parse_www_authenticate(text));
        }
    }
    scheme_from_challenges(&challenges)
}

/// `Retry-After` as delay-seconds or as an HTTP-date (a date in the past
/// means now).
fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    let value = headers.get(RETRY_AFTER)?.to_str().ok()?.trim();
    if let Ok(secs) = value.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let at = parse_http_date(value)?;
    let wait = at - time::OffsetDateTime::now_utc();
    Some(Duration::try_from(wait).unwrap_or(Duration::ZERO))
}

/// The three HTTP-date forms (RFC 9110 §5.6.7): IMF-fixdate
/// `Sun, 06 Nov 1994 08:49:37 GMT`, RFC 850 `Sunday, 06-Nov-94 08:49:37 GMT`
/// and asctime `Sun Nov  6 08:49:37 1994`.
pub(super) fn parse_http_date(value: &str) -> Option<time::OffsetDateTime> {
    let tokens: Vec<&str> = value.split_ascii_whitespace().collect();
    let (day, month, year, clock) = match tokens.as_slice() {
        [_, day, month, year, clock, "GMT"] => (*day, *month, (*year).parse().ok()?, *clock),
        [_, date, clock, "GMT"] => {
            let mut parts = date.split('-');
            let (day, month, yy) = (parts.next()?, parts.next()?, parts.next()?);
            // Two-digit years as Go's time package reads them (the
            // registries we meet are Go): 69-99 are 19xx, the rest 20xx.
            let yy: i32 = yy.parse().ok()?;
            let year = if yy < 69 { 2000 + yy } else { 1900 + yy };
            (day, month, year, *clock)
        }
        [_, month, day, clock, year] => (*day, *month, (*year).parse().ok()?, *clock),
        _ => return None,
    };
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let month_index = MONTHS.iter().position(|m| *m == month)?;
    let month = time::Month::try_from(u8::try_from(month_index + 1).ok()?).ok()?;
    let date = time::Date::from_calendar_date(year, month, day.parse().ok()?).ok()?;
    let mut hms = clock.split(':').map(|p| p.parse::<u8>().ok());
    let (h, m, sec) = (hms.next()??, hms.next()??, hms.next()??);
    if hms.next().is_some() {
        return None;
    }
    let time = time::Time::from_hms(h, m, sec).ok()?;
    Some(time::PrimitiveDateTime::new(date, time).assume_utc())
}

fn basic(c: &Credentials) -> String {
    use base64::Engine;
    let raw = format!("{}:{}", c.username, c.password);
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(raw)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn http_dates_in_all_three_forms() {
        let want = time::macros::datetime!(1994-11-06 08:49:37 UTC);
        for text in [
            "Sun, 06 Nov 1994 08:49:37 GMT",
            "Sunday, 06-Nov-94 08:49:37 GMT",
            "Sun Nov  6 08:49:37 1994",
        ] {
            assert_eq!(parse_http_date(text), Some(want), "{text}");
        }
        for bad in [
            "",
            "soon",
            "Sun, 06 Nov 1994 08:49:37 CET",
            "Sun, 31 Feb 1994 08:49:37 GMT",
            "Sun, 06 Nov 1994 25:49:37 GMT",
            "Sun, 06 Nov 1994 08:49 GMT",
        ] {
            assert_eq!(parse_http_date(bad), None, "{bad}");
        }
    }

    #[test]
    fn retry_after_seconds_dates_and_past_dates() {
        let header = |v: &str| {
            let mut h = HeaderMap::new();
            h.insert(RETRY_AFTER, v.parse().unwrap());
            h
        };
        assert_eq!(retry_after(&header("3")), Some(Duration::from_secs(3)));
        assert_eq!(
            retry_after(&header("Sun, 06 Nov 1994 08:49:37 GMT")),
            Some(Duration::ZERO)
        );
        let soon = time::OffsetDateTime::now_utc() + time::Duration::seconds(30);
        let text = soon
            .format(time::macros::format_description!(
                "[weekday repr:short], [day] [month repr:short] [year] [hour]:[minute]:[second] GMT"
            ))
            .unwrap();
        let wait = retry_after(&header(&text)).unwrap();
        assert!(
            wait > Duration::from_secs(25) && wait <= Duration::from_secs(30),
            "{wait:?}"
        );
        assert_eq!(retry_after(&header("later")), None);
    }
}
