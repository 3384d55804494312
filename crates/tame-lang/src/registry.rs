//! The function registry: every function a condition may call, as typed
//! overloads. Built-ins are declared here (the evaluator implements them);
//! host functions are registered by the embedding program with a signature
//! and an implementation, and are type-checked exactly like built-ins.
//!
//! Tame's additions to CEL, as declared here:
//!
//! - `glob(path, pattern)` and `path.glob(pattern)`: shell-style globs
//!   (`*` within a segment, `**` across segments).
//! - `clean_path(path)` (lexical, POSIX: `/tmp/../etc/x` is `/etc/x`) and
//!   `within(path, dir)` (the clean path is `dir` or beneath it, by whole
//!   components).
//! - `lower`, `upper`, `trim` (and CEL's `lowerAscii`, `upperAscii`):
//!   receiver (`s.lower()`) or global (`lower(s)`).
//! - IP checks work on strings: `ip(s)` validates and canonicalizes an IP
//!   address (an error at run time if `s` is not one), `cidr(s)` does the
//!   same for a network, `is_ip(s)` (alias `isIP`) tests without erroring,
//!   and `in_cidr(ip, cidr)`, `ip(s).in_cidr("10.0.0.0/8")` or
//!   `cidr("10.0.0.0/8").containsIP(s)` test membership (the evaluator
//!   tells the network from the address by its `/`).
//! - `url(s)` parses a URL (with or without `scheme://`) into a
//!   `map(string, string)` with the keys `scheme`, `host`, `port`, `path`,
//!   `query`, `fragment`, `userinfo` and `domain`, so
//!   `url(args.to).host == "example.com"` works; `domain(s)` is the
//!   registrable domain (Public Suffix List) of an e-mail address, URL or
//!   host, and `lookalike(a, b)` tells a string that differs from another
//!   but looks like it (UTS #39 confusable skeleton, or a few edits).
//! - `has_secret(x) -> bool`, `has_pii(x) -> bool` and
//!   `secrets(x) -> list(map(string, string))` (one `{kind, category, path,
//!   preview}` map per finding): payload scanners. They are declared here
//!   without an implementation; the engine supplies one with
//!   [`Registry::register_host`] and exactly these signatures.
//! - Session facts on the `session` root: `session.count(tool)`,
//!   `session.count(tool, window)`, `session.called(tool)`.

use std::fmt;

use indexmap::IndexMap;
use rustc_hash::FxBuildHasher;

use crate::value::{HostFn, Type};

/// One typed signature of a function.
#[derive(Clone)]
pub struct Overload {
    /// A stable id, e.g. `size_string` or `host_has_secret_1`.
    pub id: String,
    /// Called as `target.name(args)`; the target is `params[0]`.
    pub receiver: bool,
    /// Parameter types, the receiver first when `receiver` is set.
    pub params: Vec<Type>,
    pub result: Type,
    /// The implementation of a host function; `None` for built-ins the
    /// evaluator implements itself (and for declared host slots not yet
    /// implemented).
    pub host: Option<HostFn>,
    /// A built-in declaration that the embedder implements through
    /// [`Registry::register_host`] (`has_secret` and friends).
    pub host_slot: bool,
}

impl Overload {
    /// The number of arguments in a call, not counting the receiver.
    pub fn arity(&self) -> usize {
        self.params.len().saturating_sub(usize::from(self.receiver))
    }

    /// The signature as users write it: `string.startsWith(string) -> bool`.
    pub fn signature(&self, name: &str) -> String {
        let names: Vec<String> = self.params.iter().map(Type::name).collect();
        let result = self.result.name();
        match names.split_first() {
            Some((target, rest)) if self.receiver => {
                format!("{target}.{name}({}) -> {result}", rest.join(", "))
            }
            _ => format!("{name}({}) -> {result}", names.join(", ")),
        }
    }
}

impl fmt::Debug for Overload {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Overload")
            .field("id", &self.id)
            .field("receiver", &self.receiver)
            .field("params", &self.params)
            .field("result", &self.result)
            .field("host", &self.host.as_ref().map(|_| "<fn>"))
            .field("host_slot", &self.host_slot)
            .finish()
    }
}

/// Why a host function could not be registered.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum RegistryError {
    #[error("host function `{name}` clashes with the built-in `{signature}`")]
    ClashesWithBuiltin { name: String, signature: String },
    #[error("host function `{name}` with {arity} argument(s) is already registered")]
    AlreadyRegistered { name: String, arity: usize },
    #[error("host function `{name}` does not match its declaration `{signature}`")]
    SlotMismatch { name: String, signature: String },
    #[error("`{name}` is not a valid function name")]
    InvalidName { name: String },
}

