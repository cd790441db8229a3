//! Persistence (feature `persist`): the file protocol, errors that name file,
//! line and field, recovery from the backup, reload, and a crash test that
//! SIGKILLs a committing child process at random moments.

use std::fs;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use unlocked::config::{ConfigStore, OpenError, PersistErrorKind, UpdateError};

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
struct App {
    port: u16,
    name: String,
    counter: u64,
}

fn app() -> App {
    App {
        port: 8080,
        name: "svc".into(),
        counter: 0,
    }
}

fn bump(store: &ConfigStore<App>) -> u64 {
    store
        .update(|a| -> Result<(), ()> {
            a.counter += 1;
            Ok(())
        })
        .unwrap()
        .get()
}

/// The version and counter in the file at `path`, read without the store.
fn on_disk(path: &Path) -> (u64, u64) {
    let v: serde_json::Value = serde_json::from_slice(&fs::read(path).unwrap())
        .unwrap_or_else(|e| panic!("{} does not parse: {e}", path.display()));
    (
        v["version"].as_u64().unwrap(),
        v["config"]["counter"].as_u64().unwrap(),
    )
}

fn names(dir: &Path) -> Vec<String> {
    let mut n: Vec<String> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    n.sort();
    n
}

#[test]
fn open_creates_the_file_and_a_reopened_store_continues_its_version() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("app.json");
    let store = ConfigStore::open(&path, app()).unwrap();
    assert_eq!(on_disk(&path), (1, 0));
    assert_eq!(bump(&store), 2);
    assert_eq!(bump(&store), 3);
    assert_eq!(on_disk(&path), (3, 2));
    // The previous good file is kept beside it.
    assert_eq!(on_disk(&dir.path().join("app.json.bak")), (2, 1));
    drop(store);
    let store = ConfigStore::open(&path, app()).unwrap();
    assert_eq!(store.load().version().get(), 3);
    assert_eq!(store.load().counter, 2);
    assert_eq!(bump(&store), 4);
    assert_eq!(names(dir.path()), ["app.json", "app.json.bak"]);
}

#[test]
fn a_wrong_field_names_file_line_and_field_and_leaves_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("app.json");
    let text = "{\n  \"version\": 4,\n  \"config\": {\n    \"port\": \"eighty\",\n    \"name\": \"x\",\n    \"counter\": 0\n  }\n}\n";
    fs::write(&path, text).unwrap();
    let err = ConfigStore::open(&path, app()).unwrap_err();
    let OpenError::Persist(e) = &err else {
        panic!("expected a parse error, got {err:?}")
    };
    assert_eq!(e.kind(), PersistErrorKind::Parse);
    assert_eq!(e.path(), path);
    assert_eq!(e.line(), Some(4));
    assert_eq!(e.field(), Some("config.port"));
    let msg = err.to_string();
    assert!(
        msg.contains("app.json:4:") && msg.contains("config.port"),
        "{msg}"
    );
    assert_eq!(fs::read_to_string(&path).unwrap(), text);
}

#[test]
fn truncated_json_and_garbage_are_clear_errors() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("app.json");
    for bytes in [
        &b"{\n  \"version\": 2,\n  \"config\": {\"port\": 1"[..],
        b"\xff\xfe garbage",
        b"",
        b"{\"version\": 0, \"config\": {\"port\": 1, \"name\": \"\", \"counter\": 0}}",
        b"{\"version\": 1, \"config\": {\"port\": 1, \"name\": \"\", \"counter\": 0}} trailing",
    ] {
        fs::write(&path, bytes).unwrap();
        let err = ConfigStore::open(&path, app()).unwrap_err();
        let OpenError::Persist(e) = &err else {
            panic!("expected a parse error, got {err:?}")
        };
        assert_eq!(e.kind(), PersistErrorKind::Parse, "{err}");
        assert!(err.to_string().contains("app.json"), "{err}");
        // A field is named only when one is known (no `.` or `?` parts).
        if let Some(field) = e.field() {
            assert!(!field.contains('?') && field != ".", "{err}");
        }
        assert_eq!(fs::read(&path).unwrap(), bytes);
    }
    fs::write(&path, b"").unwrap();
    let err = ConfigStore::open(&path, app()).unwrap_err();
    let OpenError::Persist(e) = &err else {
        panic!("{err:?}")
    };
    assert_eq!(e.field(), None, "an empty file has no field: {err}");
    fs::write(&path, b"{\"version\": 1, \"config\": {\"port\": 1,, }}").unwrap();
    let err = ConfigStore::open(&path, app()).unwrap_err();
    let OpenError::Persist(e) = &err else {
        panic!("{err:?}")
    };
    assert_eq!(e.field(), Some("config"), "{err}");
    assert_eq!(e.line(), Some(1), "{err}");
}

