//! The agent's settings: a TOML file, overridden by `CERTMESH_AGENT_<KEY>` environment
//! variables, overridden by command-line flags, then validated once into [`Settings`].
//!
//! Every source fills the same [`Layer`] (all keys optional); [`Layer::over`] stacks them and
//! [`Layer::validate`] destructures the result exhaustively, so a new key cannot be forgotten.
//! The bootstrap token is a [`Secret`] whose `Debug` never shows it. The `[discovery]` table
//! ([`DiscoveryLayer`]) names the paths searched for certificates to report.

use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

use certmesh_crypto::keys::KeySpec;
use serde::Deserialize;
use zeroize::Zeroizing;

use crate::error::{AgentError, Result};

/// Where `--config` points by default.
pub const DEFAULT_CONFIG: &str = "/etc/certmesh-agent/agent.toml";
/// Where the identity, pending keys, backups and status live by default.
pub const DEFAULT_STATE_DIR: &str = "/var/lib/certmesh-agent";
/// Prefix of the environment variables, followed by the upper-cased key.
pub const ENV_PREFIX: &str = "CERTMESH_AGENT_";
/// How often discovery searches its paths again by default.
pub const DEFAULT_DISCOVERY_INTERVAL: Duration = Duration::from_secs(3600);
/// The shortest discovery interval (every search reads every file under the paths).
pub const MIN_DISCOVERY_INTERVAL: Duration = Duration::from_secs(60);

/// A secret string (the bootstrap token): zeroized on drop, redacted in `Debug`.
#[derive(Clone)]
pub struct Secret(Zeroizing<String>);

impl<'de> Deserialize<'de> for Secret {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        String::deserialize(d).map(Secret::new)
    }
}

impl Secret {
    /// Wraps a secret.
    pub fn new(value: impl Into<String>) -> Self {
        Self(Zeroizing::new(value.into()))
    }

    /// The secret itself, for the one place that sends it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
}

/// One source of settings; every key optional. The TOML file rejects keys not listed here.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Layer {
    /// The fleet listener, `https://host:port`.
    pub server: Option<String>,
    /// PEM bundle of the CAs that may sign the server's certificate.
    pub ca_bundle: Option<PathBuf>,
    /// TLS name to check the server's certificate against, instead of the URL's host.
    pub server_name: Option<String>,
    /// The agent's state directory.
    pub state_dir: Option<PathBuf>,
    /// A file holding the bootstrap token (used when `bootstrap_token` is unset).
    pub bootstrap_token_file: Option<PathBuf>,
    /// The bootstrap token itself.
    pub bootstrap_token: Option<Secret>,
    /// The group the operator expects the agent in (informational; the token decides).
    pub group: Option<String>,
    /// Key type of the agent's identity key: `ecdsa-p256` (default) or `ecdsa-p384`.
    pub key_type: Option<String>,
    /// `[discovery]`: where to look for certificates to report.
    #[serde(default)]
    pub discovery: DiscoveryLayer,
}

/// The `[discovery]` table; every key optional, unknown keys rejected.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DiscoveryLayer {
    /// Absolute paths of files and directories to search (`CERTMESH_AGENT_DISCOVERY_PATHS`,
    /// comma-separated). None: discovery is off.
    pub paths: Option<Vec<PathBuf>>,
    /// How often to search again, e.g. `"1h"` (default) or `"30m"`
    /// (`CERTMESH_AGENT_DISCOVERY_INTERVAL`).
    pub interval: Option<String>,
}

impl DiscoveryLayer {
    fn over(self, lower: DiscoveryLayer) -> DiscoveryLayer {
        DiscoveryLayer {
            paths: self.paths.or(lower.paths),
            interval: self.interval.or(lower.interval),
        }
    }

