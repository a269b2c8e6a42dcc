//! Chat templates as transformers renders them: the checkpoint's own Jinja template
//! (`chat_template.jinja`, or `tokenizer_config.json`'s `chat_template`, a string or a list of
//! named templates), rendered with minijinja and its Python-compatibility layer in the
//! environment transformers builds (`trim_blocks`, `lstrip_blocks`, loop controls,
//! `raise_exception`, `strftime_now`, a `tojson` that is Python's `json.dumps`) with the
//! variables transformers passes: `messages`, `add_generation_prompt`, `tools`, `documents`
//! and the tokenizer's special tokens (`bos_token`, `eos_token`, ...).

use minijinja::value::{Kwargs, Value};
use minijinja::{Environment, ErrorKind};
use serde::Serialize;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// One message of a conversation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Message {
    /// `system`, `user` or `assistant`.
    pub role: String,
    /// Its text.
    pub content: String,
}

impl Message {
    /// A message from `role`.
    pub fn new(role: &str, content: impl Into<String>) -> Self {
        Message {
            role: role.into(),
            content: content.into(),
        }
    }
}

/// Why a chat template could not be found, read or rendered.
#[derive(Debug, thiserror::Error)]
pub enum ChatError {
    /// The checkpoint declares no template.
    #[error("{0}: no chat template (looked for chat_template.jinja and tokenizer_config.json's \"chat_template\")")]
    Missing(PathBuf),
    /// The checkpoint has named templates and none is called `name`.
    #[error("{path}: no chat template named {name:?}; it has {available:?}")]
    UnknownName {
        /// The checkpoint.
        path: PathBuf,
        /// The name asked for.
        name: String,
        /// The names it has.
        available: Vec<String>,
    },
    /// A file could not be read or parsed.
    #[error("{path}: {message}")]
    Read {
        /// The file.
        path: PathBuf,
        /// What went wrong.
        message: String,
    },
    /// The template does not compile or raised while rendering.
    #[error("the chat template of {origin}, line {line}: {message}")]
    Template {
        /// Where the template came from (the checkpoint's file).
        origin: String,
        /// The template line (1-based; 0 when unknown).
        line: usize,
        /// What went wrong (for `raise_exception`, the template's own message).
        message: String,
    },
}

/// A compiled chat template with the special tokens it is rendered with.
///
/// ```
/// use evalkit_core::chat::{ChatTemplate, Message};
/// let t = ChatTemplate::new(
///     "{% for m in messages %}<|im_start|>{{ m.role }}\n{{ m.content }}<|im_end|>\n{% endfor %}\
///      {% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}",
///     Default::default(),
///     "example",
/// )?;
/// let text = t.render(&[Message::new("user", "Hi")], true)?;
/// assert_eq!(text, "<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n");
/// # Ok::<(), evalkit_core::chat::ChatError>(())
/// ```
pub struct ChatTemplate {
    env: Environment<'static>,
    source: String,
    origin: String,
    special_tokens: BTreeMap<String, String>,
}

impl std::fmt::Debug for ChatTemplate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChatTemplate")
            .field("origin", &self.origin)
            .field("hash", &self.hash())
            .finish()
    }
}

const NAME: &str = "chat_template";

fn template_error(origin: &str, e: &minijinja::Error) -> ChatError {
    let message = match e.kind() {
        // raise_exception's message, as the template wrote it.
        ErrorKind::InvalidOperation => e.detail().unwrap_or("raise_exception").to_string(),
        _ => match e.detail() {
            Some(d) => format!("{}: {d}", e.kind()),
            None => e.kind().to_string(),
        },
    };
    ChatError::Template {
        origin: origin.into(),
        line: e.line().unwrap_or(0),
        message,
    }
}

impl ChatTemplate {
    /// Compiles `source`, to be rendered with `special_tokens` (`bos_token` → `<s>`, ...);
    /// `origin` names it in errors.
    pub fn new(source: &str, special_tokens: BTreeMap<String, String>, origin: &str) -> Result<Self, ChatError> {
        let mut env = Environment::new();
        env.set_trim_blocks(true);
        env.set_lstrip_blocks(true);
        env.set_auto_escape_callback(|_| minijinja::AutoEscape::None);
        env.set_unknown_method_callback(minijinja_contrib::pycompat::unknown_method_callback);
        env.add_filter("tojson", tojson);
        env.add_function(
            "raise_exception",
            |message: String| -> Result<Value, minijinja::Error> {
                Err(minijinja::Error::new(ErrorKind::InvalidOperation, message))
            },
        );
        env.add_function("strftime_now", |format: String| {
            chrono::Local::now().format(&format).to_string()
        });
        env.add_template_owned(NAME, source.to_string())
            .map_err(|e| template_error(origin, &e))?;
        Ok(ChatTemplate {
            env,
            source: source.into(),
            origin: origin.into(),
            special_tokens,
        })
    }

