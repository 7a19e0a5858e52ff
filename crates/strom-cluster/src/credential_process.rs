//! The AWS profile's `credential_process`: an external command that prints temporary
//! credentials, as the AWS CLI and SDKs run it.
//!
//! The command line is split into words as a POSIX shell would (quotes and backslashes; no
//! variables, globs or pipes) and run directly, not through a shell. It must exit with status
//! 0 and print one JSON object:
//!
//! ```json
//! {"Version": 1, "AccessKeyId": "…", "SecretAccessKey": "…",
//!  "SessionToken": "…", "Expiration": "2026-12-06T23:00:00Z"}
//! ```
//!
//! `Version` must be 1; `SessionToken` and `Expiration` (RFC 3339) are optional. Credentials
//! without `Expiration` are kept for the life of the broker. Others are kept until
//! [`REFRESH_BEFORE`] before they expire, or half their lifetime before when they were issued
//! for less than twice that, then the command runs again on the next request. When a refresh
//! fails while the cached credentials have not expired yet, those are used (and the failure
//! logged); otherwise the request fails with a [`CredentialProcessError`], which the
//! object-store client reports as a failed request (the writer and reader retry it and answer
//! producers and consumers with a retriable error).

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use object_store::CredentialProvider;
use object_store::aws::AwsCredential;
use tokio::sync::Mutex;

/// Credentials are refreshed this long before they expire (at most half their lifetime).
pub const REFRESH_BEFORE: Duration = Duration::from_secs(300);

/// Longest run of the command before it is killed and the request fails.
pub const PROCESS_TIMEOUT: Duration = Duration::from_secs(60);

/// Why the credential process gave no credentials.
#[derive(Debug, Clone, thiserror::Error)]
pub enum CredentialProcessError {
    /// The command line is empty or has an unterminated quote.
    #[error("credential_process {command:?} is not a command line")]
    BadCommandLine {
        /// The configured command line.
        command: String,
    },
    /// The command could not be started.
    #[error("credential_process {program:?} could not be started: {source}")]
    Spawn {
        /// The program.
        program: String,
        /// The operating system's error.
        source: Arc<std::io::Error>,
    },
    /// The command did not finish in time (it was killed).
    #[error("credential_process {program:?} did not finish within {waited:?}")]
    Timeout {
        /// The program.
        program: String,
        /// How long it ran.
        waited: Duration,
    },
    /// The command exited unsuccessfully.
    #[error("credential_process {program:?} exited with {status}: {stderr}")]
    Failed {
        /// The program.
        program: String,
        /// Its exit status.
        status: std::process::ExitStatus,
        /// The end of its standard error.
        stderr: String,
    },
    /// The output is not a JSON object.
    #[error("credential_process {program:?} printed no JSON object: {source}")]
    NotJson {
        /// The program.
        program: String,
        /// The parser's error.
        source: Arc<serde_json::Error>,
    },
    /// `Version` is not 1.
    #[error("credential_process {program:?} printed Version {version}; only 1 is supported")]
    Version {
        /// The program.
        program: String,
        /// The version printed (JSON text).
        version: String,
    },
    /// A required field is missing or not a string.
    #[error("credential_process {program:?} printed no string {field}")]
    MissingField {
        /// The program.
        program: String,
        /// The field.
        field: &'static str,
    },
    /// `Expiration` is not an RFC 3339 time.
    #[error("credential_process {program:?} printed Expiration {value:?}, not an RFC 3339 time")]
    BadExpiration {
        /// The program.
        program: String,
        /// The value printed.
        value: String,
    },
    /// The credentials printed have already expired.
    #[error("credential_process {program:?} printed credentials that expired at {value}")]
    Expired {
        /// The program.
        program: String,
        /// Their `Expiration`.
        value: String,
    },
}

/// Credentials and when to fetch new ones.
#[derive(Debug, Clone)]
struct Cached {
    credential: Arc<AwsCredential>,
    /// When they expire (`None`: never).
    expires: Option<SystemTime>,
    /// When to run the command again (`None`: never).
    refresh_at: Option<SystemTime>,
}

