//! A cgminer API request, parsed once at the edge: plain text `cmd|param`
//! or JSON `{"command":"cmd","parameter":"param"}`, one command or several
//! joined by `+` (API-README, "API V3.1": only report commands without a
//! parameter join, each named once).

use super::reply::Code;

/// The most a request may be: cgminer reads half its 8 KiB buffer.
pub const MAX_REQUEST: usize = 4096;

/// Every command hashrig answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Command {
    Version,
    Config,
    Summary,
    Devs,
    Edevs,
    Pools,
    DevDetails,
    Stats,
    Estats,
    Coin,
    Check,
    GpuCount,
    Gpu,
    AscCount,
    PgaCount,
    Privileged,
    SwitchPool,
    EnablePool,
    DisablePool,
    GpuEnable,
    GpuDisable,
    Restart,
    Quit,
}

impl Command {
    /// Every command, for `check`.
    pub const ALL: [Command; 23] = [
        Command::Version,
        Command::Config,
        Command::Summary,
        Command::Devs,
        Command::Edevs,
        Command::Pools,
        Command::DevDetails,
        Command::Stats,
        Command::Estats,
        Command::Coin,
        Command::Check,
        Command::GpuCount,
        Command::Gpu,
        Command::AscCount,
        Command::PgaCount,
        Command::Privileged,
        Command::SwitchPool,
        Command::EnablePool,
        Command::DisablePool,
        Command::GpuEnable,
        Command::GpuDisable,
        Command::Restart,
        Command::Quit,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Command::Version => "version",
            Command::Config => "config",
            Command::Summary => "summary",
            Command::Devs => "devs",
            Command::Edevs => "edevs",
            Command::Pools => "pools",
            Command::DevDetails => "devdetails",
            Command::Stats => "stats",
            Command::Estats => "estats",
            Command::Coin => "coin",
            Command::Check => "check",
            Command::GpuCount => "gpucount",
            Command::Gpu => "gpu",
            Command::AscCount => "asccount",
            Command::PgaCount => "pgacount",
            Command::Privileged => "privileged",
            Command::SwitchPool => "switchpool",
            Command::EnablePool => "enablepool",
            Command::DisablePool => "disablepool",
            Command::GpuEnable => "gpuenable",
            Command::GpuDisable => "gpudisable",
            Command::Restart => "restart",
            Command::Quit => "quit",
        }
    }

    /// cgminer's names are exact and lower case.
    pub fn from_name(name: &str) -> Option<Command> {
        Command::ALL.into_iter().find(|c| c.name() == name)
    }

    /// Changes something: only for `W:` addresses.
    pub fn is_privileged(self) -> bool {
        matches!(
            self,
            Command::Privileged
                | Command::SwitchPool
                | Command::EnablePool
                | Command::DisablePool
                | Command::GpuEnable
                | Command::GpuDisable
                | Command::Restart
                | Command::Quit
        )
    }

    /// A report without a parameter: may be joined with `+`.
    pub fn is_joinable(self) -> bool {
        !self.is_privileged() && !matches!(self, Command::Check | Command::Gpu)
    }
}

/// One command of a request, as named (an unknown name is answered, not
/// dropped).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Call {
    /// The name as sent, bounded by the request size.
    pub name: String,
    pub command: Option<Command>,
}

/// What a request asked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Request {
    /// One command and its parameter.
    Single {
        call: Call,
        parameter: Option<String>,
        json: bool,
    },
    /// `summary+devs`: each answered in a section of its own.
    Joined { calls: Vec<Call>, json: bool },
    /// Not a request: answered with this status alone.
    Malformed { code: Code, json: bool },
}

fn call(name: &str) -> Call {
    Call {
        name: name.to_owned(),
        command: Command::from_name(name),
    }
}

fn request(command: &str, parameter: Option<String>, json: bool) -> Request {
    if command.contains('+') {
        let mut calls: Vec<Call> = Vec::new();
        for name in command.split('+').filter(|n| !n.is_empty()) {
            if !calls.iter().any(|c| c.name == name) {
                calls.push(call(name));
            }
        }
        return Request::Joined { calls, json };
    }
    Request::Single {
        call: call(command),
        parameter,
        json,
    }
}

