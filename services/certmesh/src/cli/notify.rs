//! `certmesh notify …`: notification channels and their sealed secrets, the rules that route
//! events to them, and the delivery log, through the gateway.

use std::collections::{HashMap, hash_map::Entry};

use anyhow::{Context, anyhow, bail};
use certmesh_kit::Secret;
use clap::{Args, Subcommand, ValueEnum};

#[derive(Debug, Subcommand)]
pub enum NotifyCommand {
    /// Where notifications go: webhook, email, Slack, Teams, PagerDuty.
    Channels {
        #[command(subcommand)]
        command: ChannelCommand,
    },
    /// Which event types go to which channels.
    Rules {
        #[command(subcommand)]
        command: RuleCommand,
    },
    /// The delivery log: one row per (event, channel), newest first.
    Deliveries {
        #[arg(long, value_parser = ["pending", "sending", "delivered", "dead"])]
        state: Option<String>,
        /// Only this channel's deliveries.
        #[arg(long = "channel", value_name = "CHANNEL_ID")]
        channel_id: Option<String>,
        /// Only this event's deliveries.
        #[arg(long = "event", value_name = "EVENT_ID")]
        event_id: Option<String>,
        #[arg(long)]
        limit: Option<u32>,
    },
    /// Put a dead delivery back in the queue with its attempts reset.
    Requeue { delivery_id: String },
    /// Send a "notification.test" event through one channel now, outside the queue.
    Test { channel_id: String },
}

#[derive(Debug, Subcommand)]
pub enum ChannelCommand {
    /// Create a channel. Secrets are sealed by the server and never shown again; pass them
    /// with --secret-env to keep them off the command line and out of shell history.
    Create(Box<ChannelArgs>),
    /// List channels (their settings, never their secrets).
    List,
    /// Delete a channel.
    Delete { id: String },
}

#[derive(Debug, Args)]
pub struct ChannelArgs {
    /// Channel name, unique in the tenant.
    pub name: String,
    #[arg(long, value_enum)]
    pub kind: ChannelKind,
    /// Non-secret settings as a JSON object: webhook {"url"}; email {"smtp_host", "smtp_port",
    /// "tls", "from", "to", "username"}; pagerduty {"url"} (optional).
    #[arg(long, value_name = "JSON", value_parser = parse_config)]
    pub config: Option<pbjson_types::Struct>,
    /// A secret setting (repeatable): webhook hmac_secret; slack and teams url; pagerduty
    /// routing_key; email password. Visible to other local users while the command runs:
    /// prefer --secret-env.
    #[arg(long = "secret", value_name = "KEY=VALUE")]
    pub secrets: Vec<Secret<String>>,
    /// A secret setting read from an environment variable (repeatable), e.g.
    /// --secret-env routing_key=PD_ROUTING_KEY.
    #[arg(long = "secret-env", value_name = "KEY=ENVVAR", value_parser = parse_secret_env)]
    pub secrets_from_env: Vec<SecretFromEnv>,
}

impl ChannelArgs {
    /// The secrets map of the request: every `--secret` split at its first `=`, and every
    /// `--secret-env` read through `env`. `--secret` is split here rather than by clap, whose
    /// errors quote the offending argument, and that argument may be a secret.
    pub fn secret_map(
        &self,
        env: impl Fn(&str) -> Option<String>,
    ) -> anyhow::Result<HashMap<String, String>> {
        let mut pairs = Vec::with_capacity(self.secrets.len() + self.secrets_from_env.len());
        for raw in &self.secrets {
            let (key, value) = raw
                .expose()
                .split_once('=')
                .ok_or_else(|| anyhow!("--secret takes KEY=VALUE, and one has no '='"))?;
            pairs.push(("--secret", key.to_owned(), value.to_owned()));
        }
        for s in &self.secrets_from_env {
            let value = env(&s.var).with_context(|| {
                format!(
                    "--secret-env {}={}: {} is unset or not UTF-8",
                    s.key, s.var, s.var
                )
            })?;
            pairs.push(("--secret-env", s.key.clone(), value));
        }
        let mut secrets = HashMap::new();
        for (flag, key, value) in pairs {
            if key.is_empty() {
                bail!("{flag} takes KEY=VALUE, and one has an empty KEY");
            }
            if value.is_empty() {
                bail!("{flag} {key}: the value is empty");
            }
            match secrets.entry(key) {
                Entry::Occupied(e) => bail!("secret {} is given twice", e.key()),
                Entry::Vacant(e) => e.insert(value),
            };
        }
        Ok(secrets)
    }
}