/// An object-store credential provider running a `credential_process` command (see the
/// module docs).
#[derive(Debug)]
pub struct ProcessCredentials {
    command: String,
    argv: Vec<String>,
    timeout: Duration,
    cached: Mutex<Option<Cached>>,
}

impl ProcessCredentials {
    /// A provider running `command`, split into words now (an error names the command line).
    pub fn new(command: &str) -> Result<ProcessCredentials, CredentialProcessError> {
        let argv =
            split_command_line(command).ok_or_else(|| CredentialProcessError::BadCommandLine {
                command: command.to_owned(),
            })?;
        Ok(ProcessCredentials {
            command: command.to_owned(),
            argv,
            timeout: PROCESS_TIMEOUT,
            cached: Mutex::new(None),
        })
    }

    /// The configured command line.
    pub fn command(&self) -> &str {
        &self.command
    }

    /// Current credentials: cached ones while they are fresh, else the command's output.
    pub async fn credentials(&self) -> Result<Arc<AwsCredential>, CredentialProcessError> {
        let mut cached = self.cached.lock().await;
        let now = SystemTime::now();
        if let Some(c) = cached.as_ref()
            && c.refresh_at.is_none_or(|at| now < at)
        {
            return Ok(Arc::clone(&c.credential));
        }
        match self.run().await {
            Ok(fresh) => {
                let credential = Arc::clone(&fresh.credential);
                *cached = Some(fresh);
                Ok(credential)
            }
            Err(error) => match cached.as_ref() {
                Some(c) if c.expires.is_none_or(|at| now < at) => {
                    tracing::warn!(%error, "refreshing AWS credentials failed; using the current ones until they expire");
                    Ok(Arc::clone(&c.credential))
                }
                _ => Err(error),
            },
        }
    }

    /// Runs the command once and parses its output.
    async fn run(&self) -> Result<Cached, CredentialProcessError> {
        let program = self.argv.first().cloned().unwrap_or_default();
        let child = tokio::process::Command::new(&program)
            .args(&self.argv[1..])
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .map_err(|source| CredentialProcessError::Spawn {
                program: program.clone(),
                source: Arc::new(source),
            })?;
        let output = match tokio::time::timeout(self.timeout, child.wait_with_output()).await {
            Ok(Ok(output)) => output,
            Ok(Err(source)) => {
                return Err(CredentialProcessError::Spawn {
                    program,
                    source: Arc::new(source),
                });
            }
            Err(_) => {
                return Err(CredentialProcessError::Timeout {
                    program,
                    waited: self.timeout,
                });
            }
        };
        if !output.status.success() {
            let stderr = String::from_utf8_lossy(&output.stderr);
            let stderr = stderr.trim();
            // The end says why; keep the message bounded.
            let tail: String = stderr
                .chars()
                .rev()
                .take(500)
                .collect::<Vec<_>>()
                .into_iter()
                .rev()
                .collect();
            return Err(CredentialProcessError::Failed {
                program,
                status: output.status,
                stderr: tail,
            });
        }
        parse_output(&program, &output.stdout, SystemTime::now())
    }
}

#[async_trait::async_trait]
impl CredentialProvider for ProcessCredentials {
    type Credential = AwsCredential;

    async fn get_credential(&self) -> object_store::Result<Arc<AwsCredential>> {
        self.credentials()
            .await
            .map_err(|error| object_store::Error::Generic {
                store: "S3",
                source: Box::new(error),
            })
    }
}

