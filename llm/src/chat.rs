//! Chat templates: a conversation turned into the prompt the model was trained on.
//!
//! GGUF files carry a Jinja template (`tokenizer.chat_template`). Like llama.cpp's built-in
//! templates, this module recognises the template family from it and renders that family
//! in Rust, rather than running Jinja: ChatML (SmolLM2, Qwen2) and Gemma's turns. A fixed
//! default system message the template inserts (SmolLM2's) is read from the template too.
//! Gemma 3 base models ship no template; their architecture selects Gemma's turn format.
//!
//! Message contents are untrusted: [`ChatTemplate::encode`] never turns control-token text
//! inside them (`<|im_end|>`) into control tokens.

use crate::error::{Error, Result};
use crate::gguf::{Architecture, Gguf};
use crate::tokenizer::{Segment, TokenId, Tokenizer};

/// Who wrote a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Role {
    System,
    User,
    Assistant,
}

impl Role {
    /// The role's name in ChatML.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::System => "system",
            Self::User => "user",
            Self::Assistant => "assistant",
        }
    }
}

/// One message of a conversation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    pub role: Role,
    pub content: String,
}

impl Message {
    pub fn new(role: Role, content: impl Into<String>) -> Self {
        Self {
            role,
            content: content.into(),
        }
    }

    pub fn system(content: impl Into<String>) -> Self {
        Self::new(Role::System, content)
    }

    pub fn user(content: impl Into<String>) -> Self {
        Self::new(Role::User, content)
    }

    pub fn assistant(content: impl Into<String>) -> Self {
        Self::new(Role::Assistant, content)
    }
}

/// A chat prompt format.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChatTemplate {
    /// `<|im_start|>{role}\n{content}<|im_end|>\n` per message, then
    /// `<|im_start|>assistant\n` to ask for an answer. `default_system` is put first when the
    /// conversation does not start with a system message.
    ChatMl { default_system: Option<String> },
    /// `<start_of_turn>{user|model}\n{content}<end_of_turn>\n` per message, contents trimmed,
    /// system messages merged into the next user turn (as llama.cpp does), then
    /// `<start_of_turn>model\n`.
    Gemma,
}

/// Template families recognised, for error messages.
const SUPPORTED: &str = "ChatML (<|im_start|>) and Gemma (<start_of_turn>)";

impl ChatTemplate {
    /// Recognises the family of a Jinja chat template, as llama.cpp's
    /// `llm_chat_detect_template` does for these two.
    pub fn detect(jinja: &str) -> Result<Self> {
        if jinja.contains("<|im_start|>") {
            // Phi-4 and SmolVLM use <|im_start|> but are not ChatML.
            if jinja.contains("<|im_sep|>") || jinja.contains("<end_of_utterance>") {
                return Err(unsupported(jinja));
            }
            Ok(Self::ChatMl {
                default_system: default_system_message(jinja),
            })
        } else if jinja.contains("<start_of_turn>") {
            Ok(Self::Gemma)
        } else {
            Err(unsupported(jinja))
        }
    }

    /// The template for a model: from its GGUF template where it has one, otherwise from its
    /// architecture (Gemma 3 base models have none).
    pub fn for_model(gguf: &Gguf) -> Result<Self> {
        match gguf.chat_template() {
            Some(jinja) => Self::detect(jinja),
            None => match gguf.architecture()? {
                Architecture::Gemma3 => Ok(Self::Gemma),
                arch => Err(Error::NoChatTemplate {
                    architecture: arch.to_string(),
                }),
            },
        }
    }

