//! Evaluation datasets: JSONL files whose layout is detected from each file's fields, never from
//! its name, so that any file in one of the known layouts works.
//!
//! | layout | fields | task type | gold |
//! |---|---|---|---|
//! | [`Layout::Translation`] | `source_text`, `reference`, `src_lang`, `tgt_lang` | translation | the reference |
//! | [`Layout::Classification`] | `text`, `label`, `label_names` | classification | `label`, an index into `label_names` |
//! | [`Layout::Chat`] | `turns` (MT-Bench, MT-Bench-101) | chat | none |
//! | [`Layout::MultipleChoice`] | `question`, `choices`, integer `answer` (optional `passage`, BoolQ) | multiple choice | `answer`, an index into `choices` |
//! | [`Layout::Gsm8k`] | `question`, numeric-string `answer` | chat (generation) | the number |
//!
//! The rules are tried in that order on the first record of a file; every later record must then
//! have that layout's fields, or loading stops with an error naming `file:line`. A file whose
//! first record matches no rule is an [`DatasetError::UnknownLayout`] error when loaded on its own
//! ([`load_file`]); when a whole folder is loaded ([`load_dir`]), such a file is skipped and named
//! in [`DirLoad::skipped`] (a folder may hold other JSON Lines files), while a file of a known
//! layout with a bad line still fails the whole load.
//!
//! Reading is streaming (one line at a time through [`BufRead`]); the file's SHA-256 is computed
//! in the same pass and identifies the dataset in trace keys. Empty lines are skipped.

use offload::TaskType;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};
use std::fs::File;
use std::io::{self, BufRead, BufReader, Read};
use std::path::{Path, PathBuf};

/// The record layouts the harness understands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Layout {
    MultipleChoice,
    Classification,
    Translation,
    Gsm8k,
    Chat,
}

impl Layout {
    pub fn task(self) -> TaskType {
        match self {
            Layout::MultipleChoice => TaskType::MultipleChoice,
            Layout::Classification => TaskType::Classification,
            Layout::Translation => TaskType::Translation,
            Layout::Gsm8k | Layout::Chat => TaskType::Chat,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Layout::MultipleChoice => "multiple_choice",
            Layout::Classification => "classification",
            Layout::Translation => "translation",
            Layout::Gsm8k => "gsm8k",
            Layout::Chat => "chat",
        }
    }

    /// The quality metric of this layout, as named in `summary.json`.
    pub fn metric(self) -> Metric {
        match self {
            Layout::MultipleChoice | Layout::Classification => Metric::Accuracy,
            Layout::Translation => Metric::Bleu,
            Layout::Gsm8k => Metric::ExactMatch,
            Layout::Chat => Metric::None,
        }
    }

    /// Detects the layout from a record's fields (see the module docs for the order).
    pub fn detect(record: &Map<String, Value>) -> Option<Layout> {
        let has = |k: &str| record.get(k).is_some_and(|v| !v.is_null());
        if has("source_text") && has("reference") {
            Some(Layout::Translation)
        } else if has("text") && has("label") && has("label_names") {
            Some(Layout::Classification)
        } else if record.get("turns").is_some_and(Value::is_array) {
            Some(Layout::Chat)
        } else if has("question") && has("choices") && has("answer") {
            Some(Layout::MultipleChoice)
        } else if has("question") && record.get("answer").is_some_and(Value::is_string) {
            Some(Layout::Gsm8k)
        } else {
            None
        }
    }
}

/// How a dataset's quality is measured.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Metric {
    /// Percent of items whose chosen option is the gold one.
    Accuracy,
    /// Corpus BLEU (sacreBLEU default), in BLEU points.
    Bleu,
    /// Percent of items whose final number equals the gold number (GSM8K).
    ExactMatch,
    /// No gold answer (MT-Bench): quality is not measured here.
    None,
}

