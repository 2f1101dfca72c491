//! The `kvs-infer` binary: parses the command line, sets up logging, loads the config and
//! hands over to [`kvs_infer::pipeline::run`]. Errors become one-line messages and exit
//! codes here, and nowhere else: 0 success, 2 bad usage/config/start-up, 1 runtime failure.

use std::path::Path;
use std::process::ExitCode;

use clap::error::ErrorKind;
use clap::Parser;
use kvs_infer::bench::{AlprArgs, BenchArgs, PublisherArgs};
use kvs_infer::cli::{Cli, Command};
use kvs_infer::config::{self, Config, ConfigError, LoadError};
use kvs_infer::engine::build::{BuildError, BuildRequest};
use kvs_infer::pipeline::{self, Options, RunError};
use kvs_infer::telemetry::{init_logging, LogLevel};
use kvs_infer::{shutdown, VERSION};

const EXIT_USAGE: u8 = 2;
const EXIT_RUNTIME: u8 = 1;

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => return clap_exit(&e),
    };
    match cli.command {
        Some(Command::CheckConfig { ref config }) => check_config(config),
        Some(Command::BuildEngine {
            model,
            max_batch,
            fp16,
            engines_dir,
            device_id,
        }) => build_engine(&BuildRequest {
            model,
            max_batch,
            fp16,
            engines_dir,
            device_id,
        }),
        Some(Command::Bench(b)) => {
            let b = *b;
            if b.publishers {
                bench_publishers(
                    &PublisherArgs {
                        endpoint: b.endpoint,
                        events: b.events,
                        create: b.create,
                        clip: b.clip,
                    },
                    b.json.as_deref(),
                )
            } else if b.alpr {
                bench_alpr(
                    &AlprArgs {
                        plate_model: b.plate_model,
                        ocr_model: b.ocr_model,
                        clip: b.clip,
                        cameras: b.cameras.iter().copied().max().unwrap_or(4),
                        seconds: b.seconds,
                        warmup: b.warmup,
                    },
                    b.json.as_deref(),
                )
            } else {
                bench(
                    &BenchArgs {
                        model: b.model,
                        clip: b.clip,
                        cameras: b.cameras,
                        max_batch: b.max_batch,
                        seconds: b.seconds,
                        warmup: b.warmup,
                        decode_clips: b.decode_clips.into_iter().filter(|p| p.is_file()).collect(),
                        capacity_fps: b.fps,
                        budget_ms: b.budget_ms,
                        max_cameras: b.max_cameras,
                        quick: b.quick,
                        backend: b.backend,
                        decode: b.decode,
                        quiet_class: String::new(),
                    },
                    b.json.as_deref(),
                    b.min_ratio,
                )
            }
        }
        None => serve(cli),
    }
}

fn bench(args: &BenchArgs, json: Option<&Path>, min_ratio: Option<f64>) -> ExitCode {
    bench_logging();
    match kvs_infer::bench::run(args) {
        Ok(report) => {
            let code = bench_report(&kvs_infer::bench::table(&report), &report, json);
            let Some(min) = min_ratio else { return code };
            // A NaN ratio (no frames at all) fails the guard too.
            match report
                .pipeline
                .iter()
                .find(|r| r.ratio.is_nan() || r.ratio < min)
            {
                Some(r) => {
                    eprintln!(
                        "kvs-infer: error: the pipeline with {} cameras reached {:.0}% of the raw engine, below the {:.0}% guard",
                        r.cameras,
                        r.ratio * 100.0,
                        min * 100.0
                    );
                    ExitCode::from(EXIT_RUNTIME)
                }
                None => code,
            }
        }
        Err(e) => {
            eprintln!("kvs-infer: error: {e}");
            ExitCode::from(EXIT_USAGE)
        }
    }
}

fn bench_alpr(args: &AlprArgs, json: Option<&Path>) -> ExitCode {
    bench_logging();
    match kvs_infer::bench::run_alpr(args) {
        Ok(report) => bench_report(&kvs_infer::bench::alpr_table(&report), &report, json),
        Err(e) => {
            eprintln!("kvs-infer: error: {e}");
            ExitCode::from(EXIT_USAGE)
        }
    }
}

fn bench_publishers(args: &PublisherArgs, json: Option<&Path>) -> ExitCode {
    bench_logging();
    match kvs_infer::bench::run_publishers(args) {
        Ok(report) => bench_report(&kvs_infer::bench::publishers_table(&report), &report, json),
        Err(e) => {
            eprintln!("kvs-infer: error: {e}");
            ExitCode::from(EXIT_USAGE)
        }
    }
}