    /// The template a checkpoint folder declares: `chat_template.jinja` (or, for `name`,
    /// `additional_chat_templates/<name>.jinja`) as transformers 5 saves them, else
    /// `tokenizer_config.json`'s `chat_template` (a string, or a list of `{name, template}`
    /// picked by `name`, else `default`). Special tokens come from `tokenizer_config.json`.
    pub fn from_dir(dir: &Path, name: Option<&str>) -> Result<Self, ChatError> {
        let config_path = dir.join("tokenizer_config.json");
        let config: serde_json::Value = match std::fs::read_to_string(&config_path) {
            Ok(text) => serde_json::from_str(&text).map_err(|e| ChatError::Read {
                path: config_path.clone(),
                message: format!("not JSON: {e}"),
            })?,
            Err(_) => serde_json::Value::Null,
        };
        let special = special_tokens(&config);
        let read = |path: PathBuf| -> Result<(String, PathBuf), ChatError> {
            let text = std::fs::read_to_string(&path).map_err(|e| ChatError::Read {
                path: path.clone(),
                message: e.to_string(),
            })?;
            Ok((text, path))
        };
        let (source, origin) = match name.filter(|n| *n != "default") {
            Some(n)
                if dir
                    .join("additional_chat_templates")
                    .join(format!("{n}.jinja"))
                    .is_file() =>
            {
                read(dir.join("additional_chat_templates").join(format!("{n}.jinja")))?
            }
            None if dir.join("chat_template.jinja").is_file() => read(dir.join("chat_template.jinja"))?,
            _ => match &config["chat_template"] {
                serde_json::Value::String(s) if name.is_none_or(|n| n == "default") => (s.clone(), config_path),
                serde_json::Value::Array(list) => {
                    let named: Vec<(&str, &str)> = list
                        .iter()
                        .filter_map(|t| Some((t["name"].as_str()?, t["template"].as_str()?)))
                        .collect();
                    let want = name.unwrap_or("default");
                    match named.iter().find(|(n, _)| *n == want) {
                        Some((_, t)) => (t.to_string(), config_path),
                        None => {
                            return Err(ChatError::UnknownName {
                                path: dir.into(),
                                name: want.into(),
                                available: named.iter().map(|(n, _)| n.to_string()).collect(),
                            })
                        }
                    }
                }
                serde_json::Value::String(_) => {
                    return Err(ChatError::UnknownName {
                        path: dir.into(),
                        name: name.unwrap_or_default().into(),
                        available: vec!["default".into()],
                    })
                }
                _ => {
                    let files = template_files(dir);
                    return Err(match name {
                        Some(n) if !files.is_empty() => ChatError::UnknownName {
                            path: dir.into(),
                            name: n.into(),
                            available: files,
                        },
                        _ => ChatError::Missing(dir.into()),
                    });
                }
            },
        };
        ChatTemplate::new(&source, special, &origin.display().to_string())
    }

    /// Renders a conversation; `add_generation_prompt` appends the assistant turn's opening.
    pub fn render(&self, messages: &[Message], add_generation_prompt: bool) -> Result<String, ChatError> {
        let template = self
            .env
            .get_template(NAME)
            .map_err(|e| template_error(&self.origin, &e))?;
        let mut vars: BTreeMap<String, Value> = self
            .special_tokens
            .iter()
            .map(|(k, v)| (k.clone(), Value::from(v.as_str())))
            .collect();
        vars.insert("messages".into(), Value::from_serialize(messages));
        vars.insert("add_generation_prompt".into(), Value::from(add_generation_prompt));
        vars.insert("tools".into(), Value::from(()));
        vars.insert("documents".into(), Value::from(()));
        template
            .render(Value::from(vars))
            .map_err(|e| template_error(&self.origin, &e))
    }