impl Metric {
    pub fn as_str(self) -> &'static str {
        match self {
            Metric::Accuracy => "accuracy",
            Metric::Bleu => "bleu",
            Metric::ExactMatch => "exact_match",
            Metric::None => "none",
        }
    }
}

/// The gold answer of an item.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", content = "value", rename_all = "snake_case")]
pub enum Gold {
    /// Index into [`Item::options`].
    Choice(usize),
    /// Reference translation.
    Reference(String),
    /// The final numeric answer, as written in the dataset.
    Number(String),
    /// No gold (chat benchmarks judged by a model).
    None,
}

/// One evaluation item in the unified form every layout maps to.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Item {
    /// 0-based position among the file's items (blank lines do not count); the request key of
    /// replays.
    pub index: usize,
    /// 1-based line number in the file.
    pub line: usize,
    /// The record's `id` (a string or a number in the source), or `<dataset>-<index>`.
    pub id: String,
    pub layout: Layout,
    pub task: TaskType,
    /// BoolQ's passage, shown before the question.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub passage: Option<String>,
    /// The question, sentence to classify, source sentence to translate, or first user turn.
    pub text: String,
    /// All user turns (chat layouts); empty otherwise.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub turns: Vec<String>,
    /// Source and target language (translation).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub src_lang: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tgt_lang: Option<String>,
    /// The answer options (choices or label names) the model scores.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub options: Vec<String>,
    pub gold: Gold,
}

/// The identifier of the default prompt template ([`Item::prompt`]); part of every trace key, so
/// changing the template must change this string.
pub const PROMPT_TEMPLATE_ID: &str = "ladder-prompt-v2";

impl Item {
    /// The default completion-style prompt for this item (template [`PROMPT_TEMPLATE_ID`]).
    /// Option-scoring tasks end with `Answer:`, after which each option is scored.
    pub fn prompt(&self) -> String {
        match self.layout {
            Layout::MultipleChoice => {
                let mut p = String::new();
                if let Some(passage) = &self.passage {
                    p.push_str("Passage: ");
                    p.push_str(passage);
                    p.push('\n');
                }
                p.push_str("Question: ");
                p.push_str(&self.text);
                p.push('\n');
                for (i, option) in self.options.iter().enumerate() {
                    p.push_str(&format!("{}. {}\n", option_letter(i), option));
                }
                p.push_str("Answer:");
                p
            }
            Layout::Classification => format!(
                "Text: {}\nOptions: {}\nAnswer:",
                self.text,
                self.options.join(", ")
            ),
            Layout::Translation => {
                let src = self.src_lang.as_deref().unwrap_or("source");
                let tgt = self.tgt_lang.as_deref().unwrap_or("target");
                format!(
                    "Translate from {} to {}.\n{}: {}\n{}:",
                    language_name(src),
                    language_name(tgt),
                    language_name(src),
                    self.text,
                    language_name(tgt),
                )
            }
            Layout::Gsm8k => format!("Question: {}\nAnswer:", self.text),
            Layout::Chat => self
                .turns
                .first()
                .cloned()
                .unwrap_or_else(|| self.text.clone()),
        }
    }
}

/// The English name of a language code the datasets use (`de` → `German`); other codes as
/// they are. Small models follow "Translate from German to English" far better than the codes.
pub fn language_name(code: &str) -> &str {
    match code {
        "de" => "German",
        "en" => "English",
        "fr" => "French",
        "es" => "Spanish",
        "it" => "Italian",
        "cs" => "Czech",
        "ru" => "Russian",
        "zh" => "Chinese",
        "ja" => "Japanese",
        "fi" => "Finnish",
        "ro" => "Romanian",
        "tr" => "Turkish",
        other => other,
    }
}

/// `A`, `B`, … `Z`, then `27`, `28`, … for absurdly many options.
pub fn option_letter(i: usize) -> String {
    match u8::try_from(i) {
        Ok(b) if b < 26 => char::from(b'A' + b).to_string(),
        _ => (i + 1).to_string(),
    }
}

