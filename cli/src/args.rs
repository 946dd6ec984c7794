//! The command line as clap parses it: raw input only. The global options are
//! validated into a [`Target`](crate::connection::Target) before anything is
//! sent; the values of the requests themselves (topic filters, networks,
//! names) are checked by the control plane, which answers in plain words.

use std::path::PathBuf;

use clap::{ArgGroup, Args, Parser, Subcommand, ValueEnum};

const EXAMPLES: &str = "\
Examples:
  mqttctl cluster status
  mqttctl --server http://10.0.0.1:50051 cluster join http://10.0.0.2:50051
  mqttctl --server https://10.0.0.1:50051 --cacert ca.pem cluster status
  mqttctl users add alice --password s3cret
  mqttctl acl add --allow --action publish --topic 'sensors/%u/#' --username alice
  mqttctl banned add --clientid bad-client --expires 3600
  mqttctl --json cluster status | jq .leader
  mqttctl tokens add --role dataplane --node-id 21 > node21.token

Credentials: --token, else --token-file FILE, else $MQTTD_TOKEN, else
./data/admin.token when it exists (the admin token a standalone mqttd
writes there), so mqttctl works without flags next to a standalone mqttd.";

/// Admin client of an mqttd cluster: control-plane membership, users, ACL
/// rules and banned clients, over the gRPC admin API of any control-plane
/// member.
///
/// Exits 0 on success; on any failure, exits non-zero with one line on
/// stderr that says why.
#[derive(Debug, Parser)]
#[command(name = "mqttctl", version, propagate_version = true, after_help = EXAMPLES)]
pub struct Cli {
    #[command(flatten)]
    pub global: GlobalArgs,
    #[command(subcommand)]
    pub command: Command,
}

/// Options every command takes, before or after the command name.
#[derive(Debug, Args)]
#[command(next_help_heading = "Global options")]
pub struct GlobalArgs {
    /// gRPC admin endpoint of any control-plane member.
    #[arg(long, global = true, value_name = "URL", default_value = "http://127.0.0.1:50051")]
    pub server: String,
    /// Admin or member token, sent as `authorization: Bearer TOKEN`. A
    /// command line is visible to other users (ps): prefer --token-file or
    /// MQTTD_TOKEN. Default: --token-file, then MQTTD_TOKEN, then
    /// ./data/admin.token.
    #[arg(long, global = true, value_name = "TOKEN", conflicts_with = "token_file")]
    pub token: Option<String>,
    /// Read the token from FILE (one trailing newline is trimmed).
    #[arg(long, global = true, value_name = "FILE")]
    pub token_file: Option<PathBuf>,
    /// For an https:// server: the CA certificate (PEM) that signed its
    /// certificate.
    #[arg(long, global = true, value_name = "FILE")]
    pub cacert: Option<PathBuf>,
    /// Client certificate (PEM), for a server with verify_peer (mutual TLS).
    #[arg(long, global = true, value_name = "FILE", requires = "key")]
    pub cert: Option<PathBuf>,
    /// The client certificate's private key (PEM).
    #[arg(long, global = true, value_name = "FILE", requires = "cert")]
    pub key: Option<PathBuf>,
    /// Print one JSON object on stdout instead of text, for scripts.
    #[arg(long, global = true)]
    pub json: bool,
    /// Give up after this many seconds, to connect and then to get the
    /// answer (a join that waits for a slow learner may need more).
    #[arg(
        long,
        global = true,
        value_name = "SECS",
        default_value_t = 10,
        value_parser = clap::value_parser!(u64).range(1..=86_400)
    )]
    pub timeout: u64,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Control-plane membership, and the state of both planes.
    #[command(subcommand)]
    Cluster(ClusterCommand),
    /// MQTT users (username and password authentication).
    #[command(subcommand)]
    Users(UsersCommand),
    /// ACL rules, checked in order: the first rule that matches decides.
    #[command(subcommand)]
    Acl(AclCommand),
    /// Banned client ids, usernames and IP addresses.
    #[command(subcommand)]
    Banned(BannedCommand),
    /// API tokens for admins and data-plane nodes.
    #[command(subcommand)]
    Tokens(TokensCommand),
}

