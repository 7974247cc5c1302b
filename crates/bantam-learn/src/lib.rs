//! Small learners over feature vectors, shared by the learned router
//! (`bantam-router`) and classifier heads (`bantam tune classify`): one optimiser,
//! one place where training is written.
//!
//! * [`logistic`] — binary logistic regression (the router's "escalate?" model).
//! * [`softmax`] — multinomial logistic regression with class weights, early stopping
//!   on a validation set and temperature scaling, so its probabilities mean what
//!   they say.
//! * [`mlp`] — one hidden ReLU layer before the softmax, trained the same way
//!   (mini-batches, dropout), for label sets a linear boundary separates poorly.
//! * [`split`] — a seeded, stratified train/validation split.
//!
//! Pure Rust and deterministic: the same data and options give the same weights.

mod adam;
pub mod logistic;
pub mod mlp;
pub mod softmax;
pub mod split;

pub use logistic::{train_binary, TrainOptions};
pub use mlp::{MlpModel, MlpOptions};
pub use softmax::{SoftmaxModel, SoftmaxOptions, SoftmaxReport};
pub use split::stratified_split;