#[derive(Debug, thiserror::Error)]
pub enum DatasetError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("{path}:{line}: {message}")]
    BadLine {
        path: PathBuf,
        line: usize,
        message: String,
    },
    #[error(
        "{path}:{line}: unknown record layout; fields found: [{fields}] (expected one of: \
         source_text+reference (translation), text+label+label_names (classification), \
         turns (chat), question+choices+answer (multiple choice), question+answer string (GSM8K))"
    )]
    UnknownLayout {
        path: PathBuf,
        line: usize,
        fields: String,
    },
    #[error("{path}: no records")]
    Empty { path: PathBuf },
}

/// A loaded dataset file.
#[derive(Debug, Clone)]
pub struct Dataset {
    /// The file name without `.jsonl` (`imdb`, `mmlu_test`); unique within one [`load_dir`].
    pub name: String,
    pub path: PathBuf,
    pub layout: Layout,
    /// Hex SHA-256 of the file's bytes.
    pub sha256: String,
    pub items: Vec<Item>,
}

/// A reader that hashes everything read through it.
struct HashingReader<R> {
    inner: R,
    hasher: Sha256,
}

impl<R: Read> Read for HashingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hasher.update(&buf[..n]);
        Ok(n)
    }
}

/// Hex encoding of bytes.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// SHA-256 of a file, streamed.
pub fn file_sha256(path: &Path) -> io::Result<String> {
    let mut reader = HashingReader {
        inner: File::open(path)?,
        hasher: Sha256::new(),
    };
    io::copy(&mut reader, &mut io::sink())?;
    Ok(hex(&reader.hasher.finalize()))
}

/// Loads one dataset file; an unknown layout is an error.
pub fn load_file(path: &Path) -> Result<Dataset, DatasetError> {
    let io_err = |source| DatasetError::Io {
        path: path.to_path_buf(),
        source,
    };
    let file = File::open(path).map_err(io_err)?;
    let mut reader = BufReader::new(HashingReader {
        inner: file,
        hasher: Sha256::new(),
    });
    let name = path
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| "dataset".to_string());
    let (layout, items) = read_items(&mut reader, path, &name)?;
    // Hash whatever is left (nothing, unless reading stopped early) so the digest covers the file.
    io::copy(&mut reader, &mut io::sink()).map_err(io_err)?;
    let sha256 = hex(&reader.into_inner().hasher.finalize());
    Ok(Dataset {
        name,
        path: path.to_path_buf(),
        layout,
        sha256,
        items,
    })
}

/// Reads every record of one JSONL stream; `path` and `name` are used in errors and ids.
pub fn read_items(
    reader: &mut impl BufRead,
    path: &Path,
    name: &str,
) -> Result<(Layout, Vec<Item>), DatasetError> {
    let mut layout = None;
    let mut items = Vec::new();
    let mut buf = String::new();
    let mut line_no = 0usize;
    loop {
        buf.clear();
        line_no += 1;
        let n = reader
            .read_line(&mut buf)
            .map_err(|e| DatasetError::BadLine {
                path: path.to_path_buf(),
                line: line_no,
                message: format!("cannot read line: {e}"),
            })?;
        if n == 0 {
            break;
        }
        // A UTF-8 byte-order mark at the start of the file is not part of the JSON.
        let text = if line_no == 1 {
            buf.trim_start_matches('\u{feff}').trim()
        } else {
            buf.trim()
        };
        if text.is_empty() {
            continue;
        }
        let bad = |message: String| DatasetError::BadLine {
            path: path.to_path_buf(),
            line: line_no,
            message,
        };
        let value: Value =
            serde_json::from_str(text).map_err(|e| bad(format!("not valid JSON: {e}")))?;
        let Value::Object(record) = value else {
            return Err(bad(format!(
                "expected a JSON object, got {}",
                json_kind(&value)
            )));
        };
        let this_layout = match layout {
            Some(l) => l,
            None => {
                let l = Layout::detect(&record).ok_or_else(|| DatasetError::UnknownLayout {
                    path: path.to_path_buf(),
                    line: line_no,
                    fields: record.keys().cloned().collect::<Vec<_>>().join(", "),
                })?;
                layout = Some(l);
                l
            }
        };
        let item = parse_item(&record, this_layout, items.len(), line_no, name).map_err(bad)?;
        items.push(item);
    }
    match layout {
        Some(l) => Ok((l, items)),
        None => Err(DatasetError::Empty {
            path: path.to_path_buf(),
        }),
    }
}