    /// The SHA-256 of the template's text, in hex (recorded with results; lm-eval records the
    /// same as `chat_template_sha`).
    pub fn hash(&self) -> String {
        use sha2::Digest;
        sha2::Sha256::digest(self.source.as_bytes())
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect()
    }

    /// Where it came from (the checkpoint's file).
    pub fn origin(&self) -> &str {
        &self.origin
    }

    /// The special tokens it renders with.
    pub fn special_tokens(&self) -> &BTreeMap<String, String> {
        &self.special_tokens
    }
}

/// The names of the templates saved as files: `default` for chat_template.jinja, then those in
/// additional_chat_templates/.
fn template_files(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir.join("additional_chat_templates"))
        .into_iter()
        .flatten()
        .filter_map(|e| e.ok()?.file_name().to_str()?.strip_suffix(".jinja").map(String::from))
        .collect();
    names.sort();
    if dir.join("chat_template.jinja").is_file() {
        names.insert(0, "default".into());
    }
    names
}

/// The named special tokens of a `tokenizer_config.json` (`bos_token`, `eos_token`,
/// `unk_token`, `pad_token`, ...), whether written as strings or as `{"content": ...}`.
pub fn special_tokens(config: &serde_json::Value) -> BTreeMap<String, String> {
    config
        .as_object()
        .into_iter()
        .flatten()
        .filter(|(k, _)| k.ends_with("_token"))
        .filter_map(|(k, v)| {
            let text = v.as_str().or_else(|| v["content"].as_str())?;
            Some((k.clone(), text.to_string()))
        })
        .collect()
}

/// transformers' `tojson`: Python's `json.dumps(x, ensure_ascii=False, indent=None,
/// separators=None, sort_keys=False)` with those keyword arguments.
fn tojson(value: Value, kwargs: Kwargs) -> Result<String, minijinja::Error> {
    let indent: Option<Value> = kwargs.get("indent")?;
    let sort_keys: Option<bool> = kwargs.get("sort_keys")?;
    let ensure_ascii: Option<bool> = kwargs.get("ensure_ascii")?;
    let separators: Option<Vec<String>> = kwargs.get("separators")?;
    kwargs.assert_all_used()?;
    let indent = match indent {
        None => None,
        Some(v) if v.is_none() => None,
        Some(v) => match v.as_usize() {
            Some(n) => Some(" ".repeat(n)),
            None => Some(v.as_str().map(str::to_string).unwrap_or_default()),
        },
    };
    let (item, key) = match separators.as_deref() {
        Some([i, k]) => (i.clone(), k.clone()),
        Some(_) => {
            return Err(minijinja::Error::new(
                ErrorKind::InvalidOperation,
                "tojson: separators must be (item, key)",
            ))
        }
        None if indent.is_some() => (",".into(), ": ".into()),
        None => (", ".into(), ": ".into()),
    };
    let json = serde_json::to_value(&value)
        .map_err(|e| minijinja::Error::new(ErrorKind::InvalidOperation, format!("tojson: {e}")))?;
    let style = PyJson {
        indent,
        item,
        key,
        sort_keys: sort_keys.unwrap_or(false),
        ensure_ascii: ensure_ascii.unwrap_or(false),
    };
    let mut out = String::new();
    style.write(&json, 0, &mut out);
    Ok(out)
}

/// How Python's `json.dumps` lays a value out.
struct PyJson {
    indent: Option<String>,
    item: String,
    key: String,
    sort_keys: bool,
    ensure_ascii: bool,
}

impl PyJson {
    fn newline(&self, level: usize, out: &mut String) {
        if let Some(i) = &self.indent {
            out.push('\n');
            for _ in 0..level {
                out.push_str(i);
            }
        }
    }

    fn string(&self, s: &str, out: &mut String) {
        out.push('"');
        for c in s.chars() {
            match c {
                '"' => out.push_str("\\\""),
                '\\' => out.push_str("\\\\"),
                '\n' => out.push_str("\\n"),
                '\r' => out.push_str("\\r"),
                '\t' => out.push_str("\\t"),
                '\u{8}' => out.push_str("\\b"),
                '\u{c}' => out.push_str("\\f"),
                c if (c as u32) < 0x20 || (self.ensure_ascii && (c as u32) > 0x7e) => {
                    let mut buf = [0u16; 2];
                    for unit in c.encode_utf16(&mut buf) {
                        out.push_str(&format!("\\u{unit:04x}"));
                    }
                }
                c => out.push(c),
            }
        }
        out.push('"');
    }