#[test]
fn an_invalid_file_is_refused_untouched() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("app.json");
    let text = r#"{"version": 9, "config": {"port": 0, "name": "x", "counter": 0}}"#;
    fs::write(&path, text).unwrap();
    let err = ConfigStore::builder(app())
        .validator(|a: &App| if a.port != 0 { Ok(()) } else { Err("port 0") })
        .open(&path)
        .unwrap_err();
    assert!(matches!(err, OpenError::Invalid { .. }), "{err:?}");
    assert!(err.to_string().contains("port 0") && err.to_string().contains("app.json"));
    assert_eq!(fs::read_to_string(&path).unwrap(), text);
}

#[test]
fn open_or_recover_falls_back_to_the_backup() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("app.json");
    let store = ConfigStore::open(&path, app()).unwrap();
    bump(&store);
    bump(&store);
    drop(store);
    fs::write(&path, "{ broken").unwrap();
    assert!(ConfigStore::open(&path, app()).is_err());
    let (store, why) = ConfigStore::open_or_recover(&path, app()).unwrap();
    assert!(why.unwrap().to_string().contains("app.json"));
    assert_eq!((store.load().version().get(), store.load().counter), (2, 1));
    assert_eq!(
        fs::read_to_string(dir.path().join("app.json.corrupt")).unwrap(),
        "{ broken"
    );
    assert_eq!(on_disk(&path), (2, 1));
    assert_eq!(bump(&store), 3);
    // No good backup: the error comes back and nothing is touched.
    drop(store);
    fs::write(&path, "{ broken").unwrap();
    fs::write(dir.path().join("app.json.bak"), "also broken").unwrap();
    assert!(ConfigStore::open_or_recover(&path, app()).is_err());
    assert_eq!(fs::read_to_string(&path).unwrap(), "{ broken");
}

#[test]
fn stale_temp_files_are_removed_at_open() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("app.json");
    drop(ConfigStore::open(&path, app()).unwrap());
    fs::write(dir.path().join("app.json.tmp.12345"), "half").unwrap();
    fs::write(dir.path().join("app.json.tmp.bak"), "half").unwrap();
    fs::write(dir.path().join("app.json.tmp.12345.bak"), "half").unwrap();
    fs::write(dir.path().join("app.json.tmp.x.bak"), "the user's").unwrap();
    fs::write(dir.path().join("other.tmp.1"), "not ours").unwrap();
    fs::write(dir.path().join("app.json.tmpl"), "the user's").unwrap();
    fs::write(dir.path().join("app.json.tmp.notes"), "the user's").unwrap();
    drop(ConfigStore::open(&path, app()).unwrap());
    assert_eq!(
        names(dir.path()),
        [
            "app.json",
            "app.json.tmp.notes",
            "app.json.tmp.x.bak",
            "app.json.tmpl",
            "other.tmp.1"
        ]
    );
}

/// A file at the last version number opens, and an update is refused with
/// a clear error that changes nothing (the file still opens).
#[test]
fn the_last_version_number_refuses_updates_and_keeps_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("app.json");
    let text = format!(
        r#"{{"version": {}, "config": {{"port": 1, "name": "x", "counter": 0}}}}"#,
        u64::MAX
    );
    fs::write(&path, &text).unwrap();
    let store = ConfigStore::open(&path, app()).unwrap();
    assert_eq!(store.load().version().get(), u64::MAX);
    let err = store
        .update(|a| -> Result<(), String> {
            a.counter += 1;
            Ok(())
        })
        .unwrap_err();
    assert!(matches!(err, UpdateError::VersionsExhausted), "{err:?}");
    assert!(err.to_string().contains("u64::MAX"), "{err}");
    assert_eq!(store.load().counter, 0);
    assert_eq!(fs::read_to_string(&path).unwrap(), text);
    drop(store);
    assert!(ConfigStore::open(&path, app()).is_ok());
}

