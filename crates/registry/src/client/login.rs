//! Checking credentials against a registry before `hoist login` keeps
//! them, as `docker login` does: `GET /v2/`, and the challenge it answers
//! with met with exactly these credentials, nothing stored involved.

use super::*;

/// What a successful login check learnt.
#[derive(Debug)]
pub struct LoginCheck {
    /// A refresh token the token server handed out: keep it as the
    /// identity token instead of the password, as Docker does.
    pub identity_token: Option<Secret>,
    /// Whether the registry asked for credentials at all (a registry
    /// open to anyone accepts any login, as with Docker).
    pub challenged: bool,
}

impl Client {
    /// Verifies `credentials` against the registry at `endpoint`: the
    /// basic challenge is met with them, or the bearer one with a token
    /// they obtain (asked for with `offline_token`, so a token server may
    /// return a refresh token); then `GET /v2/` must succeed with that.
    /// Wrong credentials are [`RegistryError::LoginRefused`].
    pub fn check_login(
        &self,
        endpoint: &Endpoint,
        credentials: &Credentials,
    ) -> Result<LoginCheck> {
        let url = endpoint.url("/v2/");
        let refused = || RegistryError::LoginRefused {
            registry: endpoint.host.clone(),
        };
        let get = |authorization: Option<&str>| {
            self.retrying(endpoint, &url, || {
                let mut request = self.agent_for(&url).get(&url);
                if let Some(value) = authorization {
                    request = request.header("Authorization", value);
                }
                request
                    .config()
                    .timeout_global(Some(self.options.timeout))
                    .build()
                    .call()
            })
        };
        // Anything but 2xx and 401 from `/v2/` means no registry API there.
        let not_a_registry = |status: u16| RegistryError::Status {
            registry: endpoint.host.clone(),
            url: url.clone(),
            status,
            detail: " (is it a registry? check the address)".to_owned(),
        };
        let first = get(None)?;
        if first.status() != StatusCode::UNAUTHORIZED {
            if !first.status().is_success() {
                return Err(not_a_registry(first.status().as_u16()));
            }
            return Ok(LoginCheck {
                identity_token: None,
                challenged: false,
            });
        }
        let challenges: Vec<Challenge> = first
            .headers()
            .get_all("www-authenticate")
            .iter()
            .filter_map(|v| v.to_str().ok())
            .map(Challenge::parse)
            .collect();
        let bearer = challenges
            .iter()
            .find(|c| matches!(c, Challenge::Bearer { .. }));
        let (authorization, identity_token) = match bearer.or_else(|| challenges.first()) {
            Some(Challenge::Bearer { realm, service, .. }) => {
                let request = TokenRequest {
                    endpoint,
                    realm,
                    service: service.as_deref(),
                    scopes: &[],
                    credentials: Some(credentials),
                    offline: true,
                };
                let (token, refresh) = self.fetch_token(&request, refused)?;
                (
                    Secret::new(format!("Bearer {}", token.value.expose())),
                    refresh,
                )
            }
            Some(Challenge::Basic) => (Secret::new(credentials.basic_header()), None),
            Some(Challenge::Other(challenge)) => {
                return Err(RegistryError::UnsupportedAuth {
                    registry: endpoint.host.clone(),
                    challenge: challenge.clone(),
                });
            }
            None => return Err(refused()),
        };
        let second = get(Some(authorization.expose()))?;
        match second.status().as_u16() {
            200..=299 => {}
            401 | 403 => return Err(refused()),
            status => return Err(not_a_registry(status)),
        }
        Ok(LoginCheck {
            identity_token,
            challenged: true,
        })
    }
}