/// Benchmarks are quiet unless LOG_LEVEL asks for logs.
fn bench_logging() {
    if let Ok(level) = std::env::var("LOG_LEVEL") {
        if let Ok(level) = level.parse::<LogLevel>() {
            init_logging(level);
        }
    }
}

fn bench_report<T: serde::Serialize>(table: &str, report: &T, json: Option<&Path>) -> ExitCode {
    print!("{table}");
    if let Some(path) = json {
        let text = serde_json::to_string_pretty(report).unwrap_or_default();
        if let Err(e) = std::fs::write(path, text) {
            eprintln!("kvs-infer: error: cannot write {}: {e}", path.display());
            return ExitCode::from(EXIT_RUNTIME);
        }
    }
    ExitCode::SUCCESS
}

/// Help and version print as clap formats them; every other parse error is one line.
fn clap_exit(e: &clap::Error) -> ExitCode {
    match e.kind() {
        ErrorKind::DisplayHelp | ErrorKind::DisplayVersion => {
            let _ = e.print();
            ExitCode::SUCCESS
        }
        _ => {
            let rendered = e.render().to_string();
            let first = rendered.lines().next().unwrap_or("invalid arguments");
            let first = first.strip_prefix("error: ").unwrap_or(first);
            eprintln!("kvs-infer: error: {first} (see kvs-infer --help)");
            ExitCode::from(EXIT_USAGE)
        }
    }
}

fn build_engine(req: &BuildRequest) -> ExitCode {
    bench_logging();
    match kvs_infer::engine::build::build_engine(req) {
        Ok(built) => {
            println!(
                "built {} for {} (TensorRT {}) in {:.1} s: {} [{}]",
                req.model.display(),
                built.gpu,
                built.tensorrt,
                built.seconds,
                built.dir.display(),
                built.files.join(", ")
            );
            ExitCode::SUCCESS
        }
        Err(e @ (BuildError::Unavailable(_) | BuildError::NoModel(_))) => {
            eprintln!("kvs-infer: error: {e}");
            ExitCode::from(EXIT_USAGE)
        }
        Err(e) => {
            eprintln!("kvs-infer: error: {e}");
            ExitCode::from(EXIT_RUNTIME)
        }
    }
}

fn check_config(path: &Path) -> ExitCode {
    match config::load_file(path) {
        Ok(config) => {
            let enabled = config.enabled_cameras().count();
            println!(
                "{}: valid ({} camera(s), {} enabled)",
                path.display(),
                config.cameras.len(),
                enabled
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            print_load_error(&e);
            ExitCode::from(EXIT_USAGE)
        }
    }
}

fn print_load_error(e: &LoadError) {
    eprintln!("kvs-infer: error: {e}");
    if let LoadError::Invalid { errors, .. } = e {
        print_problems(errors);
    }
}

fn print_problems(errors: &[ConfigError]) {
    for problem in errors {
        eprintln!("  {problem}");
    }
}

fn serve(cli: Cli) -> ExitCode {
    let level = match LogLevel::from_env() {
        Ok(level) => level,
        Err(e) => {
            eprintln!("kvs-infer: error: {e}");
            return ExitCode::from(EXIT_USAGE);
        }
    };
    let config: Config = match &cli.config {
        Some(path) => match config::load_file(path) {
            Ok(c) => c,
            Err(e) => {
                print_load_error(&e);
                return ExitCode::from(EXIT_USAGE);
            }
        },
        None => match config::embedded_default() {
            Ok(c) => c,
            Err(errors) => {
                eprintln!("kvs-infer: error: the embedded demo config is invalid");
                print_problems(&errors);
                return ExitCode::from(EXIT_USAGE);
            }
        },
    };
    init_logging(level);
    tracing::info!(
        version = VERSION,
        config = %cli.config.as_deref().map_or("<embedded demo>".into(), |p| p.display().to_string()),
        "Starting kvs-infer."
    );

    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("kvs-infer")
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("kvs-infer: error: cannot start the async runtime: {e}");
            return ExitCode::from(EXIT_RUNTIME);
        }
    };
    let options = Options {
        http_addr: cli.http,
        probe: None,
        shard: cli.shard,
        telemetry: None,
    };
    let result = runtime.block_on(async move {
        let token = shutdown::install().map_err(|e| {
            RunError::Http(std::io::Error::other(format!(
                "cannot install signal handlers: {e}"
            )))
        })?;
        pipeline::run(config, options, token).await
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(RunError::Start(e)) => {
            tracing::error!(error = %e, "Start-up failed.");
            eprintln!("kvs-infer: error: {e}");
            ExitCode::from(EXIT_USAGE)
        }
        Err(e) => {
            tracing::error!(error = %e, "Server failed.");
            eprintln!("kvs-infer: error: {e}");
            ExitCode::from(EXIT_RUNTIME)
        }
    }
}
