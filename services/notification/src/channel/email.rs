//! Email over SMTP submission, with lettre: STARTTLS (the default, port 587), implicit TLS
//! (port 465), or plaintext to a loopback relay only.
//!
//! One connection per delivery: channels differ in server and credentials, and notices are
//! rare enough that a pool per channel would only hold idle sockets.

use std::time::{Duration, SystemTime};

use certmesh_kit::secret::Secret;
use chrono::{DateTime, Utc};
use lettre::message::Mailbox;
use lettre::message::header::{ContentType, Header, HeaderName, HeaderValue};
use lettre::transport::smtp::Error as SmtpError;
use lettre::transport::smtp::authentication::Credentials;
use lettre::transport::smtp::client::{Tls, TlsParameters};
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};
use serde_json::{Value, json};

use super::error::{ChannelError, DeliveryError, Part, one_line, truncate};
use super::fields::Fields;
use super::http::{AGENT, is_host_name, is_loopback_host};
use super::{Notice, rfc3339};

/// Most recipients of one channel.
const MAX_RECIPIENTS: usize = 50;

/// How the SMTP connection is protected.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum SmtpTls {
    /// Plain connect, then STARTTLS is required before anything else is sent.
    StartTls,
    /// TLS from the first byte (SMTPS).
    Tls,
    /// No TLS at all; accepted only for a loopback host.
    None,
}

impl SmtpTls {
    fn as_str(self) -> &'static str {
        match self {
            SmtpTls::StartTls => "starttls",
            SmtpTls::Tls => "tls",
            SmtpTls::None => "none",
        }
    }
}

/// A validated SMTP channel.
#[derive(Clone, Debug)]
pub struct EmailSettings {
    host: String,
    port: u16,
    tls: SmtpTls,
    from: Mailbox,
    to: Vec<Mailbox>,
    username: Option<String>,
    password: Option<Secret<String>>,
}

impl EmailSettings {
    pub(super) fn parse(config: &Value, secrets: &Value) -> Result<EmailSettings, ChannelError> {
        let mut c = Fields::new(Part::Config, config)?;
        let host = c.str("smtp_host")?;
        if !is_host_name(host) {
            return Err(c.invalid("smtp_host", "must be a host name or an IP address"));
        }
        let tls = match c.opt_str("tls")? {
            None | Some("starttls") => SmtpTls::StartTls,
            Some("tls") => SmtpTls::Tls,
            Some("none") if is_loopback_host(host) => SmtpTls::None,
            Some("none") => {
                return Err(c.invalid("tls", "\"none\" is allowed only for a loopback smtp_host"));
            }
            Some(_) => return Err(c.invalid("tls", "must be \"starttls\", \"tls\" or \"none\"")),
        };
        let default_port = if tls == SmtpTls::Tls { 465 } else { 587 };
        let port = c.opt_port("smtp_port")?.unwrap_or(default_port);
        let from = c.str("from")?;
        let from = mailbox(&c, "from", from)?;
        let to = recipients(&mut c)?;
        let username = c.opt_str("username")?.map(str::to_owned);
        c.finish()?;

        let mut s = Fields::new(Part::Secrets, secrets)?;
        let password = s.opt_str("password")?.map(|p| Secret::new(p.to_owned()));
        match (&username, &password) {
            (Some(_), None) => return Err(s.missing("password")),
            (None, Some(_)) => return Err(s.invalid("password", "needs config.username")),
            _ => {}
        }
        s.finish()?;
        let host = host.to_owned();
        Ok(EmailSettings {
            host,
            port,
            tls,
            from,
            to,
            username,
            password,
        })
    }

    pub(super) fn public_config(&self) -> Value {
        let mut config = json!({
            "smtp_host": self.host,
            "smtp_port": self.port,
            "tls": self.tls.as_str(),
            "from": self.from.to_string(),
            "to": self.to.iter().map(Mailbox::to_string).collect::<Vec<_>>(),
        });
        if let (Some(username), Some(map)) = (&self.username, config.as_object_mut()) {
            map.insert("username".to_owned(), json!(username));
        }
        config
    }

