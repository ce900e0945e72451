//! Issue #20 classes 3 and 6 in run directories: special files are refused at once, the
//! temporary-file cleanup never follows a link, and one run directory has one writer.

use std::path::{Path, PathBuf};

use masp_run::Error;
use masp_run::job::Job;
use masp_run::journal::{self, JOURNAL_FILE, Journal, TEMP_SUFFIX};
use masp_run::lock::{LOCK_FILE, RunLock};
use masp_run::pipeline::Pipeline;
use masp_run::run_dir::RunDir;
use masp_testkit::hostile::{mkfifo, or_hang};

fn symlink(target: &Path, link: &Path) {
    std::os::unix::fs::symlink(target, link).unwrap();
}

/// Puts something that is not a regular file where the journal goes.
type MakeJournal = Box<dyn Fn(&Path)>;

#[test]
fn a_journal_that_is_not_a_regular_file_is_refused_at_once() {
    let outside = tempfile::tempdir().unwrap();
    let secret = outside.path().join("secret.txt");
    std::fs::write(&secret, b"not masp's").unwrap();
    let cases: Vec<(&str, MakeJournal)> = vec![
        ("FIFO", Box::new(|p: &Path| drop(mkfifo(p)))),
        ("symlink", Box::new(move |p: &Path| symlink(&secret, p))),
        (
            "directory",
            Box::new(|p: &Path| std::fs::create_dir(p).unwrap()),
        ),
    ];
    for (kind, make) in cases {
        let dir = tempfile::tempdir().unwrap();
        make(&dir.path().join(JOURNAL_FILE));
        let run = dir.path().to_path_buf();
        let err = or_hang(kind, move || Journal::open(&run).unwrap_err());
        let message = err.to_string();
        assert!(
            message.contains(JOURNAL_FILE)
                && message.contains(&format!("not a regular file (a {kind})")),
            "{kind}: {message}"
        );
        // RunDir opens through the journal: refused the same way, and the lock is released.
        let run = dir.path().to_path_buf();
        assert!(or_hang(kind, move || RunDir::open(&run).is_err()));
        assert!(!dir.path().join(LOCK_FILE).exists());
    }
    assert_eq!(
        std::fs::read(outside.path().join("secret.txt")).unwrap(),
        b"not masp's"
    );
}

#[test]
fn records_pipeline_files_and_shard_manifests_that_are_fifos_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    // A pipeline file that is a FIFO, and one that is /dev/zero (which never ends).
    let fifo = mkfifo(&dir.path().join("pipeline.toml"));
    for path in [fifo, PathBuf::from("/dev/zero")] {
        let shown = path.display().to_string();
        let err = or_hang(&shown, move || Pipeline::read(&path).unwrap_err());
        assert!(
            matches!(&err, Error::Malformed { reason, .. } if reason.starts_with("not a regular file")),
            "{shown}: {err}"
        );
    }
    // A run directory record that is a FIFO, and one that is a link out of the directory.
    let run_path = dir.path().join("run");
    let run = RunDir::open(&run_path).unwrap();
    let job = Job::new(Path::new("a.wav"));
    mkfifo(&run.vad_path(&job));
    let err = run.read_vad(&job).unwrap_err().to_string();
    assert!(err.contains("not a regular file (a FIFO)"), "{err}");
    std::fs::write(dir.path().join("outside.json"), b"{}").unwrap();
    symlink(&dir.path().join("outside.json"), &run.embeddings_path(&job));
    let err = run.read_embeddings(&job).unwrap_err().to_string();
    assert!(err.contains("not a regular file (a symlink)"), "{err}");
    drop(run);
    // A shard whose shard.json is a FIFO: merge refuses it instead of waiting.
    let shard = dir.path().join("shard");
    std::fs::create_dir(&shard).unwrap();
    mkfifo(&shard.join("shard.json"));
    let out = dir.path().join("merged");
    let err = or_hang("merge", move || {
        masp_run::shard::merge(&[shard], &out).unwrap_err()
    });
    assert!(
        err.to_string().contains("not a regular file (a FIFO)"),
        "{err}"
    );
}

#[test]
fn the_cleanup_never_follows_links_nor_deletes_outside_the_run_directory() {
    let outside = tempfile::tempdir().unwrap();
    let victim = outside.path().join(format!("x{TEMP_SUFFIX}"));
    std::fs::write(&victim, b"someone else's").unwrap();
    let dir = tempfile::tempdir().unwrap();
    let run = dir.path();
    // Two links to the directory itself: followed, the walk would be 2^depth paths.
    symlink(Path::new("."), &run.join("a"));
    symlink(Path::new("."), &run.join("b"));
    // A link to a directory outside, holding a file with a temporary's name.
    symlink(outside.path(), &run.join("elsewhere"));
    // A link with a temporary's name, pointing at a file outside: the file stays.
    symlink(&victim, &run.join(format!("link{TEMP_SUFFIX}")));
    // Real leftovers: at the top, in a stage directory, and too deep to be ours.
    std::fs::write(run.join(format!(".r.json.1-0{TEMP_SUFFIX}")), b"partial").unwrap();
    std::fs::create_dir(run.join("stage")).unwrap();
    std::fs::write(
        run.join(format!("stage/.s.npy.1-1{TEMP_SUFFIX}")),
        b"partial",
    )
    .unwrap();
    let mut deep = run.to_path_buf();
    for i in 0..=journal::MAX_WALK_DEPTH {
        deep.push(format!("d{i}"));
    }
    std::fs::create_dir_all(&deep).unwrap();
    let too_deep = deep.join(format!("t{TEMP_SUFFIX}"));
    std::fs::write(&too_deep, b"x").unwrap();
    let path = run.to_path_buf();
    let removed = or_hang("cleanup", move || journal::remove_temporaries(&path));
    assert_eq!(removed, 2);
    assert_eq!(std::fs::read(&victim).unwrap(), b"someone else's");
    assert!(
        run.join(format!("link{TEMP_SUFFIX}"))
            .symlink_metadata()
            .is_ok()
    );
    assert!(too_deep.exists(), "walked deeper than MAX_WALK_DEPTH");
    // RunDir::open runs the same cleanup.
    std::fs::write(run.join(format!(".q.json.1-2{TEMP_SUFFIX}")), b"partial").unwrap();
    let path = run.to_path_buf();
    let opened = or_hang("open", move || RunDir::open(&path).map(|r| r.leftovers()));
    assert_eq!(opened.unwrap(), 1);
    assert_eq!(std::fs::read(&victim).unwrap(), b"someone else's");
}