/// What kind of channel delivers the notification.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
#[value(rename_all = "lower")]
pub enum ChannelKind {
    /// JSON POST signed with HMAC-SHA256.
    Webhook,
    /// SMTP.
    Email,
    /// Slack-compatible incoming webhook.
    Slack,
    /// Teams-compatible incoming webhook.
    Teams,
    /// PagerDuty Events v2.
    Pagerduty,
}

impl ChannelKind {
    /// The name the API uses.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Webhook => "webhook",
            Self::Email => "email",
            Self::Slack => "slack",
            Self::Teams => "teams",
            Self::Pagerduty => "pagerduty",
        }
    }
}

/// `--secret-env KEY=ENVVAR`: the secret `KEY` is the value of the variable `ENVVAR`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SecretFromEnv {
    pub key: String,
    pub var: String,
}

fn parse_secret_env(text: &str) -> anyhow::Result<SecretFromEnv> {
    match text.split_once('=') {
        Some((key, var)) if !key.is_empty() && !var.is_empty() => Ok(SecretFromEnv {
            key: key.to_owned(),
            var: var.to_owned(),
        }),
        _ => bail!("expected KEY=ENVVAR, e.g. hmac_secret=WEBHOOK_SECRET"),
    }
}

fn parse_config(text: &str) -> anyhow::Result<pbjson_types::Struct> {
    serde_json::from_str(text).map_err(|e| anyhow!("expected a JSON object: {e}"))
}

#[derive(Debug, Subcommand)]
pub enum RuleCommand {
    /// Create a rule: events of these types go to these channels.
    Create {
        /// Rule name.
        name: String,
        /// Event type (repeatable): exact ("certificate.expiring"), a prefix ("ca.*") or "*".
        #[arg(long = "event", value_name = "TYPE", required = true)]
        event_types: Vec<String>,
        /// Channel id (repeatable).
        #[arg(long = "channel", value_name = "CHANNEL_ID", required = true)]
        channel_ids: Vec<String>,
    },
    /// List rules.
    List,
    /// Delete a rule.
    Delete { id: String },
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;
    use crate::cli::{Cli, Command};

    fn notify(argv: &[&str]) -> Result<NotifyCommand, clap::Error> {
        let argv = ["certmesh", "notify"].iter().chain(argv);
        match Cli::try_parse_from(argv)?.command {
            Command::Notify { command, .. } => Ok(command),
            other => panic!("not notify: {other:?}"),
        }
    }

    fn channel(extra: &[&str]) -> Result<ChannelArgs, clap::Error> {
        let mut argv = vec!["channels", "create", "ops", "--kind", "webhook"];
        argv.extend(extra);
        match notify(&argv)? {
            NotifyCommand::Channels {
                command: ChannelCommand::Create(args),
            } => Ok(*args),
            other => panic!("channels create: {other:?}"),
        }
    }

    fn no_env(_: &str) -> Option<String> {
        None
    }

    #[test]
    fn channel_create_parses_config_and_secrets() {
        let args = channel(&[
            "--config",
            r#"{"url": "https://hooks.example.com/x", "retries": 2}"#,
            "--secret",
            "hmac_secret=s3cr=t",
            "--secret-env",
            "token=OPS_TOKEN",
        ])
        .expect("parses");
        assert_eq!(
            (args.name.as_str(), args.kind),
            ("ops", ChannelKind::Webhook)
        );
        let config = args.config.as_ref().expect("config");
        let url = config.fields.get("url").expect("url");
        assert_eq!(
            url.kind,
            Some(pbjson_types::value::Kind::StringValue(
                "https://hooks.example.com/x".into()
            ))
        );
        let env = |var: &str| (var == "OPS_TOKEN").then(|| "from-env".to_owned());
        let secrets = args.secret_map(env).expect("resolves");
        assert_eq!(secrets.len(), 2);
        assert_eq!(secrets["hmac_secret"], "s3cr=t", "split at the first '='");
        assert_eq!(secrets["token"], "from-env");
    }

