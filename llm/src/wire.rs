//! Between the engine and the OpenAI wire types of `offload`: a request's chat messages in, a
//! generated token's log-probs out. Every tier that runs a model with this crate (the cloud
//! host, the edge component) converts through here.

use crate::chat::{Message, Role};
use crate::generate::Token;
use crate::tokenizer::Tokenizer;
use offload::wire::{ChatMessage, Role as WireRole, TokenLogprob, TopLogprob};

/// The engine's role for a wire role. Tool results are read as user turns: the templates have
/// no tool role, and the tiers call no tools.
pub fn role(role: WireRole) -> Role {
    match role {
        WireRole::System => Role::System,
        WireRole::User | WireRole::Tool => Role::User,
        WireRole::Assistant => Role::Assistant,
    }
}

/// A request's messages as the chat template renders them.
pub fn messages(messages: &[ChatMessage]) -> Vec<Message> {
    messages
        .iter()
        .map(|m| Message::new(role(m.role), m.text().into_owned()))
        .collect()
}

/// A generated token's log-prob entry, its alternatives spelled by `tokenizer`.
pub fn token_logprob(token: &Token, tokenizer: &Tokenizer) -> TokenLogprob {
    let top_logprobs = token
        .top
        .iter()
        .map(|&(id, logprob)| {
            let bytes = tokenizer
                .token_bytes(id, false)
                .map(|b| b.into_owned())
                .unwrap_or_default();
            TopLogprob {
                token: String::from_utf8_lossy(&bytes).into_owned(),
                logprob: f64::from(logprob),
                bytes: Some(bytes),
            }
        })
        .collect();
    TokenLogprob {
        token: String::from_utf8_lossy(&token.bytes).into_owned(),
        logprob: f64::from(token.logprob),
        bytes: Some(token.bytes.clone()),
        top_logprobs,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tool_turns_are_user_turns() {
        assert_eq!(role(WireRole::Tool), Role::User);
        assert_eq!(role(WireRole::System), Role::System);
        assert_eq!(role(WireRole::Assistant), Role::Assistant);
    }
}
