//! cgminer API replies: a `STATUS` section, then at most one data section,
//! in text (`STATUS=S,When=…,Code=11,Msg=Summary,Description=…|SUMMARY,…|`)
//! or JSON (`{"STATUS":[{…}],"SUMMARY":[{…}],"id":1}`), as cgminer's
//! `api.c` writes them; the codes and messages are its `MSG_*` table.

use std::fmt::Write;

/// A status's severity letter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Severity {
    Success,
    Info,
    Warning,
    Error,
}

impl Severity {
    fn letter(self) -> &'static str {
        match self {
            Severity::Success => "S",
            Severity::Info => "I",
            Severity::Warning => "W",
            Severity::Error => "E",
        }
    }
}

/// The replies hashrig gives, with cgminer's codes (`api.c`, `MSG_*`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Code {
    InvalidGpu = 1,
    GpuAlreadyEnabled = 2,
    GpuAlreadyDisabled = 3,
    GpuMustRestart = 4,
    GpuEnabled = 5,
    NoGpus = 6,
    Pools = 7,
    NoPools = 8,
    Devs = 9,
    Summary = 11,
    GpuDisabled = 12,
    InvalidCommand = 14,
    MissingDeviceId = 15,
    Gpu = 17,
    GpuCount = 20,
    Version = 22,
    InvalidJson = 23,
    MissingJsonCommand = 24,
    MissingPoolId = 25,
    InvalidPoolId = 26,
    SwitchPool = 27,
    Config = 33,
    AccessDenied = 45,
    AccessOk = 46,
    EnablePool = 47,
    DisablePool = 48,
    PoolAlreadyEnabled = 49,
    PoolAlreadyDisabled = 50,
    LastPool = 51,
    PgaCount = 59,
    DevDetails = 69,
    Stats = 70,
    MissingCheck = 71,
    Check = 72,
    Coin = 78,
    AscCount = 104,
}

impl Code {
    pub fn severity(self) -> Severity {
        use Code::*;
        match self {
            Pools | Devs | Summary | Gpu | GpuCount | Version | SwitchPool | Config | AccessOk
            | EnablePool | DisablePool | PgaCount | DevDetails | Stats | Check | Coin
            | AscCount => Severity::Success,
            GpuAlreadyEnabled | GpuAlreadyDisabled | GpuEnabled | GpuDisabled
            | PoolAlreadyEnabled | PoolAlreadyDisabled => Severity::Info,
            GpuMustRestart => Severity::Warning,
            InvalidGpu | NoGpus | NoPools | InvalidCommand | MissingDeviceId | InvalidJson
            | MissingJsonCommand | MissingPoolId | InvalidPoolId | AccessDenied | LastPool
            | MissingCheck => Severity::Error,
        }
    }
}

/// The STATUS section.
#[derive(Debug, Clone, PartialEq)]
pub struct Status {
    pub code: Code,
    pub message: String,
}

impl Status {
    pub fn new(code: Code, message: impl Into<String>) -> Self {
        Status {
            code,
            message: message.into(),
        }
    }
}

/// A value as cgminer prints it: numbers with its fixed decimals.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Text(String),
    Int(i64),
    /// A number with this many decimals (cgminer: MHS 2, percent 4, …).
    Real(f64, usize),
    Bool(bool),
}

impl From<&str> for Value {
    fn from(v: &str) -> Self {
        Value::Text(v.to_owned())
    }
}
impl From<String> for Value {
    fn from(v: String) -> Self {
        Value::Text(v)
    }
}
impl From<u64> for Value {
    fn from(v: u64) -> Self {
        Value::Int(i64::try_from(v).unwrap_or(i64::MAX))
    }
}
impl From<usize> for Value {
    fn from(v: usize) -> Self {
        Value::Int(i64::try_from(v).unwrap_or(i64::MAX))
    }
}
impl From<i64> for Value {
    fn from(v: i64) -> Self {
        Value::Int(v)
    }
}
impl From<bool> for Value {
    fn from(v: bool) -> Self {
        Value::Bool(v)
    }
}

impl Value {
    fn real(v: f64, decimals: usize) -> String {
        // `+ 0.0` turns an empty sum's -0.0 into 0.0.
        let v = if v.is_finite() { v + 0.0 } else { 0.0 };
        format!("{v:.decimals$}")
    }

