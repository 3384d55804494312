//! The proxy's command-line options shared by `tame mcp-proxy` and the
//! `tame-mcp-proxy` binary (transports, `--print-config`), and the MCP
//! client configuration entries `--print-config` prints: the entry that
//! makes Claude Desktop, Cursor or VS Code start the proxy in front of a
//! server instead of the server itself.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde_json::{Map, Value, json};

use crate::error::{Error, Result};
use crate::mcp::McpProxyOptions;
use crate::mcp_listen::MCP_PATH;

/// An MCP client whose configuration `--print-config` writes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum ClientKind {
    /// Claude Desktop (`claude_desktop_config.json`), Claude Code (`.mcp.json`)
    Claude,
    /// Cursor (`~/.cursor/mcp.json`, `.cursor/mcp.json`)
    Cursor,
    /// VS Code (`.vscode/mcp.json`)
    Vscode,
}

/// The transport options of the proxy (flattened into both commands).
#[derive(Clone, Debug, Default, clap::Args)]
pub struct McpTransportArgs {
    /// Guard the MCP server at this Streamable HTTP endpoint (http:// or
    /// https://) instead of running a command
    #[arg(long, value_name = "URL")]
    pub url: Option<String>,
    /// A header sent to the server at --url, `Name: value` (repeatable),
    /// e.g. "Authorization: Bearer ..."
    #[arg(long = "header", value_name = "NAME: VALUE", requires = "url")]
    pub headers: Vec<String>,
    /// Serve MCP clients over Streamable HTTP at http://ADDR/mcp instead of
    /// stdin/stdout (one server connection and Tame session per MCP session)
    #[arg(long, value_name = "ADDR")]
    pub listen: Option<SocketAddr>,
    /// With --listen: a host name the listener answers to besides loopback
    /// addresses, localhost and the listen address (repeatable; `*`: any)
    #[arg(long = "allowed-host", value_name = "HOST", requires = "listen")]
    pub allowed_hosts: Vec<String>,
    /// With --listen: a browser origin allowed to call the listener besides
    /// its own (repeatable), e.g. http://localhost:6274
    #[arg(long = "allowed-origin", value_name = "ORIGIN", requires = "listen")]
    pub allowed_origins: Vec<String>,
    /// Print the MCP client configuration entry that runs this proxy (with
    /// the other options given) and exit
    #[arg(long, value_enum, value_name = "CLIENT")]
    pub print_config: Option<ClientKind>,
    /// The server's name in the printed configuration (default: from the
    /// command or URL)
    #[arg(long, value_name = "NAME", requires = "print_config")]
    pub name: Option<String>,
}

impl McpTransportArgs {
    /// Sets the transport options of `opts`.
    pub fn apply(&self, opts: &mut McpProxyOptions) -> Result<()> {
        opts.url.clone_from(&self.url);
        opts.headers = self.headers.iter().map(|h| parse_header(h)).collect::<Result<_>>()?;
        opts.listen = self.listen;
        opts.allowed_hosts.clone_from(&self.allowed_hosts);
        opts.allowed_origins.clone_from(&self.allowed_origins);
        if opts.url.is_none() && opts.command.is_empty() {
            return Err(Error::Config(
                "no mcp server given: put its command after `--`, or give --url".into(),
            ));
        }
        if opts.url.is_some() && !opts.command.is_empty() {
            return Err(Error::Config(
                "give the mcp server either as a command (after `--`) or as --url, not both".into(),
            ));
        }
        Ok(())
    }
}

/// `Name: value` as a header pair.
fn parse_header(text: &str) -> Result<(String, String)> {
    match text.split_once(':') {
        Some((name, value)) if !name.trim().is_empty() => Ok((name.trim().to_owned(), value.trim().to_owned())),
        _ => Err(Error::Config(format!(
            "invalid --header `{text}`: expected `Name: value`"
        ))),
    }
}

/// How the proxy is started: the program, the words before the options
/// (`["mcp-proxy"]` for `tame`), and the API key's presence (never its
/// value: the entry names the variable to set instead).
#[derive(Clone, Debug)]
pub struct Launcher {
    pub program: PathBuf,
    pub prefix: Vec<String>,
}

impl Launcher {
    /// This very executable (an absolute path, so that a client started
    /// without the user's `PATH` finds it), with `prefix`.
    pub fn current(prefix: &[&str]) -> Result<Launcher> {
        let program = std::env::current_exe().map_err(|source| Error::Io {
            what: "cannot find this executable's path".into(),
            source,
        })?;
        Ok(Launcher {
            program,
            prefix: prefix.iter().map(|s| (*s).to_owned()).collect(),
        })
    }
}