    #[test]
    fn kinds_are_the_api_names() {
        for kind in ["webhook", "email", "slack", "teams", "pagerduty"] {
            let argv = ["channels", "create", "c", "--kind", kind];
            let Ok(NotifyCommand::Channels {
                command: ChannelCommand::Create(args),
            }) = notify(&argv)
            else {
                panic!("{kind}")
            };
            assert_eq!(args.kind.as_str(), kind);
        }
        assert!(notify(&["channels", "create", "c", "--kind", "sms"]).is_err());
        assert!(
            notify(&["channels", "create", "c"]).is_err(),
            "--kind is required"
        );
    }

    #[test]
    fn bad_config_is_refused_naming_the_flag() {
        for bad in ["{not json", "[1, 2]", "\"url\""] {
            let err = channel(&["--config", bad]).expect_err(bad);
            assert!(err.to_string().contains("--config"), "{err}");
        }
    }

    #[test]
    fn bad_secrets_are_refused_without_echoing_them() {
        let refused = |extra: &[&str]| {
            let args = channel(extra).expect("parses");
            args.secret_map(no_env).expect_err("refused").to_string()
        };
        let err = refused(&["--secret", "hunter2"]);
        assert!(
            err.contains("--secret") && !err.contains("hunter2"),
            "{err}"
        );
        assert!(refused(&["--secret", "=hunter2"]).contains("empty KEY"));
        assert!(refused(&["--secret", "k="]).contains("empty"));
        let err = refused(&["--secret", "k=a", "--secret-env", "k=K"]);
        assert!(err.contains("K is unset"), "{err}");
        let args = channel(&["--secret", "k=a", "--secret", "k=b"]).expect("parses");
        let err = args.secret_map(no_env).expect_err("duplicate").to_string();
        assert!(err.contains("twice"), "{err}");
        for bad in ["KEYONLY", "=VAR", "key="] {
            let err = channel(&["--secret-env", bad]).expect_err(bad);
            assert!(err.to_string().contains("--secret-env"), "{err}");
        }
    }

    #[test]
    fn debug_output_never_shows_a_secret() {
        let args = channel(&["--secret", "hmac_secret=planted_value"]).expect("parses");
        let text = format!("{args:?}");
        assert!(!text.contains("planted"), "{text}");
    }

    #[test]
    fn rules_and_deliveries_parse() {
        let command = notify(&[
            "rules",
            "create",
            "expiry",
            "--event",
            "certificate.expiring",
            "--event",
            "ca.*",
            "--channel",
            "ch-1",
        ])
        .expect("parses");
        let NotifyCommand::Rules {
            command:
                RuleCommand::Create {
                    name,
                    event_types,
                    channel_ids,
                },
        } = command
        else {
            panic!("rules create: {command:?}")
        };
        assert_eq!(name, "expiry");
        assert_eq!(event_types, ["certificate.expiring", "ca.*"]);
        assert_eq!(channel_ids, ["ch-1"]);
        assert!(notify(&["rules", "create", "x", "--event", "*"]).is_err());

        let command = notify(&["deliveries", "--state", "dead", "--channel", "ch-1"]);
        assert!(matches!(
            command.expect("parses"),
            NotifyCommand::Deliveries { state: Some(s), channel_id: Some(c), event_id: None, limit: None }
                if s == "dead" && c == "ch-1"
        ));
        assert!(notify(&["deliveries", "--state", "lost"]).is_err());
        assert!(matches!(
            notify(&["requeue", "dl-1"]).expect("parses"),
            NotifyCommand::Requeue { delivery_id } if delivery_id == "dl-1"
        ));
        assert!(matches!(
            notify(&["test", "ch-1"]).expect("parses"),
            NotifyCommand::Test { .. }
        ));
    }
}