    /// The text that closes a turn; generation stops at it.
    pub fn end_of_turn(&self) -> &'static str {
        match self {
            Self::ChatMl { .. } => "<|im_end|>",
            Self::Gemma => "<end_of_turn>",
        }
    }

    /// The prompt as parts: scaffolding (trusted) and message contents (untrusted).
    /// `add_generation_prompt` opens an assistant turn at the end.
    pub fn segments<'a>(
        &'a self,
        messages: &'a [Message],
        add_generation_prompt: bool,
    ) -> Vec<Segment<'a>> {
        let scaffold = |text: &'a str| Segment {
            text,
            trusted: true,
        };
        let content = |text: &'a str| Segment {
            text,
            trusted: false,
        };
        let mut out = Vec::with_capacity(messages.len() * 3 + 3);
        match self {
            Self::ChatMl { default_system } => {
                if let Some(system) = default_system
                    && messages.first().is_some_and(|m| m.role != Role::System)
                {
                    out.push(scaffold("<|im_start|>system\n"));
                    out.push(content(system));
                    out.push(scaffold("<|im_end|>\n"));
                }
                for m in messages {
                    out.push(scaffold("<|im_start|>"));
                    out.push(scaffold(m.role.as_str()));
                    out.push(scaffold("\n"));
                    out.push(content(&m.content));
                    out.push(scaffold("<|im_end|>\n"));
                }
                if add_generation_prompt {
                    out.push(scaffold("<|im_start|>assistant\n"));
                }
            }
            Self::Gemma => {
                let mut system: Vec<&'a str> = Vec::new();
                for m in messages {
                    let text = trim_c_space(&m.content);
                    match m.role {
                        Role::System => system.push(text),
                        Role::User => {
                            out.push(scaffold("<start_of_turn>user\n"));
                            if system.iter().any(|s| !s.is_empty()) {
                                out.extend(system.drain(..).map(content));
                                out.push(scaffold("\n\n"));
                            }
                            out.push(content(text));
                            out.push(scaffold("<end_of_turn>\n"));
                        }
                        Role::Assistant => {
                            out.push(scaffold("<start_of_turn>model\n"));
                            out.push(content(text));
                            out.push(scaffold("<end_of_turn>\n"));
                        }
                    }
                }
                if add_generation_prompt {
                    out.push(scaffold("<start_of_turn>model\n"));
                }
            }
        }
        out
    }

    /// The prompt as text (what llama.cpp's `llama_chat_apply_template` returns).
    pub fn render(&self, messages: &[Message], add_generation_prompt: bool) -> String {
        self.segments(messages, add_generation_prompt)
            .iter()
            .map(|s| s.text)
            .collect()
    }

    /// The prompt as token ids, BOS included where the model wants it. Control-token text
    /// inside message contents stays text.
    pub fn encode(
        &self,
        tokenizer: &Tokenizer,
        messages: &[Message],
        add_generation_prompt: bool,
    ) -> Vec<TokenId> {
        tokenizer.encode_segments(&self.segments(messages, add_generation_prompt), true)
    }
}

fn unsupported(jinja: &str) -> Error {
    let head: String = jinja.chars().take(80).collect();
    Error::UnsupportedChatTemplate {
        template_start: head,
        supported: SUPPORTED,
    }
}

/// A fixed system message a ChatML template writes when the conversation has none:
/// a string literal `<|im_start|>system\n...<|im_end|>` without expressions in it
/// (SmolLM2's "You are a helpful AI assistant named SmolLM, ...", Qwen2.5's "You are Qwen...").
fn default_system_message(jinja: &str) -> Option<String> {
    for opener in ["<|im_start|>system\n", "<|im_start|>system\\n"] {
        for (at, _) in jinja.match_indices(opener) {
            let rest = &jinja[at + opener.len()..];
            let Some(end) = rest.find("<|im_end|>") else {
                continue;
            };
            let text = &rest[..end];
            let literal = !text.is_empty()
                && !text.contains(['\'', '"'])
                && !text.contains("{{")
                && !text.contains("{%");
            if literal {
                return Some(text.replace("\\n", "\n"));
            }
        }
    }
    None
}

/// Trims what C's `isspace` calls space (llama.cpp trims Gemma contents this way).
fn trim_c_space(s: &str) -> &str {
    s.trim_matches([' ', '\t', '\n', '\r', '\x0B', '\x0C'])
}

