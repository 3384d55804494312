//! The repository's `Dockerfile` and `docker-compose.yml` against the CLI
//! they run: every `TAME_*` variable they set is one `tame` reads and its
//! value is accepted, the entry point and the compose command parse as
//! `tame serve` with the address, policy and store they mean, and the
//! health check is a `tame` command probing that address. Cheap, and run
//! everywhere, including where no container runtime is available.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing, clippy::panic)]

use std::path::{Path, PathBuf};

use clap::{CommandFactory as _, Parser as _, ValueEnum as _};
use serde_json::Value;

use crate::cli::{Cli, Command};

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// The Dockerfile's instructions: continuation lines joined, comments and
/// blank lines dropped, as (keyword, rest).
fn instructions() -> Vec<(String, String)> {
    let text = std::fs::read_to_string(repo().join("Dockerfile")).unwrap();
    let mut out = Vec::new();
    let mut current = String::new();
    for line in text.lines() {
        let line = line.trim();
        if line.starts_with('#') || (line.is_empty() && current.is_empty()) {
            continue;
        }
        if let Some(head) = line.strip_suffix('\\') {
            current.push_str(head);
            current.push(' ');
            continue;
        }
        current.push_str(line);
        let (keyword, rest) = current.trim().split_once(' ').unwrap_or((current.trim(), ""));
        out.push((keyword.to_uppercase(), rest.trim().to_string()));
        current.clear();
    }
    out
}

fn instruction(keyword: &str) -> Vec<String> {
    instructions()
        .into_iter()
        .filter(|(k, _)| k == keyword)
        .map(|(_, rest)| rest)
        .collect()
}

/// A JSON-array (exec form) argument list.
fn exec_form(text: &str) -> Vec<String> {
    serde_json::from_str(text).unwrap_or_else(|e| panic!("not an exec-form array ({e}): {text}"))
}

/// The `ENV` variables of the runtime stage, in order.
fn dockerfile_env() -> Vec<(String, String)> {
    instruction("ENV")
        .iter()
        .flat_map(|rest| rest.split_whitespace().map(str::to_string).collect::<Vec<_>>())
        .map(|pair| {
            let (name, value) = pair
                .split_once('=')
                .unwrap_or_else(|| panic!("ENV `{pair}` is not NAME=VALUE"));
            (name.to_string(), value.to_string())
        })
        .collect()
}

fn serve_args(args: &[String]) -> crate::cli::ServeArgs {
    let line = std::iter::once("tame".to_string()).chain(args.iter().cloned());
    match Cli::try_parse_from(line)
        .unwrap_or_else(|e| panic!("{args:?}: {e}"))
        .command
    {
        Command::Serve(args) => args,
        other => panic!("{args:?} is not `tame serve`: {other:?}"),
    }
}

/// Whether `tame` reads variable `name` and takes `value` for it: a
/// variable of a flag (clap's `env`, checked by parsing the value as that
/// flag), or one of the server's `TAME_*` settings that changes the
/// configuration.
fn accepts_variable(name: &str, value: &str) {
    let cli = Cli::command();
    let serve = cli.find_subcommand("serve").unwrap();
    let flag = cli
        .get_arguments()
        .chain(serve.get_arguments())
        .find(|a| a.get_env().is_some_and(|e| e == name));
    if let Some(flag) = flag {
        let long = flag.get_long().unwrap();
        let global = cli.get_arguments().any(|a| a.get_id() == flag.get_id());
        let line: Vec<String> = if global {
            vec!["tame".into(), format!("--{long}={value}"), "status".into()]
        } else {
            vec!["tame".into(), "serve".into(), format!("--{long}={value}")]
        };
        if let Err(e) = Cli::try_parse_from(&line) {
            panic!("{name}={value}: --{long} refuses it: {e}");
        }
        return;
    }
    let before = format!("{:?}", tame_server::ServerConfig::default());
    let mut config = tame_server::ServerConfig::default();
    config
        .apply_env([(name.to_string(), value.to_string())])
        .unwrap_or_else(|e| panic!("{name}={value}: {e:#}"));
    assert_ne!(format!("{config:?}"), before, "`tame serve` does not read {name}");
}

