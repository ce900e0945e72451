//! Developer tasks for masp: `cargo xtask <task>` (see `cargo xtask help`).

mod bench;
mod layers;
mod setup;
mod suites;
#[cfg(test)]
mod tidy;

use std::process::ExitCode;

const HELP: &str = "\
cargo xtask <task>

tasks:
  setup [--force]   fetch ONNX Runtime and the built-in models (pinned, sha256-verified, cached)
  demo              set up if needed, then run `masp vad` on the committed speech sample
  test              set up if needed, then run every check and test suite (what CI runs)
  check-layers      fail on any dependency edge that breaks the crate layering
  test-sequential   model and orchestration suites (peaks held to 1.5x), degradation ladder
  test-profile      the profiler's verdicts (leak, cleanup, trend, reports) on real runs,
                    each with a passing and a failing case; reports in target/masp-reports/
  test-memory       memory-intensive cases (GiB models, exhaustion, drift, calibration)
  test-faults       20 SIGKILLs at random points of a batch, resumed each time
  test-report       a run's HTML report opened in headless Chromium, with a screenshot
  test-package      cargo package every publishable crate, each built from its package alone
  test-downstream   build, test and run the projects under downstream/ (downstream/check.sh)
  bench             side-by-side benchmarks (release; Python references in a virtualenv)
  bench isolation   only the in-process vs --isolation process comparison
  bench shards      only one process vs two --shard processes in parallel
  bench watchdog    only masp vad with the memory watchdog on and off
  bench throughput  only the int8 model and the 20-file batch on one and two cores
";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let task = args.first().map(String::as_str).unwrap_or("help");
    let rest = &args[args.len().min(1)..];
    let result = match task {
        "setup" => setup::run(rest.iter().any(|a| a == "--force")).map(|_| ()),
        "demo" => suites::demo(),
        "test" => suites::test_all(),
        "check-layers" => layers::check(),
        "test-sequential" => suites::test_sequential(),
        "test-profile" => suites::test_profile(),
        "test-memory" => suites::test_memory(),
        "test-faults" => suites::test_faults(),
        "test-report" => suites::test_report(),
        "test-package" => suites::test_package(),
        "test-downstream" => suites::test_downstream(),
        "bench" if rest.first().is_some_and(|a| a == "isolation") => bench::isolation_only(),
        "bench" if rest.first().is_some_and(|a| a == "shards") => bench::shards_only(),
        "bench" if rest.first().is_some_and(|a| a == "watchdog") => bench::watchdog_only(),
        "bench" if rest.first().is_some_and(|a| a == "throughput") => bench::throughput_only(),
        "bench" => bench::run(),
        "help" | "--help" | "-h" => {
            print!("{HELP}");
            Ok(())
        }
        other => {
            eprint!("unknown task `{other}`\n\n{HELP}");
            return ExitCode::from(1);
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("error: {err:#}");
            ExitCode::FAILURE
        }
    }
}