    pub(super) async fn deliver(
        &self,
        timeout: Duration,
        n: &Notice,
        now: DateTime<Utc>,
    ) -> Result<(), DeliveryError> {
        let secrets: Vec<&str> = self.password.iter().map(|p| p.expose().as_str()).collect();
        let result = match (self.message(n, now), self.transport(timeout)) {
            (Ok(message), Ok(transport)) => {
                match tokio::time::timeout(timeout, transport.send(message)).await {
                    Ok(sent) => sent.map(drop).map_err(smtp_error),
                    Err(_) => Err(DeliveryError::retryable(format!(
                        "SMTP: no answer within {} ms",
                        timeout.as_millis()
                    ))),
                }
            }
            (Err(e), _) | (_, Err(e)) => Err(e),
        };
        result.map_err(|e| e.scrubbed(&secrets))
    }

    fn transport(
        &self,
        timeout: Duration,
    ) -> Result<AsyncSmtpTransport<Tokio1Executor>, DeliveryError> {
        let tls = match self.tls {
            SmtpTls::None => Tls::None,
            SmtpTls::StartTls => Tls::Required(self.tls_parameters()?),
            SmtpTls::Tls => Tls::Wrapper(self.tls_parameters()?),
        };
        let mut builder = AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(&self.host)
            .port(self.port)
            .tls(tls)
            .timeout(Some(timeout));
        if let (Some(user), Some(password)) = (&self.username, &self.password) {
            builder =
                builder.credentials(Credentials::new(user.clone(), password.expose().clone()));
        }
        Ok(builder.build())
    }

    fn tls_parameters(&self) -> Result<TlsParameters, DeliveryError> {
        TlsParameters::new(self.host.clone())
            .map_err(|e| DeliveryError::permanent(format!("SMTP TLS setup failed: {e}")))
    }

    fn message(&self, n: &Notice, now: DateTime<Utc>) -> Result<Message, DeliveryError> {
        let mut builder = Message::builder()
            .from(self.from.clone())
            .subject(format!(
                "[certmesh] {}",
                truncate(&one_line(&n.summary), 200)
            ))
            .date(SystemTime::from(now))
            .message_id(None)
            .user_agent(AGENT.to_owned())
            .header(EventIdHeader(n.event_id.to_string()))
            .header(ContentType::TEXT_PLAIN);
        for to in &self.to {
            builder = builder.to(to.clone());
        }
        builder
            .body(text_body(n))
            .map_err(|e| DeliveryError::permanent(format!("the message could not be built: {e}")))
    }
}

/// `X-Certmesh-Event-Id`, so that a mail filter or a human can find the event again.
#[derive(Clone)]
struct EventIdHeader(String);

impl Header for EventIdHeader {
    fn name() -> HeaderName {
        HeaderName::new_from_ascii_str("X-Certmesh-Event-Id")
    }

    fn parse(s: &str) -> Result<Self, Box<dyn std::error::Error + Send + Sync>> {
        Ok(EventIdHeader(s.to_owned()))
    }

    fn display(&self) -> HeaderValue {
        HeaderValue::new(Self::name(), self.0.clone())
    }
}

fn text_body(n: &Notice) -> String {
    let payload = serde_json::to_string_pretty(&n.payload).unwrap_or_default();
    format!(
        "{summary}\n\n\
         Event:     {event_type}\n\
         Severity:  {severity}\n\
         Tenant:    {tenant}\n\
         Subject:   {aggregate}\n\
         Occurred:  {occurred}\n\
         Event id:  {id}\n\n\
         Details:\n{payload}\n",
        summary = n.summary,
        event_type = n.event_type,
        severity = n.severity,
        tenant = n.tenant,
        aggregate = n.aggregate_id,
        occurred = rfc3339(n.occurred_at),
        id = n.event_id,
    )
}

/// 5xx replies and client-side refusals (no STARTTLS offered, no usable AUTH mechanism) will
/// repeat; 4xx replies, network, TLS and timeouts may not.
fn smtp_error(e: SmtpError) -> DeliveryError {
    let retryable = !(e.is_permanent() || e.is_client());
    DeliveryError {
        retryable,
        detail: format!("SMTP {e}"),
    }
}

fn recipients(c: &mut Fields<'_>) -> Result<Vec<Mailbox>, ChannelError> {
    let list = c.str_list("to")?;
    if list.len() > MAX_RECIPIENTS {
        return Err(c.invalid(
            "to",
            format!("must have at most {MAX_RECIPIENTS} addresses"),
        ));
    }
    list.into_iter()
        .enumerate()
        .map(|(i, addr)| {
            addr.parse::<Mailbox>()
                .map_err(|_| c.invalid("to", format!("[{i}] is not an email address")))
        })
        .collect()
}