fn absolute(path: &Path) -> String {
    std::path::absolute(path)
        .unwrap_or_else(|_| path.to_path_buf())
        .display()
        .to_string()
}

/// The proxy's arguments for `opts` (what the client will run).
fn proxy_args(launcher: &Launcher, opts: &McpProxyOptions) -> Vec<String> {
    let mut args = launcher.prefix.clone();
    let mut push = |flag: &str, value: String| {
        args.push(flag.to_owned());
        args.push(value);
    };
    if let Some(policy) = &opts.policy {
        push("--policy", absolute(policy));
    } else if let Some(api_url) = &opts.api_url {
        push("--api-url", api_url.clone());
    }
    for (flag, value) in [
        ("--agent-id", &opts.agent_id),
        ("--user-id", &opts.user_id),
        ("--session-id", &opts.session_id),
    ] {
        if let Some(value) = value {
            push(flag, value.clone());
        }
    }
    if let Some(journal) = &opts.journal {
        push("--journal", absolute(journal));
    }
    if opts.approval_timeout != McpProxyOptions::default().approval_timeout {
        push("--approval-timeout", opts.approval_timeout.as_secs_f64().to_string());
    }
    if let Some(url) = &opts.url {
        push("--url", url.clone());
    }
    for (name, value) in &opts.headers {
        push("--header", format!("{name}: {value}"));
    }
    if opts.hide_denied {
        args.push("--hide-denied".to_owned());
    }
    if !opts.command.is_empty() {
        args.push("--".to_owned());
        args.extend(opts.command.iter().cloned());
    }
    args
}

/// A name for the server: the `--url`'s host, or the script or package the
/// command runs (`npx -y @scope/server-x` is `server-x`).
pub fn server_name(opts: &McpProxyOptions) -> String {
    if let Some(url) = &opts.url {
        return reqwest::Url::parse(url)
            .ok()
            .and_then(|u| u.host_str().map(str::to_owned))
            .unwrap_or_else(|| "mcp-server".to_owned());
    }
    let stem = |word: &str| {
        let last = word.rsplit(['/', '\\']).next().unwrap_or(word);
        let last = last.split('@').find(|s| !s.is_empty()).unwrap_or(last);
        Path::new(last)
            .file_stem()
            .map_or_else(|| last.to_owned(), |s| s.to_string_lossy().into_owned())
    };
    let Some((program, args)) = opts.command.split_first() else {
        return "mcp-server".to_owned();
    };
    let runner = stem(program);
    let interpreters = [
        "python", "python3", "node", "npx", "uv", "uvx", "deno", "bun", "bunx", "pipx", "docker",
    ];
    if interpreters.contains(&runner.as_str())
        && let Some(target) = args
            .iter()
            .find(|a| !a.starts_with('-') && !matches!(a.as_str(), "run" | "tool" | "exec"))
    {
        return stem(target);
    }
    runner
}