fn json_kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

fn get_str(record: &Map<String, Value>, key: &str) -> Result<String, String> {
    match record.get(key) {
        Some(Value::String(s)) => Ok(s.clone()),
        Some(other) => Err(format!(
            "field `{key}` must be a string, got {}",
            json_kind(other)
        )),
        None => Err(format!("missing field `{key}`")),
    }
}

fn get_opt_str(record: &Map<String, Value>, key: &str) -> Result<Option<String>, String> {
    match record.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(_) => get_str(record, key).map(Some),
    }
}

fn get_str_list(record: &Map<String, Value>, key: &str) -> Result<Vec<String>, String> {
    let Some(value) = record.get(key) else {
        return Err(format!("missing field `{key}`"));
    };
    let Value::Array(values) = value else {
        return Err(format!(
            "field `{key}` must be a list of strings, got {}",
            json_kind(value)
        ));
    };
    values
        .iter()
        .enumerate()
        .map(|(i, v)| match v {
            Value::String(s) => Ok(s.clone()),
            other => Err(format!(
                "field `{key}[{i}]` must be a string, got {}",
                json_kind(other)
            )),
        })
        .collect()
}

fn get_index(record: &Map<String, Value>, key: &str, len: usize) -> Result<usize, String> {
    let value = record
        .get(key)
        .ok_or_else(|| format!("missing field `{key}`"))?;
    let index = value
        .as_u64()
        .ok_or_else(|| format!("field `{key}` must be a non-negative integer, got {value}"))?;
    match usize::try_from(index) {
        Ok(i) if i < len => Ok(i),
        _ => Err(format!(
            "field `{key}` = {index} is out of range for {len} options"
        )),
    }
}

fn get_id(record: &Map<String, Value>, name: &str, index: usize) -> String {
    match record.get("id") {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Number(n)) => n.to_string(),
        _ => format!("{name}-{index}"),
    }
}

/// Parses a number the way GSM8K writes them (`18`, `-3`, `0.5`, `2,125`); `None` otherwise.
pub fn parse_number(s: &str) -> Option<f64> {
    let cleaned: String = s.trim().chars().filter(|&c| c != ',').collect();
    let cleaned = cleaned.strip_prefix('$').unwrap_or(&cleaned);
    if cleaned.is_empty() || cleaned.chars().any(|c| c.is_alphabetic() && c != 'e') {
        return None;
    }
    cleaned.parse::<f64>().ok().filter(|x| x.is_finite())
}