#[test]
fn reload_validates_first_and_keeps_the_old_config() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("app.json");
    let store = ConfigStore::builder(app())
        .validator(|a: &App| if a.port != 0 { Ok(()) } else { Err("port 0") })
        .open(&path)
        .unwrap();
    let mut sub = store.subscribe();
    fs::write(
        &path,
        r#"{"version": 1, "config": {"port": 9000, "name": "edited", "counter": 0}}"#,
    )
    .unwrap();
    assert_eq!(store.reload().unwrap().get(), 2);
    assert_eq!(store.load().port, 9000);
    assert_eq!(sub.try_changed().unwrap().name, "edited");
    assert_eq!(on_disk(&path).0, 2);

    let bad = r#"{"version": 1, "config": {"port": 0, "name": "bad", "counter": 0}}"#;
    fs::write(&path, bad).unwrap();
    assert!(matches!(store.reload(), Err(UpdateError::Invalid(_))));
    fs::write(&path, "{").unwrap();
    assert!(matches!(store.reload(), Err(UpdateError::Persist(_))));
    assert_eq!((store.load().port, store.load().version().get()), (9000, 2));
    assert!(sub.try_changed().is_none());
    // The next commit replaces the bad file but does not make it the backup.
    assert_eq!(bump(&store), 3);
    let backup = fs::read_to_string(dir.path().join("app.json.bak")).unwrap();
    assert!(backup.contains("edited"), "{backup}");

    let mem = ConfigStore::new(app());
    assert!(
        matches!(mem.reload(), Err(UpdateError::Persist(e)) if e.kind() == PersistErrorKind::NotPersistent)
    );
}

#[test]
fn a_failed_write_changes_nothing_in_memory() {
    let dir = tempfile::tempdir().unwrap();
    let sub_dir = dir.path().join("gone");
    fs::create_dir(&sub_dir).unwrap();
    let path = sub_dir.join("app.json");
    let store = ConfigStore::open(&path, app()).unwrap();
    fs::remove_dir_all(&sub_dir).unwrap();
    let err = store
        .update(|a| -> Result<(), ()> {
            a.counter = 100;
            Ok(())
        })
        .unwrap_err();
    let UpdateError::Persist(e) = &err else {
        panic!("expected a persistence error, got {err:?}")
    };
    assert_eq!(e.kind(), PersistErrorKind::Io);
    assert!(e.to_string().contains("gone"), "{e}");
    assert_eq!((store.load().counter, store.load().version().get()), (0, 1));
}

#[cfg(feature = "toml")]
#[test]
fn toml_files_round_trip_and_name_the_line() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("app.toml");
    let store = ConfigStore::open(&path, app()).unwrap();
    bump(&store);
    drop(store);
    let text = fs::read_to_string(&path).unwrap();
    assert!(text.contains("version = 2"), "{text}");
    assert_eq!(ConfigStore::open(&path, app()).unwrap().load().counter, 1);
    fs::write(
        &path,
        "version = 1\n\n[config]\nport = \"x\"\nname = \"a\"\ncounter = 0\n",
    )
    .unwrap();
    let err = ConfigStore::open(&path, app()).unwrap_err();
    let OpenError::Persist(e) = &err else {
        panic!("{err:?}")
    };
    assert_eq!(
        (e.line(), e.field()),
        (Some(4), Some("config.port")),
        "{err}"
    );
}

/// The field a missing-field error names.
fn missing_field_named(path: &std::path::Path, text: &str) -> Option<String> {
    fs::write(path, text).unwrap();
    let err = ConfigStore::open(path, app()).unwrap_err();
    let OpenError::Persist(e) = &err else {
        panic!("expected a parse error, got {err:?}")
    };
    assert_eq!(e.kind(), PersistErrorKind::Parse, "{err}");
    assert_eq!(fs::read_to_string(path).unwrap(), text, "the file is left");
    e.field().map(str::to_owned)
}

/// A missing field is named itself, not by the table that lacks it (found
/// in review: `config.port` came out as `config`, and a missing `version`
/// named no field).
#[test]
fn a_missing_field_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("app.json");
    let no_port = "{\"version\": 3, \"config\": {\"name\": \"a\", \"counter\": 0}}";
    assert_eq!(
        missing_field_named(&path, no_port).as_deref(),
        Some("config.port")
    );
    let no_version = "{\"config\": {\"port\": 1, \"name\": \"a\", \"counter\": 0}}";
    assert_eq!(
        missing_field_named(&path, no_version).as_deref(),
        Some("version")
    );
    #[cfg(feature = "toml")]
    {
        let path = dir.path().join("app.toml");
        let no_port = "version = 3\n\n[config]\nname = \"a\"\ncounter = 0\n";
        assert_eq!(
            missing_field_named(&path, no_port).as_deref(),
            Some("config.port")
        );
    }
}