    fn validate(self) -> Result<DiscoverySettings> {
        let DiscoveryLayer { paths, interval } = self;
        let paths = paths.unwrap_or_default();
        if let Some(relative) = paths.iter().find(|p| !p.is_absolute()) {
            return Err(AgentError::config(format!(
                "discovery path {} must be absolute",
                relative.display()
            )));
        }
        let interval = match interval.as_deref() {
            None => DEFAULT_DISCOVERY_INTERVAL,
            Some(text) => parse_interval(text).map_err(|problem| {
                AgentError::config(format!("discovery interval {text:?} {problem}"))
            })?,
        };
        Ok(DiscoverySettings { paths, interval })
    }
}

/// `<n><unit>` repeated, units `d`, `h`, `m`, `s` (`"1h"`, `"1h30m"`), at least
/// [`MIN_DISCOVERY_INTERVAL`]; the error completes a sentence about the value.
fn parse_interval(text: &str) -> std::result::Result<Duration, String> {
    const FORM: &str = "is not a duration like \"1h\" or \"30m\"";
    let mut seconds: u64 = 0;
    let mut number: Option<u64> = None;
    for ch in text.trim().chars() {
        if let Some(digit) = ch.to_digit(10) {
            let n = number.unwrap_or(0).checked_mul(10);
            number = Some(
                n.and_then(|n| n.checked_add(u64::from(digit)))
                    .ok_or("is too long")?,
            );
            continue;
        }
        let unit = match ch {
            'd' => 86_400,
            'h' => 3_600,
            'm' => 60,
            's' => 1,
            _ => return Err(FORM.to_owned()),
        };
        let part = number.take().ok_or(FORM)?.checked_mul(unit);
        seconds = part
            .and_then(|p| seconds.checked_add(p))
            .ok_or("is too long")?;
    }
    if number.is_some() || text.trim().is_empty() {
        return Err(FORM.to_owned());
    }
    let interval = Duration::from_secs(seconds);
    if interval < MIN_DISCOVERY_INTERVAL {
        return Err("is shorter than 1m".to_owned());
    }
    Ok(interval)
}

/// A comma-separated list of paths, blanks dropped.
fn path_list(text: &str) -> Vec<PathBuf> {
    text.split(',')
        .map(str::trim)
        .filter(|p| !p.is_empty())
        .map(PathBuf::from)
        .collect()
}

impl Layer {
    /// Parses a TOML file's text.
    pub fn from_toml(text: &str, path: &Path) -> Result<Layer> {
        toml::from_str(text)
            .map_err(|e| AgentError::config(format!("{}: {}", path.display(), e.message())))
    }

    /// Reads the TOML file at `path`; a missing file is an empty layer.
    pub fn from_file(path: &Path) -> Result<Layer> {
        match std::fs::read_to_string(path) {
            Ok(text) => Layer::from_toml(&text, path),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Layer::default()),
            Err(e) => Err(AgentError::io(format!("reading {}", path.display()), e)),
        }
    }

    /// The `CERTMESH_AGENT_<KEY>` variables, read through `lookup` (empty values are unset).
    pub fn from_env(lookup: impl Fn(&str) -> Option<String>) -> Layer {
        let get = |key: &str| {
            lookup(&format!("{ENV_PREFIX}{}", key.to_ascii_uppercase())).filter(|v| !v.is_empty())
        };
        Layer {
            server: get("server"),
            ca_bundle: get("ca_bundle").map(PathBuf::from),
            server_name: get("server_name"),
            state_dir: get("state_dir").map(PathBuf::from),
            bootstrap_token_file: get("bootstrap_token_file").map(PathBuf::from),
            bootstrap_token: get("bootstrap_token").map(Secret::new),
            group: get("group"),
            key_type: get("key_type"),
            discovery: DiscoveryLayer {
                paths: get("discovery_paths").map(|v| path_list(&v)),
                interval: get("discovery_interval"),
            },
        }
    }

    /// This layer's keys where set, `lower`'s elsewhere.
    pub fn over(self, lower: Layer) -> Layer {
        Layer {
            server: self.server.or(lower.server),
            ca_bundle: self.ca_bundle.or(lower.ca_bundle),
            server_name: self.server_name.or(lower.server_name),
            state_dir: self.state_dir.or(lower.state_dir),
            bootstrap_token_file: self.bootstrap_token_file.or(lower.bootstrap_token_file),
            bootstrap_token: self.bootstrap_token.or(lower.bootstrap_token),
            group: self.group.or(lower.group),
            key_type: self.key_type.or(lower.key_type),
            discovery: self.discovery.over(lower.discovery),
        }
    }

    /// Checks the merged settings.
    pub fn validate(self) -> Result<Settings> {
        let Layer {
            server,
            ca_bundle,
            server_name,
            state_dir,
            bootstrap_token_file,
            bootstrap_token,
            group,
            key_type,
            discovery,
        } = self;
        if let Some(url) = &server
            && !url.starts_with("https://")
        {
            return Err(AgentError::config(format!(
                "server {url:?} must be an https:// URL (the agent only speaks TLS)"
            )));
        }
        let key_type = match key_type.as_deref() {
            None => KeySpec::EcdsaP256,
            Some(s) => KeySpec::from_str(s).map_err(|_| {
                AgentError::config(format!(
                    "key_type {s:?} is not \"ecdsa-p256\" or \"ecdsa-p384\""
                ))
            })?,
        };
        Ok(Settings {
            server,
            ca_bundle,
            server_name,
            state_dir: state_dir.unwrap_or_else(|| PathBuf::from(DEFAULT_STATE_DIR)),
            bootstrap_token_file,
            bootstrap_token,
            group,
            key_type,
            discovery: discovery.validate()?,
        })
    }
}