/// A built-in function's entry in the language reference
/// (`docs/language.md`, written by `cargo xtask docs`): what it does and
/// one example with the value it evaluates to. A test evaluates every
/// example in the reference's example context
/// ([`crate::reference::EXAMPLE_CALL`]) and compares it with `result`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FunctionDoc {
    /// One or two sentences, Markdown.
    pub summary: &'static str,
    /// A condition using the function.
    pub example: &'static str,
    /// What `example` evaluates to, as an expression (`true`, `"a"`, `3`).
    pub result: &'static str,
}

/// A table of functions by name, each with its overloads.
#[derive(Clone, Debug, Default)]
pub struct Registry {
    functions: IndexMap<String, Vec<Overload>, FxBuildHasher>,
    docs: IndexMap<String, FunctionDoc, FxBuildHasher>,
}

fn list(t: Type) -> Type {
    Type::List(Box::new(t))
}

fn map(k: Type, v: Type) -> Type {
    Type::Map(Box::new(k), Box::new(v))
}

const A: Type = Type::Param("A");
const K: Type = Type::Param("K");
const V: Type = Type::Param("V");

impl Registry {
    /// An empty registry: no functions at all.
    pub fn new() -> Self {
        Self::default()
    }

    /// CEL's standard functions used by policies and the conformance
    /// suite, plus Tame's additions (see the module documentation).
    pub fn builtins() -> Self {
        use Type::{Bool, Bytes, Double, Duration, Dyn, Int, Session, String as Str, Timestamp, Uint};
        let mut r = Self::new();

        // Each function's reference entry stands before its signatures.
        r.doc(
            "size",
            "The number of characters of a string (Unicode code points), bytes of bytes, items of a list or entries of a map.",
            r#"size("héllo") + size([1, 2]) + size({"k": "v"})"#,
            "8",
        );
        for t in [Str, Bytes, list(A), map(K, V)] {
            r.global("size", vec![t.clone()], Int);
            r.method("size", vec![t], Int);
        }
        // strings
        r.doc(
            "contains",
            "Whether the string contains the other as a substring.",
            r#""/home/ada/.ssh/id_rsa".contains("/.ssh/")"#,
            "true",
        );
        r.doc(
            "startsWith",
            "Whether the string starts with the prefix.",
            r#""/etc/hosts".startsWith("/etc/")"#,
            "true",
        );
        r.doc(
            "endsWith",
            "Whether the string ends with the suffix.",
            r#""report.pdf".endsWith(".pdf")"#,
            "true",
        );
        r.doc(
            "matches",
            "Whether a regular expression (RE2 syntax, unanchored: use `^` and `$`) matches the string. \
             Literal patterns are compiled once, when the policy loads.",
            r#""INV-2041".matches("^INV-[0-9]+$") and matches("drop table", "(?i)DROP")"#,
            "true",
        );
        for name in ["contains", "startsWith", "endsWith", "matches"] {
            r.method(name, vec![Str, Str], Bool);
        }
        r.global("matches", vec![Str, Str], Bool);
        r.doc(
            "lower",
            "The string in lower case (Unicode).",
            r#""ReadMe.MD".lower()"#,
            r#""readme.md""#,
        );
        r.doc(
            "upper",
            "The string in upper case (Unicode).",
            r#"upper("post")"#,
            r#""POST""#,
        );
        r.doc(
            "trim",
            "The string without leading and trailing white space (Unicode `White_Space`, as CEL's strings \
             extension; zero-width spaces are not white space).",
            r#""  rm -rf /  ".trim()"#,
            r#""rm -rf /""#,
        );
        r.doc(
            "lowerAscii",
            "The string with its ASCII letters in lower case; other letters are unchanged (CEL strings \
             extension). Use `lower` for Unicode case mapping.",
            r#""Content-Type: ÄB".lowerAscii()"#,
            r#""content-type: Äb""#,
        );
        r.doc(
            "upperAscii",
            "The string with its ASCII letters in upper case; other letters are unchanged (CEL strings \
             extension).",
            r#""get ä".upperAscii()"#,
            r#""GET ä""#,
        );
        for name in ["lower", "upper", "trim", "lowerAscii", "upperAscii"] {
            r.method(name, vec![Str], Str);
            r.global(name, vec![Str], Str);
        }
        Self::strings_extension(&mut r);
        Self::optionals(&mut r);
        // conversions
        r.doc(
            "int",
            "Converts to an int: doubles are truncated toward zero, strings parsed, timestamps give Unix seconds. \
             Out of range or unparsable is an error.",
            r#"int("42") + int(2.9)"#,
            "44",
        );
        r.doc(
            "uint",
            "Converts to an unsigned int; negative or unparsable is an error.",
            "uint(42)",
            "42u",
        );
        r.doc("double", "Converts to a double.", r#"double("2.5") * 2.0"#, "5.0");
        r.doc(
            "string",
            "Converts to a string (bytes must be UTF-8; timestamps in RFC 3339, durations in seconds).",
            r#"string(42) + string(true)"#,
            r#""42true""#,
        );
        r.doc(
            "bytes",
            "Converts a string to its UTF-8 bytes.",
            r#"bytes("abc")"#,
            r#"b"abc""#,
        );
        r.doc(
            "bool",
            "Parses `true` or `false` (and CEL's other spellings).",
            r#"bool("true")"#,
            "true",
        );
        r.doc(
            "type",
            "The type of a value, comparable with the type names `int`, `uint`, `double`, `bool`, `string`, \
             `bytes`, `list`, `map`, `null_type`, `type`.",
            r#"type("a") == string"#,
            "true",
        );
        r.doc(
            "dyn",
            "The value itself, typed `dyn` for the checker (to compare values whose types it cannot know).",
            "dyn(1) == 1.0",
            "true",
        );
        r.doc(
            "duration",
            "A duration from text (`1h30m`, `90s`, `1.5h`, `-10m`; units `h`, `m`, `s`, `ms`, `us`, `ns`).",
            r#"duration("1h30m")"#,
            r#"duration("5400s")"#,
        );
        r.doc(
            "timestamp",
            "A timestamp from RFC 3339 text (or from Unix seconds).",
            r#"timestamp("2026-11-21T11:30:00+01:00")"#,
            r#"timestamp("2026-11-21T10:30:00Z")"#,
        );
        for t in [Int, Uint, Double, Str, Timestamp] {
            r.global("int", vec![t], Int);
        }
        for t in [Int, Uint, Double, Str] {
            r.global("uint", vec![t], Uint);
        }
        for t in [Int, Uint, Double, Str] {
            r.global("double", vec![t], Double);
        }
        for t in [Int, Uint, Double, Str, Bytes, Bool, Timestamp, Duration] {
            r.global("string", vec![t], Str);
        }
        for t in [Bytes, Str] {
            r.global("bytes", vec![t], Bytes);
        }
        for t in [Bool, Str] {
            r.global("bool", vec![t], Bool);
        }
        r.global("type", vec![A], Type::Type);
        r.global("dyn", vec![A], Dyn);
        for t in [Str, Duration] {
            r.global("duration", vec![t], Duration);
        }
        for t in [Str, Timestamp, Int] {
            r.global("timestamp", vec![t], Timestamp);
        }
        // timestamp and duration accessors; the optional string is an IANA
        // time zone (UTC by default)
        r.doc(
            "getFullYear",
            "The year of a timestamp, in UTC or the given IANA time zone.",
            r#"timestamp("2026-01-01T02:00:00Z").getFullYear("America/New_York")"#,
            "2025",
        );
        r.doc(
            "getMonth",
            "The month of a timestamp, from 0 (January) to 11.",
            r#"timestamp("2026-11-21T10:30:00Z").getMonth()"#,
            "10",
        );
        r.doc(
            "getDate",
            "The day of the month of a timestamp, from 1.",
            r#"timestamp("2026-11-21T10:30:00Z").getDate()"#,
            "21",
        );
        r.doc(
            "getDayOfMonth",
            "The day of the month of a timestamp, from 0.",
            r#"timestamp("2026-11-21T10:30:00Z").getDayOfMonth()"#,
            "20",
        );
        r.doc(
            "getDayOfYear",
            "The day of the year of a timestamp, from 0.",
            r#"timestamp("2026-11-21T10:30:00Z").getDayOfYear()"#,
            "324",
        );
        r.doc(
            "getDayOfWeek",
            "The day of the week of a timestamp, from 0 (Sunday) to 6 (Saturday).",
            r#"now.getDayOfWeek("Europe/Berlin") in [0, 6]"#,
            "true",
        );
        r.doc(
            "getHours",
            "The hour of a timestamp (0 to 23), or the whole hours of a duration.",
            r#"now.getHours("Europe/Berlin")"#,
            "11",
        );
        r.doc(
            "getMinutes",
            "The minute of a timestamp (0 to 59), or the whole minutes of a duration.",
            r#"duration("1h30m").getMinutes()"#,
            "90",
        );
        r.doc(
            "getSeconds",
            "The second of a timestamp (0 to 59), or the whole seconds of a duration.",
            r#"timestamp("2026-11-21T10:30:45Z").getSeconds()"#,
            "45",
        );
        r.doc(
            "getMilliseconds",
            "The milliseconds within the second of a timestamp, or the whole milliseconds of a duration.",
            r#"timestamp("2026-11-21T10:30:00.250Z").getMilliseconds()"#,
            "250",
        );
        for name in [
            "getFullYear",
            "getMonth",
            "getDate",
            "getDayOfMonth",
            "getDayOfYear",
            "getDayOfWeek",
            "getHours",
            "getMinutes",
            "getSeconds",
            "getMilliseconds",
        ] {
            r.method(name, vec![Timestamp], Int);
            r.method(name, vec![Timestamp, Str], Int);
        }
        for name in ["getHours", "getMinutes", "getSeconds", "getMilliseconds"] {
            r.method(name, vec![Duration], Int);
        }
        // Tame: globs, IPs, URLs
        r.doc(
            "glob",
            "Whether a path matches a shell-style glob: `*` and `?` within one path segment, `**` across \
             segments, `[abc]` and `{a,b}`.",
            r#"glob("/home/ada/notes.txt", "/home/*/**") and not glob("/etc/hosts", "/home/**")"#,
            "true",
        );
        r.global("glob", vec![Str, Str], Bool);
        r.method("glob", vec![Str, Str], Bool);
        r.doc(
            "clean_path",
            "The path lexically cleaned (POSIX, as Go's `path.Clean`): `//` and `.` components dropped, each \
             `..` removing the component before it, `..` at the root staying at the root; relative paths keep \
             their leading `..`, the empty path is `.`. Compare paths after cleaning: `/tmp/../etc/shadow` \
             starts with `/tmp/`, its clean path does not. No symbolic links are resolved, `\\` is an \
             ordinary character and nothing is percent-decoded.",
            r#"clean_path("/tmp/../etc//shadow")"#,
            r#""/etc/shadow""#,
        );
        r.global("clean_path", vec![Str], Str);
        r.doc(
            "within",
            "Whether a path is a directory or lies beneath it, both cleaned with `clean_path` and compared \
             component by component: `/tmp/x` is within `/tmp`, `/tmpx` and `/tmp/../etc` are not. A \
             relative path is never within an absolute directory.",
            r#"within("/tmp/a/../b.txt", "/tmp") and not within("/tmp/../etc/shadow", "/tmp")"#,
            "true",
        );
        r.global("within", vec![Str, Str], Bool);
        r.doc(
            "ip",
            "The canonical text of an IP address (IPv4 or IPv6); an error when the string is not one.",
            r#"ip("2001:DB8:0:0::1")"#,
            r#""2001:db8::1""#,
        );
        r.global("ip", vec![Str], Str);
        r.doc(
            "cidr",
            "The canonical text of a network (`10.0.0.0/8`); an error when the string is not one.",
            r#"cidr("10.0.0.0/8").containsIP("10.1.2.3")"#,
            "true",
        );
        r.global("cidr", vec![Str], Str);
        r.doc(
            "is_ip",
            "Whether the string is an IP address, without erroring.",
            r#"is_ip(url("http://10.0.0.5/admin").host)"#,
            "true",
        );
        r.doc("isIP", "The same as `is_ip`.", r#"isIP("example.com")"#, "false");
        r.doc(
            "in_cidr",
            "Whether an IP address lies in a network.",
            r#"in_cidr("192.168.1.20", "192.168.0.0/16")"#,
            "true",
        );
        r.doc(
            "containsIP",
            "Whether a network contains an IP address (`cidr(net).containsIP(ip)`).",
            r#"cidr("10.0.0.0/8").containsIP("11.0.0.1")"#,
            "false",
        );
        for name in ["is_ip", "isIP"] {
            r.global(name, vec![Str], Bool);
            r.method(name, vec![Str], Bool);
        }
        for name in ["in_cidr", "containsIP"] {
            r.global(name, vec![Str, Str], Bool);
            r.method(name, vec![Str, Str], Bool);
        }
        r.doc(
            "url",
            "The parts of a URL, read as the WHATWG URL Standard (browsers, HTTP clients) reads it, as a map: \
             `scheme` (lowercase), `host` (lowercase; an internationalized name in ASCII punycode, \
             `http://0x7f.1` as `127.0.0.1`, IPv6 without brackets), `port` (the one written, else the \
             scheme's default: `443` for `https`), `path` (dot segments resolved), `query` and `fragment` \
             (without `?` and `#`), `userinfo` and `domain` (as `domain()` gives it); empty strings when \
             absent. An address without `scheme://` (`www.example.com/a`, `example.com:8080/x?q=1`, \
             `//cdn.example.org/x`) is read as after `http://` but its `scheme` stays empty and its `port` is \
             only the one written. An e-mail address (`ada@example.com`), a path and anything else that is \
             not a URL is an error.",
            r#"url("www.example.com:8080/a?q=1").port"#,
            r#""8080""#,
        );
        r.global("url", vec![Str], map(Str, Str));
        r.doc(
            "domain",
            "The registrable domain by the Public Suffix List (its private suffixes included): the public \
             suffix and one label before it, of an e-mail address (`ada@mail.example.co.uk`, `Ada \
             <ada@example.com>`, `mailto:`), a URL with or without a scheme, or a host. Lowercase ASCII: an \
             internationalized name in punycode, so `bücher.de` and `xn--bcher-kva.de` both give \
             `xn--bcher-kva.de` (compare with that form). A host that is itself a public suffix or one label \
             (`github.io`, `localhost`) is its own domain; an IP address is itself (canonical form). An \
             error when there is no host (empty, `ada@`, `file:///x`).",
            r#"domain("Ada <ada@mail.example.co.uk>")"#,
            r#""example.co.uk""#,
        );
        r.global("domain", vec![Str], Str);
        r.doc(
            "lookalike",
            "Whether `a` differs from `b` but looks like it. Both are compared whole (a URL or an e-mail \
             address too: pass `domain(x)` to compare domains), lowercase, in Unicode normal form C, with \
             punycode labels read as the Unicode they encode; strings equal so are not lookalikes. They look \
             alike when their Unicode confusable skeletons (UTS #39) are equal (`pаypal.com` with a Cyrillic \
             `а`, `rnicrosoft`, `g00gle`), or when they are a few edits apart (Levenshtein): one edit if the \
             shorter has 4 to 7 characters, two from 8 on, none below 4 (`bob` and `rob` are different \
             names).",
            r#"lookalike("rnicrosoft.com", "microsoft.com")"#,
            "true",
        );
        r.global("lookalike", vec![Str, Str], Bool);
        // Tame: payload scanners, implemented by the embedder
        r.doc(
            "has_secret",
            "Whether any string in the value (searched through lists and maps) holds a secret: API keys and \
             tokens of known vendors, private keys, passwords in URLs.",
            r#"has_secret({"note": "key AKIAIOSFODNN7EXAMPLE"})"#,
            "true",
        );
        r.doc(
            "has_pii",
            "Whether any string in the value holds personal data: e-mail addresses, phone, card and \
             account numbers.",
            r#"has_pii(["call me at ada@example.com"])"#,
            "true",
        );
        r.doc(
            "secrets",
            "One map per secret or personal datum found in the value: `kind`, `category`, `path` (where in the \
             value) and a masked `preview`.",
            r#"secrets({"msg": "hello"})"#,
            "[]",
        );
        r.slot("has_secret", vec![Dyn], Bool);
        r.slot("has_pii", vec![Dyn], Bool);
        r.slot("secrets", vec![Dyn], list(map(Str, Str)));
        // Tame: session facts
        r.doc(
            "count",
            "`session.count(tool)`: how many calls to the tool ran in this session; with a duration, only \
             those within that time before now.",
            r#"session.count("send_email") >= 2 and session.count("send_email", duration("1h")) >= 1"#,
            "true",
        );
        r.doc(
            "called",
            "`session.called(tool)`: whether a call to the tool ran in this session.",
            r#"session.called("read_secret")"#,
            "true",
        );
        r.doc(
            "denied",
            "`session.denied(tool)`: how many calls to matching tools did not run in this session (denied, or \
             their approval not released); with a duration, only those within that time before now.",
            r#"session.denied("transfer_*", duration("10m"))"#,
            "2",
        );
        r.doc(
            "results",
            "`session.results(tool)`: the results of earlier calls to matching tools, newest first. An error \
             while one of those calls has no reported result, or when the session no longer keeps one (so \
             it cannot make an allow rule match).",
            r#"session.results("get_*").map(r, r.total)"#,
            "[1200]",
        );
        r.doc(
            "from_input",
            "Whether the value (a string or a number) is an entity (e-mail address, URL, host, IBAN, card, \
             phone or account number, number, quoted string) or a run of whole words of one of the user's \
             inputs in this session, compared after normalization (NFKC, case, invisible characters; spaces \
             and dashes inside numbers). Values shorter than 4 characters never match.",
            r#"from_input(args.to[0]) && !from_input("eve@example.com")"#,
            "true",
        );
        r.doc(
            "from_results",
            "Whether the value occurs, as an entity or a run of whole words, in an earlier tool result of \
             this session (of tools matching the glob, when given). An error while a call to such a tool has \
             no reported result yet.",
            r#"from_results(args.subject, "get_*")"#,
            "true",
        );
        r.doc(
            "carries_from_results",
            "Whether the text carries an entity of an earlier tool result (of tools matching the glob, when \
             given), or a run of at least 40 characters copied from one: a check for the deny side.",
            r#"carries_from_results("wire it to DE89370400440532013000 today")"#,
            "true",
        );
        r.method("count", vec![Session, Str], Int);
        r.method("count", vec![Session, Str, Duration], Int);
        r.method("called", vec![Session, Str], Bool);
        r.method("denied", vec![Session, Str], Int);
        r.method("denied", vec![Session, Str, Duration], Int);
        r.method("results", vec![Session, Str], list(Dyn));
        for value in [Str, Int, Uint] {
            r.global("from_input", vec![value.clone()], Bool);
            r.global("from_results", vec![value.clone()], Bool);
            r.global("from_results", vec![value, Str], Bool);
        }
        r.global("carries_from_results", vec![Str], Bool);
        r.global("carries_from_results", vec![Str, Str], Bool);
        r
    }

    /// CEL's strings extension (`charAt`, `indexOf`, `split`, `format`...):
    /// indices count Unicode code points; an index out of range is an
    /// error.
    fn strings_extension(r: &mut Self) {
        use Type::{Dyn, Int, String as Str};
        r.doc(
            "charAt",
            "The character at a position (counted in code points); the length itself gives `\"\"`, a \
             position past it or negative is an error.",
            r#""tacocat".charAt(3)"#,
            r#""o""#,
        );
        r.method("charAt", vec![Str, Int], Str);
        r.doc(
            "indexOf",
            "The position (in code points) of the first occurrence of a substring, `-1` when there is \
             none; with a start position, the search starts there (an error when out of range).",
            r#""a/b/c".indexOf("/") + "a/b/c".indexOf("/", 2)"#,
            "4",
        );
        r.method("indexOf", vec![Str, Str], Int);
        r.method("indexOf", vec![Str, Str, Int], Int);
        r.doc(
            "lastIndexOf",
            "The position (in code points) of the last occurrence of a substring, `-1` when there is \
             none; with a position, the last start considered (an error when out of range).",
            r#""a/b/c".lastIndexOf("/")"#,
            "3",
        );
        r.method("lastIndexOf", vec![Str, Str], Int);
        r.method("lastIndexOf", vec![Str, Str, Int], Int);
        r.doc(
            "join",
            "The strings of a list concatenated, with a separator between them when given.",
            r#"["a", "b", "c"].join("/")"#,
            r#""a/b/c""#,
        );
        r.method("join", vec![list(Str)], Str);
        r.method("join", vec![list(Str), Str], Str);
        r.doc(
            "split",
            "The parts of a string between the separator's occurrences; with a limit `n`, at most `n` \
             parts (the last holds the rest), none for 0, all for a negative limit. An empty separator \
             splits into characters.",
            r#""a,b,c".split(",", 2)"#,
            r#"["a", "b,c"]"#,
        );
        r.method("split", vec![Str, Str], list(Str));
        r.method("split", vec![Str, Str, Int], list(Str));
        r.doc(
            "replace",
            "The string with occurrences of a substring replaced; with a limit `n`, the first `n` only \
             (none for 0, all for a negative limit).",
            r#""a-b-c".replace("-", "+", 1)"#,
            r#""a+b-c""#,
        );
        r.method("replace", vec![Str, Str, Str], Str);
        r.method("replace", vec![Str, Str, Str, Int], Str);
        r.doc(
            "substring",
            "The characters from a start position to the end, or to an end position (exclusive), in code \
             points; a position out of range, or an end before the start, is an error.",
            r#""tacocat".substring(4) + "tacocat".substring(0, 4)"#,
            r#""cattaco""#,
        );
        r.method("substring", vec![Str, Int], Str);
        r.method("substring", vec![Str, Int, Int], Str);
        r.doc(
            "format",
            "The string with its clauses replaced by the list's values in order: `%s` (any value as \
             text), `%d` (integer), `%f` and `%e` (fixed and scientific, precision `%.2f`, 6 by default), \
             `%x` and `%X` (hexadecimal of integers, strings and bytes), `%o` (octal), `%b` (binary), `%%` \
             (a percent sign). A clause without a value, or of the wrong type, is an error.",
            r#""%s paid %.2f (%d%%)".format(["ada", 12.5, 3])"#,
            r#""ada paid 12.50 (3%)""#,
        );
        r.method("format", vec![Str, list(Dyn)], Str);
        r.doc(
            "strings.quote",
            "The string as a double-quoted CEL string literal: `\\`, `\"` and control characters escaped \
             (`\\n`, `\\t`, ...), other characters kept.",
            r#"strings.quote("tab\there")"#,
            r#""\"tab\\there\"""#,
        );
        r.global("strings.quote", vec![Str], Str);
        r.doc(
            "reverse",
            "The string with its characters (code points) in reverse order.",
            r#""gums".reverse()"#,
            r#""smug""#,
        );
        r.method("reverse", vec![Str], Str);
    }

    /// CEL optionals: `optional.of`, `optional.none`,
    /// `optional.ofNonZeroValue` and the methods of an optional. The
    /// selections `x.?f` and `x[?k]` and the macros `optMap`, `optFlatMap`
    /// are syntax, not functions.
    fn optionals(r: &mut Self) {
        use Type::{Bool, Dyn};
        let opt = |t: Type| Type::Optional(Box::new(t));
        r.doc(
            "optional.of",
            "An optional holding the value (even `null`).",
            "optional.of(args.amount).value()",
            "1200",
        );
        r.global("optional.of", vec![A], opt(A));
        r.doc(
            "optional.none",
            "The empty optional.",
            "optional.none().hasValue()",
            "false",
        );
        r.global("optional.none", vec![], opt(Dyn));
        r.doc(
            "optional.ofNonZeroValue",
            "An optional holding the value, or the empty optional when the value is its type's zero value \
             (`null`, `false`, `0`, `0u`, `0.0`, `\"\"`, `b\"\"`, `[]`, `{}`, a zero duration, the Unix epoch).",
            r#"optional.ofNonZeroValue("").hasValue()"#,
            "false",
        );
        r.global("optional.ofNonZeroValue", vec![A], opt(A));
        r.doc(
            "hasValue",
            "Whether the optional holds a value.",
            "args.?cc.hasValue()",
            "false",
        );
        r.method("hasValue", vec![opt(A)], Bool);
        r.doc(
            "value",
            "The optional's value; an error when it is empty.",
            "args.?amount.value()",
            "1200",
        );
        r.method("value", vec![opt(A)], A);
        r.doc(
            "orValue",
            "The optional's value, or the given default when it is empty (evaluated only then).",
            r#"args.?cc.orValue("nobody") + "/" + metadata[?"team"].orValue("none")"#,
            r#""nobody/billing""#,
        );
        r.method("orValue", vec![opt(A), A], A);
        r.doc(
            "or",
            "The optional itself when it holds a value, else the other optional (evaluated only then).",
            r#"args.?cc.or(args.?to).value()"#,
            r#"["ada@example.com"]"#,
        );
        r.method("or", vec![opt(A), opt(A)], opt(A));
    }

    /// Documents the built-in `name` for the language reference.
    fn doc(&mut self, name: &str, summary: &'static str, example: &'static str, result: &'static str) {
        self.docs.insert(
            name.to_owned(),
            FunctionDoc {
                summary,
                example,
                result,
            },
        );
    }

    /// The reference entry of the built-in `name`, if it has one (host
    /// functions have none).
    pub fn doc_of(&self, name: &str) -> Option<&FunctionDoc> {
        self.docs.get(name)
    }

    fn add(&mut self, name: &str, receiver: bool, params: Vec<Type>, result: Type, slot: bool) {
        let ids: Vec<String> = params.iter().map(id_part).collect();
        let id = format!("{name}_{}{}", if receiver { "m_" } else { "" }, ids.join("_"));
        self.functions.entry(name.to_owned()).or_default().push(Overload {
            id,
            receiver,
            params,
            result,
            host: None,
            host_slot: slot,
        });
    }

    fn global(&mut self, name: &str, params: Vec<Type>, result: Type) {
        self.add(name, false, params, result, false);
    }

    fn method(&mut self, name: &str, params: Vec<Type>, result: Type) {
        self.add(name, true, params, result, false);
    }

    fn slot(&mut self, name: &str, params: Vec<Type>, result: Type) {
        self.add(name, false, params, result, true);
    }

    /// Registers a global host function `name(params) -> result`.
    ///
    /// Fails when a built-in of the same name and arity exists (unless it
    /// is a declared host slot such as `has_secret` with the same
    /// signature, which this then implements), or when a host function of
    /// the same name and arity is already registered.
    pub fn register_host(
        &mut self,
        name: &str,
        params: Vec<Type>,
        result: Type,
        f: HostFn,
    ) -> Result<(), RegistryError> {
        self.register(name, false, params, result, f)
    }

    /// Registers a receiver-style host function `target.name(rest)`;
    /// `params[0]` is the receiver's type.
    pub fn register_host_method(
        &mut self,
        name: &str,
        params: Vec<Type>,
        result: Type,
        f: HostFn,
    ) -> Result<(), RegistryError> {
        if params.is_empty() {
            return Err(RegistryError::InvalidName { name: name.to_owned() });
        }
        self.register(name, true, params, result, f)
    }

    fn register(
        &mut self,
        name: &str,
        receiver: bool,
        params: Vec<Type>,
        result: Type,
        f: HostFn,
    ) -> Result<(), RegistryError> {
        let valid = name.chars().next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
            && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
            && !crate::parser::is_reserved(name);
        if !valid {
            return Err(RegistryError::InvalidName { name: name.to_owned() });
        }
        let arity = params.len().saturating_sub(usize::from(receiver));
        if let Some(o) = self.functions.get_mut(name).and_then(|existing| {
            existing
                .iter_mut()
                .find(|o| o.receiver == receiver && o.arity() == arity)
        }) {
            if o.host_slot {
                if o.host.is_some() {
                    return Err(RegistryError::AlreadyRegistered {
                        name: name.to_owned(),
                        arity,
                    });
                }
                if o.params != params || o.result != result {
                    return Err(RegistryError::SlotMismatch {
                        name: name.to_owned(),
                        signature: o.signature(name),
                    });
                }
                o.host = Some(f);
                return Ok(());
            }
            if o.host.is_some() {
                return Err(RegistryError::AlreadyRegistered {
                    name: name.to_owned(),
                    arity,
                });
            }
            return Err(RegistryError::ClashesWithBuiltin {
                name: name.to_owned(),
                signature: o.signature(name),
            });
        }
        let id = format!("host_{name}_{arity}");
        self.functions.entry(name.to_owned()).or_default().push(Overload {
            id,
            receiver,
            params,
            result,
            host: Some(f),
            host_slot: false,
        });
        Ok(())
    }

    /// All overloads named `name`, global and receiver-style.
    pub fn overloads(&self, name: &str) -> &[Overload] {
        self.functions.get(name).map_or(&[], Vec::as_slice)
    }

    /// Is any function named `name`?
    pub fn contains(&self, name: &str) -> bool {
        self.functions.contains_key(name)
    }

    /// The names of all functions, in declaration order.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.functions.keys().map(String::as_str)
    }

    /// The host implementation of `name` called globally (or receiver-style)
    /// with `arity` arguments, if the embedder supplied one.
    pub fn host(&self, name: &str, receiver: bool, arity: usize) -> Option<&HostFn> {
        self.overloads(name)
            .iter()
            .find(|o| o.receiver == receiver && o.arity() == arity && o.host.is_some())
            .and_then(|o| o.host.as_ref())
    }
}

fn id_part(t: &Type) -> String {
    match t {
        Type::List(_) => "list".into(),
        Type::Map(..) => "map".into(),
        Type::Optional(_) => "optional".into(),
        Type::Timestamp => "timestamp".into(),
        Type::Duration => "duration".into(),
        other => other.name(),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

    use std::sync::Arc;

    use super::*;
    use crate::value::Value;

    fn f() -> HostFn {
        Arc::new(|_: &[Value]| Ok(Value::Bool(true)))
    }

    #[test]
    fn builtins_declare_what_policies_use() {
        let r = Registry::builtins();
        for name in [
            "size",
            "matches",
            "timestamp",
            "getDayOfWeek",
            "glob",
            "clean_path",
            "within",
            "in_cidr",
            "url",
            "domain",
            "lookalike",
            "count",
            "called",
        ] {
            assert!(r.contains(name), "{name}");
        }
        let sigs: Vec<String> = r
            .overloads("startsWith")
            .iter()
            .map(|o| o.signature("startsWith"))
            .collect();
        assert_eq!(sigs, ["string.startsWith(string) -> bool"]);
        assert!(r.host("has_secret", false, 1).is_none());
    }

    #[test]
    fn host_functions_register_and_clash() {
        let mut r = Registry::builtins();
        r.register_host("risk", vec![Type::String], Type::Int, f()).unwrap();
        assert!(r.host("risk", false, 1).is_some());
        assert_eq!(
            r.register_host("risk", vec![Type::Dyn], Type::Int, f()),
            Err(RegistryError::AlreadyRegistered {
                name: "risk".into(),
                arity: 1
            })
        );
        // Another arity is another overload.
        r.register_host("risk", vec![Type::String, Type::Int], Type::Int, f())
            .unwrap();
        let err = r.register_host("size", vec![Type::Dyn], Type::Int, f()).unwrap_err();
        assert!(
            err.to_string()
                .contains("clashes with the built-in `size(string) -> int`"),
            "{err}"
        );
        // A different arity than the built-in is fine.
        r.register_host("size", vec![Type::Dyn, Type::Dyn], Type::Int, f())
            .unwrap();
        assert!(matches!(
            r.register_host("in", vec![], Type::Int, f()),
            Err(RegistryError::InvalidName { .. })
        ));
        assert!(matches!(
            r.register_host("a-b", vec![], Type::Int, f()),
            Err(RegistryError::InvalidName { .. })
        ));
    }

    #[test]
    fn host_slots_take_an_implementation_once() {
        let mut r = Registry::builtins();
        let err = r
            .register_host("has_secret", vec![Type::String], Type::Bool, f())
            .unwrap_err();
        assert!(matches!(err, RegistryError::SlotMismatch { .. }));
        r.register_host("has_secret", vec![Type::Dyn], Type::Bool, f()).unwrap();
        assert!(r.host("has_secret", false, 1).is_some());
        assert!(r.register_host("has_secret", vec![Type::Dyn], Type::Bool, f()).is_err());
    }

    #[test]
    fn receiver_host_functions() {
        let mut r = Registry::builtins();
        r.register_host_method("domain", vec![Type::String], Type::String, f())
            .unwrap();
        assert!(r.host("domain", true, 0).is_some());
        assert!(r.host("domain", false, 0).is_none());
        let err = r
            .register_host_method("count", vec![Type::Session, Type::String], Type::Int, f())
            .unwrap_err();
        assert!(matches!(err, RegistryError::ClashesWithBuiltin { .. }));
    }
}
