//! The AWS profile chain: `~/.aws/credentials` and `~/.aws/config`, as the AWS CLI and SDKs
//! read them.
//!
//! The profile is `AWS_PROFILE` (else `default`); the files are `AWS_SHARED_CREDENTIALS_FILE`
//! and `AWS_CONFIG_FILE` (else `$HOME/.aws/credentials` and `$HOME/.aws/config`). In the
//! credentials file a section is named by the profile (`[name]`); in the config file by
//! `[profile name]`, except `[default]`. Keys read: `aws_access_key_id`,
//! `aws_secret_access_key`, `aws_session_token` (the credentials file wins over the config file
//! for these, as in the SDKs), `credential_process` (either file; run by
//! [`crate::credential_process::ProcessCredentials`] when no static keys are set anywhere),
//! `region` and `endpoint_url`.
//!
//! Not supported: IAM Identity Center (`sso_session`, `sso_start_url`) and role assumption
//! (`role_arn`). A profile that has only those, with no keys anywhere else, is refused at
//! start ([`AwsProfile::check_supported`]) rather than left to fail at the first request;
//! `aws configure export-credentials --profile NAME --format process` as a
//! `credential_process` bridges them.
//!
//! Precedence, lowest first: the profile, then the `AWS_*` variables, then Strom's own
//! settings ([`crate::config::S3Settings`]). [`AwsProfile::apply`] therefore fills only what
//! the builder does not have yet; keys are a pair, so a profile's key is not mixed with a
//! secret from the environment. A missing file is not an error (no profile in use); a named
//! profile (`AWS_PROFILE`) found in neither file is.

use std::path::{Path, PathBuf};

use object_store::aws::{AmazonS3Builder, AmazonS3ConfigKey};

use crate::error::{Error, Result};

/// What a profile sets.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AwsProfile {
    /// The profile's name.
    pub name: String,
    /// `aws_access_key_id`.
    pub access_key_id: Option<String>,
    /// `aws_secret_access_key`.
    pub secret_access_key: Option<String>,
    /// `aws_session_token`.
    pub session_token: Option<String>,
    /// `credential_process`: a command printing credentials as JSON.
    pub credential_process: Option<String>,
    /// Whether the profile names an unsupported credential source (`sso_session`,
    /// `sso_start_url` or `role_arn`).
    pub unsupported_source: Option<&'static str>,
    /// `region`.
    pub region: Option<String>,
    /// `endpoint_url`.
    pub endpoint_url: Option<String>,
}

impl AwsProfile {
    /// Loads the profile named by the process environment (see the module docs); `None`
    /// when neither file has it and none was named.
    pub fn from_env() -> Result<Option<AwsProfile>> {
        Self::load(&|name| std::env::var(name).ok())
    }

    /// Loads the profile with `env` as the environment (`HOME`, `AWS_PROFILE`,
    /// `AWS_CONFIG_FILE`, `AWS_SHARED_CREDENTIALS_FILE`).
    pub fn load(env: &dyn Fn(&str) -> Option<String>) -> Result<Option<AwsProfile>> {
        let named = env("AWS_PROFILE").filter(|p| !p.is_empty());
        let name = named.clone().unwrap_or_else(|| "default".to_owned());
        let home = env("HOME").map(PathBuf::from);
        let file = |var: &str, default: &str| {
            env(var)
                .filter(|p| !p.is_empty())
                .map(PathBuf::from)
                .or_else(|| home.as_ref().map(|h| h.join(".aws").join(default)))
        };
        let config_section = if name == "default" {
            "default".to_owned()
        } else {
            format!("profile {name}")
        };
        let from_config = match file("AWS_CONFIG_FILE", "config") {
            Some(path) => section(&path, &config_section)?,
            None => None,
        };
        let from_credentials = match file("AWS_SHARED_CREDENTIALS_FILE", "credentials") {
            Some(path) => section(&path, &name)?,
            None => None,
        };
        if from_config.is_none() && from_credentials.is_none() {
            return match named {
                Some(profile) => Err(Error::InvalidConfig {
                    setting: "AWS_PROFILE",
                    value: profile,
                    reason: "no such profile in the AWS config or credentials file",
                }),
                None => Ok(None),
            };
        }
        let config = from_config.unwrap_or_default();
        let credentials = from_credentials.unwrap_or_default();
        let get = |key: &str, first: &[(String, String)], second: &[(String, String)]| {
            lookup(first, key).or_else(|| lookup(second, key))
        };
        let unsupported_source = ["sso_session", "sso_start_url", "role_arn"]
            .into_iter()
            .find(|key| get(key, &config, &credentials).is_some());
        Ok(Some(AwsProfile {
            credential_process: get("credential_process", &credentials, &config),
            unsupported_source,
            access_key_id: get("aws_access_key_id", &credentials, &config),
            secret_access_key: get("aws_secret_access_key", &credentials, &config),
            session_token: get("aws_session_token", &credentials, &config),
            region: get("region", &config, &credentials),
            endpoint_url: get("endpoint_url", &config, &credentials),
            name,
        }))
    }

