//! Where a binding's files go and what runs around them: [`Target`], parsed once from the
//! binding's `DeployTarget`, with the file mode and the owner (names resolved from
//! `/etc/passwd` and `/etc/group`, or numeric ids).

use std::path::{Component, Path, PathBuf};

use certmesh_proto::fleet::DeployTarget;

use crate::error::{AgentError, Result};
use crate::files::FileOwner;

/// Mode of the certificate and chain files when the binding names none.
pub const DEFAULT_MODE: u32 = 0o644;

/// A validated deploy target.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Target {
    /// The certificate file (leaf, plus the chain when `chain_path` is unset).
    pub cert_path: PathBuf,
    /// The private key file (always 0600).
    pub key_path: PathBuf,
    /// The chain file, if the chain is kept apart.
    pub chain_path: Option<PathBuf>,
    /// Owner of all three files.
    pub owner: Option<OwnerSpec>,
    /// Mode of the certificate and chain files.
    pub mode: u32,
    /// Run before anything is reloaded; failure rolls back.
    pub validate_command: Option<String>,
    /// Run after the files are in place.
    pub reload_command: Option<String>,
    /// `host:port` to check after the reload.
    pub verify_endpoint: Option<String>,
    /// SNI for that check.
    pub verify_sni: Option<String>,
}

impl TryFrom<&DeployTarget> for Target {
    type Error = AgentError;

    fn try_from(t: &DeployTarget) -> Result<Target> {
        let cert_path = absolute("cert_path", &t.cert_path)?;
        let key_path = absolute("key_path", &t.key_path)?;
        let chain_path = non_empty(&t.chain_path)
            .map(|p| absolute("chain_path", p))
            .transpose()?;
        if cert_path == key_path
            || chain_path
                .as_ref()
                .is_some_and(|c| *c == cert_path || *c == key_path)
        {
            return Err(invalid(
                "cert_path, key_path and chain_path must be different files",
            ));
        }
        Ok(Target {
            cert_path,
            key_path,
            chain_path,
            owner: non_empty(&t.owner).map(OwnerSpec::parse).transpose()?,
            mode: non_empty(&t.mode).map_or(Ok(DEFAULT_MODE), parse_mode)?,
            validate_command: non_empty(&t.validate_command).map(str::to_owned),
            reload_command: non_empty(&t.reload_command).map(str::to_owned),
            verify_endpoint: non_empty(&t.verify_endpoint).map(str::to_owned),
            verify_sni: non_empty(&t.verify_sni).map(str::to_owned),
        })
    }
}

/// An octal file mode (`"0640"`, `"640"`, `"0o640"`), permission bits only.
pub fn parse_mode(text: &str) -> Result<u32> {
    let digits = text.strip_prefix("0o").unwrap_or(text);
    let mode = u32::from_str_radix(digits, 8)
        .ok()
        .filter(|m| !digits.is_empty() && digits.len() <= 4 && *m <= 0o777);
    mode.ok_or_else(|| invalid(format!("mode {text:?} is not an octal mode up to 0777")))
}

/// `user` or `user:group`, each a name or a numeric id.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OwnerSpec {
    user: String,
    group: Option<String>,
}

impl OwnerSpec {
    /// Parses `user` or `user:group`.
    pub fn parse(text: &str) -> Result<OwnerSpec> {
        let (user, group) = match text.split_once(':') {
            Some((user, group)) => (user, Some(group)),
            None => (text, None),
        };
        if user.is_empty() || group.is_some_and(str::is_empty) {
            return Err(invalid(format!(
                "owner {text:?} is not \"user\" or \"user:group\""
            )));
        }
        Ok(OwnerSpec {
            user: user.to_owned(),
            group: group.map(str::to_owned),
        })
    }

    /// Resolves the names against this host's `/etc/passwd` and `/etc/group`.
    pub fn resolve_on_host(&self) -> Result<FileOwner> {
        let read = |path: &str| {
            std::fs::read_to_string(path).map_err(|e| AgentError::io(format!("reading {path}"), e))
        };
        let passwd = if is_numeric(&self.user) {
            String::new()
        } else {
            read("/etc/passwd")?
        };
        let group = match &self.group {
            Some(g) if !is_numeric(g) => read("/etc/group")?,
            _ => String::new(),
        };
        self.resolve(&passwd, &group)
    }

    /// Resolves the names against `passwd` and `group` file contents. A user alone keeps the
    /// file's group, as `chown user` does.
    pub fn resolve(&self, passwd: &str, group: &str) -> Result<FileOwner> {
        let uid = id_of(&self.user, passwd)
            .ok_or_else(|| invalid(format!("no user {:?} on this host", self.user)))?;
        let gid = match &self.group {
            Some(name) => Some(
                id_of(name, group)
                    .ok_or_else(|| invalid(format!("no group {name:?} on this host")))?,
            ),
            None => None,
        };
        Ok(FileOwner {
            uid: Some(uid),
            gid,
        })
    }
}

/// A numeric id, or the third field of the `name:…` line of a passwd/group database.
fn id_of(name: &str, database: &str) -> Option<u32> {
    if is_numeric(name) {
        return name.parse().ok();
    }
    database
        .lines()
        .filter(|line| !line.starts_with('#'))
        .map(|line| line.split(':'))
        .find_map(|mut fields| {
            (fields.next() == Some(name))
                .then(|| fields.nth(1))
                .flatten()
                .and_then(|id| id.parse().ok())
        })
}

