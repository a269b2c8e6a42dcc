//! How a row's own text becomes the model's input, as lm-evaluation-harness 0.4.13 builds it
//! (`ConfigurableTask.fewshot_context` and `build_qa_turn`): the system instruction and the
//! description, then the few-shot examples, then the row — joined as plain text, or as chat
//! messages rendered by the checkpoint's template.
//!
//! * **Messages.** The system message is `system_instruction + "\n\n" + description` (no
//!   `"\n\n"` where either side already has whitespace at the join; either alone when the other
//!   is empty; none when both are). Each example is a user message (its context) and an
//!   assistant message (its answer); the row is the last user message.
//! * **Plain text** (no template): the messages' texts joined, each user message followed by
//!   the target delimiter when an answer follows and each answer by `"\n\n"` — with no system
//!   instruction this is `description + Σ(context + delimiter + answer + "\n\n") + text`.
//! * **Chat, multi-turn** (`fewshot_as_multiturn`, lm-eval's default with a template): the
//!   messages as they are. **Chat, single-turn**: the system message, then everything else
//!   joined as in plain text into one user message. Both are rendered with
//!   `add_generation_prompt`; where the template refuses a conversation that has a system
//!   message, it is rendered again without it (lm-eval's fallback), and the results count the
//!   rows that lost it.
//! * **Continuations** after a chat-rendered context drop the target delimiter (lm-eval scores
//!   `"Paris"`, not `" Paris"`, after `<|im_start|>assistant\n`).

use super::RowError;
use crate::chat::{ChatError, ChatTemplate, Message};
use crate::fewshot::FewShot;
use std::cell::Cell;
use std::sync::Arc;

/// A chat template and how few-shot examples go into it.
#[derive(Debug, Clone)]
pub struct ChatOptions {
    /// The checkpoint's template.
    pub template: Arc<ChatTemplate>,
    /// Few-shot examples as user/assistant turns (`true`, lm-eval's default under a template)
    /// or joined into the one user message (`false`).
    pub fewshot_as_multiturn: bool,
}

impl ChatOptions {
    /// `template` with few-shot examples as turns (lm-eval's default).
    pub fn new(template: ChatTemplate) -> Self {
        ChatOptions {
            template: Arc::new(template),
            fewshot_as_multiturn: true,
        }
    }
}

/// What goes around every row of one evaluation: its description and few-shot examples, the
/// run's system instruction and chat template. Made by the driver; a kind asks it for each
/// row's [`Prompt`].
pub struct Prompter<'a> {
    fewshot: Option<&'a FewShot>,
    system_instruction: Option<&'a str>,
    chat: Option<&'a ChatOptions>,
    /// Rows whose system message the template refused (rendered without it), and the last
    /// such row (a row may render several contexts).
    without_system: Cell<usize>,
    last_without: Cell<Option<usize>>,
    refusal: std::cell::RefCell<Option<String>>,
}

/// A message with the text that follows it in plain text (lm-eval's `Message._delimiter`).
struct Turn<'s> {
    role: &'static str,
    content: &'s str,
    delimiter: &'s str,
}

/// lm-eval's `maybe_delimit`: `prefix + delimiter + suffix`, without the delimiter where either
/// side has whitespace at the join; either alone when the other is empty.
fn maybe_delimit(prefix: &str, suffix: &str, delimiter: &str) -> String {
    match (prefix, suffix) {
        ("", s) => s.to_string(),
        (p, "") => p.to_string(),
        (p, s) if p.ends_with(char::is_whitespace) || s.starts_with(char::is_whitespace) => format!("{p}{s}"),
        (p, s) => format!("{p}{delimiter}{s}"),
    }
}