/// Validated settings.
#[derive(Clone, Debug)]
pub struct Settings {
    /// The fleet listener, when configured (`run` falls back to the one enrolled with).
    pub server: Option<String>,
    /// The server CA bundle path.
    pub ca_bundle: Option<PathBuf>,
    /// TLS name override for the server's certificate.
    pub server_name: Option<String>,
    /// The state directory.
    pub state_dir: PathBuf,
    /// The bootstrap token file, read only by `enroll`.
    pub bootstrap_token_file: Option<PathBuf>,
    /// The bootstrap token given directly.
    pub bootstrap_token: Option<Secret>,
    /// The expected group (informational).
    pub group: Option<String>,
    /// The identity key's type.
    pub key_type: KeySpec,
    /// Certificate discovery.
    pub discovery: DiscoverySettings,
}

/// Validated `[discovery]` settings.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DiscoverySettings {
    /// Files and directories searched; empty means discovery is off.
    pub paths: Vec<PathBuf>,
    /// Time between searches.
    pub interval: Duration,
}

impl Settings {
    /// Stacks `flags` over the environment over the file at `config` (missing is fine).
    pub fn load(config: &Path, flags: Layer) -> Result<Settings> {
        let env = Layer::from_env(|name| std::env::var(name).ok());
        flags.over(env).over(Layer::from_file(config)?).validate()
    }

    /// The bootstrap token: `bootstrap_token`, else the trimmed contents of
    /// `bootstrap_token_file`.
    pub fn bootstrap_token(&self) -> Result<Secret> {
        if let Some(token) = &self.bootstrap_token {
            return Ok(token.clone());
        }
        let Some(path) = &self.bootstrap_token_file else {
            return Err(AgentError::config(
                "no bootstrap token: set bootstrap_token_file or bootstrap_token \
                 (CERTMESH_AGENT_BOOTSTRAP_TOKEN)",
            ));
        };
        let text = Zeroizing::new(
            std::fs::read_to_string(path)
                .map_err(|e| AgentError::io(format!("reading {}", path.display()), e))?,
        );
        let token = text.trim();
        if token.is_empty() {
            return Err(AgentError::config(format!("{} is empty", path.display())));
        }
        Ok(Secret::new(token))
    }