/// Parses the command's JSON output, issued at `now`.
fn parse_output(
    program: &str,
    stdout: &[u8],
    now: SystemTime,
) -> Result<Cached, CredentialProcessError> {
    let value: serde_json::Value =
        serde_json::from_slice(stdout).map_err(|source| CredentialProcessError::NotJson {
            program: program.to_owned(),
            source: Arc::new(source),
        })?;
    let version = value.get("Version").cloned().unwrap_or_default();
    if version.as_u64() != Some(1) {
        return Err(CredentialProcessError::Version {
            program: program.to_owned(),
            version: version.to_string(),
        });
    }
    let text = |field: &'static str| {
        value
            .get(field)
            .and_then(|v| v.as_str())
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
    };
    let required = |field: &'static str| {
        text(field).ok_or_else(|| CredentialProcessError::MissingField {
            program: program.to_owned(),
            field,
        })
    };
    let credential = AwsCredential {
        key_id: required("AccessKeyId")?,
        secret_key: required("SecretAccessKey")?,
        token: text("SessionToken"),
    };
    let (expires, refresh_at) = match text("Expiration") {
        None => (None, None),
        Some(raw) => {
            let at = parse_rfc3339(&raw).ok_or_else(|| CredentialProcessError::BadExpiration {
                program: program.to_owned(),
                value: raw.clone(),
            })?;
            let lifetime = at
                .duration_since(now)
                .map_err(|_| CredentialProcessError::Expired {
                    program: program.to_owned(),
                    value: raw.clone(),
                })?;
            if lifetime.is_zero() {
                return Err(CredentialProcessError::Expired {
                    program: program.to_owned(),
                    value: raw,
                });
            }
            let margin = REFRESH_BEFORE.min(lifetime / 2);
            (Some(at), Some(at - margin))
        }
    };
    Ok(Cached {
        credential: Arc::new(credential),
        expires,
        refresh_at,
    })
}

/// Splits a command line into words as a POSIX shell does for quoting: whitespace separates,
/// `'…'` is literal, `"…"` keeps `\"`, `\\`, `\$` and `` \` `` escapes, a backslash outside
/// quotes escapes the next character. `None` for an empty line or an unterminated quote.
fn split_command_line(line: &str) -> Option<Vec<String>> {
    let mut words = Vec::new();
    let mut word = String::new();
    let mut in_word = false;
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        match c {
            c if c.is_whitespace() => {
                if in_word {
                    words.push(std::mem::take(&mut word));
                    in_word = false;
                }
            }
            '\'' => {
                in_word = true;
                loop {
                    match chars.next()? {
                        '\'' => break,
                        c => word.push(c),
                    }
                }
            }
            '"' => {
                in_word = true;
                loop {
                    match chars.next()? {
                        '"' => break,
                        '\\' => match chars.next()? {
                            c @ ('"' | '\\' | '$' | '`') => word.push(c),
                            '\n' => {}
                            c => {
                                word.push('\\');
                                word.push(c);
                            }
                        },
                        c => word.push(c),
                    }
                }
            }
            '\\' => {
                in_word = true;
                match chars.next() {
                    Some('\n') => {}
                    Some(c) => word.push(c),
                    None => word.push('\\'),
                }
            }
            c => {
                in_word = true;
                word.push(c);
            }
        }
    }
    if in_word {
        words.push(word);
    }
    (!words.is_empty()).then_some(words)
}