    fn text(&self) -> String {
        match self {
            Value::Text(s) => escape_text(s),
            Value::Int(i) => i.to_string(),
            Value::Real(v, d) => Value::real(*v, *d),
            Value::Bool(b) => b.to_string(),
        }
    }

    fn json(&self) -> String {
        match self {
            Value::Text(s) => serde_json::Value::from(s.as_str()).to_string(),
            Value::Int(i) => i.to_string(),
            Value::Real(v, d) => Value::real(*v, *d),
            Value::Bool(b) => b.to_string(),
        }
    }
}

/// Text replies escape the four characters that delimit them (API 1.7+).
fn escape_text(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if matches!(c, '|' | ',' | '=' | '\\') {
            out.push('\\');
        }
        // A line end or NUL would end the reply early for line readers.
        out.push(if c.is_control() { ' ' } else { c });
    }
    out
}

/// One record of a section: ordered names and values.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Record(pub Vec<(String, Value)>);

impl Record {
    pub fn with(mut self, name: &str, value: impl Into<Value>) -> Self {
        self.0.push((name.to_owned(), value.into()));
        self
    }

    pub fn real(self, name: &str, value: f64, decimals: usize) -> Self {
        self.with(name, Value::Real(value, decimals))
    }

    fn text(&self) -> String {
        self.0
            .iter()
            .map(|(k, v)| format!("{}={}", escape_text(k), v.text()))
            .collect::<Vec<_>>()
            .join(",")
    }

    fn json(&self) -> String {
        let fields: Vec<String> = self
            .0
            .iter()
            .map(|(k, v)| format!("{}:{}", serde_json::Value::from(k.as_str()), v.json()))
            .collect();
        format!("{{{}}}", fields.join(","))
    }
}

/// A data section: `SUMMARY` and the like hold one record whose text form
/// starts with the section's name; `DEVS` and the like hold one per item,
/// each starting with its own id field.
#[derive(Debug, Clone, PartialEq)]
pub struct Section {
    pub name: &'static str,
    pub records: Vec<Record>,
    pub named_in_text: bool,
}

impl Section {
    /// One record, named in text (`SUMMARY,Elapsed=…|`).
    pub fn single(name: &'static str, record: Record) -> Self {
        Section {
            name,
            records: vec![record],
            named_in_text: true,
        }
    }

    /// A record per item (`GPU=0,…|GPU=1,…|`).
    pub fn list(name: &'static str, records: Vec<Record>) -> Self {
        Section {
            name,
            records,
            named_in_text: false,
        }
    }
}

/// What one command answers.
#[derive(Debug, Clone, PartialEq)]
pub struct Reply {
    pub status: Status,
    pub section: Option<Section>,
}

impl Reply {
    pub fn status(code: Code, message: impl Into<String>) -> Self {
        Reply {
            status: Status::new(code, message),
            section: None,
        }
    }

    pub fn with_section(code: Code, message: impl Into<String>, section: Section) -> Self {
        Reply {
            status: Status::new(code, message),
            section: Some(section),
        }
    }
}

/// What every STATUS carries besides the code.
#[derive(Debug, Clone, Copy)]
pub struct Stamp<'a> {
    /// The request's time, Unix seconds.
    pub when: u64,
    /// cgminer's version or `--api-description`: here, hashrig's.
    pub description: &'a str,
}

fn status_record(status: &Status, stamp: Stamp) -> Record {
    Record::default()
        .with("STATUS", status.code.severity().letter())
        .with("When", stamp.when)
        .with("Code", status.code as i64)
        .with("Msg", status.message.as_str())
        .with("Description", stamp.description)
}

/// A reply in text: `STATUS=…|` then the section's records, `|`-ended.
pub fn text(reply: &Reply, stamp: Stamp) -> String {
    let mut out = status_record(&reply.status, stamp).text();
    out.push('|');
    if let Some(section) = &reply.section {
        for record in &section.records {
            if section.named_in_text {
                out.push_str(section.name);
                out.push(',');
            }
            out.push_str(&record.text());
            out.push('|');
        }
    }
    out
}