fn is_numeric(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit())
}

fn non_empty(s: &str) -> Option<&str> {
    let s = s.trim();
    (!s.is_empty()).then_some(s)
}

fn absolute(what: &str, path: &str) -> Result<PathBuf> {
    let p = Path::new(path);
    let plain = p.is_absolute()
        && p.file_name().is_some()
        && p.components()
            .all(|c| matches!(c, Component::RootDir | Component::Normal(_)));
    if plain {
        Ok(p.to_path_buf())
    } else {
        Err(invalid(format!(
            "{what} {path:?} must be an absolute file path without `..`"
        )))
    }
}

fn invalid(detail: impl Into<String>) -> AgentError {
    AgentError::protocol(format!("deploy target: {}", detail.into()))
}

#[cfg(test)]
mod tests {
    use super::*;

    const PASSWD: &str = "root:x:0:0:root:/root:/bin/bash\n# comment\n\
                          www-data:x:33:33:www-data:/var/www:/usr/sbin/nologin\n";
    const GROUP: &str = "root:x:0:\nssl-cert:x:112:nginx\nwww-data:x:33:\n";

    fn pb(cert: &str, key: &str) -> DeployTarget {
        DeployTarget {
            cert_path: cert.into(),
            key_path: key.into(),
            ..DeployTarget::default()
        }
    }

    #[test]
    fn defaults_and_optional_fields() {
        let t = Target::try_from(&pb("/etc/ssl/a.pem", "/etc/ssl/a.key")).expect("valid");
        assert_eq!(t.mode, DEFAULT_MODE);
        assert_eq!(t.chain_path, None);
        assert_eq!(t.owner, None);
        assert_eq!(t.validate_command, None);
        let full = DeployTarget {
            chain_path: "/etc/ssl/chain.pem".into(),
            owner: "www-data:ssl-cert".into(),
            mode: "0640".into(),
            validate_command: "nginx -t".into(),
            reload_command: "nginx -s reload".into(),
            verify_endpoint: "127.0.0.1:443".into(),
            verify_sni: "www.example.com".into(),
            ..pb("/etc/ssl/a.pem", "/etc/ssl/a.key")
        };
        let t = Target::try_from(&full).expect("valid");
        assert_eq!(t.mode, 0o640);
        assert_eq!(t.chain_path, Some(PathBuf::from("/etc/ssl/chain.pem")));
        assert_eq!(t.reload_command.as_deref(), Some("nginx -s reload"));
    }

    #[test]
    fn relative_colliding_and_traversing_paths_are_refused() {
        for (cert, key) in [
            ("etc/a.pem", "/etc/a.key"),
            ("/etc/a.pem", ""),
            ("/etc/a.pem", "/etc/a.pem"),
            ("/etc/../shadow", "/etc/a.key"),
            ("/", "/etc/a.key"),
        ] {
            assert!(Target::try_from(&pb(cert, key)).is_err(), "{cert} {key}");
        }
        let chain_is_key = DeployTarget {
            chain_path: "/etc/a.key".into(),
            ..pb("/etc/a.pem", "/etc/a.key")
        };
        assert!(Target::try_from(&chain_is_key).is_err());
    }

    #[test]
    fn modes_are_octal_permission_bits() {
        assert_eq!(parse_mode("0644").expect("ok"), 0o644);
        assert_eq!(parse_mode("600").expect("ok"), 0o600);
        assert_eq!(parse_mode("0o640").expect("ok"), 0o640);
        for bad in ["", "0o", "888", "4755", "rw-r--r--", "-1", "07777"] {
            assert!(parse_mode(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn owners_resolve_by_name_or_number() {
        let user = OwnerSpec::parse("www-data").expect("parse");
        assert_eq!(
            user.resolve(PASSWD, GROUP).expect("resolve"),
            FileOwner {
                uid: Some(33),
                gid: None
            }
        );
        let both = OwnerSpec::parse("www-data:ssl-cert").expect("parse");
        assert_eq!(
            both.resolve(PASSWD, GROUP).expect("resolve"),
            FileOwner {
                uid: Some(33),
                gid: Some(112)
            }
        );
        let numeric = OwnerSpec::parse("1001:1002").expect("parse");
        assert_eq!(
            numeric.resolve("", "").expect("resolve"),
            FileOwner {
                uid: Some(1001),
                gid: Some(1002)
            }
        );
        assert!(
            OwnerSpec::parse("nobody-here")
                .expect("parse")
                .resolve(PASSWD, GROUP)
                .is_err()
        );
        assert!(
            OwnerSpec::parse("root:nogroup")
                .expect("parse")
                .resolve(PASSWD, GROUP)
                .is_err()
        );
        // "x" is the password field, not a name.
        assert!(
            OwnerSpec::parse("x")
                .expect("parse")
                .resolve(PASSWD, GROUP)
                .is_err()
        );
        for bad in ["", ":", "root:", ":root"] {
            assert!(OwnerSpec::parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn the_hosts_root_user_resolves() {
        let owner = OwnerSpec::parse("root:root")
            .expect("parse")
            .resolve_on_host()
            .expect("root");
        assert_eq!(
            owner,
            FileOwner {
                uid: Some(0),
                gid: Some(0)
            }
        );
    }
}