#[cfg(test)]
mod tests {
    use super::*;

    const SMOLLM2: &str = "{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}{{ '<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n' }}{% endif %}{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}";

    const QWEN25: &str = "{%- if messages[0]['role'] == 'system' %}\n    {{- '<|im_start|>system\\n' + messages[0]['content'] + '<|im_end|>\\n' }}\n{%- else %}\n    {{- '<|im_start|>system\\nYou are Qwen, created by Alibaba Cloud. You are a helpful assistant.<|im_end|>\\n' }}\n{%- endif %}";

    #[test]
    fn smollm2_template_with_its_default_system_message() {
        let t = ChatTemplate::detect(SMOLLM2).expect("ChatML");
        assert_eq!(
            t,
            ChatTemplate::ChatMl {
                default_system: Some(
                    "You are a helpful AI assistant named SmolLM, trained by Hugging Face".into()
                )
            }
        );
        let prompt = t.render(&[Message::user("Hi!")], true);
        assert_eq!(
            prompt,
            "<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n<|im_start|>user\nHi!<|im_end|>\n<|im_start|>assistant\n"
        );
        let prompt = t.render(
            &[
                Message::system("Be brief."),
                Message::user("Hi!"),
                Message::assistant("Hello."),
            ],
            false,
        );
        assert_eq!(
            prompt,
            "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nHi!<|im_end|>\n<|im_start|>assistant\nHello.<|im_end|>\n"
        );
        assert_eq!(t.end_of_turn(), "<|im_end|>");
    }

    #[test]
    fn qwen_default_system_message_with_escaped_newlines() {
        let t = ChatTemplate::detect(QWEN25).expect("ChatML");
        assert_eq!(
            t,
            ChatTemplate::ChatMl {
                default_system: Some(
                    "You are Qwen, created by Alibaba Cloud. You are a helpful assistant.".into()
                )
            }
        );
    }

    #[test]
    fn plain_chatml_has_no_default_system() {
        let t = ChatTemplate::detect("{% for m in messages %}{{'<|im_start|>' + m['role'] + '\n' + m['content'] + '<|im_end|>\n'}}{% endfor %}").expect("ChatML");
        assert_eq!(
            t,
            ChatTemplate::ChatMl {
                default_system: None
            }
        );
        assert_eq!(t.render(&[], true), "<|im_start|>assistant\n");
    }

    #[test]
    fn gemma_turns_merge_system_into_user_and_trim() {
        let t =
            ChatTemplate::detect("{{ bos_token }}{{ '<start_of_turn>' + role }}").expect("Gemma");
        assert_eq!(t, ChatTemplate::Gemma);
        let prompt = t.render(
            &[
                Message::system("  Be brief.\n"),
                Message::user("Hi!\n"),
                Message::assistant(" Hello."),
                Message::user("Bye"),
            ],
            true,
        );
        assert_eq!(
            prompt,
            "<start_of_turn>user\nBe brief.\n\nHi!<end_of_turn>\n<start_of_turn>model\nHello.<end_of_turn>\n<start_of_turn>user\nBye<end_of_turn>\n<start_of_turn>model\n"
        );
        assert_eq!(t.end_of_turn(), "<end_of_turn>");
    }

    #[test]
    fn unknown_templates_are_named() {
        let err = ChatTemplate::detect(
            "{% for m in messages %}[INST] {{ m['content'] }} [/INST]{% endfor %}",
        )
        .expect_err("llama2 format");
        assert!(
            matches!(err, Error::UnsupportedChatTemplate { .. }),
            "{err}"
        );
        assert!(err.to_string().contains("[INST]"), "{err}");
        let err = ChatTemplate::detect("<|im_start|>{{ x }}<|im_sep|>").expect_err("phi-4");
        assert!(
            matches!(err, Error::UnsupportedChatTemplate { .. }),
            "{err}"
        );
    }
}