/// An RFC 3339 date-time (`2026-12-06T23:00:00Z`, `…T23:00:00.123+01:00`) as a time, `None`
/// when malformed or before 1970.
fn parse_rfc3339(s: &str) -> Option<SystemTime> {
    let at = chrono::DateTime::parse_from_rfc3339(s).ok()?;
    let at = SystemTime::from(at);
    (at >= SystemTime::UNIX_EPOCH).then_some(at)
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;

    fn at(secs: u64) -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(secs)
    }

    #[test]
    fn rfc3339_times() {
        assert_eq!(parse_rfc3339("1970-01-01T00:00:00Z"), Some(at(0)));
        assert_eq!(
            parse_rfc3339("2026-12-06T23:00:00Z"),
            Some(at(1_796_598_000))
        );
        assert_eq!(
            parse_rfc3339("2026-12-07T00:30:00+01:30"),
            Some(at(1_796_598_000))
        );
        assert_eq!(
            parse_rfc3339("2026-12-06t21:00:00-02:00"),
            Some(at(1_796_598_000))
        );
        assert_eq!(
            parse_rfc3339("2024-02-29T12:00:00.250Z"),
            Some(at(1_709_208_000) + Duration::from_millis(250))
        );
        for bad in [
            "",
            "2026-12-06",
            "2026-12-06T23:00:00",
            "2026-13-06T23:00:00Z",
            "2025-02-29T00:00:00Z",
            "2026-12-06T24:00:00Z",
            "2026-12-06T23:00:00+0100",
            "2026-12-06T23:00:00.Z",
            "1969-12-31T23:59:59Z",
            "2026-12-06T23:00:00Zjunk",
        ] {
            assert_eq!(parse_rfc3339(bad), None, "{bad}");
        }
    }

    #[test]
    fn command_lines_split_like_a_shell() {
        let split = |s| split_command_line(s).unwrap();
        assert_eq!(
            split("/bin/creds --user susan"),
            ["/bin/creds", "--user", "susan"]
        );
        assert_eq!(
            split(r#"  "/opt/my tools/creds" 'a b' c\ d "x\"y" "" "#),
            ["/opt/my tools/creds", "a b", "c d", "x\"y", ""]
        );
        assert_eq!(split(r#"a"b"'c'd"#), ["abcd"]);
        assert_eq!(split_command_line("   "), None);
        assert_eq!(split_command_line("creds 'open"), None);
        assert_eq!(split_command_line("creds \"open"), None);
    }

    #[test]
    fn output_is_checked_and_expiry_sets_the_refresh() {
        let now = at(1_796_598_000);
        let ok = br#"{"Version":1,"AccessKeyId":"AK","SecretAccessKey":"SK","SessionToken":"T","Expiration":"2026-12-07T00:00:00Z"}"#;
        let c = parse_output("p", ok, now).unwrap();
        assert_eq!(c.credential.key_id, "AK");
        assert_eq!(c.credential.secret_key, "SK");
        assert_eq!(c.credential.token.as_deref(), Some("T"));
        assert_eq!(c.expires, Some(now + Duration::from_secs(3600)));
        assert_eq!(c.refresh_at, Some(now + Duration::from_secs(3300)));
        // Short-lived credentials are refreshed half way.
        let short = br#"{"Version":1,"AccessKeyId":"AK","SecretAccessKey":"SK","Expiration":"2026-12-06T23:01:00Z"}"#;
        let c = parse_output("p", short, now).unwrap();
        assert_eq!(c.refresh_at, Some(now + Duration::from_secs(30)));
        assert_eq!(c.credential.token, None);
        // No expiration: kept.
        let c = parse_output(
            "p",
            br#"{"Version":1,"AccessKeyId":"A","SecretAccessKey":"S"}"#,
            now,
        )
        .unwrap();
        assert_eq!((c.expires, c.refresh_at), (None, None));

        let refused: [(&[u8], &str); 6] = [
            (b"not json", "no JSON"),
            (br#"{"Version":2,"AccessKeyId":"A","SecretAccessKey":"S"}"#, "Version 2"),
            (br#"{"AccessKeyId":"A","SecretAccessKey":"S"}"#, "Version null"),
            (br#"{"Version":1,"AccessKeyId":"A"}"#, "SecretAccessKey"),
            (
                br#"{"Version":1,"AccessKeyId":"A","SecretAccessKey":"S","Expiration":"soon"}"#,
                "not an RFC 3339",
            ),
            (
                br#"{"Version":1,"AccessKeyId":"A","SecretAccessKey":"S","Expiration":"2026-12-06T22:59:59Z"}"#,
                "expired",
            ),
        ];
        for (out, says) in refused {
            let err = parse_output("p", out, now).unwrap_err();
            assert!(err.to_string().contains(says), "{err}");
        }
    }

    /// A script in `dir` that counts its runs in `dir/runs` and prints `body` (a shell
    /// snippet; `$n` is the run number).
    fn script(dir: &Path, body: &str) -> String {
        use std::os::unix::fs::PermissionsExt;
        let path = dir.join("creds.sh");
        let runs = dir.join("runs");
        std::fs::write(
            &path,
            format!(
                "#!/bin/sh\nn=$(( $(cat '{runs}' 2>/dev/null || echo 0) + 1 ))\necho $n > '{runs}'\n{body}\n",
                runs = runs.display()
            ),
        )
        .unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
        // A directory name with a space, quoted as a user would.
        format!("'{}' --flag", path.display())
    }

    fn runs(dir: &Path) -> u32 {
        std::fs::read_to_string(dir.join("runs"))
            .map(|s| s.trim().parse().unwrap())
            .unwrap_or(0)
    }

    fn scratch() -> tempfile::TempDir {
        tempfile::Builder::new()
            .prefix("strom creds ")
            .tempdir()
            .unwrap()
    }

    #[tokio::test]
    async fn credentials_are_cached_until_shortly_before_they_expire() {
        let dir = scratch();
        // Valid for an hour: the second call uses the cached ones.
        let command = script(
            dir.path(),
            r#"[ "$1" = --flag ] || exit 3
exp=$(date -u -d '+1 hour' +%Y-%m-%dT%H:%M:%SZ)
printf '{"Version":1,"AccessKeyId":"AK%s","SecretAccessKey":"SK","SessionToken":"T","Expiration":"%s"}' "$n" "$exp""#,
        );
        let p = ProcessCredentials::new(&command).unwrap();
        let first = p.get_credential().await.unwrap();
        assert_eq!(first.key_id, "AK1");
        assert_eq!(first.token.as_deref(), Some("T"));
        let second = p.get_credential().await.unwrap();
        assert_eq!(second.key_id, "AK1");
        assert_eq!(runs(dir.path()), 1, "cached");
    }

    #[tokio::test]
    async fn short_lived_credentials_are_refreshed_and_a_failed_refresh_keeps_valid_ones() {
        let dir = scratch();
        // Valid for 4 s: refreshed after 2 s; runs after the second fail.
        let command = script(
            dir.path(),
            r#"[ "$n" -gt 2 ] && { echo "token service unreachable" >&2; exit 7; }
exp=$(date -u -d '+4 seconds' +%Y-%m-%dT%H:%M:%SZ)
printf '{"Version":1,"AccessKeyId":"AK%s","SecretAccessKey":"SK","Expiration":"%s"}' "$n" "$exp""#,
        );
        let p = ProcessCredentials::new(&command).unwrap();
        assert_eq!(p.get_credential().await.unwrap().key_id, "AK1");
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        loop {
            let key = p.get_credential().await.unwrap().key_id.clone();
            if key == "AK2" {
                break;
            }
            assert_eq!(key, "AK1");
            assert!(std::time::Instant::now() < deadline, "never refreshed");
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        // The third run fails: AK2 is used while it is valid, then the failure is the answer.
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        let err = loop {
            match p.credentials().await {
                Ok(c) => assert_eq!(c.key_id, "AK2"),
                Err(e) => break e,
            }
            assert!(std::time::Instant::now() < deadline, "never expired");
            tokio::time::sleep(Duration::from_millis(200)).await;
        };
        assert!(runs(dir.path()) >= 3);
        assert!(
            matches!(err, CredentialProcessError::Failed { .. }),
            "{err}"
        );
        assert!(
            err.to_string().contains("token service unreachable"),
            "{err}"
        );
    }

    #[tokio::test]
    async fn a_missing_or_hanging_command_is_an_error() {
        let p = ProcessCredentials::new("/nonexistent/creds").unwrap();
        let err = p.credentials().await.unwrap_err();
        assert!(matches!(err, CredentialProcessError::Spawn { .. }), "{err}");
        let mut p = ProcessCredentials::new("sleep 30").unwrap();
        p.timeout = Duration::from_millis(300);
        let err = p.credentials().await.unwrap_err();
        assert!(
            matches!(err, CredentialProcessError::Timeout { .. }),
            "{err}"
        );
        assert!(ProcessCredentials::new("creds 'unterminated").is_err());
    }
}