    /// Fills what `builder` lacks from this profile (the environment and explicit settings
    /// win). A plain `http://` endpoint from the profile allows plain HTTP: naming one is
    /// asking for it.
    pub fn apply(&self, mut builder: AmazonS3Builder) -> AmazonS3Builder {
        let has = |b: &AmazonS3Builder, key| b.get_config_value(&key).is_some();
        if !has(&builder, AmazonS3ConfigKey::AccessKeyId)
            && !has(&builder, AmazonS3ConfigKey::SecretAccessKey)
            && let (Some(key), Some(secret)) = (&self.access_key_id, &self.secret_access_key)
        {
            builder = builder
                .with_access_key_id(key.clone())
                .with_secret_access_key(secret.clone());
            if let Some(token) = &self.session_token {
                builder = builder.with_token(token.clone());
            }
        }
        if !has(&builder, AmazonS3ConfigKey::Region)
            && let Some(region) = &self.region
        {
            builder = builder.with_region(region.clone());
        }
        if !has(&builder, AmazonS3ConfigKey::Endpoint)
            && !has(&builder, AmazonS3ConfigKey::S3Endpoint)
            && let Some(endpoint) = &self.endpoint_url
        {
            if endpoint.starts_with("http://") {
                builder = builder.with_allow_http(true);
            }
            builder = builder.with_endpoint(endpoint.clone());
        }
        builder
    }
}

impl AwsProfile {
    /// The credential provider of `credential_process`, when the profile has one and
    /// `builder` has no keys (from the environment, explicit settings or the profile's own
    /// static keys, which win as they do in the AWS CLI).
    pub fn credential_provider(
        &self,
        builder: &AmazonS3Builder,
    ) -> Result<Option<crate::credential_process::ProcessCredentials>> {
        let Some(command) = &self.credential_process else {
            return Ok(None);
        };
        if has_keys(builder) {
            return Ok(None);
        }
        crate::credential_process::ProcessCredentials::new(command)
            .map(Some)
            .map_err(|_| Error::InvalidConfig {
                setting: "credential_process",
                value: command.clone(),
                reason: "not a command line (empty, or a quote is not closed)",
            })
    }

    /// Refuses a profile whose only credential source is one Strom does not support (IAM
    /// Identity Center, role assumption) when `builder` has no keys from elsewhere: without
    /// this, the client would fall back to the instance metadata service and fail at the
    /// first request.
    pub fn check_supported(&self, builder: &AmazonS3Builder) -> Result<()> {
        match self.unsupported_source {
            Some(key) if self.credential_process.is_none() && !has_keys(builder) => {
                Err(Error::InvalidConfig {
                    setting: key,
                    value: self.name.clone(),
                    reason: "AWS SSO and role_arn profiles are not supported; set AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, static keys, or credential_process (e.g. `aws configure export-credentials --profile NAME --format process`)",
                })
            }
            _ => Ok(()),
        }
    }
}

/// Whether `builder` has an access key or secret already.
fn has_keys(builder: &AmazonS3Builder) -> bool {
    builder
        .get_config_value(&AmazonS3ConfigKey::AccessKeyId)
        .is_some()
        || builder
            .get_config_value(&AmazonS3ConfigKey::SecretAccessKey)
            .is_some()
}

fn lookup(pairs: &[(String, String)], key: &str) -> Option<String> {
    pairs
        .iter()
        .rev()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.clone())
}

/// The `key = value` pairs of `[wanted]` in the INI file at `path`; `None` when the file or
/// the section does not exist. Nested blocks (`s3 =` followed by indented lines) are skipped.
fn section(path: &Path, wanted: &str) -> Result<Option<Vec<(String, String)>>> {
    let text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(_) => {
            return Err(Error::InvalidConfig {
                setting: "AWS profile file",
                value: path.display().to_string(),
                reason: "cannot be read",
            });
        }
    };
    Ok(parse_section(&text, wanted))
}

