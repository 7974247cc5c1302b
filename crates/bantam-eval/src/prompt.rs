//! Prompt templates of the evaluated tasks: `bantam-types`' [`PromptTemplate`], the
//! same templates the task endpoints use (see [`bantam_types::prompt`] for the
//! syntax), so a local model, a remote API and a route are asked the same question.

pub use bantam_types::prompt::{PromptError, PromptTask, PromptTemplate};

use crate::run::Task;

impl Task {
    /// The template kind of this task.
    pub fn prompt_task(&self) -> PromptTask {
        match self {
            Task::Classify { .. } => PromptTask::Classify,
            Task::Extract { .. } => PromptTask::Extract,
            Task::Summarize => PromptTask::Summarize,
            Task::Qa => PromptTask::Qa,
            Task::Chat => PromptTask::Chat,
        }
    }
}

/// The default template of a task, as text.
pub fn default_text(task: &Task) -> String {
    bantam_types::prompt::default_text(task.prompt_task())
}

/// The default template of a task.
pub fn default_for(task: &Task) -> PromptTemplate {
    bantam_types::prompt::default_for(task.prompt_task())
}

/// Parse a template for `task`.
pub fn parse(text: &str, task: &Task) -> Result<PromptTemplate, PromptError> {
    PromptTemplate::parse(text, task.prompt_task())
}
