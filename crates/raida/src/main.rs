//! `raida`: the command line. Every subcommand lives in `cli/<name>.rs` and only parses
//! its arguments and calls into the libraries (raida-proto, raida-store, raida-server,
//! raida-client, raida-channel).

use clap::{CommandFactory, Parser, Subcommand};

mod bench;
mod cli;

/// `raida --version`: the package version, the commit and the build date (build.rs).
const VERSION: &str = concat!(
    env!("CARGO_PKG_VERSION"),
    " (commit ",
    env!("RAIDA_BUILD_COMMIT"),
    ", built ",
    env!("RAIDA_BUILD_DATE"),
    ")"
);

#[derive(Parser)]
#[command(name = "raida", version = VERSION, about = "RAIDA X server, data directory tools, client and secure channel")]
struct Cli {
    #[command(subcommand)]
    command: Command,
    /// More detail: each RAIDA's answer behind a one-line error, and the key exchange's
    /// progress even when stderr is not a terminal.
    #[arg(short, long, global = true)]
    verbose: bool,
}

#[derive(Subcommand)]
enum Command {
    /// Run a RAIDA server for a data directory (default ./raida-data, created on first start).
    Serve(cli::serve::ServeArgs),
    /// Create a new data directory with config.toml and random page files.
    Init(cli::init::InitArgs),
    /// Read or change one coin record (only while no server holds the directory).
    #[command(subcommand)]
    Coin(cli::coin::CoinCommand),
    /// Identity coins of this server (coins/<DN>.<SN>.bin).
    #[command(subcommand)]
    Identity(cli::identity::IdentityCommand),
    /// Type-7 RAIDA-to-RAIDA pre-shared secrets.
    #[command(subcommand)]
    Secret(cli::secret::SecretCommand),
    /// Key-token secrets (denominations 7..11) for this RAIDA.
    #[command(subcommand)]
    Token(cli::token::TokenCommand),
    /// Lockers (EN 2 keys).
    #[command(subcommand)]
    Locker(cli::locker::LockerCommand),
    /// Keys assembled from Key Alerts (the receiver's inbox).
    #[command(subcommand)]
    Inbox(cli::inbox::InboxCommand),
    /// A user's identity coin (wallet): make one, show one.
    #[command(subcommand)]
    Wallet(cli::wallet::WalletCommand),
    /// A local RAIDA network: init, up (every RAIDA in one process), add-user.
    #[command(subcommand)]
    Network(cli::network::NetworkCommand),
    /// Key exchange through the RAIDA: send a key, receive a key, fix a lost AN.
    #[command(subcommand)]
    Key(cli::key::KeyCommand),
    /// Send files (or stdin) to a receiver: a key through the RAIDA, then a private channel.
    Send(cli::send::SendArgs),
    /// Receive files (or a stream) from a sender: wait for its key, accept its channel.
    Receive(cli::receive::ReceiveArgs),
    /// Run a relay (PROTOCOL.md section 10): pairs two clients by rendezvous id and copies
    /// bytes between them.
    Relay(cli::relay::RelayArgs),
    /// Load generator: Echo requests against any RAIDA server.
    Bench(cli::bench::BenchArgs),
    /// Self-check of the protocol codec against built-in known answers.
    Selfcheck,
    /// Secure channel: demo, listen, connect.
    #[command(subcommand)]
    Channel(cli::channel::ChannelCommand),
    /// Echo and Version to every RAIDA of a network file at once: up/down, latency, version.
    Status(cli::status::StatusArgs),
    /// A server's counters (Show Stats), with its admin key.
    Stats(cli::stats::StatsArgs),
    /// Print a shell completion script (bash, zsh, fish, elvish, powershell) to stdout.
    Completions { shell: clap_complete::Shell },
    /// Print the manual page (roff) to stdout: `raida man | man -l -`.
    Man,
}

fn main() {
    let cli = Cli::parse();
    cli::set_verbose(cli.verbose);
    let ran = ran(&cli.command);
    if !runs_a_server(&cli.command) {
        default_sigpipe();
    }
    let result = match cli.command {
        Command::Serve(a) => cli::serve::run(a),
        Command::Init(a) => cli::init::run(a),
        Command::Coin(c) => cli::coin::run(c),
        Command::Identity(c) => cli::identity::run(c),
        Command::Secret(c) => cli::secret::run(c),
        Command::Token(c) => cli::token::run(c),
        Command::Locker(c) => cli::locker::run(c),
        Command::Inbox(c) => cli::inbox::run(c),
        Command::Key(c) => cli::key::run(c),
        Command::Wallet(c) => cli::wallet::run(c),
        Command::Network(c) => cli::network::run(c),
        Command::Send(a) => cli::send::run(a),
        Command::Receive(a) => cli::receive::run(a),
        Command::Relay(a) => cli::relay::run(a),
        Command::Bench(a) => cli::bench::run(a),
        Command::Selfcheck => cli::selfcheck::run(),
        Command::Channel(c) => cli::channel::run(c),
        Command::Status(a) => cli::status::run(a),
        Command::Stats(a) => cli::stats::run(a),
        Command::Completions { shell } => {
            let mut script = Vec::new();
            clap_complete::generate(shell, &mut Cli::command(), "raida", &mut script);
            std::io::Write::write_all(&mut std::io::stdout(), &script).map_err(Into::into)
        }
        Command::Man => clap_mangen::Man::new(Cli::command()).render(&mut std::io::stdout()).map_err(Into::into),
    };
    if let Err(e) = result {
        eprintln!("error: {}", cli::errors::one_line(&e));
        if cli::verbose() {
            for line in cli::errors::details(&e) {
                eprintln!("  {line}");
            }
        }
        if let Some(hint) = cli::errors::hint(&e, ran) {
            eprintln!("hint: {hint}");
        }
        std::process::exit(1);
    }
}

/// Which command ran, for the hints (they name that command's flags and peers).
fn ran(command: &Command) -> cli::errors::Ran {
    use cli::errors::Ran;
    match command {
        Command::Send(_) => Ran::Send,
        Command::Receive(_) => Ran::Receive,
        Command::Key(cli::key::KeyCommand::Send(_)) => Ran::KeySend,
        Command::Key(cli::key::KeyCommand::Receive(_)) => Ran::KeyReceive,
        Command::Serve(_) => Ran::Serve,
        Command::Network(cli::network::NetworkCommand::Up { .. }) => Ran::NetworkUp,
        Command::Stats(_) => Ran::Stats,
        _ => Ran::Other,
    }
}

/// The commands that run servers or hold connections for a long time: they keep Rust's
/// default (SIGPIPE ignored) so that a closed stderr pipe or a peer's reset surfaces as an
/// error instead of killing every RAIDA or channel of the process.
fn runs_a_server(command: &Command) -> bool {
    matches!(
        command,
        Command::Serve(_)
            | Command::Relay(_)
            | Command::Network(cli::network::NetworkCommand::Up { .. })
            | Command::Channel(_)
            | Command::Send(_)
            | Command::Receive(_)
    )
}

/// Give SIGPIPE back its default action, as in every other Unix tool: `raida man | head -1`
/// ends quietly when `head` closes the pipe, instead of `println!` panicking on EPIPE.
/// Sockets are unaffected: std (and so tokio/mio) send with MSG_NOSIGNAL.
fn default_sigpipe() {
    // SAFETY: called once at the start of main, before any thread is spawned; setting a
    // signal disposition to SIG_DFL installs no handler code.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
}