#[test]
fn the_dockerfile_runs_tame_serve_with_settings_tame_reads() {
    let env = dockerfile_env();
    let var = |name: &str| {
        env.iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.clone())
            .unwrap_or_else(|| panic!("the Dockerfile sets no {name}"))
    };
    for (name, value) in &env {
        accepts_variable(name, value);
    }
    let mut config = tame_server::ServerConfig::default();
    config.apply_env(env.clone()).unwrap();
    assert!(
        config.addr.ip().is_unspecified(),
        "listens on every interface: {}",
        config.addr
    );
    assert_eq!(config.db_path, PathBuf::from("/var/lib/tame/tame.db"));
    assert_eq!(
        tame_server::LogFormat::from_str(&var("TAME_LOG_FORMAT"), false),
        Ok(tame_server::LogFormat::Json)
    );

    // The policy served is the example policy, copied where TAME_POLICY says.
    let policy = var("TAME_POLICY");
    let copied = instruction("COPY")
        .into_iter()
        .find_map(|rest| {
            let parts: Vec<&str> = rest.split_whitespace().collect();
            (parts.last() == Some(&policy.as_str())).then(|| parts[0].to_string())
        })
        .unwrap_or_else(|| panic!("nothing is copied to {policy}"));
    assert_eq!(copied, "policies/example.yml");
    let source = std::fs::read_to_string(repo().join(&copied)).unwrap();
    tame_engine::Policy::from_yaml(&source, &copied).unwrap();

    // The entry point is `tame serve`, and the server it starts, with the
    // image's variables and no flags, binds where they say.
    let entry = exec_form(instruction("ENTRYPOINT").last().unwrap());
    assert_eq!(entry[..2], ["tame", "serve"]);
    serve_args(&entry[1..]);
    assert!(
        instruction("CMD").is_empty(),
        "no CMD: `docker run IMAGE FLAGS` appends flags"
    );

    // The health check probes /health of the address served, without curl.
    let check = instruction("HEALTHCHECK");
    let check = check.last().unwrap();
    let probe = exec_form(check.split_once("CMD ").unwrap().1);
    assert_eq!(probe[0], "tame");
    let cli = Cli::try_parse_from(&probe).unwrap_or_else(|e| panic!("{probe:?}: {e}"));
    assert!(matches!(&cli.command, Command::Health(h) if !h.ready), "{probe:?}");
    let url = if probe.iter().any(|a| a.starts_with("--api-url")) {
        cli.api_url.clone()
    } else {
        var("TAME_API_URL")
    };
    assert_eq!(url, format!("http://127.0.0.1:{}", config.addr.port()));

    // Non-root, with the port and the store's directory declared.
    let user = instruction("USER");
    assert!(
        user.last()
            .is_some_and(|u| !u.starts_with("root") && !u.starts_with('0')),
        "{user:?}"
    );
    assert_eq!(instruction("EXPOSE"), [config.addr.port().to_string()]);
    assert!(instruction("VOLUME").iter().any(|v| v.contains("/var/lib/tame")));
}

/// `docker-compose.yml` with `${VAR...}` replaced by `x`, as compose would
/// with the variables set to `x`.
fn compose() -> Value {
    let text = std::fs::read_to_string(repo().join("docker-compose.yml")).unwrap();
    let interpolated = interpolate(&text);
    serde_yaml::from_str(&interpolated).unwrap()
}

/// The server's configuration a compose service's command gives: the
/// command is appended to the image's `tame serve`.
fn service_serve_config(service: &Value) -> tame_server::ServerConfig {
    let entry = exec_form(instruction("ENTRYPOINT").last().unwrap());
    let command: Vec<String> = service["command"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a.as_str().unwrap().to_string())
        .collect();
    let args = serve_args(&[entry[1..].to_vec(), command].concat());
    crate::serve::config(&args).unwrap()
}

/// Replaces every `${...}` with `x`.
fn interpolate(text: &str) -> String {
    let mut out = String::new();
    let mut rest = text;
    while let Some(start) = rest.find("${") {
        out.push_str(&rest[..start]);
        let end = rest[start..].find('}').unwrap() + start;
        out.push('x');
        rest = &rest[end + 1..];
    }
    out.push_str(rest);
    out
}

