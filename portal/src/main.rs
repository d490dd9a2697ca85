//! `cvm-portal`: the GraphQL portal's command line (serve, token, schema).
//! Parsing and exit codes only; errors end as one line on stderr.

use std::net::SocketAddr;
use std::process::ExitCode;

use anyhow::{Context, anyhow};
use chrono::Utc;
use clap::{Parser, Subcommand};
use cvm_portal::mail::config::{Delivery, MailConfig};

/// The sender address of `serve --dev` when `mail.from` is not set (a
/// reserved domain: nothing can be delivered to it by mistake).
const DEV_MAIL_FROM: &str = "cvm dev <dev@cvm.invalid>";
use cvm_portal::server::{self, ServeConfig};
use cvm_portal::{graphql, tokens};
use cvm_shared::Settings;
use cvm_shared::db::models::api_tokens::{self, NewApiToken, Role};
use cvm_shared::db::{DbConnection, DbUrl};

/// Exit codes (documented in the README).
mod exit {
    /// The command failed (database, bind, ...).
    pub const FAILED: u8 = 1;
    /// Bad command line or configuration.
    pub const USAGE: u8 = 2;
}

#[derive(Parser)]
#[command(
    name = "cvm-portal",
    version,
    about = "The cvm portal: GraphQL API for marketing staff, survey pages for customers"
)]
struct Cli {
    #[command(flatten)]
    global: cvm_shared::cli::GlobalArgs,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the HTTP server (applies pending migrations first).
    Serve {
        /// Listen address (overrides CVM_PORTAL_BIND); port 0 picks a free port.
        #[arg(long)]
        bind: Option<String>,
        /// Database URL (overrides CVM_DATABASE_URL).
        #[arg(long)]
        db: Option<String>,
        /// Development mode: without CVM_PORTAL_SECRET, generate one (and print
        /// it); without CVM_MAIL_FROM, send campaigns from dev@cvm.invalid.
        #[arg(long)]
        dev: bool,
    },
    /// Manage staff API tokens.
    Token {
        #[command(subcommand)]
        command: TokenCommand,
    },
    /// Print the GraphQL schema (SDL).
    Schema,
}

#[derive(Subcommand)]
enum TokenCommand {
    /// Create a token; prints it alone on the last line of stdout (shown once).
    Create {
        /// Staff name (what `me.name` answers).
        #[arg(long)]
        name: String,
        /// viewer, marketer or admin.
        #[arg(long, value_parser = parse_role)]
        role: Role,
        /// Database URL (overrides CVM_DATABASE_URL).
        #[arg(long)]
        db: Option<String>,
    },
    /// Revoke every token of a staff name.
    Revoke {
        /// Staff name.
        #[arg(long)]
        name: String,
        /// Database URL (overrides CVM_DATABASE_URL).
        #[arg(long)]
        db: Option<String>,
    },
    /// List tokens: names, roles, created and last-used times (never the tokens).
    List {
        /// Database URL (overrides CVM_DATABASE_URL).
        #[arg(long)]
        db: Option<String>,
    },
}

fn parse_role(s: &str) -> Result<Role, String> {
    s.parse::<Role>().map_err(|e| e.to_string())
}

/// The default database when none is configured (the ETL's too).
const DEFAULT_DB_URL: &str = "sqlite://cvm.db";
/// Longest staff name.
const MAX_NAME_CHARS: usize = 100;

struct Failure {
    code: u8,
    error: anyhow::Error,
}

impl<E: Into<anyhow::Error>> From<E> for Failure {
    fn from(e: E) -> Failure {
        Failure {
            code: exit::FAILED,
            error: e.into(),
        }
    }
}

fn usage(e: impl Into<anyhow::Error>) -> Failure {
    Failure {
        code: exit::USAGE,
        error: e.into(),
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(f) => {
            // One line: the error and its causes.
            eprintln!("error: {:#}", f.error);
            ExitCode::from(f.code)
        }
    }
}

/// Settings from file and environment, with `--db` applied; starts the logs.
fn settings(cli: &Cli, db: &Option<String>) -> Result<Settings, Failure> {
    let mut s = Settings::load(cli.global.config.as_deref()).map_err(usage)?;
    if let Some(url) = db {
        s.set("database.url", url).map_err(usage)?;
    }
    if let Some(f) = &cli.global.log_format {
        s.set("log.format", f).map_err(usage)?;
    }
    s.validate().map_err(usage)?;
    // A request's span closing is its access-log line (id, route, status, time).
    cvm_shared::logging::init(&s.log.format, cli.global.quiet, true);
    Ok(s)
}

fn db_url(s: &Settings) -> Result<DbUrl, Failure> {
    DbUrl::parse(s.database.url.as_deref().unwrap_or(DEFAULT_DB_URL)).map_err(usage)
}