fn parse_item(
    record: &Map<String, Value>,
    layout: Layout,
    index: usize,
    line: usize,
    name: &str,
) -> Result<Item, String> {
    let mut item = Item {
        index,
        line,
        id: get_id(record, name, index),
        layout,
        task: layout.task(),
        passage: None,
        text: String::new(),
        turns: Vec::new(),
        src_lang: None,
        tgt_lang: None,
        options: Vec::new(),
        gold: Gold::None,
    };
    match layout {
        Layout::Translation => {
            item.text = get_str(record, "source_text")?;
            item.gold = Gold::Reference(get_str(record, "reference")?);
            item.src_lang = get_opt_str(record, "src_lang")?;
            item.tgt_lang = get_opt_str(record, "tgt_lang")?;
        }
        Layout::Classification => {
            item.text = get_str(record, "text")?;
            item.options = get_str_list(record, "label_names")?;
            if item.options.is_empty() {
                return Err("field `label_names` is empty".into());
            }
            item.gold = Gold::Choice(get_index(record, "label", item.options.len())?);
        }
        Layout::Chat => {
            item.turns = get_str_list(record, "turns")?;
            item.text = match get_opt_str(record, "question")? {
                Some(q) => q,
                None => item
                    .turns
                    .first()
                    .cloned()
                    .ok_or("field `turns` is empty")?,
            };
        }
        Layout::MultipleChoice => {
            item.text = get_str(record, "question")?;
            item.passage = get_opt_str(record, "passage")?;
            item.options = get_str_list(record, "choices")?;
            if item.options.is_empty() {
                return Err("field `choices` is empty".into());
            }
            item.gold = Gold::Choice(get_index(record, "answer", item.options.len())?);
        }
        Layout::Gsm8k => {
            item.text = get_str(record, "question")?;
            let answer = get_str(record, "answer")?;
            if parse_number(&answer).is_none() {
                return Err(format!("field `answer` = {answer:?} is not a number"));
            }
            item.gold = Gold::Number(answer);
        }
    }
    Ok(item)
}

/// The result of loading a folder.
#[derive(Debug, Default)]
pub struct DirLoad {
    /// Datasets in path order.
    pub datasets: Vec<Dataset>,
    /// Files of no known layout (or empty), with the reason; they were left out.
    pub skipped: Vec<(PathBuf, String)>,
}

/// Every `*.jsonl` file under `dir` (recursively), sorted by path.
pub fn jsonl_files(dir: &Path) -> Result<Vec<PathBuf>, DatasetError> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let entries = std::fs::read_dir(&d).map_err(|source| DatasetError::Io {
            path: d.clone(),
            source,
        })?;
        for entry in entries {
            let entry = entry.map_err(|source| DatasetError::Io {
                path: d.clone(),
                source,
            })?;
            let path = entry.path();
            if path.is_dir() {
                stack.push(path);
            } else if path.extension().is_some_and(|e| e == "jsonl") {
                out.push(path);
            }
        }
    }
    out.sort();
    Ok(out)
}

/// Loads every JSONL file under `dir` (subfolders included). Files of unknown layout and empty
/// files are skipped and reported; any other error stops the load. Dataset names are file stems;
/// if two files share a stem, both are named by their path relative to `dir` instead.
pub fn load_dir(dir: &Path) -> Result<DirLoad, DatasetError> {
    let mut load = DirLoad::default();
    for path in jsonl_files(dir)? {
        match load_file(&path) {
            Ok(ds) => load.datasets.push(ds),
            Err(e @ (DatasetError::UnknownLayout { .. } | DatasetError::Empty { .. })) => {
                load.skipped.push((path, e.to_string()))
            }
            Err(e) => return Err(e),
        }
    }
    let names: Vec<String> = load.datasets.iter().map(|d| d.name.clone()).collect();
    for ds in &mut load.datasets {
        if names.iter().filter(|n| **n == ds.name).count() > 1 {
            let rel = ds.path.strip_prefix(dir).unwrap_or(&ds.path);
            ds.name = rel.with_extension("").to_string_lossy().replace('\\', "/");
        }
    }
    Ok(load)
}

/// The default data folder: `<workspace root>/../shared/datasets`.
pub fn default_data_dir() -> PathBuf {
    workspace_root().join("..").join("shared").join("datasets")
}