fn join(turns: &[Turn<'_>]) -> String {
    turns.iter().flat_map(|t| [t.content, t.delimiter]).collect()
}

fn messages(turns: &[Turn<'_>]) -> Vec<Message> {
    turns.iter().map(|t| Message::new(t.role, t.content)).collect()
}

impl<'a> Prompter<'a> {
    /// The prompts of an evaluation with `fewshot` (description and examples, if any) under the
    /// run's `system_instruction` and `chat` template.
    ///
    /// ```
    /// use evalkit_core::chat::ChatTemplate;
    /// use evalkit_core::kinds::{ChatOptions, Prompter};
    /// let template = ChatTemplate::new(
    ///     "{% for m in messages %}[{{ m.role }}] {{ m.content }}\n{% endfor %}\
    ///      {% if add_generation_prompt %}[assistant] {% endif %}",
    ///     Default::default(),
    ///     "example",
    /// )?;
    /// let chat = ChatOptions::new(template);
    /// let p = Prompter::new(None, Some("Be brief."), Some(&chat));
    /// let row = p.row(0);
    /// assert_eq!(row.context("Q: 2+2?\nA:")?, "[system] Be brief.\n[user] Q: 2+2?\nA:\n[assistant] ");
    /// assert_eq!(row.continuation(" 4", " "), "4");
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn new(
        fewshot: Option<&'a FewShot>,
        system_instruction: Option<&'a str>,
        chat: Option<&'a ChatOptions>,
    ) -> Self {
        Prompter {
            fewshot,
            system_instruction,
            chat,
            without_system: Cell::new(0),
            last_without: Cell::new(None),
            refusal: Default::default(),
        }
    }

    /// Row `index`'s view.
    pub fn row(&self, index: usize) -> Prompt<'_> {
        Prompt { prompter: self, index }
    }

    /// Whether contexts are rendered through a chat template.
    pub fn is_chat(&self) -> bool {
        self.chat.is_some()
    }

    /// What the results should record: rows rendered without their system message, and why.
    pub fn notes(&self) -> Option<serde_json::Value> {
        let n = self.without_system.get();
        (n > 0).then(|| {
            serde_json::json!({
                "rows_without_system_message": n,
                "reason": self.refusal.borrow().clone().unwrap_or_default(),
            })
        })
    }

    fn context(&self, index: usize, text: &str) -> Result<String, RowError> {
        let (description, delimiter) = self.fewshot.map_or(("", " "), |f| (f.description(), f.delimiter()));
        let system = maybe_delimit(self.system_instruction.unwrap_or(""), description, "\n\n");
        let mut turns = vec![];
        if !system.is_empty() {
            turns.push(Turn {
                role: "system",
                content: &system,
                delimiter: "",
            });
        }
        for (q, a) in self.fewshot.into_iter().flat_map(|f| f.examples(index)) {
            let has_answer = !a.is_empty();
            turns.push(Turn {
                role: "user",
                content: q,
                delimiter: if has_answer { delimiter } else { "" },
            });
            if has_answer {
                turns.push(Turn {
                    role: "assistant",
                    content: a,
                    delimiter: "\n\n",
                });
            }
        }
        turns.push(Turn {
            role: "user",
            content: text,
            delimiter: "",
        });
        let Some(chat) = self.chat else {
            return Ok(join(&turns));
        };
        let has_system = !system.is_empty();
        let msgs = if chat.fewshot_as_multiturn {
            messages(&turns)
        } else {
            let (head, rest) = turns.split_at(usize::from(has_system));
            let mut m = messages(head);
            m.push(Message::new("user", join(rest)));
            m
        };
        let render = |m: &[Message]| chat.template.render(m, true);
        match render(&msgs) {
            Ok(s) => Ok(s),
            // lm-eval: on a TemplateError, remove the system role and render again.
            Err(ChatError::Template { message, .. }) if has_system => {
                let rest: Vec<Message> = msgs.into_iter().filter(|m| m.role != "system").collect();
                let s = render(&rest).map_err(|e| RowError::new(e.to_string()))?;
                if self.last_without.replace(Some(index)) != Some(index) {
                    self.without_system.set(self.without_system.get() + 1);
                }
                self.refusal.borrow_mut().get_or_insert(message);
                Ok(s)
            }
            Err(e) => Err(RowError::new(e.to_string())),
        }
    }
}

/// One row's prompt (see the [module](self)).
pub struct Prompt<'a> {
    prompter: &'a Prompter<'a>,
    index: usize,
}