#[derive(Debug, Subcommand)]
pub enum TokensCommand {
    /// Make a new token and print it (only this once: the cluster keeps a
    /// SHA-256 hash of it). A data-plane token is bound to one node id: it
    /// may watch, register routes and heartbeat for that node only.
    Add {
        #[arg(long, value_enum, value_name = "ROLE")]
        role: TokenRole,
        /// The data-plane node id the token is bound to (required with
        /// --role dataplane).
        #[arg(long, value_name = "N", required_if_eq("role", "dataplane"))]
        node_id: Option<u64>,
    },
    /// List the tokens: ids, roles, node ids, creation times (never the
    /// secrets).
    List,
    /// Delete a token; whoever holds it is refused from then on.
    Del {
        /// Token id, as `tokens list` shows it.
        #[arg(value_name = "ID")]
        id: u64,
    },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum TokenRole {
    /// The admin API (what mqttctl needs).
    Admin,
    /// One data-plane node's link to the control plane.
    Dataplane,
}

#[derive(Debug, Subcommand)]
pub enum ClusterCommand {
    /// Show the control-plane members (role, term, log progress, leader)
    /// and the data-plane nodes (state, connections, how far behind).
    Status,
    /// Add a waiting control-plane node (one started on an empty data
    /// directory without bootstrap): first as a learner, then as a voter
    /// once it has caught up (with --learner it stays a learner).
    Join {
        /// gRPC endpoint of the new node, e.g. http://10.0.0.2:50051.
        #[arg(value_name = "URL")]
        addr: String,
        /// Keep it a non-voting learner (it replicates and serves reads and
        /// Watch streams, but does not vote).
        #[arg(long)]
        learner: bool,
    },
    /// Remove a control-plane member (voter or learner).
    Leave {
        /// Node id of the member, as `cluster status` shows it.
        #[arg(value_name = "ID")]
        node_id: u64,
    },
}

#[derive(Debug, Subcommand)]
pub enum UsersCommand {
    /// Add a user.
    Add {
        /// Username (what the client sends in CONNECT).
        #[arg(value_name = "NAME")]
        username: String,
        /// Password; the control plane stores only its argon2id hash and its
        /// SCRAM-SHA-256 verifier (for MQTT 5 enhanced authentication).
        #[arg(long, value_name = "PW")]
        password: String,
        /// Superusers pass every ACL check.
        #[arg(long)]
        superuser: bool,
    },
    /// List the users (never their passwords).
    List,
    /// Set a user's password.
    Passwd {
        #[arg(value_name = "NAME")]
        username: String,
        /// The new password.
        #[arg(long, value_name = "PW")]
        password: String,
    },
    /// Delete a user.
    Del {
        #[arg(value_name = "NAME")]
        username: String,
    },
}

#[derive(Debug, Subcommand)]
pub enum AclCommand {
    /// Add a rule, at the end of the list or at --position.
    Add(AclAddArgs),
    /// List the rules in the order they are checked, with their ids.
    List,
    /// Delete a rule.
    Del {
        /// Rule id, as `acl list` shows it.
        #[arg(value_name = "ID")]
        id: u64,
    },
}

/// One ACL rule: a permission, an action, a topic filter and whom it
/// applies to.
#[derive(Debug, Args)]
#[command(group(ArgGroup::new("permission").required(true).args(["allow", "deny"])))]
#[command(group(ArgGroup::new("who").required(true).args(["username", "clientid", "ipaddr", "all"])))]
pub struct AclAddArgs {
    /// Allow what the rule matches.
    #[arg(long)]
    pub allow: bool,
    /// Deny what the rule matches.
    #[arg(long)]
    pub deny: bool,
    /// What the rule covers.
    #[arg(long, value_enum, value_name = "ACTION")]
    pub action: AclAction,
    /// Topic filter (`+` and `#` wildcards; `%u` stands for the username,
    /// `%c` for the client id).
    #[arg(long, value_name = "FILTER")]
    pub topic: String,
    /// The rule applies to this username.
    #[arg(long, value_name = "U")]
    pub username: Option<String>,
    /// The rule applies to this client id.
    #[arg(long, value_name = "C", alias = "client-id")]
    pub clientid: Option<String>,
    /// The rule applies to clients from this IP address or CIDR network.
    #[arg(long, value_name = "CIDR")]
    pub ipaddr: Option<String>,
    /// The rule applies to every client.
    #[arg(long)]
    pub all: bool,
    /// Zero-based place in the list (0 is checked first); default: last.
    #[arg(long, value_name = "N")]
    pub position: Option<u32>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum AclAction {
    Publish,
    Subscribe,
    All,
}

#[derive(Debug, Subcommand)]
pub enum BannedCommand {
    /// Ban a client id, a username or an IP address (or CIDR network).
    Add(BanAddArgs),
    /// List the bans in force.
    List,
    /// Lift a ban.
    Del(BanTarget),
}

#[derive(Debug, Args)]
pub struct BanAddArgs {
    #[command(flatten)]
    pub target: BanTarget,
    /// Lift the ban after this many seconds (default: never).
    #[arg(long, value_name = "SECS")]
    pub expires: Option<u64>,
    /// Why, for whoever reads `banned list` later.
    #[arg(long, value_name = "TEXT", default_value = "")]
    pub reason: String,
}

/// What a ban applies to: exactly one of these.
#[derive(Debug, Args)]
#[group(required = true, multiple = false)]
pub struct BanTarget {
    /// A client id.
    #[arg(long, value_name = "C", alias = "client-id")]
    pub clientid: Option<String>,
    /// A username.
    #[arg(long, value_name = "U")]
    pub username: Option<String>,
    /// An IP address or CIDR network.
    #[arg(long, value_name = "IP")]
    pub ipaddr: Option<String>,
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    use super::*;