// ---------------------------------------------------------------------------
// Crash test
// ---------------------------------------------------------------------------

/// Set in the child: the file it commits to.
const CHILD_ENV: &str = "UNLOCKED_CONFIG_CRASH_CHILD";

/// The child's body: a no-op in a normal run. In the child it opens the
/// file and commits forever, printing each acknowledged version.
#[test]
fn crash_child() {
    let Some(path) = std::env::var_os(CHILD_ENV) else {
        return;
    };
    let store = ConfigStore::open(PathBuf::from(path), app()).unwrap();
    let mut out = std::io::stdout();
    loop {
        let v = bump(&store);
        // Straight to the pipe (not through the test harness's capture),
        // flushed before the next commit starts.
        writeln!(out, "ack {v}").unwrap();
        out.flush().unwrap();
    }
}

/// A small deterministic generator for kill times (`SEED` replays).
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

/// Kills a committing child `kills` times at random moments; after each
/// kill the file parses and holds the last acknowledged version or the one
/// after it, with the matching contents.
fn crash_test(kills: usize) {
    let seed = std::env::var("SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0x5eed_c0ff_ee12_3457u64);
    eprintln!("crash test: {kills} kills, SEED={seed}");
    let mut rng = Rng(seed | 1);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("app.json");
    drop(ConfigStore::open(&path, app()).unwrap());
    let mut last = 1u64;
    let (mut acked_rounds, mut unacked_next) = (0, 0);
    for round in 0..kills {
        let mut child = Command::new(std::env::current_exe().unwrap())
            .args([
                "--exact",
                "persist::crash_child",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(CHILD_ENV, &path)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        std::thread::sleep(Duration::from_micros(2_000 + rng.next() % 30_000));
        child.kill().unwrap(); // SIGKILL on Unix
        let mut out = String::new();
        child
            .stdout
            .take()
            .unwrap()
            .read_to_string(&mut out)
            .unwrap();
        child.wait().unwrap();
        let acks: Vec<u64> = out
            .lines()
            // The harness's "test persist::crash_child ... " has no
            // newline: the first ack may follow it on the same line.
            .filter_map(|l| l.find("ack ").map(|i| &l[i + 4..]))
            .map(|v| v.parse().unwrap())
            .collect();
        if let Some(&a) = acks.last() {
            assert!(a > last, "round {round}: acks go forward");
            last = a;
            acked_rounds += 1;
        }
        let (version, counter) = on_disk(&path);
        assert!(
            version == last || version == last + 1,
            "round {round}: file holds v{version}, last acknowledged v{last}"
        );
        assert_eq!(
            counter + 1,
            version,
            "round {round}: contents match the version"
        );
        if version == last + 1 {
            unacked_next += 1;
        }
        last = version;
    }
    let store = ConfigStore::open(&path, app()).unwrap();
    assert_eq!(store.load().version().get(), last);
    assert_eq!(names(dir.path()), ["app.json", "app.json.bak"]);
    eprintln!(
        "crash test: {kills} kills, {acked_rounds} with acknowledged commits, \
         {unacked_next} caught between the rename and the ack, final version {last}"
    );
}

#[test]
#[cfg_attr(not(unix), ignore = "SIGKILL is Unix")]
fn crash_test_quick() {
    crash_test(10);
}

#[test]
#[ignore = "stress: 200 kills"]
fn crash_test_200_kills() {
    crash_test(200);
}

/// A value the format writes but cannot read back (serde_json writes NaN
/// and the infinities as `null`) is refused before anything is written: an
/// acknowledged update whose file would not reopen is a lost version (found
/// in review: `open` then failed, and `open_or_recover` fell back to the
/// backup).
#[test]
fn a_value_that_would_not_read_back_is_refused_and_changes_nothing() {
    #[derive(Clone, Debug, Serialize, Deserialize)]
    struct Ratio {
        ratio: f64,
    }
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("f.json");
    let store = ConfigStore::open(&path, Ratio { ratio: 1.0 }).unwrap();
    let before = fs::read(&path).unwrap();
    for bad in [f64::NAN, f64::INFINITY] {
        let err = store
            .update(|f| -> Result<(), ()> {
                f.ratio = bad;
                Ok(())
            })
            .unwrap_err();
        assert!(
            matches!(&err, UpdateError::Persist(e) if e.kind() == PersistErrorKind::Encode),
            "{err:?}"
        );
    }
    assert_eq!(names(dir.path()), ["f.json"]);
    assert_eq!(fs::read(&path).unwrap(), before);
    assert_eq!(store.load().version().get(), 1);
    drop(store);
    assert_eq!(
        ConfigStore::open(&path, Ratio { ratio: 0.0 })
            .unwrap()
            .load()
            .ratio,
        1.0
    );
    // A default that would not read back is refused at open: no file.
    let fresh = dir.path().join("g.json");
    assert!(ConfigStore::open(&fresh, Ratio { ratio: f64::NAN }).is_err());
    assert!(!fresh.exists());
}

/// A commit refused because the backup could not be kept leaves the folder
/// as it was (found in review: the temp link `NAME.tmp.bak` stayed).
#[test]
fn a_refused_backup_leaves_no_temp_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("app.json");
    let store = ConfigStore::open(&path, app()).unwrap();
    // A non-empty folder where the backup goes: the rename onto it fails.
    let backup = dir.path().join("app.json.bak");
    fs::create_dir(&backup).unwrap();
    fs::write(backup.join("x"), "x").unwrap();
    let before = fs::read(&path).unwrap();
    let err = store
        .update(|a| -> Result<(), ()> {
            a.counter += 1;
            Ok(())
        })
        .unwrap_err();
    assert!(matches!(err, UpdateError::Persist(_)), "{err:?}");
    assert_eq!(names(dir.path()), ["app.json", "app.json.bak"]);
    assert_eq!(fs::read(&path).unwrap(), before);
    assert_eq!(store.load().version().get(), 1);
}

/// A commit keeps the file's permissions: a file only its owner may read
/// stays so (found in review: the temp file's default mode replaced it).
#[cfg(unix)]
#[test]
fn a_commit_keeps_the_files_permissions() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("app.json");
    let store = ConfigStore::open(&path, app()).unwrap();
    fs::set_permissions(&path, fs::Permissions::from_mode(0o600)).unwrap();
    bump(&store);
    bump(&store);
    let mode = fs::metadata(&path).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600, "mode {mode:o}");
}