    fn write(&self, v: &serde_json::Value, level: usize, out: &mut String) {
        use serde_json::Value as J;
        match v {
            J::Null => out.push_str("null"),
            J::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
            J::Number(n) => match (n.as_i64(), n.as_u64(), n.as_f64()) {
                (Some(i), _, _) => out.push_str(&i.to_string()),
                (_, Some(u), _) => out.push_str(&u.to_string()),
                (_, _, Some(f)) => out.push_str(&py_float(f)),
                _ => out.push_str(&n.to_string()),
            },
            J::String(s) => self.string(s, out),
            J::Array(a) if a.is_empty() => out.push_str("[]"),
            J::Array(a) => {
                out.push('[');
                for (i, x) in a.iter().enumerate() {
                    if i > 0 {
                        out.push_str(&self.item);
                    }
                    self.newline(level + 1, out);
                    self.write(x, level + 1, out);
                }
                self.newline(level, out);
                out.push(']');
            }
            J::Object(o) if o.is_empty() => out.push_str("{}"),
            J::Object(o) => {
                let mut entries: Vec<(&String, &serde_json::Value)> = o.iter().collect();
                if self.sort_keys {
                    entries.sort_by(|a, b| a.0.cmp(b.0));
                }
                out.push('{');
                for (i, (k, x)) in entries.into_iter().enumerate() {
                    if i > 0 {
                        out.push_str(&self.item);
                    }
                    self.newline(level + 1, out);
                    self.string(k, out);
                    out.push_str(&self.key);
                    self.write(x, level + 1, out);
                }
                self.newline(level, out);
                out.push('}');
            }
        }
    }
}

