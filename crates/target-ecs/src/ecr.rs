//! Logins to ECR, for pushing built images there: GetAuthorizationToken with the
//! environment's AWS credentials (its role assumed when it names one), decoded into the
//! user and password `docker login` would use, for the registry host ECR names.

use base64::Engine as _;
use launchway_target::TargetError;

use crate::error::sdk_error;

/// A registry login; its password is never shown.
#[derive(Clone, PartialEq, Eq)]
pub struct RegistryLogin {
    /// The registry's host: `123456789012.dkr.ecr.ap-northeast-1.amazonaws.com`.
    pub registry: String,
    pub username: String,
    pub password: String,
    /// When the login stops working (Unix ms): ECR's last 12 hours.
    pub expires_at: Option<i64>,
}

impl std::fmt::Debug for RegistryLogin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "RegistryLogin {{ registry: {:?}, username: {:?}, password: <hidden> }}",
            self.registry, self.username
        )
    }
}

/// The login to the account's ECR registry in the configuration's region.
pub async fn ecr_login(config: &aws_config::SdkConfig) -> Result<RegistryLogin, TargetError> {
    let client = aws_sdk_ecr::Client::new(config);
    let answer = client
        .get_authorization_token()
        .send()
        .await
        .map_err(|error| sdk_error("get an ECR login (GetAuthorizationToken)", error))?;
    let data = answer
        .authorization_data()
        .first()
        .ok_or_else(|| TargetError::Invalid("ECR answered GetAuthorizationToken with no login".to_owned()))?;
    let token = data.authorization_token().unwrap_or_default();
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(token)
        .ok()
        .and_then(|bytes| String::from_utf8(bytes).ok())
        .and_then(|text| text.split_once(':').map(|(user, password)| (user.to_owned(), password.to_owned())))
        .ok_or_else(|| TargetError::Invalid("ECR's login token is not base64 of user:password".to_owned()))?;
    let registry = data.proxy_endpoint().unwrap_or_default();
    let registry = registry.trim_start_matches("https://").trim_end_matches('/').to_owned();
    Ok(RegistryLogin {
        registry,
        username: decoded.0,
        password: decoded.1,
        expires_at: data.expires_at().and_then(|at| at.to_millis().ok()),
    })
}