/// Two stores on one file in one process (two parts of a program that each
/// open it): their commits race, and the file must never be torn or
/// unreadable, nor a commit fail for the other's temp file. Before, both
/// wrote `NAME.tmp.PID`: one truncated the other's half-written temp file,
/// whose rename then installed a torn file (or failed: file not found).
#[test]
fn two_stores_on_one_file_never_tear_it() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("app.json");
    let a = ConfigStore::open(&path, app()).unwrap();
    let b = ConfigStore::open(&path, app()).unwrap();
    let big = "x".repeat(64 * 1024);
    std::thread::scope(|s| {
        for store in [&a, &b] {
            let big = big.clone();
            s.spawn(move || {
                for i in 0..100 {
                    store
                        .update(|c| -> Result<(), ()> {
                            c.counter += 1;
                            c.name = format!("{i}{big}");
                            Ok(())
                        })
                        .expect("a commit of one store is not broken by the other's");
                }
            });
        }
    });
    // The file is whole: one of the two stores' last commits.
    let (version, counter) = on_disk(&path);
    assert_eq!((version, counter), (101, 100));
    assert_eq!(names(dir.path()), ["app.json", "app.json.bak"]);
    drop((a, b));
    ConfigStore::open(&path, app()).expect("the file reopens");
}

/// A file reached through a symbolic link (a shared file, a Kubernetes
/// `ConfigMap` mount) is updated where it lives, and the link stays a
/// link; before, the rename replaced the link with a copy that nothing
/// else read, and the shared file never changed. Relative, chained and
/// dangling links resolve too.
#[cfg(unix)]
#[test]
fn a_linked_file_is_updated_through_the_link() {
    let dir = tempfile::tempdir().unwrap();
    let shared = dir.path().join("shared");
    fs::create_dir(&shared).unwrap();
    let target = shared.join("app.json");
    drop(ConfigStore::open(&target, app()).unwrap());
    let link = dir.path().join("app.json");
    std::os::unix::fs::symlink("shared/app.json", &link).unwrap();
    let chain = dir.path().join("current.json");
    std::os::unix::fs::symlink(&link, &chain).unwrap();

    for path in [&link, &chain] {
        let store = ConfigStore::open(path, app()).unwrap();
        bump(&store);
        assert!(fs::symlink_metadata(path).unwrap().file_type().is_symlink());
    }
    assert_eq!(on_disk(&target), (3, 2));
    assert_eq!(names(&shared), ["app.json", "app.json.bak"]);
    assert_eq!(names(dir.path()), ["app.json", "current.json", "shared"]);

    // A dangling link: the file is created where it points.
    let dangling = dir.path().join("new.json");
    std::os::unix::fs::symlink("shared/new.json", &dangling).unwrap();
    drop(ConfigStore::open(&dangling, app()).unwrap());
    assert!(fs::symlink_metadata(&dangling)
        .unwrap()
        .file_type()
        .is_symlink());
    assert_eq!(on_disk(&shared.join("new.json")), (1, 0));

    // A loop is an error, not a hang.
    let a = dir.path().join("a.json");
    let b = dir.path().join("b.json");
    std::os::unix::fs::symlink(&b, &a).unwrap();
    std::os::unix::fs::symlink(&a, &b).unwrap();
    let Err(err) = ConfigStore::open(&a, app()) else {
        panic!("a link loop is refused");
    };
    assert!(err.to_string().contains("symbolic links"), "{err}");
}