    /// The PEM of the CA bundle that authenticates the server.
    pub fn ca_bundle_pem(&self) -> Result<Vec<u8>> {
        let path = self.ca_bundle.as_ref().ok_or_else(|| {
            AgentError::config("ca_bundle is required (CERTMESH_AGENT_CA_BUNDLE, --ca-bundle)")
        })?;
        std::fs::read(path).map_err(|e| AgentError::io(format!("reading {}", path.display()), e))
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    const PLANTED: &str = "cmb_planted_secret_do_not_log";

    fn env(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let map: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        move |name| map.get(name).cloned()
    }

    #[test]
    fn debug_never_shows_the_bootstrap_token() {
        let text = format!("server = \"https://fleet:8444\"\nbootstrap_token = \"{PLANTED}\"\n");
        let layer = Layer::from_toml(&text, Path::new("agent.toml")).expect("parses");
        assert!(!format!("{layer:?}").contains(PLANTED));
        let settings = layer.validate().expect("valid");
        let shown = format!("{settings:?} {settings:#?}");
        assert!(!shown.contains(PLANTED), "{shown}");
        assert!(shown.contains("<redacted>"));
        assert_eq!(settings.bootstrap_token().expect("token").expose(), PLANTED);
        let from_env = Layer::from_env(env(&[("CERTMESH_AGENT_BOOTSTRAP_TOKEN", PLANTED)]));
        assert!(!format!("{from_env:?}").contains(PLANTED));
    }

    #[test]
    fn unknown_keys_are_rejected() {
        let err =
            Layer::from_toml("servr = \"https://x\"\n", Path::new("agent.toml")).expect_err("typo");
        assert!(err.to_string().contains("servr"), "{err}");
    }

    #[test]
    fn every_documented_key_parses() {
        let text = include_str!("../agent.example.toml");
        let layer = Layer::from_toml(text, Path::new("agent.example.toml")).expect("parses");
        let s = layer.validate().expect("valid");
        assert_eq!(s.server.as_deref(), Some("https://fleet.example.com:8444"));
        assert_eq!(s.key_type, KeySpec::EcdsaP256);
    }

    #[test]
    fn flags_beat_env_beat_file() {
        let file = Layer::from_toml(
            "server = \"https://file:1\"\nca_bundle = \"/file/ca.pem\"\ngroup = \"file\"\n\
             key_type = \"ecdsa-p384\"\n",
            Path::new("agent.toml"),
        )
        .expect("parses");
        let env = Layer::from_env(env(&[
            ("CERTMESH_AGENT_SERVER", "https://env:2"),
            ("CERTMESH_AGENT_CA_BUNDLE", "/env/ca.pem"),
            ("CERTMESH_AGENT_STATE_DIR", "/env/state"),
            ("CERTMESH_AGENT_GROUP", ""),
        ]));
        let flags = Layer {
            server: Some("https://flag:3".into()),
            ..Layer::default()
        };
        let s = flags.over(env).over(file).validate().expect("valid");
        assert_eq!(s.server.as_deref(), Some("https://flag:3"));
        assert_eq!(s.ca_bundle, Some(PathBuf::from("/env/ca.pem")));
        assert_eq!(s.state_dir, PathBuf::from("/env/state"));
        // An empty variable does not override the file.
        assert_eq!(s.group.as_deref(), Some("file"));
        assert_eq!(s.key_type, KeySpec::EcdsaP384);
    }

    #[test]
    fn defaults_and_bad_values() {
        let s = Layer::default().validate().expect("empty is valid");
        assert_eq!(s.state_dir, PathBuf::from(DEFAULT_STATE_DIR));
        assert_eq!(s.key_type, KeySpec::EcdsaP256);
        assert!(s.bootstrap_token().is_err());
        assert!(s.ca_bundle_pem().is_err());
        let http = Layer {
            server: Some("http://fleet:8444".into()),
            ..Layer::default()
        };
        assert!(http.validate().is_err());
        let rsa = Layer {
            key_type: Some("rsa-2048".into()),
            ..Layer::default()
        };
        assert!(rsa.validate().is_err());
    }

    #[test]
    fn the_token_file_is_read_and_trimmed_and_the_direct_token_wins() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("token");
        std::fs::write(&path, format!("  {PLANTED}\n")).expect("write");
        let from_file = Layer {
            bootstrap_token_file: Some(path.clone()),
            ..Layer::default()
        }
        .validate()
        .expect("valid");
        assert_eq!(
            from_file.bootstrap_token().expect("token").expose(),
            PLANTED
        );
        let both = Layer {
            bootstrap_token: Some(Secret::new("direct")),
            bootstrap_token_file: Some(path),
            ..Layer::default()
        }
        .validate()
        .expect("valid");
        assert_eq!(both.bootstrap_token().expect("token").expose(), "direct");
    }

