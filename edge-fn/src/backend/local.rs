//! `llm` in this process: the `in-wasm` component build (weights read from a file the manifest
//! mounts into the component) and the native unit tests.

use super::{Backend, Sequence};
use crate::error::EdgeError;
use llm::models::ModelOptions;
use llm::{ChatTemplate, Model, Session, Tokenizer};

pub struct Local {
    model: Model,
    id: String,
}

impl Local {
    /// Loads the GGUF file at `path` (in a component: a path under a mounted directory).
    pub fn load(path: &str, id: &str, context: Option<usize>) -> Result<Self, EdgeError> {
        let options = ModelOptions {
            context,
            ..Default::default()
        };
        let model = Model::load_with(path, &options)?;
        Ok(Local {
            model,
            id: id.to_string(),
        })
    }

    pub fn model(&self) -> &Model {
        &self.model
    }
}

impl Backend for Local {
    type Sequence = LocalSequence;

    fn model_id(&self) -> &str {
        &self.id
    }

    fn tokenizer(&self) -> &Tokenizer {
        self.model.tokenizer()
    }

    fn chat_template(&self) -> Option<&ChatTemplate> {
        self.model.chat_template()
    }

    fn context_length(&self) -> usize {
        self.model.context_length()
    }

    fn sequence(&self) -> Result<LocalSequence, EdgeError> {
        Ok(LocalSequence {
            session: self.model.session(),
            last: None,
        })
    }
}

pub struct LocalSequence {
    session: Session,
    /// The logits of the last feed, which option scoring continues from.
    last: Option<Vec<f32>>,
}

impl Sequence for LocalSequence {
    fn feed(&mut self, tokens: &[u32]) -> Result<Vec<f32>, EdgeError> {
        let logits = self.session.feed(tokens)?;
        self.last = Some(logits.clone());
        Ok(logits)
    }

    fn score_options(&mut self, options: &[Vec<u32>]) -> Result<Vec<f64>, EdgeError> {
        let logits = self
            .last
            .clone()
            .ok_or_else(|| EdgeError::Model("options are scored after the prompt".into()))?;
        Ok(llm::generate::score_options_after(
            &self.session,
            logits,
            options,
        )?)
    }

    fn len(&self) -> usize {
        self.session.tokens().len()
    }
}
