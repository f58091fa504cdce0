//! `moat token issue|inspect`: mint a bearer token for CI, and look inside
//! one (and check it against a config) when a client gets a 401.

use std::io::Read;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use base64::Engine;

use crate::identity::token::{self, SigningKey, TokenRequest, Verifier};

#[derive(Debug, clap::Subcommand)]
pub(super) enum Command {
    /// Print a signed JWT with a random jti and iat/nbf/exp.
    Issue {
        /// Private key (PEM: EC P-256 → ES256, P-384 → ES384, Ed25519 →
        /// EdDSA, RSA → RS256) or an HS256 secret file.
        #[arg(long)]
        key: PathBuf,
        /// Override the algorithm within the key's family (e.g. PS256).
        #[arg(long)]
        algorithm: Option<String>,
        /// The user (`sub` claim).
        #[arg(long)]
        subject: String,
        /// A group (`groups` claim); repeat for several.
        #[arg(long = "group", value_name = "GROUP")]
        groups: Vec<String>,
        /// A scope (`scope` claim, space-separated); repeat for several.
        #[arg(long = "scope", value_name = "SCOPE")]
        scopes: Vec<String>,
        /// Lifetime, e.g. 15m, 1h.
        #[arg(long, value_parser = humantime::parse_duration)]
        ttl: Duration,
        /// The `iss` claim (must equal auth.tokens.issuer).
        #[arg(long)]
        issuer: Option<String>,
        /// The `aud` claim (must equal auth.tokens.audience).
        #[arg(long)]
        audience: Option<String>,
    },
    /// Print a token's header and claims; with --config, whether moat would accept it and why not.
    Inspect {
        /// The token (`-` reads it from standard input).
        token: String,
        /// A moat config file whose auth.tokens section to check against.
        #[arg(long, short)]
        config: Option<PathBuf>,
    },
}

pub(super) fn run(cmd: Command) -> anyhow::Result<ExitCode> {
    match cmd {
        Command::Issue {
            key,
            algorithm,
            subject,
            groups,
            scopes,
            ttl,
            issuer,
            audience,
        } => {
            let alg = algorithm
                .map(|a| {
                    a.parse::<jsonwebtoken::Algorithm>()
                        .map_err(|_| anyhow::anyhow!("--algorithm {a}: not a JWS algorithm name"))
                })
                .transpose()?;
            let key = SigningKey::load(&key, alg)?;
            if ttl.is_zero() {
                anyhow::bail!("--ttl must be more than 0");
            }
            let req = TokenRequest {
                subject,
                groups,
                scopes,
                ttl,
                issuer,
                audience,
            };
            req.check()?;
            let now = time::OffsetDateTime::now_utc().unix_timestamp();
            println!("{}", token::sign(&key, &req.claims(now))?);
            Ok(ExitCode::SUCCESS)
        }
        Command::Inspect { token, config } => {
            let raw = if token == "-" {
                let mut s = String::new();
                std::io::stdin()
                    .read_to_string(&mut s)
                    .context("reading the token from standard input")?;
                s
            } else {
                token
            };
            let raw = raw.trim();
            let raw = raw
                .strip_prefix("Bearer ")
                .or_else(|| raw.strip_prefix("bearer "))
                .unwrap_or(raw)
                .trim();
            let mut parts = raw.split('.');
            for name in ["header", "claims"] {
                let part = parts.next().unwrap_or_default();
                let json = base64::engine::general_purpose::URL_SAFE_NO_PAD
                    .decode(part.trim_end_matches('='))
                    .ok()
                    .and_then(|b| serde_json::from_slice::<serde_json::Value>(&b).ok())
                    .with_context(|| format!("the token's {name} is not base64url JSON"))?;
                println!("{name}: {}", serde_json::to_string_pretty(&json)?);
                if name == "claims" {
                    for c in ["iat", "nbf", "exp"] {
                        if let Some(t) = json.get(c).and_then(serde_json::Value::as_i64) {
                            if let Some(t) = time::OffsetDateTime::from_unix_timestamp(t)
                                .ok()
                                .and_then(|t| {
                                    t.format(&time::format_description::well_known::Rfc3339)
                                        .ok()
                                })
                            {
                                println!("  {c}: {t}");
                            }
                        }
                    }
                }
            }
            let Some(config) = config else {
                println!("(signature not checked; pass --config FILE to check it)");
                return Ok(ExitCode::SUCCESS);
            };
            let cfg = crate::config::Config::load(&config)?;
            let tokens = cfg.auth.tokens.as_ref().with_context(|| {
                format!(
                    "{}: auth.tokens is not configured; this gateway accepts no tokens",
                    config.display()
                )
            })?;
            let verifier = Verifier::from_config(tokens)?;
            match verifier.verify(raw) {
                Ok(t) => {
                    println!(
                        "valid: user {} groups [{}] scopes [{}]",
                        t.user,
                        t.groups
                            .iter()
                            .map(|g| g.as_str())
                            .collect::<Vec<_>>()
                            .join(", "),
                        t.scopes
                            .iter()
                            .map(|g| g.as_str())
                            .collect::<Vec<_>>()
                            .join(", ")
                    );
                    Ok(ExitCode::SUCCESS)
                }
                Err(e) => {
                    println!("invalid: {e}");
                    Ok(ExitCode::FAILURE)
                }
            }
        }
    }
}
