//! State on S3, shared by a team: conditional writes, a lease lock that a dead holder
//! cannot wedge, reads from anywhere, `init-state` and `unlock`. Two "machines" are two
//! working directories with their own local state directories: only S3 is shared.

mod common;

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use aws_sdk_s3::primitives::ByteStream;
use serde_json::Value;

use common::proxy::Proxy;
use common::{actions, Harness, Run, REGION};

const BUCKET: &str = "provision-team-state";
const PREFIX: &str = "ci";

fn state_dir() -> String {
    format!("s3://{BUCKET}/{PREFIX}")
}

fn s3(url: &str) -> aws_sdk_s3::Client {
    common::s3_client(url)
}

/// `provision` as seen from another machine: its own working and state directories.
fn elsewhere(h: &Harness, name: &str) -> Command {
    let dir = h.dir.path().join(name);
    std::fs::create_dir_all(&dir).unwrap();
    let mut c = h.command();
    c.current_dir(&dir)
        .env("HOME", &dir)
        .env("PROVISION_STATE_DIR", dir.join("state"))
        .env("PROVISION_CALL_LOG", dir.join("calls.log"));
    c
}

fn with_s3(args: &[&str]) -> Vec<String> {
    let mut all = vec!["--state-dir".to_string(), state_dir()];
    all.extend(args.iter().map(|a| a.to_string()));
    all
}

fn run_s3(h: &Harness, cmd: Command, args: &[&str]) -> Run {
    let all = with_s3(args);
    let all: Vec<&str> = all.iter().map(String::as_str).collect();
    h.run_with(cmd, &all)
}

fn init(h: &Harness) {
    let r = h.run(&["init-state", &state_dir()]);
    assert_eq!(r.code, 0, "{}", r.describe());
}

async fn keys(s3: &aws_sdk_s3::Client) -> Vec<String> {
    let out = s3.list_objects_v2().bucket(BUCKET).send().await.unwrap();
    out.contents()
        .iter()
        .filter_map(|o| o.key().map(str::to_string))
        .collect()
}

async fn object(s3: &aws_sdk_s3::Client, key: &str) -> Option<String> {
    common::s3_object(s3, BUCKET, key).await
}

fn state_key(h: &Harness) -> String {
    format!("{PREFIX}/{REGION}/{}.json", h.stack)
}

fn lock_key(h: &Harness) -> String {
    format!("{PREFIX}/{REGION}/{}.lock", h.stack)
}

#[tokio::test]
async fn init_state_makes_a_locked_down_bucket_and_is_idempotent() {
    let h = Harness::new();
    init(&h);
    init(&h);
    let s3 = s3(&h.url);
    let versioning = s3
        .get_bucket_versioning()
        .bucket(BUCKET)
        .send()
        .await
        .unwrap();
    assert_eq!(
        versioning.status().map(|s| s.as_str()),
        Some("Enabled"),
        "versioning"
    );
    let encryption = s3
        .get_bucket_encryption()
        .bucket(BUCKET)
        .send()
        .await
        .unwrap();
    assert!(encryption.server_side_encryption_configuration().is_some());
    let block = s3
        .get_public_access_block()
        .bucket(BUCKET)
        .send()
        .await
        .unwrap();
    let b = block.public_access_block_configuration().unwrap();
    assert_eq!(
        (
            b.block_public_acls(),
            b.ignore_public_acls(),
            b.block_public_policy(),
            b.restrict_public_buckets()
        ),
        (Some(true), Some(true), Some(true), Some(true))
    );
    let policy = s3.get_bucket_policy().bucket(BUCKET).send().await.unwrap();
    assert!(
        policy.policy().unwrap().contains("aws:SecureTransport"),
        "TLS only"
    );
    let bad = h.run(&["init-state", "state-dir"]);
    assert_eq!(bad.code, 2, "{}", bad.describe());
}