fn parse_section(text: &str, wanted: &str) -> Option<Vec<(String, String)>> {
    let mut found: Option<Vec<(String, String)>> = None;
    let mut inside = false;
    for line in text.lines() {
        let indented = line.starts_with([' ', '\t']);
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') || line.starts_with(';') {
            continue;
        }
        if let Some(name) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            let name = name.split_whitespace().collect::<Vec<_>>().join(" ");
            inside = name == wanted;
            if inside {
                found.get_or_insert_with(Vec::new);
            }
            continue;
        }
        if !inside || indented {
            continue;
        }
        if let (Some((key, value)), Some(pairs)) = (line.split_once('='), found.as_mut()) {
            let value = value.trim();
            if !value.is_empty() {
                pairs.push((key.trim().to_ascii_lowercase(), value.to_owned()));
            }
        }
    }
    found
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    const CREDENTIALS: &str = "\
[default]
aws_access_key_id = DEFAULTKEY
aws_secret_access_key = defaultsecret

[staging]
aws_access_key_id=STAGINGKEY
aws_secret_access_key=stagingsecret
aws_session_token = stagingtoken
";

    const CONFIG: &str = "\
# comment
[default]
region = eu-west-1

[profile staging]
region = ap-south-1
endpoint_url = http://127.0.0.1:9000
s3 =
  addressing_style = path