impl TryFrom<&[u8]> for Request {
    /// The request was over [`MAX_REQUEST`].
    type Error = usize;

    /// Parses what a client sent: a trailing NUL or line end is not part of
    /// it (cgminer's clients send either, or nothing).
    fn try_from(bytes: &[u8]) -> Result<Request, usize> {
        if bytes.len() > MAX_REQUEST {
            return Err(bytes.len());
        }
        let end = bytes.iter().position(|b| *b == 0).unwrap_or(bytes.len());
        let text = String::from_utf8_lossy(&bytes[..end]);
        let text = text.trim();
        if !text.starts_with('{') {
            let (command, parameter) = match text.split_once('|') {
                Some((c, p)) => (c, Some(p.to_owned())),
                None => (text, None),
            };
            return Ok(request(command, parameter, false));
        }
        let malformed = |code| Request::Malformed { code, json: true };
        let Ok(serde_json::Value::Object(object)) = serde_json::from_str(text) else {
            return Ok(malformed(Code::InvalidJson));
        };
        let command = match object.get("command") {
            None => return Ok(malformed(Code::MissingJsonCommand)),
            Some(serde_json::Value::String(c)) => c,
            Some(_) => return Ok(malformed(Code::InvalidCommand)),
        };
        // cgminer takes a number as its decimal text.
        let parameter = match object.get("parameter") {
            Some(serde_json::Value::String(p)) => Some(p.clone()),
            Some(serde_json::Value::Number(n)) => Some(n.to_string()),
            _ => None,
        };
        Ok(request(command, parameter, true))
    }
}

/// Whether `bytes` hold a whole request: a NUL or line end closes any, and
/// JSON is whole once it parses. Text without either is whole when the
/// client stops sending (cgminer reads once).
pub fn is_complete(bytes: &[u8]) -> bool {
    if bytes.iter().any(|b| matches!(b, 0 | b'\n')) {
        return true;
    }
    let text = String::from_utf8_lossy(bytes);
    let text = text.trim_start();
    text.starts_with('{') && serde_json::from_str::<serde_json::Value>(text).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Request {
        Request::try_from(text.as_bytes()).unwrap()
    }

    #[test]
    fn text_and_json_forms() {
        assert_eq!(
            parse("gpu|1\n"),
            Request::Single {
                call: call("gpu"),
                parameter: Some("1".into()),
                json: false
            }
        );
        assert_eq!(
            parse(r#"{"command":"gpudisable","parameter":0}"#),
            Request::Single {
                call: call("gpudisable"),
                parameter: Some("0".into()),
                json: true
            }
        );
        let Request::Single { call: summary, .. } = parse("summary\0") else {
            panic!("not single");
        };
        assert_eq!(summary.command, Some(Command::Summary));
        let Request::Single { call: upper, .. } = parse("SUMMARY") else {
            panic!("not single");
        };
        assert_eq!(upper.command, None);
    }

    #[test]
    fn joined_commands_skip_blanks_and_repeats() {
        let Request::Joined { calls, json } = parse("+devs++summary+devs+nonsense|x") else {
            panic!("not joined");
        };
        assert!(!json);
        let names: Vec<&str> = calls.iter().map(|c| c.name.as_str()).collect();
        assert_eq!(names, ["devs", "summary", "nonsense"]);
        assert_eq!(calls[2].command, None);
    }

    #[test]
    fn bad_json_gets_cgminer_codes() {
        for (text, code) in [
            ("{not json", Code::InvalidJson),
            ("{\"parameter\":\"0\"}", Code::MissingJsonCommand),
            ("{\"command\":7}", Code::InvalidCommand),
            ("{\"command\":[\"summary\"]}", Code::InvalidCommand),
        ] {
            assert_eq!(
                parse(text),
                Request::Malformed { code, json: true },
                "{text}"
            );
        }
        let long = vec![b'x'; MAX_REQUEST + 1];
        assert_eq!(Request::try_from(long.as_slice()), Err(MAX_REQUEST + 1));
    }

    #[test]
    fn completeness() {
        assert!(is_complete(b"summary\n"));
        assert!(is_complete(b"summary\0"));
        assert!(!is_complete(b"summary"));
        assert!(!is_complete(br#"{"command":"summ"#));
        assert!(is_complete(br#" {"command":"summary"}"#));
    }
}