/// A file damaged from outside never becomes the backup: the next commit
/// keeps the last backup this store knows to be good (found in review: the
/// garbage became `NAME.bak`, and recovery then had nothing to fall back
/// on).
#[test]
fn a_file_damaged_from_outside_never_becomes_the_backup() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("app.json");
    let backup = dir.path().join("app.json.bak");
    let store = ConfigStore::open(&path, app()).unwrap();
    bump(&store); // the file holds version 2, the backup version 1
    fs::write(&path, "{ truncated").unwrap();
    assert_eq!(bump(&store), 3);
    assert_eq!(on_disk(&path), (3, 2));
    assert_eq!(
        on_disk(&backup),
        (1, 0),
        "the damaged file became the backup"
    );
    drop(store);
    fs::write(&path, "{ damaged again").unwrap();
    let (store, why) = ConfigStore::open_or_recover(&path, app()).unwrap();
    assert!(why.is_some());
    assert_eq!((store.load().version().get(), store.load().counter), (1, 0));
}

/// `open_or_recover` of a missing file whose backup is good takes the
/// backup (found in review: it created the default, and the first commit
/// then replaced the good backup with it); with no good backup, the
/// default as before.
#[test]
fn open_or_recover_of_a_missing_file_takes_a_good_backup() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("app.json");
    let store = ConfigStore::open(&path, app()).unwrap();
    bump(&store);
    bump(&store); // file: version 3; backup: version 2
    drop(store);
    fs::remove_file(&path).unwrap();
    let (store, why) = ConfigStore::open_or_recover(&path, app()).unwrap();
    let why = why.expect("a recovery is reported");
    assert!(why.to_string().contains("app.json"), "{why}");
    assert_eq!((store.load().version().get(), store.load().counter), (2, 1));
    assert_eq!(bump(&store), 3);
    assert_eq!(on_disk(&dir.path().join("app.json.bak")), (2, 1));
    drop(store);

    // A bad backup: the default, as for a missing file without one.
    fs::remove_file(&path).unwrap();
    fs::write(dir.path().join("app.json.bak"), "{ bad").unwrap();
    let (store, why) = ConfigStore::open_or_recover(&path, app()).unwrap();
    assert!(why.is_none());
    assert_eq!(store.load().version().get(), 1);
    // Plain `open` of a missing file creates the default, as documented.
    drop(store);
    fs::remove_file(&path).unwrap();
    assert_eq!(
        ConfigStore::open(&path, app())
            .unwrap()
            .load()
            .version()
            .get(),
        1
    );
}