/// The configuration entry of `kind` that runs the proxy for `opts`, as
/// the whole file would hold it (`{"mcpServers": {...}}`, VS Code's
/// `{"servers": {...}}`).
pub fn client_config(
    kind: ClientKind,
    launcher: &Launcher,
    opts: &McpProxyOptions,
    name: Option<&str>,
) -> Result<Value> {
    let name = name.map_or_else(|| server_name(opts), str::to_owned);
    let mut entry = Map::new();
    if let Some(addr) = opts.listen {
        // The client connects to a proxy already running with --listen.
        let url = format!("http://{addr}{MCP_PATH}");
        match kind {
            ClientKind::Claude => {
                // Claude Desktop starts stdio servers only: reach the
                // listener through a stdio proxy of its own.
                return Err(Error::Config(format!(
                    "claude's configuration starts a stdio server: drop --listen to print it \
                     (a listening proxy is reached at {url})"
                )));
            }
            ClientKind::Cursor => {
                entry.insert("url".into(), json!(url));
            }
            ClientKind::Vscode => {
                entry.insert("type".into(), json!("http"));
                entry.insert("url".into(), json!(url));
            }
        }
    } else {
        if kind == ClientKind::Vscode {
            entry.insert("type".into(), json!("stdio"));
        }
        entry.insert("command".into(), json!(launcher.program.display().to_string()));
        entry.insert("args".into(), json!(proxy_args(launcher, opts)));
        if opts.policy.is_none() && opts.api_url.is_some() {
            // Never the key itself: the variable the proxy reads it from.
            let placeholder = match kind {
                ClientKind::Vscode => "${input:tame-api-key}",
                ClientKind::Claude | ClientKind::Cursor => "REPLACE_WITH_YOUR_TAME_API_KEY",
            };
            entry.insert("env".into(), json!({"TAME_API_KEY": placeholder}));
        }
    }
    let mut servers = Map::new();
    servers.insert(name, Value::Object(entry));
    Ok(match kind {
        ClientKind::Claude | ClientKind::Cursor => json!({"mcpServers": servers}),
        ClientKind::Vscode => {
            let mut file = Map::new();
            file.insert("servers".into(), Value::Object(servers));
            if opts.listen.is_none() && opts.policy.is_none() && opts.api_url.is_some() {
                file.insert(
                    "inputs".into(),
                    json!([{
                        "type": "promptString",
                        "id": "tame-api-key",
                        "description": "Tame API key",
                        "password": true
                    }]),
                );
            }
            Value::Object(file)
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn opts(command: &[&str]) -> McpProxyOptions {
        McpProxyOptions {
            policy: Some(PathBuf::from("/etc/tame/policies.yml")),
            command: command.iter().map(|s| (*s).to_owned()).collect(),
            ..McpProxyOptions::default()
        }
    }

    #[test]
    fn names_come_from_the_script_or_package() {
        assert_eq!(
            server_name(&opts(&["npx", "-y", "@modelcontextprotocol/server-filesystem", "/tmp"])),
            "server-filesystem"
        );
        assert_eq!(
            server_name(&opts(&["python3", "/srv/weather_server.py"])),
            "weather_server"
        );
        assert_eq!(server_name(&opts(&["uvx", "mcp-server-git"])), "mcp-server-git");
        assert_eq!(
            server_name(&opts(&["/usr/local/bin/github-mcp", "stdio"])),
            "github-mcp"
        );
        let remote = McpProxyOptions {
            url: Some("https://mcp.example.com/mcp".into()),
            ..McpProxyOptions::default()
        };
        assert_eq!(server_name(&remote), "mcp.example.com");
    }

    #[test]
    fn each_client_gets_its_own_shape() {
        let launcher = Launcher {
            program: PathBuf::from("/usr/bin/tame"),
            prefix: vec!["mcp-proxy".into()],
        };
        let o = McpProxyOptions {
            agent_id: Some("desktop".into()),
            hide_denied: true,
            ..opts(&["npx", "-y", "@modelcontextprotocol/server-filesystem", "/tmp"])
        };
        let args = json!([
            "mcp-proxy",
            "--policy",
            "/etc/tame/policies.yml",
            "--agent-id",
            "desktop",
            "--hide-denied",
            "--",
            "npx",
            "-y",
            "@modelcontextprotocol/server-filesystem",
            "/tmp"
        ]);
        let claude = client_config(ClientKind::Claude, &launcher, &o, None).unwrap();
        assert_eq!(
            claude,
            json!({"mcpServers": {"server-filesystem": {"command": "/usr/bin/tame", "args": args}}})
        );
        let cursor = client_config(ClientKind::Cursor, &launcher, &o, Some("files")).unwrap();
        assert_eq!(
            cursor,
            json!({"mcpServers": {"files": {"command": "/usr/bin/tame", "args": args}}})
        );
        let vscode = client_config(ClientKind::Vscode, &launcher, &o, None).unwrap();
        assert_eq!(
            vscode,
            json!({"servers": {"server-filesystem": {"type": "stdio", "command": "/usr/bin/tame", "args": args}}})
        );
    }

    #[test]
    fn a_remote_guard_names_the_key_variable_never_the_key() {
        let launcher = Launcher {
            program: PathBuf::from("/usr/bin/tame"),
            prefix: vec!["mcp-proxy".into()],
        };
        let o = McpProxyOptions {
            policy: None,
            api_url: Some("http://127.0.0.1:8000".into()),
            api_key: Some("tk_secret_value".into()),
            url: Some("https://mcp.example.com/mcp".into()),
            ..McpProxyOptions::default()
        };
        let text = client_config(ClientKind::Claude, &launcher, &o, None)
            .unwrap()
            .to_string();
        assert!(!text.contains("tk_secret_value"), "{text}");
        assert!(
            text.contains("\"TAME_API_KEY\":\"REPLACE_WITH_YOUR_TAME_API_KEY\""),
            "{text}"
        );
        assert!(text.contains("\"--url\",\"https://mcp.example.com/mcp\""), "{text}");
        let listening = McpProxyOptions {
            listen: Some("127.0.0.1:8931".parse().unwrap()),
            ..o
        };
        let vscode = client_config(ClientKind::Vscode, &launcher, &listening, Some("guarded")).unwrap();
        assert_eq!(
            vscode,
            json!({"servers": {"guarded": {"type": "http", "url": "http://127.0.0.1:8931/mcp"}}})
        );
        assert!(client_config(ClientKind::Claude, &launcher, &listening, None).is_err());
    }
}