    #[test]
    fn the_command_line_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn global_options_go_before_or_after_the_command() {
        let before = Cli::try_parse_from(["mqttctl", "--json", "--timeout", "3", "cluster", "status"])
            .expect("options before");
        let after = Cli::try_parse_from(["mqttctl", "cluster", "status", "--json", "--server", "http://h:1"])
            .expect("options after");
        assert!(before.global.json && after.global.json);
        assert_eq!(before.global.timeout, 3);
        assert_eq!(after.global.server, "http://h:1");
    }

    #[test]
    fn acl_add_needs_one_permission_and_one_subject() {
        let base = ["mqttctl", "acl", "add", "--action", "publish", "--topic", "a/#"];
        let with = |extra: &[&'static str]| Cli::try_parse_from(base.iter().chain(extra).copied());
        assert!(with(&["--allow", "--username", "u"]).is_ok());
        assert!(with(&["--allow", "--all", "--position", "0"]).is_ok());
        assert!(with(&["--username", "u"]).is_err(), "no permission");
        assert!(with(&["--allow", "--deny", "--all"]).is_err(), "two permissions");
        assert!(with(&["--allow"]).is_err(), "no subject");
        assert!(with(&["--allow", "--all", "--clientid", "c"]).is_err(), "two subjects");
    }

    #[test]
    fn token_options() {
        let both = ["mqttctl", "--token", "t", "--token-file", "f", "users", "list"];
        assert!(Cli::try_parse_from(both).is_err(), "--token and --token-file conflict");
        assert!(Cli::try_parse_from(["mqttctl", "tokens", "add", "--role", "dataplane"]).is_err());
        assert!(Cli::try_parse_from(["mqttctl", "tokens", "add", "--role", "dataplane", "--node-id", "3"])
            .is_ok());
        assert!(Cli::try_parse_from(["mqttctl", "tokens", "add", "--role", "admin", "--json"]).is_ok());
    }

    #[test]
    fn a_ban_names_exactly_one_target() {
        assert!(Cli::try_parse_from(["mqttctl", "banned", "del", "--ipaddr", "10.0.0.1"]).is_ok());
        assert!(Cli::try_parse_from(["mqttctl", "banned", "add"]).is_err());
        let two = ["mqttctl", "banned", "add", "--clientid", "c", "--username", "u"];
        assert!(Cli::try_parse_from(two).is_err());
    }
}
