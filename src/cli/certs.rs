//! `moat certs init|intermediate|issue|revoke|list`: the command line over
//! [`crate::pki`].

use std::path::PathBuf;
use std::process::ExitCode;

use crate::pki;

#[derive(Debug, clap::Subcommand)]
pub(super) enum Command {
    /// Create a CA, a server certificate, an empty CRL and an index in DIR.
    Init {
        /// The PKI directory (created 0700 if missing).
        #[arg(long)]
        dir: PathBuf,
        /// Another DNS name or IP address for the server certificate
        /// (localhost, 127.0.0.1, ::1 and the hostname are always included).
        #[arg(long = "san", value_name = "NAME_OR_IP")]
        sans: Vec<String>,
        /// Validity of the CA and server certificate, in days.
        #[arg(long, default_value_t = pki::DEFAULT_CA_DAYS)]
        days: u32,
        /// Replace an existing CA (every certificate it issued stops working).
        #[arg(long)]
        force: bool,
    },
    /// Create an intermediate CA under the root in DIR, in DIR/intermediates/NAME
    /// (pass that directory to `issue` and `revoke`).
    Intermediate {
        /// The root's PKI directory.
        #[arg(long)]
        dir: PathBuf,
        /// The intermediate's name: letters, digits, '.', '_', '-'.
        #[arg(long)]
        name: String,
        /// Validity in days.
        #[arg(long, default_value_t = pki::DEFAULT_INTERMEDIATE_DAYS)]
        days: u32,
    },
    /// Issue a client certificate bundle (ca.pem, cert.pem, key.pem) for the docker CLI.
    Issue {
        /// The PKI directory holding the CA.
        #[arg(long)]
        dir: PathBuf,
        /// The user name (subject CN).
        #[arg(long)]
        user: String,
        /// A group (subject O); repeat for several.
        #[arg(long = "group", value_name = "GROUP")]
        groups: Vec<String>,
        /// Validity in days.
        #[arg(long, default_value_t = pki::DEFAULT_CLIENT_DAYS)]
        days: u32,
        /// Where to write the bundle (the docker CLI's DOCKER_CERT_PATH).
        #[arg(long)]
        out: PathBuf,
        /// The DOCKER_HOST to print in the instructions.
        #[arg(long, default_value = "tcp://localhost:2376")]
        host: String,
    },
    /// Revoke a certificate (a client's, or an intermediate CA's with the root's
    /// DIR): re-signs the CRL and rebuilds the root's crl.pem.
    Revoke {
        /// The PKI directory holding the CA.
        #[arg(long)]
        dir: PathBuf,
        /// The certificate file to revoke.
        #[arg(long, conflicts_with = "serial", required_unless_present = "serial")]
        cert: Option<PathBuf>,
        /// The serial to revoke, in hex (as `moat certs list` prints it).
        #[arg(long)]
        serial: Option<String>,
    },
    /// List issued certificates: serial, user, groups, expiry, revoked.
    List {
        /// The PKI directory.
        #[arg(long)]
        dir: PathBuf,
    },
}

pub(super) fn run(cmd: Command) -> anyhow::Result<ExitCode> {
    match cmd {
        Command::Init {
            dir,
            sans,
            days,
            force,
        } => {
            let paths = pki::init(&pki::InitOptions {
                dir,
                sans,
                days,
                force,
            })?;
            println!(
                "CA and server certificate written to {}",
                paths.dir.display()
            );
            println!("  tls.cert:      {}", paths.server_cert.display());
            println!("  tls.key:       {}", paths.server_key.display());
            println!("  tls.client_ca: {}", paths.ca_cert.display());
            println!("  tls.crl:       {}", paths.crl.display());
            println!(
                "Next: moat certs issue --dir {} --user NAME --out DIR",
                paths.dir.display()
            );
        }
        Command::Issue {
            dir,
            user,
            groups,
            days,
            out,
            host,
        } => {
            let bundle = pki::issue(&pki::IssueOptions {
                dir,
                user,
                groups,
                days,
                out: Some(out.clone()),
            })?;
            let out = std::path::absolute(&out).unwrap_or(out);
            println!(
                "# certificate {} for {} (groups: {}), valid until {}",
                bundle.serial,
                bundle.user,
                if bundle.groups.is_empty() {
                    "none".to_string()
                } else {
                    bundle.groups.join(", ")
                },
                bundle.not_after.date()
            );
            print!(
                "{}",
                pki::docker_instructions(
                    &host,
                    &out,
                    &format!("moat-{}", context_name(&bundle.user))
                )
            );
        }
        Command::Revoke { dir, cert, serial } => {
            let target = match (cert, serial) {
                (Some(c), _) => pki::RevokeTarget::CertFile(c),
                (None, Some(s)) => pki::RevokeTarget::Serial(s),
                (None, None) => anyhow::bail!("pass --cert FILE or --serial HEX"),
            };
            let e = pki::revoke(&dir, &target)?;
            println!(
                "revoked {} ({}); crl.pem re-signed. moat picks it up within 2 s.",
                e.serial, e.user
            );
        }
        Command::Intermediate { dir, name, days } => {
            let paths = pki::intermediate(&pki::IntermediateOptions { dir, name, days })?;
            println!(
                "intermediate CA in {}\nissue with: moat certs issue --dir {} --user NAME --out DIR\nrevoke it with: moat certs revoke --dir {} --cert {}",
                paths.dir.display(),
                paths.dir.display(),
                paths
                    .root_dir()
                    .unwrap_or_default()
                    .display(),
                paths.ca_cert.display()
            );
        }
        Command::List { dir } => {
            let entries = pki::list(&dir)?;
            println!(
                "{:<32}  {:<7}  {:<20}  {:<24}  {:<20}  REVOKED",
                "SERIAL", "KIND", "USER", "GROUPS", "EXPIRES"
            );
            for e in entries {
                let kind = match e.kind {
                    pki::CertKind::Server => "server",
                    pki::CertKind::Client => "client",
                    pki::CertKind::Intermediate => "interm.",
                };
                let groups = if e.groups.is_empty() {
                    "-".to_string()
                } else {
                    e.groups.join(",")
                };
                let revoked = match (&e.revoked, &e.revoked_at) {
                    (true, Some(at)) => format!("yes ({at})"),
                    (true, None) => "yes".to_string(),
                    (false, _) => "no".to_string(),
                };
                println!(
                    "{:<32}  {:<7}  {:<20}  {:<24}  {:<20}  {revoked}",
                    e.serial,
                    kind,
                    crate::identity::name::escape(&e.user),
                    crate::identity::name::escape(&groups),
                    e.not_after
                );
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// A docker context name from a user name: letters, digits, `_.-`.
fn context_name(user: &str) -> String {
    user.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "_.-".contains(c) {
                c
            } else {
                '-'
            }
        })
        .collect()
}