fn mailbox(c: &Fields<'_>, field: &'static str, value: &str) -> Result<Mailbox, ChannelError> {
    value.parse().map_err(|_| {
        c.invalid(
            field,
            "is not an email address (\"Name <user@host>\" or \"user@host\")",
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::channel::tests::notice;

    fn config() -> Value {
        json!({
            "smtp_host": "smtp.example.com",
            "from": "certmesh <alerts@example.com>",
            "to": ["ops@example.com", "Sec Team <sec@example.com>"],
            "username": "alerts",
        })
    }

    fn secrets() -> Value {
        json!({ "password": "planted-smtp-password" })
    }

    #[test]
    fn defaults_and_public_config() {
        let s = EmailSettings::parse(&config(), &secrets()).expect("valid");
        assert_eq!((s.tls, s.port), (SmtpTls::StartTls, 587));
        assert_eq!(
            s.public_config(),
            json!({
                "smtp_host": "smtp.example.com", "smtp_port": 587, "tls": "starttls",
                "from": "certmesh <alerts@example.com>",
                "to": ["ops@example.com", "Sec Team <sec@example.com>"],
                "username": "alerts",
            })
        );
        assert!(!format!("{s:?}").contains("planted"));
        assert!(!s.public_config().to_string().contains("planted"));

        let mut implicit = config();
        implicit["tls"] = json!("tls");
        let s = EmailSettings::parse(&implicit, &secrets()).expect("valid");
        assert_eq!((s.tls, s.port), (SmtpTls::Tls, 465));

        let local = json!({"smtp_host": "127.0.0.1", "smtp_port": 2525, "tls": "none",
                           "from": "a@b.example", "to": ["c@d.example"]});
        let s = EmailSettings::parse(&local, &Value::Null).expect("loopback plaintext");
        assert_eq!((s.tls, s.port), (SmtpTls::None, 2525));
    }

    #[test]
    fn each_bad_field_is_named() {
        let with = |key: &str, value: Value| {
            let mut c = config();
            c[key] = value;
            c
        };
        let mut no_username = config();
        no_username
            .as_object_mut()
            .expect("object")
            .remove("username");
        let config_cases = [
            ("smtp_host", json!(null)),
            ("smtp_host", json!("bad host")),
            ("tls", json!("none")),
            ("tls", json!("ssl")),
            ("smtp_port", json!(0)),
            ("smtp_port", json!("25")),
            ("from", json!(null)),
            ("from", json!("not an address")),
            ("to", json!(null)),
            ("to", json!([])),
            ("to", json!(["ok@example.com", "nope"])),
            ("to", json!(vec!["a@example.com"; 51])),
            ("cc", json!(["a@example.com"])),
        ];
        let mut cases: Vec<_> = config_cases
            .into_iter()
            .map(|(field, value)| (with(field, value), secrets(), Part::Config, field))
            .collect();
        cases.push((config(), json!({}), Part::Secrets, "password"));
        cases.push((no_username, secrets(), Part::Secrets, "password"));
        cases.push((
            config(),
            json!({"password": "p", "x": 1}),
            Part::Secrets,
            "x",
        ));
        for (config, secrets, part, field) in cases {
            let err = EmailSettings::parse(&config, &secrets).expect_err("invalid");
            assert_eq!(err.field(), Some((part, field)), "{err}");
            assert!(!err.to_string().contains("planted"), "{err}");
        }
    }

    #[test]
    fn message_has_subject_recipients_and_event_id() {
        let s = EmailSettings::parse(&config(), &secrets()).expect("valid");
        let n = notice();
        let message = s.message(&n, n.occurred_at).expect("message");
        let text = String::from_utf8(message.formatted()).expect("utf-8");
        assert!(
            text.contains(&format!("Subject: [certmesh] {}", n.summary)),
            "{text}"
        );
        assert!(
            text.contains(&format!("X-Certmesh-Event-Id: {}", n.event_id)),
            "{text}"
        );
        assert!(text.contains("sec@example.com"), "{text}");
        assert!(text.contains("Date: Sat, 01 Mar 2025 12:00:00"), "{text}");
        assert_eq!(message.envelope().to().len(), 2);
    }
}