/// The workspace root (the parent of this crate's folder).
pub fn workspace_root() -> PathBuf {
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    manifest.parent().unwrap_or(manifest).to_path_buf()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(text: &str) -> Result<(Layout, Vec<Item>), DatasetError> {
        read_items(&mut text.as_bytes(), Path::new("t.jsonl"), "t")
    }

    #[test]
    fn detects_each_layout() {
        let cases = [
            (
                r#"{"question":"q","choices":["a","b"],"answer":1}"#,
                Layout::MultipleChoice,
            ),
            (
                r#"{"text":"t","label":0,"label_names":["neg","pos"]}"#,
                Layout::Classification,
            ),
            (
                r#"{"source_text":"s","reference":"r","src_lang":"de","tgt_lang":"en"}"#,
                Layout::Translation,
            ),
            (r#"{"question":"q","answer":"18"}"#, Layout::Gsm8k),
            (r#"{"question":"q","turns":["q","x"]}"#, Layout::Chat),
        ];
        for (line, layout) in cases {
            let (l, items) = read(line).unwrap();
            assert_eq!(l, layout, "{line}");
            assert_eq!(items.len(), 1);
            assert_eq!(items[0].task, layout.task());
        }
    }

    #[test]
    fn passage_goes_into_the_prompt() {
        let (_, items) = read(
            r#"{"passage":"The sky is blue.","question":"is the sky blue","choices":["no","yes"],"answer":1}"#,
        )
        .unwrap();
        let p = items[0].prompt();
        assert!(p.starts_with("Passage: The sky is blue.\nQuestion: is the sky blue\n"));
        assert!(p.contains("A. no\nB. yes\nAnswer:"));
    }

    #[test]
    fn bad_lines_name_file_and_line() {
        let text =
            "{\"question\":\"q\",\"answer\":\"1\"}\n\n{\"question\":\"q\",\"answer\":\"x\"}\n";
        let err = read(text).unwrap_err().to_string();
        assert!(err.starts_with("t.jsonl:3:"), "{err}");
        let err = read("{\"question\":\"q\",\"answer\":\"1\"}\n{oops").unwrap_err();
        assert!(
            err.to_string().starts_with("t.jsonl:2: not valid JSON"),
            "{err}"
        );
        let err = read("[1,2]").unwrap_err().to_string();
        assert!(err.contains("expected a JSON object"), "{err}");
        let err = read(r#"{"question":"q","choices":["a"],"answer":3}"#)
            .unwrap_err()
            .to_string();
        assert!(err.contains("out of range"), "{err}");
        let err = read(r#"{"question":"q","choices":["a"],"answer":-1}"#)
            .unwrap_err()
            .to_string();
        assert!(err.contains("non-negative integer"), "{err}");
    }

    #[test]
    fn unknown_layout_names_the_fields() {
        let err = read(r#"{"foo":1,"bar":2}"#).unwrap_err().to_string();
        assert!(err.contains("unknown record layout"), "{err}");
        assert!(
            err.contains("bar, foo") || err.contains("foo, bar"),
            "{err}"
        );
    }

    #[test]
    fn numbers_parse_like_gsm8k() {
        assert_eq!(parse_number("2,125"), Some(2125.0));
        assert_eq!(parse_number(" -3.5 "), Some(-3.5));
        assert_eq!(parse_number("$18"), Some(18.0));
        assert_eq!(parse_number("eighteen"), None);
        assert_eq!(parse_number(""), None);
        assert_eq!(parse_number("inf"), None);
    }

    #[test]
    fn a_byte_order_mark_is_ignored() {
        let (l, items) = read("\u{feff}{\"question\":\"q\",\"answer\":\"1\"}\n").unwrap();
        assert_eq!((l, items.len()), (Layout::Gsm8k, 1));
    }

    #[test]
    fn invalid_utf8_is_an_error_not_a_panic() {
        let bytes: &[u8] = b"{\"question\":\"q\",\"answer\":\"1\"}\n\xff\xfe\n";
        let err = read_items(&mut &bytes[..], Path::new("t.jsonl"), "t").unwrap_err();
        assert!(err.to_string().starts_with("t.jsonl:2:"), "{err}");
    }
}
