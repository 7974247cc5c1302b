//! Small learners over feature vectors, shared by the learned router
//! (`bantam-router`) and classifier heads (`bantam tune classify`): one optimiser,
//! one place where training is written.
//!
//! * [`logistic`] — binary logistic regression (the router's "escalate?" model).
//! * [`softmax`] — multinomial logistic regression with class weights, early stopping
//!   on a validation set and temperature scaling, so its probabilities mean what
//!   they say.
//! * [`split`] — a seeded, stratified train/validation split.
//!
//! Pure Rust and deterministic: the same data and options give the same weights.

mod adam;
pub mod logistic;
pub mod softmax;
pub mod split;

pub use logistic::{train_binary, TrainOptions};
pub use softmax::{SoftmaxModel, SoftmaxOptions, SoftmaxReport};
pub use split::stratified_split;
