//! Report outputs: the SVG is well-formed and shows what it should, JSON round-trips, files
//! are written.

use masp_budget::Bytes;
use masp_profiler::{Event, MemoryProfiler, Profile, ProfilerConfig, Report};

use crate::{exclusive_memory, touched};

/// A short real run with awkward names, a note and a budget line.
fn sample_run() -> (Profile, Report) {
    let _exclusive = exclusive_memory();
    let config = ProfilerConfig::default().with_budget_limit(Bytes::from_mib(512));
    let profiler = MemoryProfiler::start(config).unwrap();
    let h = profiler.handle();
    for _ in 0..3 {
        h.mark(Event::load_start("whisper <tiny> & co"));
        let model = touched(8 << 20);
        h.mark(Event::load_end("whisper <tiny> & co"));
        h.mark(Event::task_start("clip \"1\".wav"));
        std::thread::sleep(std::time::Duration::from_millis(20));
        h.note("half-way");
        h.mark(Event::task_end("clip \"1\".wav"));
        h.mark(Event::unload("whisper <tiny> & co"));
        drop(model);
        h.mark(Event::Cleanup {
            returned: Bytes::ZERO,
        });
    }
    let profile = profiler.stop();
    let report = profile.report();
    (profile, report)
}

#[test]
fn svg_is_well_formed_with_budget_line_and_phase_labels() {
    let (_, report) = sample_run();
    let svg = report.to_svg();
    let doc = roxmltree::Document::parse(&svg).expect("timeline.svg must be well-formed XML");
    let root = doc.root_element();
    assert_eq!(root.tag_name().name(), "svg");
    assert_eq!(
        root.tag_name().namespace(),
        Some("http://www.w3.org/2000/svg")
    );

    let has_class = |class: &str| {
        doc.descendants().any(|n| {
            n.attribute("class")
                .is_some_and(|c| c.split(' ').any(|c| c == class))
        })
    };
    assert!(has_class("budget"), "budget line missing");
    assert!(has_class("rss"), "memory line missing");
    assert!(has_class("peak"), "peak marker missing");

    let texts: Vec<&str> = doc.descendants().filter_map(|n| n.text()).collect();
    assert!(
        texts.iter().any(|t| t.contains("budget 512 MiB")),
        "{texts:?}"
    );
    // Every load and task phase is named, at least in its tooltip; names are escaped properly.
    let phase_titles = doc
        .descendants()
        .filter(|n| {
            n.attribute("class")
                .is_some_and(|c| c.starts_with("phase "))
        })
        .filter_map(|n| {
            n.children()
                .find(|c| c.has_tag_name("title"))
                .and_then(|t| t.text())
        })
        .collect::<Vec<_>>();
    assert_eq!(
        phase_titles
            .iter()
            .filter(|t| t.starts_with("load whisper <tiny> & co"))
            .count(),
        3
    );
    assert_eq!(
        phase_titles
            .iter()
            .filter(|t| t.starts_with("task clip \"1\".wav"))
            .count(),
        3
    );
    assert!(
        phase_titles
            .iter()
            .any(|t| t.starts_with("cleanup whisper <tiny> & co"))
    );
}

#[test]
fn svg_survives_an_empty_run() {
    let _exclusive = exclusive_memory();
    let report = MemoryProfiler::start(ProfilerConfig::default())
        .unwrap()
        .stop()
        .report();
    let svg = report.to_svg();
    roxmltree::Document::parse(&svg).expect("well-formed even with no marks");
    assert!(!svg.contains("NaN") && !svg.contains("inf"));
}

#[test]
fn json_round_trips() {
    let (profile, report) = sample_run();
    let json = report.to_json().unwrap();
    let back: Report = serde_json::from_str(&json).unwrap();
    assert_eq!(back, report);
    // The stable names documented in the crate docs.
    let value: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(value["schema_version"], 1);
    assert_eq!(value["budget_limit"], 512u64 << 20);
    assert_eq!(value["marks"][0]["event"]["kind"], "load_start");
    assert_eq!(value["marks"][0]["event"]["model"], "whisper <tiny> & co");
    // Three untrimmed cycles may or may not look like a leak; the field is what matters here.
    let kind = value["leak"]["verdict"]["kind"].as_str().unwrap();
    assert!(
        ["no_leak", "suspected", "not_enough_cycles"].contains(&kind),
        "{kind}"
    );
    assert!(value["phases"][0]["kind"].is_string());
    let profile_back: Profile =
        serde_json::from_str(&serde_json::to_string(&profile).unwrap()).unwrap();
    assert_eq!(profile_back, profile);
}

#[test]
fn write_all_writes_three_files() {
    let (_, report) = sample_run();
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("nested").join("run-1");
    let paths = report.write_all(&out).unwrap();
    let text = std::fs::read_to_string(&paths.text).unwrap();
    assert!(text.contains("masp memory report") && text.contains("leak"));
    assert!(text.contains("whisper <tiny> & co"));
    let json = std::fs::read_to_string(&paths.json).unwrap();
    assert_eq!(serde_json::from_str::<Report>(&json).unwrap(), report);
    assert!(
        std::fs::read_to_string(&paths.svg)
            .unwrap()
            .starts_with("<svg")
    );
}

#[test]
fn write_all_names_the_path_it_cannot_write() {
    let (_, report) = sample_run();
    let dir = tempfile::tempdir().unwrap();
    let blocker = dir.path().join("file");
    std::fs::write(&blocker, "not a directory").unwrap();
    let err = report.write_all(&blocker.join("sub")).unwrap_err();
    assert!(err.to_string().contains("file"), "{err}");
}