";

    /// A scratch HOME with both files, and an environment lookup over `vars` and it.
    fn home() -> tempfile::TempDir {
        let home = tempfile::tempdir().unwrap();
        std::fs::create_dir(home.path().join(".aws")).unwrap();
        std::fs::write(home.path().join(".aws/credentials"), CREDENTIALS).unwrap();
        std::fs::write(home.path().join(".aws/config"), CONFIG).unwrap();
        home
    }

    fn env(home: &Path, vars: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let mut map: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        map.insert("HOME".into(), home.display().to_string());
        move |name| map.get(name).cloned()
    }

    fn value(builder: &AmazonS3Builder, key: AmazonS3ConfigKey) -> Option<String> {
        builder.get_config_value(&key)
    }

    #[test]
    fn default_profile_from_home() {
        let home = home();
        let profile = AwsProfile::load(&env(home.path(), &[])).unwrap().unwrap();
        assert_eq!(profile.name, "default");
        assert_eq!(profile.access_key_id.as_deref(), Some("DEFAULTKEY"));
        assert_eq!(profile.secret_access_key.as_deref(), Some("defaultsecret"));
        assert_eq!(profile.region.as_deref(), Some("eu-west-1"));
        assert_eq!(profile.endpoint_url, None);
        let b = profile.apply(AmazonS3Builder::new());
        assert_eq!(
            value(&b, AmazonS3ConfigKey::Region).as_deref(),
            Some("eu-west-1")
        );
        assert_eq!(
            value(&b, AmazonS3ConfigKey::AccessKeyId).as_deref(),
            Some("DEFAULTKEY")
        );
    }

    #[test]
    fn named_profile_sets_keys_token_region_and_endpoint() {
        let home = home();
        let profile = AwsProfile::load(&env(home.path(), &[("AWS_PROFILE", "staging")]))
            .unwrap()
            .unwrap();
        let b = profile.apply(AmazonS3Builder::new());
        assert_eq!(
            value(&b, AmazonS3ConfigKey::AccessKeyId).as_deref(),
            Some("STAGINGKEY")
        );
        assert_eq!(
            value(&b, AmazonS3ConfigKey::SecretAccessKey).as_deref(),
            Some("stagingsecret")
        );
        assert_eq!(
            value(&b, AmazonS3ConfigKey::Token).as_deref(),
            Some("stagingtoken")
        );
        assert_eq!(
            value(&b, AmazonS3ConfigKey::Region).as_deref(),
            Some("ap-south-1")
        );
        assert_eq!(
            value(&b, AmazonS3ConfigKey::Endpoint).as_deref(),
            Some("http://127.0.0.1:9000")
        );
        // The nested `s3 =` block is not read as keys of the profile.
        assert!(!format!("{profile:?}").contains("addressing_style"));
        assert_eq!(
            value(
                &b,
                AmazonS3ConfigKey::Client(object_store::ClientConfigKey::AllowHttp)
            )
            .as_deref(),
            Some("true")
        );
    }

    #[test]
    fn environment_and_explicit_settings_win_over_the_profile() {
        let home = home();
        let profile = AwsProfile::load(&env(home.path(), &[("AWS_PROFILE", "staging")]))
            .unwrap()
            .unwrap();
        // As if AWS_REGION and AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY were set.
        let b = profile.apply(
            AmazonS3Builder::new()
                .with_region("us-west-2")
                .with_access_key_id("ENVKEY")
                .with_secret_access_key("envsecret")
                .with_endpoint("http://localhost:1"),
        );
        assert_eq!(
            value(&b, AmazonS3ConfigKey::Region).as_deref(),
            Some("us-west-2")
        );
        assert_eq!(
            value(&b, AmazonS3ConfigKey::AccessKeyId).as_deref(),
            Some("ENVKEY")
        );
        assert_eq!(value(&b, AmazonS3ConfigKey::Token), None);
        assert_eq!(
            value(&b, AmazonS3ConfigKey::Endpoint).as_deref(),
            Some("http://localhost:1")
        );
    }

    #[test]
    fn files_named_by_variables_and_missing_profiles() {
        let home = home();
        let elsewhere = tempfile::tempdir().unwrap();
        let config = elsewhere.path().join("cfg");
        std::fs::write(&config, "[profile other]\nregion = sa-east-1\n").unwrap();
        let vars = [
            ("AWS_PROFILE", "other"),
            ("AWS_CONFIG_FILE", config.to_str().unwrap()),
            ("AWS_SHARED_CREDENTIALS_FILE", "/nonexistent/credentials"),
        ];
        let profile = AwsProfile::load(&env(home.path(), &vars)).unwrap().unwrap();
        assert_eq!(profile.region.as_deref(), Some("sa-east-1"));
        assert_eq!(profile.access_key_id, None);

        // A named profile that no file has is an error; no files and no name is no profile.
        let err = AwsProfile::load(&env(home.path(), &[("AWS_PROFILE", "nope")])).unwrap_err();
        assert!(err.to_string().contains("nope"), "{err}");
        let empty = tempfile::tempdir().unwrap();
        assert_eq!(AwsProfile::load(&env(empty.path(), &[])).unwrap(), None);
    }

    #[test]
    fn credential_process_is_used_only_without_keys_and_sso_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let config = dir.path().join("config");
        std::fs::write(
            &config,
            "[profile proc]\ncredential_process = /bin/creds --user 'a b'\nregion = eu-west-1\n\
             [profile both]\ncredential_process = /bin/creds\naws_access_key_id = STATIC\naws_secret_access_key = s\n\
             [profile sso]\nsso_session = corp\nsso_account_id = 1\n",
        )
        .unwrap();
        let load = |name: &str| {
            let vars = [
                ("AWS_PROFILE", name),
                ("AWS_CONFIG_FILE", config.to_str().unwrap()),
                ("AWS_SHARED_CREDENTIALS_FILE", "/nonexistent/credentials"),
            ];
            AwsProfile::load(&env(dir.path(), &vars)).unwrap().unwrap()
        };
        let proc_ = load("proc");
        assert_eq!(
            proc_.credential_process.as_deref(),
            Some("/bin/creds --user 'a b'")
        );
        let b = proc_.apply(AmazonS3Builder::new());
        let provider = proc_.credential_provider(&b).unwrap().expect("used");
        assert_eq!(provider.command(), "/bin/creds --user 'a b'");
        proc_.check_supported(&b).unwrap();
        // Keys from the environment (or flags) win over the process.
        let with_env_keys = proc_.apply(
            AmazonS3Builder::new()
                .with_access_key_id("ENV")
                .with_secret_access_key("env"),
        );
        assert!(proc_.credential_provider(&with_env_keys).unwrap().is_none());
        // The profile's own static keys win too.
        let both = load("both");
        let b = both.apply(AmazonS3Builder::new());
        assert!(both.credential_provider(&b).unwrap().is_none());
        assert_eq!(
            value(&b, AmazonS3ConfigKey::AccessKeyId).as_deref(),
            Some("STATIC")
        );
        // SSO: refused with the way out, unless keys come from elsewhere.
        let sso = load("sso");
        let err = sso
            .check_supported(&sso.apply(AmazonS3Builder::new()))
            .unwrap_err();
        assert!(err.to_string().contains("credential_process"), "{err}");
        assert!(err.to_string().contains("sso_session"), "{err}");
        sso.check_supported(&with_env_keys).unwrap();
    }
}