#[tokio::test]
async fn two_machines_share_one_stack_and_one_lock() {
    let mut h = Harness::new();
    h.state_location = Some(state_dir());
    init(&h);
    let s3 = s3(&h.url);
    // Started together on two machines: one wins, the other exits 4 naming the holder.
    let a = spawn_s3(&elsewhere(&h, "a"), &["up"]);
    let b = spawn_s3(&elsewhere(&h, "b"), &["up"]);
    let (a, b) = (a.wait_with_output().unwrap(), b.wait_with_output().unwrap());
    let codes = [a.status.code(), b.status.code()];
    assert!(
        codes.contains(&Some(0)) && codes.contains(&Some(4)),
        "one wins, one is locked out: {codes:?}\n{}\n{}",
        String::from_utf8_lossy(&a.stderr),
        String::from_utf8_lossy(&b.stderr)
    );
    let loser = if a.status.code() == Some(4) { &a } else { &b };
    let said = String::from_utf8_lossy(&loser.stderr);
    assert!(
        said.contains("locked by pid") && said.contains("lease runs out"),
        "{said}"
    );
    h.assert_one_stack().await;
    assert_eq!(
        keys(&s3).await,
        vec![state_key(&h)],
        "the state, no lock left"
    );

    // With --lock-wait both succeed: the second waits, then finds nothing to do. The
    // first is held at the proxy (its 8th answer) so the second surely meets its lock.
    let proxy = Proxy::start(&h.url);
    proxy.hold_at(8);
    let a = {
        let mut c = elsewhere(&h, "a");
        c.env("AWS_ENDPOINT_URL", &proxy.url);
        spawn_s3(
            &c,
            &["-o", "json", "--lock-wait", "60", "up", "--memory", "256"],
        )
    };
    assert!(
        proxy.wait_held(Duration::from_secs(30)),
        "the first got going"
    );
    let mut b = spawn_s3(
        &elsewhere(&h, "b"),
        &["-o", "json", "--lock-wait", "60", "up", "--memory", "256"],
    );
    let b_err = Lines::follow(b.stderr.take().unwrap());
    let waited = b_err.wait_for(
        &format!("waiting for the lock held by pid {}", a.id()),
        Duration::from_secs(30),
    );
    proxy.release();
    let (a, b_out) = (a.wait_with_output().unwrap(), b.wait_with_output().unwrap());
    assert!(
        waited,
        "the second reported waiting for the first: {}",
        b_err.text()
    );
    let b = std::process::Output {
        stderr: b_err.text().into_bytes(),
        ..b_out
    };
    assert_eq!(
        a.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&a.stderr)
    );
    assert_eq!(
        b.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&b.stderr)
    );
    let reports: Vec<Value> = [&a, &b]
        .iter()
        .map(|o| serde_json::from_slice(&o.stdout).unwrap())
        .collect();
    let all_unchanged = |r: &Value| actions(r).iter().all(|(_, _, act)| act == "unchanged");
    assert_eq!(
        reports.iter().filter(|r| all_unchanged(r)).count(),
        1,
        "the one that waited found it done: {reports:?}"
    );
    h.assert_one_stack().await;

    // Reads from a third machine: status, outputs, token, invoke.
    let c = || elsewhere(&h, "c");
    assert_eq!(run_s3(&h, c(), &["status", "--memory", "256"]).code, 0);
    let outputs = run_s3(&h, c(), &["-o", "json", "outputs"]);
    assert_eq!(outputs.code, 0, "{}", outputs.describe());
    assert_eq!(
        outputs.json(),
        // b's: it talked to the emulator directly, as c does (a's URLs name the proxy).
        reports[1]["outputs"],
        "the same outputs from anywhere"
    );
    assert_eq!(run_s3(&h, c(), &["token"]).code, 0);
    let call = run_s3(&h, c(), &["-o", "json", "invoke"]);
    assert_eq!(call.json()["status"], 200);

    // No object in S3, in any version, holds the client secret.
    let sdk = h.aws().await;
    let (pool, _) = sdk.pools().await.remove(0);
    let (client, _) = sdk.clients(&pool).await.remove(0);
    let secret = sdk
        .cognito
        .describe_user_pool_client()
        .user_pool_id(&pool)
        .client_id(&client)
        .send()
        .await
        .unwrap()
        .user_pool_client()
        .unwrap()
        .client_secret()
        .unwrap()
        .to_string();
    let versions = s3
        .list_object_versions()
        .bucket(BUCKET)
        .send()
        .await
        .unwrap();
    assert!(!versions.versions().is_empty());
    for v in versions.versions() {
        let out = s3
            .get_object()
            .bucket(BUCKET)
            .key(v.key().unwrap())
            .set_version_id(v.version_id().map(str::to_string))
            .send()
            .await
            .unwrap();
        let bytes = out.body.collect().await.unwrap().into_bytes();
        assert!(
            !String::from_utf8_lossy(&bytes).contains(&secret),
            "{:?} holds the secret",
            v.key()
        );
    }

    let down = run_s3(&h, c(), &["down"]);
    assert_eq!(down.code, 0, "{}", down.describe());
    sdk.assert_empty().await;
    assert!(keys(&s3).await.is_empty(), "neither state nor lock left");
}