#[test]
fn the_compose_file_runs_the_image_on_its_postgresql() {
    let compose = compose();
    let services = compose["services"].as_object().unwrap();
    let tame = &services["tame"];
    assert_eq!(tame["build"], ".", "built from the repository's Dockerfile");
    let db_service = services
        .iter()
        .find(|(_, s)| s["image"].as_str().is_some_and(|i| i.starts_with("postgres:")))
        .map(|(name, _)| name.clone())
        .expect("a PostgreSQL service");
    assert_eq!(
        tame["depends_on"][&db_service]["condition"], "service_healthy",
        "the server starts once the database is ready"
    );
    for (name, value) in tame["environment"].as_object().unwrap() {
        accepts_variable(name, value.as_str().unwrap());
    }
    let config = service_serve_config(tame);
    let url = config.db_url().expect("a postgres:// store");
    assert!(url.contains(&format!("@{db_service}:5432/")), "{url}");
    let hosts: Vec<String> = config.allowed_hosts.iter().map(ToString::to_string).collect();
    assert!(
        hosts.contains(&"tame".to_string()),
        "reachable as http://tame:8000 ({hosts:?})"
    );
    // The published port is the one the image listens on.
    let mut image = tame_server::ServerConfig::default();
    image.apply_env(dockerfile_env()).unwrap();
    let port = format!(":{}", image.addr.port());
    let ports = tame["ports"].as_array().unwrap();
    assert!(ports.iter().any(|p| p.as_str().unwrap().ends_with(&port)), "{ports:?}");
}

/// `docker-compose.cluster.yml`: two servers of the image on one
/// PostgreSQL service, each with a node id of its own and the same secret,
/// keys and database, behind an nginx whose configuration (in `deploy/`)
/// balances over both on the port they listen on, with a Host they accept.
#[test]
fn the_cluster_compose_file_runs_two_servers_behind_a_balancer() {
    let text = std::fs::read_to_string(repo().join("docker-compose.cluster.yml")).unwrap();
    let mut yaml: serde_yaml::Value = serde_yaml::from_str(&interpolate(&text)).unwrap();
    yaml.apply_merge().unwrap();
    let compose: Value = serde_json::to_value(&yaml).unwrap();
    let services = compose["services"].as_object().unwrap();
    let mut image = tame_server::ServerConfig::default();
    image.apply_env(dockerfile_env()).unwrap();
    let mut nodes = Vec::new();
    let mut urls = Vec::new();
    for name in ["tame-a", "tame-b"] {
        let service = &services[name];
        assert_eq!(service["build"], ".", "{name}");
        let mut config = tame_server::ServerConfig::default();
        let env: Vec<(String, String)> = service["environment"]
            .as_object()
            .unwrap()
            .iter()
            .map(|(k, v)| {
                accepts_variable(k, v.as_str().unwrap());
                (k.clone(), v.as_str().unwrap().to_string())
            })
            .collect();
        config.apply_env(env).unwrap();
        let flags = service_serve_config(service);
        urls.push(flags.db_url().expect("a postgres:// store").to_string());
        assert!(flags.allowed_hosts.iter().any(|h| h.to_string() == "tame"), "{name}");
        let node = config.node_id.clone().expect("a node id of its own");
        assert!(node.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-'), "{node}");
        nodes.push(node);
        assert_eq!(service["depends_on"]["postgres"]["condition"], "service_healthy");
    }
    assert_ne!(nodes[0], nodes[1], "each server has its own chain");
    assert_eq!(urls[0], urls[1], "one database");
    let lb = &services["lb"];
    assert!(lb["image"].as_str().unwrap().starts_with("nginx:"));
    let mount = lb["volumes"][0].as_str().unwrap();
    let conf_path = mount.split(':').next().unwrap();
    let conf = std::fs::read_to_string(repo().join(conf_path)).unwrap();
    let port = image.addr.port();
    for name in ["tame-a", "tame-b"] {
        assert!(conf.contains(&format!("server {name}:{port}")), "{conf}");
    }
    assert!(conf.contains("proxy_set_header Host tame;"), "{conf}");
}
