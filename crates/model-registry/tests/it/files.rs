//! Issue #20 classes 3, 6 and 7 in the registry: files from outside are opened only when
//! regular and never waited on; the calibration store loses nothing to concurrent writers and
//! is never torn.

use std::path::{Path, PathBuf};

use masp_budget::Bytes;
use masp_model_registry::estimate::CalibrationStore;
use masp_model_registry::file::{Links, NotRegularFile, open_regular, read_regular};
use masp_model_registry::manifest::Registry;
use masp_model_registry::onnx::OnnxMetadata;
use masp_model_registry::{Error, assets};
use masp_testkit::hostile::{mkfifo, or_hang};

/// A FIFO, a socket, a character device, a directory and a link to a FIFO, with the kind each
/// must be reported as.
fn special_files(
    dir: &Path,
) -> (
    Vec<(PathBuf, &'static str)>,
    std::os::unix::net::UnixListener,
) {
    let fifo = mkfifo(&dir.join("fifo"));
    let link = dir.join("link-to-fifo");
    std::os::unix::fs::symlink(&fifo, &link).unwrap();
    let socket = dir.join("socket");
    let listener = std::os::unix::net::UnixListener::bind(&socket).unwrap();
    std::fs::create_dir(dir.join("folder")).unwrap();
    let cases = vec![
        (fifo, "FIFO"),
        (link, "FIFO"),
        (socket, "socket"),
        (PathBuf::from("/dev/zero"), "character device"),
        (dir.join("folder"), "directory"),
    ];
    (cases, listener)
}

#[test]
fn open_regular_refuses_every_special_file_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let (cases, _listener) = special_files(dir.path());
    for (path, kind) in cases {
        let shown = path.display().to_string();
        let err = or_hang(&shown, move || {
            open_regular(&path, Links::Follow).unwrap_err()
        });
        assert_eq!(
            NotRegularFile::of(&err).map(|e| e.kind),
            Some(kind),
            "{shown}: {err}"
        );
    }
    // Refusing links: a link to a regular file is refused as a symlink, the file itself is not.
    let file = dir.path().join("plain");
    std::fs::write(&file, b"x").unwrap();
    let link = dir.path().join("link-to-plain");
    std::os::unix::fs::symlink(&file, &link).unwrap();
    assert!(open_regular(&file, Links::Refuse).is_ok());
    assert!(open_regular(&link, Links::Follow).is_ok());
    let err = open_regular(&link, Links::Refuse).unwrap_err();
    assert_eq!(NotRegularFile::of(&err).map(|e| e.kind), Some("symlink"));
    // The descriptor is blocking again: reading a regular file behaves as usual.
    assert_eq!(read_regular(&file, Links::Follow, 1).unwrap(), b"x");
    let err = read_regular(&file, Links::Follow, 0).unwrap_err();
    assert_eq!(err.to_string(), "larger than 0 bytes");
}

#[test]
fn manifests_models_and_the_calibration_store_refuse_special_files() {
    let dir = tempfile::tempdir().unwrap();
    let (cases, _listener) = special_files(dir.path());
    for (path, kind) in cases {
        let expected = format!("not a regular file (a {kind})");
        let p = path.clone();
        let manifest = or_hang("manifest", move || Registry::builtin().add_manifest(&p));
        let message = manifest.unwrap_err().to_string();
        assert!(message.contains(&expected), "{message}");
        assert!(message.contains(&path.display().to_string()), "{message}");
        let p = path.clone();
        let model = or_hang("model", move || OnnxMetadata::read(&p).map(|_| ()));
        let message = model.unwrap_err().to_string();
        assert!(message.contains(&expected), "{message}");
        let p = path.clone();
        let sha = or_hang("sha256", move || assets::sha256_file(&p));
        assert!(matches!(sha, Err(Error::Io { .. })), "{sha:?}");
        let p = path.clone();
        let store = or_hang("calibration", move || {
            CalibrationStore::open(&p).map(|_| ())
        });
        let message = store.unwrap_err().to_string();
        assert!(message.contains("not a regular file"), "{message}");
    }
}

/// A load of `key` by writer `w` in round `round`, with figures that say who wrote them.
fn record(store: &mut CalibrationStore, key: &str, w: u64, round: u64) {
    let mib = Bytes::from_mib(1 + w * 100 + round);
    store.record_load(key, mib, mib, mib, false);
    store.record_task(key, 16_000, mib);
}

#[test]
fn concurrent_calibration_updates_lose_nothing_and_never_tear() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("calibration.json");
    let n_writers = 8u64;
    let n_rounds = 6u64;
    let done = std::sync::atomic::AtomicBool::new(false);
    std::thread::scope(|s| {
        // A reader all along: every version of the file it sees is whole JSON.
        let reader = s.spawn(|| {
            let mut n_reads = 0u64;
            while !done.load(std::sync::atomic::Ordering::Relaxed) {
                if let Ok(bytes) = std::fs::read(&path) {
                    serde_json::from_slice::<serde_json::Value>(&bytes)
                        .unwrap_or_else(|e| panic!("torn calibration store: {e}"));
                    n_reads += 1;
                }
            }
            n_reads
        });
        let writers: Vec<_> = (0..n_writers)
            .map(|w| {
                let path = &path;
                // Each writer opens its own store (its own descriptors, as a process would),
                // records into a shared key and its own, and saves each round.
                s.spawn(move || {
                    for round in 0..n_rounds {
                        let mut store = CalibrationStore::open(path).unwrap();
                        record(&mut store, "shared@1", w, round);
                        record(&mut store, &format!("own-{w}@1"), w, round);
                        store.save().unwrap();
                        // Saved measurements are not replayed twice.
                        store.save().unwrap();
                    }
                })
            })
            .collect();
        for w in writers {
            w.join().unwrap();
        }
        done.store(true, std::sync::atomic::Ordering::Relaxed);
        assert!(reader.join().unwrap() > 0, "the reader never saw the file");
    });
    let store = CalibrationStore::open(&path).unwrap();
    assert_eq!(store.models["shared@1"].n_loads, n_writers * n_rounds);
    for w in 0..n_writers {
        let own = &store.models[&format!("own-{w}@1")];
        assert_eq!(own.n_loads, n_rounds, "writer {w} lost loads");
    }
    let leftovers: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| {
            n.ends_with(masp_model_registry::atomic::TEMP_SUFFIX) || n.ends_with(".corrupt")
        })
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
}