/// A `T::drop` that calls the store does not deadlock a persisted commit
/// (found in review: the value a commit reads back from its encoding, to
/// check it, was dropped under the writer lock).
#[test]
fn a_drop_that_calls_the_store_does_not_deadlock_a_persisted_commit() {
    use std::sync::atomic::{AtomicBool, Ordering::SeqCst};
    use std::sync::{mpsc, OnceLock};

    static STORE: OnceLock<ConfigStore<Calls>> = OnceLock::new();
    static ARMED: AtomicBool = AtomicBool::new(false);
    #[derive(Clone, Serialize, Deserialize)]
    struct Calls {
        n: u32,
    }
    impl Drop for Calls {
        fn drop(&mut self) {
            if ARMED.load(SeqCst) {
                if let Some(store) = STORE.get() {
                    let id = store.on_change(|_| {});
                    store.remove_callback(id);
                }
            }
        }
    }

    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("calls.json");
    if STORE
        .set(ConfigStore::open(&path, Calls { n: 0 }).unwrap())
        .is_err()
    {
        unreachable!("set once");
    }
    let (done, finished) = mpsc::channel();
    std::thread::spawn(move || {
        ARMED.store(true, SeqCst);
        let store = STORE.get().unwrap();
        let v = store.update(|c| -> Result<(), ()> {
            c.n = 1;
            Ok(())
        });
        let reloaded = store.reload().map(|v| v.get());
        ARMED.store(false, SeqCst);
        let _ = done.send((v.map(|v| v.get()).ok(), reloaded.ok()));
    });
    let result = finished
        .recv_timeout(Duration::from_secs(60))
        .expect("a persisted commit deadlocked on a T::drop that calls the store");
    assert_eq!(result, (Some(2), Some(3)));
}

/// A NaN or an infinity anywhere in the value (inside an `Option`, a list,
/// a map) is refused with a `PersistErrorKind::Encode` that names the
/// field (found in review: `Some(NaN)` was written as `null`, acknowledged,
/// and read back as `None` after a reopen).
#[test]
fn a_nan_anywhere_in_the_value_is_refused_and_named() {
    #[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
    struct Limits {
        burst: Option<f64>,
        steps: Vec<f32>,
        per_route: std::collections::BTreeMap<String, f64>,
    }
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("limits.json");
    let store = ConfigStore::open(&path, Limits::default()).unwrap();
    type MakeBad = fn(&mut Limits);
    let cases: [(&str, MakeBad); 3] = [
        ("config.burst", |l| l.burst = Some(f64::NAN)),
        ("config.steps[1]", |l| l.steps = vec![1.0, f32::INFINITY]),
        ("config.per_route.api", |l| {
            l.per_route.insert("api".into(), f64::NEG_INFINITY);
        }),
    ];
    for (field, make_bad) in cases {
        let err = store
            .update(|l| -> Result<(), String> {
                make_bad(l);
                Ok(())
            })
            .unwrap_err();
        assert!(
            matches!(&err, UpdateError::Persist(e) if e.kind() == PersistErrorKind::Encode),
            "{err:?}"
        );
        assert!(err.to_string().contains(field), "{field}: {err}");
    }
    assert_eq!(store.load().version().get(), 1);
    store
        .update(|l| -> Result<(), ()> {
            l.burst = Some(2.5);
            l.steps = vec![0.5];
            Ok(())
        })
        .unwrap();
    drop(store);
    let again = ConfigStore::open(&path, Limits::default()).unwrap();
    assert_eq!(
        (again.load().burst, again.load().version().get()),
        (Some(2.5), 2)
    );
}

/// A file at version 0 names the line and the field like any other bad
/// value (found in review: the check ran after parsing, with no line).
#[test]
fn a_version_of_zero_names_its_line() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("app.json");
    let text =
        "{\n  \"config\": {\"port\": 1, \"name\": \"x\", \"counter\": 0},\n  \"version\": 0\n}\n";
    fs::write(&path, text).unwrap();
    let err = ConfigStore::open(&path, app()).unwrap_err();
    let OpenError::Persist(e) = &err else {
        panic!("expected a parse error, got {err:?}")
    };
    assert_eq!(e.kind(), PersistErrorKind::Parse);
    assert_eq!((e.line(), e.field()), (Some(3), Some("version")), "{err}");
    assert!(err.to_string().contains("at least 1"), "{err}");
    assert_eq!(fs::read_to_string(&path).unwrap(), text);
    #[cfg(feature = "toml")]
    {
        let path = dir.path().join("app.toml");
        let text = "version = 0\n\n[config]\nport = 1\nname = \"x\"\ncounter = 0\n";
        fs::write(&path, text).unwrap();
        let err = ConfigStore::open(&path, app()).unwrap_err();
        let OpenError::Persist(e) = &err else {
            panic!("expected a parse error, got {err:?}")
        };
        assert_eq!((e.line(), e.field()), (Some(1), Some("version")), "{err}");
    }
}