/// A reply in JSON: `{"STATUS":[…],"SECTION":[…],"id":1}`.
pub fn json(reply: &Reply, stamp: Stamp) -> String {
    let mut out = format!(
        "{{\"STATUS\":[{}]",
        status_record(&reply.status, stamp).json()
    );
    if let Some(section) = &reply.section {
        let records: Vec<String> = section.records.iter().map(Record::json).collect();
        let _ = write!(out, ",\"{}\":[{}]", section.name, records.join(","));
    }
    out.push_str(",\"id\":1}");
    out
}

/// Several replies joined (`summary+devs`): text
/// `CMD=summary|STATUS=…|…CMD=devs|…`, JSON
/// `{"summary":[{…}],"devs":[{…}],"id":1}`.
pub fn joined(replies: &[(String, Reply)], json_form: bool, stamp: Stamp) -> String {
    if json_form {
        let parts: Vec<String> = replies
            .iter()
            .map(|(name, reply)| {
                format!(
                    "{}:[{}]",
                    serde_json::Value::from(name.as_str()),
                    json(reply, stamp)
                )
            })
            .collect();
        format!("{{{},\"id\":1}}", parts.join(","))
    } else {
        replies
            .iter()
            .map(|(name, reply)| format!("CMD={}|{}", escape_text(name), text(reply, stamp)))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const STAMP: Stamp = Stamp {
        when: 1_700_000_000,
        description: "hashrig 0.1.0",
    };

    fn summary() -> Reply {
        Reply::with_section(
            Code::Summary,
            "Summary",
            Section::single(
                "SUMMARY",
                Record::default()
                    .with("Elapsed", 12u64)
                    .real("MHS av", 1.23456, 2)
                    .with("URL", "a|b,c=d\\e\nf"),
            ),
        )
    }

    #[test]
    fn text_form_is_cgminers() {
        assert_eq!(
            text(&summary(), STAMP),
            "STATUS=S,When=1700000000,Code=11,Msg=Summary,Description=hashrig 0.1.0|\
             SUMMARY,Elapsed=12,MHS av=1.23,URL=a\\|b\\,c\\=d\\\\e f|"
        );
        let devs = Reply::with_section(
            Code::Devs,
            "2 GPU(s)",
            Section::list(
                "DEVS",
                vec![
                    Record::default().with("GPU", 0u64),
                    Record::default().with("GPU", 1u64),
                ],
            ),
        );
        assert!(text(&devs, STAMP).ends_with("|GPU=0|GPU=1|"));
    }

    #[test]
    fn json_form_parses_with_the_envelope() {
        let v: serde_json::Value = serde_json::from_str(&json(&summary(), STAMP)).unwrap();
        assert_eq!(v["STATUS"][0]["STATUS"], "S");
        assert_eq!(v["STATUS"][0]["Code"], 11);
        assert_eq!(v["SUMMARY"][0]["MHS av"], 1.23);
        assert_eq!(v["SUMMARY"][0]["URL"], "a|b,c=d\\e\nf");
        assert_eq!(v["id"], 1);
        let denied = Reply::status(Code::AccessDenied, "Access denied to 'quit' command");
        let v: serde_json::Value = serde_json::from_str(&json(&denied, STAMP)).unwrap();
        assert_eq!(v["STATUS"][0]["STATUS"], "E");
        assert_eq!(v["STATUS"][0]["Code"], 45);
    }

    #[test]
    fn joined_forms() {
        let replies = vec![
            ("summary".to_owned(), summary()),
            ("devs".to_owned(), summary()),
        ];
        let v: serde_json::Value = serde_json::from_str(&joined(&replies, true, STAMP)).unwrap();
        assert_eq!(v["summary"][0]["SUMMARY"][0]["Elapsed"], 12);
        assert_eq!(v["devs"][0]["STATUS"][0]["Code"], 11);
        let t = joined(&replies, false, STAMP);
        assert!(t.starts_with("CMD=summary|STATUS=S,"), "{t}");
        assert!(t.contains("|CMD=devs|STATUS=S,"), "{t}");
    }

    #[test]
    fn non_finite_numbers_stay_json() {
        let r = Record::default()
            .real("x", f64::NAN, 2)
            .real("y", f64::INFINITY, 4);
        let v: serde_json::Value = serde_json::from_str(&r.json()).unwrap();
        assert_eq!(v["x"], 0.0);
        assert_eq!(v["y"], 0.0);
    }
}