/// A child's stderr read in the background, to see what it says while it runs.
struct Lines {
    lines: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
}

impl Lines {
    fn follow(stderr: std::process::ChildStderr) -> Lines {
        use std::io::BufRead;
        let lines = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let sink = lines.clone();
        std::thread::spawn(move || {
            for line in std::io::BufReader::new(stderr)
                .lines()
                .map_while(Result::ok)
            {
                sink.lock().unwrap().push(line);
            }
        });
        Lines { lines }
    }

    fn wait_for(&self, needle: &str, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if self
                .lines
                .lock()
                .unwrap()
                .iter()
                .any(|l| l.contains(needle))
            {
                return true;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        false
    }

    fn text(&self) -> String {
        self.lines.lock().unwrap().join("\n")
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_live_holder_renews_its_lease_and_releases_the_lock_when_interrupted() {
    let mut h = Harness::new();
    h.state_location = Some(state_dir());
    init(&h);
    let s3 = s3(&h.url);
    let proxy = Proxy::start(&h.url);
    // Held at the proxy for 8 s, longer than its 5 s lease: only renewals keep it.
    proxy.hold_at(8);
    let mut holder = h.command_via(&proxy);
    holder
        .args(with_s3(&["--lock-lease", "5", "up"]))
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    let holder = holder.spawn().unwrap();
    assert!(
        proxy.wait_held(Duration::from_secs(30)),
        "the holder got going"
    );
    std::thread::sleep(Duration::from_secs(8));
    let other = run_s3(&h, elsewhere(&h, "b"), &["up"]);
    assert_eq!(other.code, 4, "the lease was renewed: {}", other.describe());
    assert!(
        other
            .stderr
            .contains(&format!("locked by pid {}", holder.id())),
        "{}",
        other.stderr
    );
    let renewed = object(&s3, &lock_key(&h)).await.unwrap();
    assert!(
        serde_json::from_str::<Value>(&renewed).unwrap()["renewals"]
            .as_u64()
            .unwrap()
            >= 2,
        "each renewal writes a new body: {renewed}"
    );
    proxy.release();
    let out = holder.wait_with_output().unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // Interrupted mid-run (SIGINT, as CI's first signal): the S3 lock goes with it.
    proxy.hold_at(6);
    let mut run = h.command_via(&proxy);
    run.args(with_s3(&["up", "--memory", "256"]))
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    let run = run.spawn().unwrap();
    assert!(
        proxy.wait_held(Duration::from_secs(30)),
        "the run got going"
    );
    assert!(
        object(&s3, &lock_key(&h)).await.is_some(),
        "it holds the lock"
    );
    common::signal(run.id(), libc::SIGINT);
    proxy.release();
    let out = run.wait_with_output().unwrap();
    assert_eq!(
        out.status.code(),
        Some(130),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(object(&s3, &lock_key(&h)).await, None, "lock released");
    assert_eq!(run_s3(&h, elsewhere(&h, "b"), &["down"]).code, 0);
}

fn spawn_s3(cmd: &Command, args: &[&str]) -> Child {
    let mut c = Command::new(cmd.get_program());
    c.current_dir(cmd.get_current_dir().unwrap());
    c.env_clear();
    for (k, v) in cmd.get_envs() {
        if let Some(v) = v {
            c.env(k, v);
        }
    }
    c.args(with_s3(args))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_holder_blocks_only_until_its_lease_runs_out() {
    let mut h = Harness::new();
    h.state_location = Some(state_dir());
    init(&h);
    let s3 = s3(&h.url);
    let proxy = Proxy::start(&h.url);
    // Killed with SIGKILL in the middle of `up`, holding a 5 s lease.
    proxy.hold_at(8);
    let mut holder = {
        let mut c = h.command_via(&proxy);
        c.args(with_s3(&["--lock-lease", "5", "up"]))
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        c.spawn().unwrap()
    };
    assert!(
        proxy.wait_held(Duration::from_secs(30)),
        "the holder got going"
    );
    let dead = holder.id();
    holder.kill().unwrap();
    holder.wait().unwrap();
    proxy.release();
    assert!(object(&s3, &lock_key(&h)).await.is_some(), "its lock stays");

    // Inside the lease: exit 4, naming the dead holder and when its lease runs out.
    let early = run_s3(&h, elsewhere(&h, "b"), &["up"]);
    assert_eq!(early.code, 4, "{}", early.describe());
    assert!(
        early.stderr.contains(&format!("pid {dead}")) && early.stderr.contains("lease runs out"),
        "{}",
        early.stderr
    );
    // After it: taken over with a warning, the stack converges, the lock goes.
    let taken = Instant::now();
    std::thread::sleep(Duration::from_secs(6));
    let late = run_s3(&h, elsewhere(&h, "b"), &["up"]);
    assert_eq!(late.code, 0, "{}", late.describe());
    assert!(
        late.stderr.contains("took over the lock") && late.stderr.contains(&format!("pid {dead}")),
        "{}",
        late.stderr
    );
    println!(
        "a dead holder's 5 s lease: taken over {:.1} s after the kill",
        taken.elapsed().as_secs_f64()
    );
    h.assert_one_stack().await;
    assert_eq!(object(&s3, &lock_key(&h)).await, None, "lock released");
    assert_eq!(run_s3(&h, elsewhere(&h, "b"), &["down"]).code, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_state_changed_under_a_run_stops_it_and_nothing_is_overwritten() {
    let h = Harness::new();
    init(&h);
    let s3 = s3(&h.url);
    let proxy = Proxy::start(&h.url);
    proxy.set_latency(Duration::from_millis(150));
    let run = {
        let mut c = h.command_via(&proxy);
        c.args(with_s3(&["up"]))
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        c.spawn().unwrap()
    };
    // As soon as the run has written the state once, another writer changes it.
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut theirs = None;
    while Instant::now() < deadline {
        if let Some(text) = object(&s3, &state_key(&h)).await {
            let mut v: Value = serde_json::from_str(&text).unwrap();
            v["resources"]["written_by"] = Value::String("someone else".into());
            let body = v.to_string();
            s3.put_object()
                .bucket(BUCKET)
                .key(state_key(&h))
                .body(ByteStream::from(body.clone().into_bytes()))
                .send()
                .await
                .unwrap();
            theirs = Some(body);
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let theirs = theirs.expect("the run wrote its state");
    let out = run.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(4), "{stderr}");
    assert!(stderr.contains("changed by another run"), "{stderr}");
    assert_eq!(
        object(&s3, &state_key(&h)).await.as_deref(),
        Some(theirs.as_str()),
        "the other writer's state is intact"
    );
    assert_eq!(object(&s3, &lock_key(&h)).await, None, "lock released");
}

#[tokio::test]
async fn unlock_removes_an_expired_lock_and_a_live_one_only_with_force() {
    let h = Harness::new();
    init(&h);
    let s3 = s3(&h.url);
    let lock = |lease: u64| {
        serde_json::json!({
            "id": "0123456789abcdef", "pid": 4242, "host": "ci-runner-7", "user": "ci",
            "started": "2026-11-29T00:00:00Z", "lease_seconds": lease,
        })
        .to_string()
    };
    let put = |body: String| {
        s3.put_object()
            .bucket(BUCKET)
            .key(lock_key(&h))
            .body(ByteStream::from(body.into_bytes()))
            .send()
    };
    put(lock(600)).await.unwrap();
    let live = h.run(&["--state-dir", &state_dir(), "unlock"]);
    assert_eq!(live.code, 4, "{}", live.describe());
    assert!(
        live.stderr.contains("pid 4242 on ci-runner-7"),
        "{}",
        live.stderr
    );
    let forced = h.run(&["--state-dir", &state_dir(), "unlock", "--force"]);
    assert_eq!(forced.code, 0, "{}", forced.describe());
    assert!(forced.stdout.contains("pid 4242"), "{}", forced.stdout);
    assert_eq!(object(&s3, &lock_key(&h)).await, None);

    put(lock(1)).await.unwrap();
    std::thread::sleep(Duration::from_secs(3));
    let expired = h.run(&["--state-dir", &state_dir(), "-o", "json", "unlock"]);
    assert_eq!(expired.code, 0, "{}", expired.describe());
    assert!(expired.json()["removed"]
        .as_str()
        .unwrap()
        .contains("pid 4242"));
    let none = h.run(&["--state-dir", &state_dir(), "unlock"]);
    assert_eq!(none.code, 0);
    assert!(none.stdout.contains("No lock"), "{}", none.stdout);
}

#[tokio::test]
async fn bad_s3_state_is_refused_before_anything_is_made() {
    let h = Harness::new();
    let s3 = s3(&h.url);
    for (location, says) in [
        ("s3://", "no bucket"),
        ("s3://Bad_Bucket", "bucket name"),
        ("s3://no-such-state-bucket/x", "provision init-state"),
    ] {
        let r = h.run(&["--state-dir", location, "up"]);
        assert_eq!(r.code, 2, "{location}: {}", r.describe());
        assert!(r.stderr.contains(says), "{location}: {}", r.stderr);
        assert!(
            r.calls.iter().all(|c| c == "s3:HeadBucket"),
            "{location}: nothing but a look at the bucket: {:?}",
            r.calls
        );
    }
    init(&h);
    s3.put_object()
        .bucket(BUCKET)
        .key(state_key(&h))
        .body(ByteStream::from_static(b"{ not json"))
        .send()
        .await
        .unwrap();
    for args in [&["up"][..], &["down"], &["status"], &["outputs"]] {
        let r = run_s3(&h, h.command(), args);
        assert_eq!(r.code, 2, "{args:?}: {}", r.describe());
        assert!(r.stderr.contains("not valid JSON"), "{}", r.stderr);
        // The lock was taken and given back (S3 writes); nothing else was written.
        let writes: Vec<_> = r
            .writes()
            .into_iter()
            .filter(|c| !c.starts_with("s3:"))
            .collect();
        assert!(writes.is_empty(), "{args:?}: {writes:?}");
    }
    assert_eq!(
        object(&s3, &state_key(&h)).await.as_deref(),
        Some("{ not json"),
        "the unreadable state is not overwritten"
    );
    assert_eq!(
        object(&s3, &lock_key(&h)).await,
        None,
        "no lock left behind"
    );
    h.aws().await.assert_empty().await;
}

#[tokio::test]
async fn a_handler_over_lambdas_50_mb_goes_through_the_state_bucket() {
    let mut h = Harness::new();
    h.state_location = Some(state_dir());
    init(&h);
    let s3 = s3(&h.url);
    // 60 MB that does not compress: over Lambda's 50 MB direct upload.
    let big = h.dir.path().join("big-handler");
    std::fs::write(&big, common::incompressible(60 << 20)).unwrap();
    let up = h.run(&["up", "--handler", big.to_str().unwrap()]);
    assert_eq!(up.code, 0, "{}", up.describe());
    assert!(
        up.calls.iter().any(|c| c == "s3:PutObject"),
        "{:?}",
        up.calls
    );
    let artifacts: Vec<String> = keys(&s3)
        .await
        .into_iter()
        .filter(|k| k.starts_with(&format!("{PREFIX}/{REGION}/artifacts/{}/", h.stack)))
        .collect();
    assert_eq!(
        artifacts.len(),
        1,
        "one package, named by its SHA-256: {artifacts:?}"
    );
    let function = h
        .aws()
        .await
        .lambda
        .get_function()
        .function_name(format!("{}-handler", h.stack))
        .send()
        .await
        .unwrap();
    assert!(
        function.configuration().unwrap().code_size() > 50 << 20,
        "the function has the whole package"
    );
    let down = h.run(&["down"]);
    assert_eq!(down.code, 0, "{}", down.describe());
    assert!(keys(&s3).await.is_empty(), "no package, state or lock left");
    h.aws().await.assert_empty().await;

    // The bucket is in us-east-1; Lambda in eu-west-1 cannot take code from it: exit 2
    // before anything is written (the proxy sees only reads).
    let proxy = Proxy::start(&h.url);
    let elsewhere = h.run_via(
        &proxy,
        &[
            "--region",
            "eu-west-1",
            "up",
            "--handler",
            big.to_str().unwrap(),
        ],
    );
    assert_eq!(elsewhere.code, 2, "{}", elsewhere.describe());
    assert!(
        elsewhere.stderr.contains("only in its own region")
            && elsewhere.stderr.contains("us-east-1"),
        "{}",
        elsewhere.stderr
    );
    let writes: Vec<String> = proxy
        .seen()
        .into_iter()
        .filter(|op| common::proxy::is_write(op))
        .collect();
    assert!(writes.is_empty(), "{writes:?}");
    assert!(keys(&s3).await.is_empty(), "nothing written");
}