/// A configuration hash as shards record it (`shard.json` checks it is one).
const CONFIG: &str = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

#[test]
fn a_run_directory_has_one_writer_and_the_error_names_it() {
    let dir = tempfile::tempdir().unwrap();
    let run = dir.path().join("out");
    let first = RunDir::open(&run).unwrap();
    let pid = std::process::id();
    let expected = format!(
        "run directory {} is in use by another masp (pid {pid}); wait for it to finish or use \
         another --out",
        run.display()
    );
    // Every way into the directory is refused while it is held: RunDir, Journal, a merge
    // into it, a bare lock.
    let err = RunDir::open(&run).unwrap_err();
    assert!(
        matches!(err, Error::InUse { pid: Some(p), .. } if p == pid),
        "{err:?}"
    );
    assert_eq!(err.to_string(), expected);
    assert_eq!(Journal::open(&run).unwrap_err().to_string(), expected);
    assert_eq!(RunLock::acquire(&run).unwrap_err().to_string(), expected);
    let shard = dir.path().join("shard");
    let only = masp_run::shard::Shard::new(0, 1).unwrap();
    masp_run::shard::ShardRun::start(&shard, "run", CONFIG, only, &[])
        .unwrap()
        .finish(&Default::default())
        .unwrap();
    let merged = masp_run::shard::merge(std::slice::from_ref(&shard), &run);
    assert_eq!(merged.unwrap_err().to_string(), expected);
    // A shard manifest is not replaced under another run; this process's own run may write
    // it (the CLI opens the run directory before or after starting the shard).
    let all = [PathBuf::from("a.wav")];
    let shard_start = || masp_run::shard::ShardRun::start(&run, "run", CONFIG, only, &all);
    assert!(shard_start().is_ok(), "this process holds the lock");
    let holder = std::fs::read_to_string(run.join(LOCK_FILE)).unwrap();
    std::fs::write(run.join(LOCK_FILE), b"1\n").unwrap(); // now "held by pid 1"
    let err = shard_start().unwrap_err();
    assert!(matches!(err, Error::InUse { pid: Some(1), .. }), "{err:?}");
    std::fs::write(run.join(LOCK_FILE), holder).unwrap();
    // The holder's pid is in the lock file while it holds it; the file goes with the lock.
    let text = std::fs::read_to_string(run.join(LOCK_FILE)).unwrap();
    assert_eq!(text.trim(), pid.to_string());
    drop(first);
    assert!(!run.join(LOCK_FILE).exists());
    let again = RunDir::open(&run).unwrap();
    drop(again);
    // The merge that was refused goes through once the directory is free.
    assert!(masp_run::shard::merge(&[shard], &run).is_ok());
    assert!(!run.join(LOCK_FILE).exists());
    // A lock file left by a killed run (no holder) does not block.
    std::fs::write(run.join(LOCK_FILE), b"999999\n").unwrap();
    assert!(RunDir::open(&run).is_ok());
}

#[test]
fn concurrent_openers_of_one_run_directory_get_it_one_at_a_time() {
    let dir = tempfile::tempdir().unwrap();
    let run = dir.path().join("out");
    std::fs::create_dir(&run).unwrap();
    let holders = std::sync::atomic::AtomicUsize::new(0);
    let most = std::sync::atomic::AtomicUsize::new(0);
    let n_held = std::sync::atomic::AtomicUsize::new(0);
    std::thread::scope(|s| {
        for _ in 0..8 {
            s.spawn(|| {
                for _ in 0..50 {
                    match RunLock::acquire(&run) {
                        Ok(lock) => {
                            let now = holders.fetch_add(1, std::sync::atomic::Ordering::SeqCst) + 1;
                            most.fetch_max(now, std::sync::atomic::Ordering::SeqCst);
                            n_held.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                            std::thread::yield_now();
                            holders.fetch_sub(1, std::sync::atomic::Ordering::SeqCst);
                            drop(lock);
                        }
                        Err(Error::InUse { .. }) => {}
                        Err(e) => panic!("{e}"),
                    }
                }
            });
        }
    });
    assert_eq!(most.into_inner(), 1, "two holders at once");
    assert!(n_held.into_inner() > 0);
}