    #[test]
    fn discovery_comes_from_the_file_the_environment_and_flags() {
        let file = Layer::from_toml(
            "[discovery]\npaths = [\"/etc/ssl/private-certs\"]\ninterval = \"2h\"\n",
            Path::new("agent.toml"),
        )
        .expect("parses");
        let s = file.clone().validate().expect("valid");
        assert_eq!(s.discovery.paths, [PathBuf::from("/etc/ssl/private-certs")]);
        assert_eq!(s.discovery.interval, Duration::from_secs(7200));

        let env = Layer::from_env(env(&[
            (
                "CERTMESH_AGENT_DISCOVERY_PATHS",
                "/etc/nginx/certs, /srv/tls,,",
            ),
            ("CERTMESH_AGENT_DISCOVERY_INTERVAL", "1h30m"),
        ]));
        let s = env.over(file.clone()).validate().expect("valid");
        assert_eq!(
            s.discovery.paths,
            [PathBuf::from("/etc/nginx/certs"), PathBuf::from("/srv/tls")]
        );
        assert_eq!(s.discovery.interval, Duration::from_secs(5400));

        let flags = Layer {
            discovery: DiscoveryLayer {
                interval: Some("10m".into()),
                ..DiscoveryLayer::default()
            },
            ..Layer::default()
        };
        let s = flags.over(file).validate().expect("valid");
        assert_eq!(s.discovery.interval, Duration::from_secs(600));
        assert_eq!(s.discovery.paths.len(), 1, "the file's paths stay");

        let off = Layer::default().validate().expect("valid");
        assert!(off.discovery.paths.is_empty());
        assert_eq!(off.discovery.interval, DEFAULT_DISCOVERY_INTERVAL);
    }

    #[test]
    fn bad_discovery_settings_are_refused() {
        let typo = Layer::from_toml("[discovery]\npath = [\"/x\"]\n", Path::new("agent.toml"));
        assert!(typo.expect_err("typo").to_string().contains("path"));
        let relative = Layer::from_env(env(&[("CERTMESH_AGENT_DISCOVERY_PATHS", "certs")]));
        let err = relative.validate().expect_err("relative");
        assert!(err.to_string().contains("absolute"), "{err}");
        for bad in [
            "",
            "10",
            "1x",
            "30s",
            "1.5h",
            "h",
            "-1h",
            "99999999999999999999d",
        ] {
            let layer = Layer {
                discovery: DiscoveryLayer {
                    interval: Some(bad.into()),
                    ..DiscoveryLayer::default()
                },
                ..Layer::default()
            };
            assert!(layer.validate().is_err(), "{bad:?}");
        }
        assert_eq!(parse_interval("1d"), Ok(Duration::from_secs(86_400)));
        assert_eq!(parse_interval("90s"), Ok(Duration::from_secs(90)));
    }

    #[test]
    fn the_documented_discovery_example_parses() {
        let text = include_str!("../agent.example.toml");
        let start = text.find("# [discovery]").expect("documented");
        let section: String = text[start..]
            .lines()
            .take_while(|l| l.starts_with("# "))
            .map(|l| format!("{}\n", &l[2..]))
            .collect();
        let s = Layer::from_toml(&section, Path::new("agent.example.toml"))
            .expect("parses")
            .validate()
            .expect("valid");
        assert!(!s.discovery.paths.is_empty());
        assert_eq!(s.discovery.interval, DEFAULT_DISCOVERY_INTERVAL);
    }

    #[test]
    fn a_missing_file_is_an_empty_layer() {
        let dir = tempfile::tempdir().expect("tempdir");
        let layer = Layer::from_file(&dir.path().join("absent.toml")).expect("missing is fine");
        assert!(layer.server.is_none());
    }
}