impl Prompt<'_> {
    /// The model's input for this row's own `text` (its context or prompt): the system
    /// instruction, description and examples before it, in plain text or chat-rendered.
    pub fn context(&self, text: &str) -> Result<String, RowError> {
        self.prompter.context(self.index, text)
    }

    /// A continuation as scored after [`Prompt::context`]: unchanged in plain text; under a
    /// chat template without the target `delimiter` it starts with.
    pub fn continuation<'c>(&self, continuation: &'c str, delimiter: &str) -> &'c str {
        match self.prompter.chat {
            Some(_) => continuation.strip_prefix(delimiter).unwrap_or(continuation),
            None => continuation,
        }
    }

    /// Whether contexts are chat-rendered.
    pub fn is_chat(&self) -> bool {
        self.prompter.is_chat()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fewshot::{FewShotSampler, FewShotSpec};

    const CHATML: &str = "{% for m in messages %}<|im_start|>{{ m.role }}\n{{ m.content }}<|im_end|>\n{% endfor %}\
                          {% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}";

    fn fewshot(k: usize, description: &str) -> FewShot {
        let pool = vec![
            ("Q: 1+1?\nA:".to_string(), "2".to_string()),
            ("Q: 2+2?\nA:".to_string(), "4".to_string()),
        ];
        let spec = FewShotSpec {
            k,
            sampler: FewShotSampler::First,
            description: description.into(),
            delimiter: " ".into(),
        };
        FewShot::new(pool, spec, 1, None).unwrap()
    }

    fn chat(template: &str, multiturn: bool) -> ChatOptions {
        let mut c = ChatOptions::new(ChatTemplate::new(template, Default::default(), "test").unwrap());
        c.fewshot_as_multiturn = multiturn;
        c
    }

    #[test]
    fn plain_text_is_the_fewshot_prefix() {
        let f = fewshot(2, "Math.\n\n");
        let p = Prompter::new(Some(&f), None, None);
        assert_eq!(p.row(0).context("Q: 3+3?\nA:").unwrap(), f.prefix(0) + "Q: 3+3?\nA:");
        // lm-eval joins the system instruction and description with "\n\n", and nothing
        // follows the system text in plain text.
        let p = Prompter::new(Some(&f), Some("Be brief."), None);
        assert!(p
            .row(0)
            .context("x")
            .unwrap()
            .starts_with("Be brief.\n\nMath.\n\nQ: 1+1?"));
        let none = fewshot(0, "");
        let p = Prompter::new(Some(&none), Some("Be brief."), None);
        assert_eq!(p.row(0).context("Q").unwrap(), "Be brief.Q");
        assert_eq!(p.row(0).continuation(" 4", " "), " 4");
    }

    #[test]
    fn chat_multiturn_and_singleturn() {
        let f = fewshot(1, "Math.");
        let c = chat(CHATML, true);
        let p = Prompter::new(Some(&f), Some("Be brief."), Some(&c));
        assert_eq!(
            p.row(0).context("Q: 3+3?\nA:").unwrap(),
            "<|im_start|>system\nBe brief.\n\nMath.<|im_end|>\n<|im_start|>user\nQ: 1+1?\nA:<|im_end|>\n\
             <|im_start|>assistant\n2<|im_end|>\n<|im_start|>user\nQ: 3+3?\nA:<|im_end|>\n<|im_start|>assistant\n"
        );
        assert_eq!(p.row(0).continuation(" 6", " "), "6");
        let c = chat(CHATML, false);
        let p = Prompter::new(Some(&f), None, Some(&c));
        assert_eq!(
            p.row(0).context("Q: 3+3?\nA:").unwrap(),
            "<|im_start|>system\nMath.<|im_end|>\n<|im_start|>user\nQ: 1+1?\nA: 2\n\nQ: 3+3?\nA:<|im_end|>\n\
             <|im_start|>assistant\n"
        );
    }

    #[test]
    fn a_refused_system_message_is_dropped_and_counted() {
        let t = "{% if messages[0].role == 'system' %}{{ raise_exception('System role not supported') }}{% endif %}\
                 {% for m in messages %}[{{ m.content }}]{% endfor %}";
        let c = chat(t, true);
        let p = Prompter::new(None, Some("Sys"), Some(&c));
        assert_eq!(p.row(0).context("hi").unwrap(), "[hi]");
        let notes = p.notes().unwrap();
        assert_eq!(notes["rows_without_system_message"], 1);
        assert_eq!(notes["reason"], "System role not supported");
        // Without a system message to drop, the template's error is the row's error.
        let bad = chat("{{ raise_exception('no') }}", true);
        let p = Prompter::new(None, None, Some(&bad));
        let e = p.row(0).context("hi").unwrap_err();
        assert!(e.0.contains("line 1") && e.0.contains("no"), "{e}");
    }
}