/// Python's `repr` of a float (`1.0`, `0.1`, `1e-07`, `inf` as json.dumps writes `Infinity`).
fn py_float(f: f64) -> String {
    if f.is_nan() {
        return "NaN".into();
    }
    if f.is_infinite() {
        return if f > 0.0 { "Infinity" } else { "-Infinity" }.into();
    }
    let exp = if f == 0.0 { 0 } else { f.abs().log10().floor() as i32 };
    if !(-5..16).contains(&exp) {
        let s = format!("{f:e}");
        let (mantissa, e) = s.split_once('e').unwrap_or((&s, "0"));
        let e: i32 = e.parse().unwrap_or(0);
        return format!("{mantissa}e{}{:02}", if e < 0 { '-' } else { '+' }, e.abs());
    }
    let s = format!("{f}");
    if s.contains('.') {
        s
    } else {
        format!("{s}.0")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn render(src: &str, messages: &[Message]) -> Result<String, ChatError> {
        ChatTemplate::new(src, BTreeMap::new(), "test")?.render(messages, false)
    }

    #[test]
    fn tojson_is_pythons_json_dumps() {
        let m = [Message::new("user", "Café \"x\"\n")];
        assert_eq!(
            render("{{ messages[0] | tojson }}", &m).unwrap(),
            r#"{"role": "user", "content": "Café \"x\"\n"}"#
        );
        assert_eq!(
            render("{{ messages | tojson(indent=2) }}", &m).unwrap(),
            "[\n  {\n    \"role\": \"user\",\n    \"content\": \"Café \\\"x\\\"\\n\"\n  }\n]"
        );
        assert_eq!(render("{{ [1, 2.5] | tojson }}", &m).unwrap(), "[1, 2.5]");
    }

    #[test]
    fn python_string_methods_and_loop_controls_work() {
        let m = [Message::new("system", "  sys  "), Message::new("user", "hi")];
        let src = "{% for m in messages %}{% if m.role == 'system' %}{% continue %}{% endif %}\
                   {{ m.content.upper() }}{% endfor %}|{{ messages[0].content.strip() }}";
        assert_eq!(render(src, &m).unwrap(), "HI|sys");
    }

    #[test]
    fn raise_exception_names_the_line_and_message() {
        let src = "line one\n{% if messages[0].role == 'system' %}{{ raise_exception('System role not supported') }}{% endif %}";
        match render(src, &[Message::new("system", "x")]) {
            Err(ChatError::Template { line, message, origin }) => {
                assert_eq!(
                    (line, message.as_str(), origin.as_str()),
                    (2, "System role not supported", "test")
                );
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_template_that_does_not_compile_is_an_error_with_its_line() {
        match ChatTemplate::new("ok\n{% for %}", BTreeMap::new(), "ckpt/tokenizer_config.json") {
            Err(ChatError::Template { line: 2, origin, .. }) => assert_eq!(origin, "ckpt/tokenizer_config.json"),
            other => panic!("{other:?}"),
        }
    }

    /// Every committed template (`tests/fixtures/chat-templates/*.jinja`, as the models' own
    /// repositories publish them) renders every conversation string for string as transformers
    /// rendered it (`scripts/chat-template-vectors` wrote `vectors.json`), errors included.
    #[test]
    fn renders_every_committed_template_as_transformers_does() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/chat-templates");
        let vectors: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(dir.join("vectors.json")).unwrap()).unwrap();
        let mut checked: BTreeMap<String, usize> = BTreeMap::new();
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.extension().is_some_and(|e| e == "jinja") {
                checked.insert(path.file_stem().unwrap().to_string_lossy().into_owned(), 0);
            }
        }
        for (i, case) in vectors["cases"].as_array().unwrap().iter().enumerate() {
            let name = case["template"].as_str().unwrap();
            let source = std::fs::read_to_string(dir.join(format!("{name}.jinja"))).unwrap();
            let special = special_tokens(&case["special_tokens"]);
            let messages: Vec<Message> = case["messages"]
                .as_array()
                .unwrap()
                .iter()
                .map(|m| Message::new(m["role"].as_str().unwrap(), m["content"].as_str().unwrap()))
                .collect();
            let got = ChatTemplate::new(&source, special, name)
                .unwrap()
                .render(&messages, case["add_generation_prompt"].as_bool().unwrap());
            match (&got, case["rendered"].as_str(), case["error"].as_str()) {
                (Ok(text), Some(want), _) => assert_eq!(text, want, "case {i} ({name})"),
                (Err(ChatError::Template { message, .. }), None, Some(want)) => {
                    assert_eq!(message, want, "case {i} ({name})")
                }
                _ => panic!("case {i} ({name}): got {got:?}, transformers: {case}"),
            }
            *checked.get_mut(name).expect("a committed template") += 1;
        }
        for (name, n) in &checked {
            assert!(*n >= 16, "{name}: only {n} vectors");
        }
        assert!(checked.len() >= 5, "{checked:?}");
    }

    #[test]
    fn from_dir_reads_the_checkpoints_template_by_name() {
        let dir = tempfile::tempdir().unwrap();
        let config = serde_json::json!({
            "bos_token": {"content": "<s>", "lstrip": false},
            "eos_token": "</s>",
            "chat_template": [
                {"name": "default", "template": "{{ bos_token }}{{ messages[0].content }}{{ eos_token }}"},
                {"name": "tool_use", "template": "{% if tools is none %}no tools{% endif %}"}
            ]
        });
        std::fs::write(dir.path().join("tokenizer_config.json"), config.to_string()).unwrap();
        let m = [Message::new("user", "x")];
        let t = ChatTemplate::from_dir(dir.path(), None).unwrap();
        assert_eq!(t.render(&m, false).unwrap(), "<s>x</s>");
        assert_eq!(
            ChatTemplate::from_dir(dir.path(), Some("tool_use"))
                .unwrap()
                .render(&m, false)
                .unwrap(),
            "no tools"
        );
        match ChatTemplate::from_dir(dir.path(), Some("rag")) {
            Err(ChatError::UnknownName { available, .. }) => assert_eq!(available, ["default", "tool_use"]),
            other => panic!("{other:?}"),
        }
        // transformers 5 saves the template beside the config; that one wins.
        std::fs::write(dir.path().join("chat_template.jinja"), "file:{{ messages[0].content }}").unwrap();
        assert_eq!(
            ChatTemplate::from_dir(dir.path(), None)
                .unwrap()
                .render(&m, false)
                .unwrap(),
            "file:x"
        );
        let empty = tempfile::tempdir().unwrap();
        assert!(matches!(
            ChatTemplate::from_dir(empty.path(), None),
            Err(ChatError::Missing(_))
        ));
    }

    #[test]
    fn python_floats() {
        for (f, s) in [
            (1.0, "1.0"),
            (0.1, "0.1"),
            (1e-7, "1e-07"),
            (1e16, "1e+16"),
            (123.25, "123.25"),
        ] {
            assert_eq!(py_float(f), s);
        }
    }
}