/// An I/O error reading the file says nothing about its contents:
/// `open_or_recover` returns it as `open` does and leaves the backup and
/// the path as they are (it fell back on any error before, here failing
/// only later, while setting the "bad file" aside).
#[test]
fn open_or_recover_returns_an_io_error_without_falling_back() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("app.json");
    let store = ConfigStore::open(&path, app()).unwrap();
    bump(&store); // backup: version 1
    drop(store);
    // A directory where the file was: it exists, and reading it fails
    // with an I/O error (a permission error would too, but tests may run
    // as root).
    fs::remove_file(&path).unwrap();
    fs::create_dir(&path).unwrap();
    let Err(OpenError::Persist(error)) = ConfigStore::open_or_recover(&path, app()) else {
        panic!("an I/O error is returned");
    };
    assert_eq!(error.kind(), PersistErrorKind::Io);
    assert!(error.to_string().contains("read"), "{error}");
    assert!(path.is_dir());
    assert!(!dir.path().join("app.json.corrupt").exists());
    assert_eq!(on_disk(&dir.path().join("app.json.bak")), (1, 0));
}

/// Errors with no I/O error behind them read as sentences, and an empty
/// path is named as such (found in review: "could not the path names no
/// file", and an empty path printed as nothing).
#[test]
fn path_errors_read_as_sentences() {
    let dir = tempfile::tempdir().unwrap();
    let message = |path: &Path| match ConfigStore::open(path, app()) {
        Err(OpenError::Persist(e)) => e.to_string(),
        other => panic!("{path:?}: {:?}", other.map(|_| ())),
    };
    let up = message(&dir.path().join(".."));
    assert!(up.ends_with(": the path names no file"), "{up}");
    let empty = message(Path::new(""));
    assert_eq!(empty, "(an empty path): the path names no file");
    #[cfg(unix)]
    {
        std::os::unix::fs::symlink("b.json", dir.path().join("a.json")).unwrap();
        std::os::unix::fs::symlink("a.json", dir.path().join("b.json")).unwrap();
        let looped = message(&dir.path().join("a.json"));
        assert!(
            looped.ends_with(": more than 40 symbolic links to follow (a loop?)"),
            "{looped}"
        );
    }
    assert!(!up.contains("could not") && !empty.contains("could not"));
}

/// A JSON file that starts with a UTF-8 byte order mark (some editors
/// write one) opens, as it does in TOML (found in review: "expected
/// value" at 1:1).
#[test]
fn a_json_file_with_a_byte_order_mark_opens() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("app.json");
    fs::write(
        &path,
        "\u{feff}{\"version\": 4, \"config\": {\"port\": 1, \"name\": \"a\", \"counter\": 2}}",
    )
    .unwrap();
    let store = ConfigStore::open(&path, app()).unwrap();
    assert_eq!((store.load().version().get(), store.load().counter), (4, 2));
    assert_eq!(bump(&store), 5);
    assert_eq!(on_disk(&path), (5, 3));
}

/// A TOML file at the last version TOML can hold (`i64::MAX`): the next
/// commit is refused with a message that says why, and the file is left
/// (found in review: toml's "out-of-range value for u64 type").
#[cfg(feature = "toml")]
#[test]
fn a_toml_file_at_its_last_version_refuses_the_next_one_clearly() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("app.toml");
    let text = format!(
        "version = {}\n\n[config]\nport = 1\nname = \"a\"\ncounter = 0\n",
        i64::MAX
    );
    fs::write(&path, &text).unwrap();
    let store = ConfigStore::open(&path, app()).unwrap();
    let Err(UpdateError::Persist(e)) = store.update(|a| -> Result<(), ()> {
        a.counter += 1;
        Ok(())
    }) else {
        panic!("the next version cannot be written");
    };
    assert_eq!(e.kind(), PersistErrorKind::Encode);
    assert!(e.to_string().contains(&i64::MAX.to_string()), "{e}");
    assert_eq!(store.load().version().get(), i64::MAX as u64);
    assert_eq!(fs::read_to_string(&path).unwrap(), text);
}