fn run(cli: Cli) -> Result<(), Failure> {
    match &cli.command {
        Command::Schema => {
            print!("{}", graphql::sdl());
            Ok(())
        }
        Command::Serve { bind, db, dev } => {
            let mut s = settings(&cli, db)?;
            if let Some(b) = bind {
                s.set("portal.bind", b).map_err(usage)?;
                s.validate().map_err(usage)?;
            }
            serve(&s, *dev)
        }
        Command::Token { command } => match command {
            TokenCommand::Create { name, role, db } => {
                let s = settings(&cli, db)?;
                create_token(&s, name, *role)
            }
            TokenCommand::Revoke { name, db } => {
                let s = settings(&cli, db)?;
                let mut c = open(&s)?;
                let n = api_tokens::revoke_by_name(&mut c, name, Utc::now().naive_utc())?;
                if n == 0 {
                    return Err(usage(anyhow!(
                        "no active token named {name:?} (see cvm-portal token list)"
                    )));
                }
                eprintln!("revoked {n} token(s) of {name}");
                Ok(())
            }
            TokenCommand::List { db } => {
                let s = settings(&cli, db)?;
                list_tokens(&mut open(&s)?)
            }
        },
    }
}

/// Opens the database for token management, applying pending migrations.
fn open(s: &Settings) -> Result<DbConnection, Failure> {
    Ok(DbConnection::open_for_write(&db_url(s)?)?)
}

fn create_token(s: &Settings, name: &str, role: Role) -> Result<(), Failure> {
    let name = name.trim();
    if name.is_empty()
        || name.chars().count() > MAX_NAME_CHARS
        || name.chars().any(char::is_control)
    {
        return Err(usage(anyhow!(
            "--name {name:?}: expected 1 to {MAX_NAME_CHARS} printable characters"
        )));
    }
    let mut c = open(s)?;
    let issued = tokens::new_staff_token()?;
    let row = NewApiToken {
        name,
        role,
        token_hash: &issued.hash,
        created_at: Utc::now().naive_utc(),
    };
    api_tokens::insert(&mut c, &row)?;
    eprintln!(
        "created a {role} token for {name}; it is shown once, below (only its hash is stored)"
    );
    println!("{}", issued.token);
    Ok(())
}

fn list_tokens(c: &mut DbConnection) -> Result<(), Failure> {
    let fmt = |t: Option<chrono::NaiveDateTime>| {
        t.map_or("-".to_string(), |t| {
            t.and_utc().format("%Y-%m-%dT%H:%M:%SZ").to_string()
        })
    };
    let rows = api_tokens::list(c)?;
    let width = rows
        .iter()
        .map(|t| t.name.chars().count())
        .max()
        .unwrap_or(4)
        .max(4);
    println!(
        "{:width$}  {:8}  {:20}  {:20}  STATUS",
        "NAME", "ROLE", "CREATED", "LAST USED"
    );
    for t in rows {
        let status = if t.revoked_at.is_some() {
            "revoked"
        } else {
            "active"
        };
        println!(
            "{:width$}  {:8}  {:20}  {:20}  {status}",
            t.name,
            t.role.as_str(),
            fmt(Some(t.created_at)),
            fmt(t.last_used_at),
        );
    }
    Ok(())
}

fn serve(s: &Settings, dev: bool) -> Result<(), Failure> {
    let secret = match &s.portal.secret {
        Some(secret) => secret.expose().as_bytes().to_vec(),
        None if dev => {
            let generated = tokens::random_secret()?;
            eprintln!(
                "dev mode: generated CVM_PORTAL_SECRET={generated} (links signed with it stop working when this process ends)"
            );
            generated.into_bytes()
        }
        None => {
            return Err(usage(anyhow!(
                "CVM_PORTAL_SECRET is not set: set it to at least 32 random bytes (e.g. `openssl rand -hex 32`), or pass --dev"
            )));
        }
    };
    let mut mail_settings = s.mail.clone();
    if dev && mail_settings.from.is_none() {
        mail_settings.from = Some(DEV_MAIL_FROM.into());
    }
    let mail = MailConfig::from_settings(&mail_settings).map_err(usage)?;
    if dev {
        match &mail.delivery {
            Delivery::Files(dir) => eprintln!(
                "dev mode: campaign messages are written to {} (one .eml each), from {}",
                dir.display(),
                mail_settings.from.as_deref().unwrap_or(DEV_MAIL_FROM)
            ),
            Delivery::Smtp(_) => eprintln!("dev mode: campaign messages go to CVM_SMTP_URL"),
        }
    }
    let bind: SocketAddr = s.portal.bind.parse().map_err(usage)?;
    let config = ServeConfig {
        db_url: db_url(s)?,
        bind,
        public_url: s.portal.public_url.clone(),
        secret,
        graphiql: s.portal.graphiql,
        pool_size: s.portal.pool_size,
        workers: None,
        limits: server::Limits::from_settings(&s.portal),
        mail,
        sender: true,
        privacy: cvm_portal::graphql::privacy::PrivacyConfig {
            key: cvm_shared::privacy::PrivacyKey::from_env_if_set().map_err(usage)?,
            warehouse: s.portal.warehouse.as_ref().map(std::path::PathBuf::from),
            export_dir: std::path::PathBuf::from(&s.portal.export_dir),
        },
    };
    actix_web::rt::System::new()
        .block_on(async move {
            let running = server::start(config)?;
            for addr in &running.addrs {
                println!("listening on http://{addr}");
                tracing::info!(%addr, "listening; GraphQL at /graphql, GraphiQL at /graphiql");
            }
            let served = running.server.await;
            // In-flight messages finish and their fates are recorded.
            if let Some(sender) = running.sender {
                sender.stop();
            }
            served.context("the server stopped with an error")?;
            tracing::info!("stopped");
            Ok::<(), anyhow::Error>(())
        })
        .map_err(Failure::from)
}
