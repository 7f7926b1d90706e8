//! The operator dashboard in a real browser: headless chromium loads the page from an axum
//! server on loopback, runs its script, polls the state document, and the test reads the
//! DOM it leaves behind. It also takes a screenshot: `target/dashboard.png`, and
//! `docs/dashboard.png` when `BULWARK_UPDATE_SCREENSHOT=1`.
//!
//! Chromium is found as `$CHROME`, else `chromium` or `chromium-browser` on `PATH`. Without
//! it the test is skipped loudly, unless `BULWARK_REQUIRE_BROWSER=1` (CI sets it once it
//! has installed chromium), which makes a missing browser a failure.

use std::convert::Infallible;
use std::io::Write;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum::http::StatusCode;
use axum::routing::get;
use axum::Router;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tower::{service_fn, Layer, ServiceExt};
use tower_bulwark::breaker::{CircuitBreakerLayer, KeyedCircuitBreakerLayer};
use tower_bulwark::bulkhead::BulkheadLayer;
use tower_bulwark::degrade::Switches;
use tower_bulwark::retry::RatioBudget;
use tower_bulwark::shed::{Fixed, ShedLayer};
use tower_bulwark_health::{Dashboard, DrainLayer, Health, Report, Status};
use tower_bulwark_tests::{get as get_request, send, serve_axum};

/// The `Authorization` header the drill's predicate approves.
const OPERATOR: &str = "Bearer ops-token";

/// How long one chromium run may take before it is killed.
const CHROMIUM_TIMEOUT: Duration = Duration::from_secs(60);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_page_shows_the_registry_in_a_real_browser() {
    let Some(chromium) = chromium() else {
        return;
    };
    let drill = Drill::start().await;

    // The page as served: self-contained, nothing fetched from elsewhere.
    let page = send(drill.addr, get_request("/health/ui", &[])).await;
    assert_eq!(page.head.status, 200);
    let page = String::from_utf8(page.body.to_vec()).expect("the page is UTF-8");
    assert_self_contained(&page);

    // Served at `…/ui` and at `…/ui/`: the page finds its state document from either.
    for path in ["/health/ui", "/health/ui/"] {
        let dom = dump_dom(&chromium, &drill.url(path)).await;
        assert_shows_the_drill(&dom, path);
        // Actions are enabled but this reader has no token: no buttons, a token field.
        assert!(
            !element(&dom, "id=\"unlock\"").contains(" hidden"),
            "{path}: the token field is offered"
        );
        assert!(element(&dom, "id=\"lock\"").contains(" hidden"), "{path}");
        assert!(!dom.contains("data-action="), "{path}: no action buttons");
    }

    // With the token, the page sends it: the state document approves actions and the
    // buttons are there.
    let dom = dump_dom(&chromium, &drill.url("/operator")).await;
    assert_shows_the_drill(&dom, "/operator");
    assert!(element(&dom, "id=\"unlock\"").contains(" hidden"));
    assert!(!element(&dom, "id=\"lock\"").contains(" hidden"));
    let payments = component(&dom, "payments");
    assert!(
        payments.contains("data-action=\"force_closed\""),
        "{payments}"
    );
    assert!(dom.contains("data-action=\"start\""), "the drain's button");

    let shot = screenshot_path();
    let png = screenshot(&chromium, &drill.url("/health/ui"), &shot).await;
    if std::env::var("BULWARK_UPDATE_SCREENSHOT").as_deref() == Ok("1") {
        let docs = Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/dashboard.png");
        std::fs::write(&docs, &png).expect("write docs/dashboard.png");
        eprintln!("wrote {}", docs.display());
    }

    drill.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_page_keeps_the_last_data_while_disconnected_and_recovers() {
    let Some(chromium) = chromium() else {
        return;
    };
    let drill = Drill::start().await;

    // `/lost/ui/state` answers once, then fails: the last data stays, under a banner.
    let dom = dump_dom(&chromium, &drill.url("/lost/ui")).await;
    let banner = element(&dom, "id=\"banner\"");
    assert!(
        !banner.contains(" hidden"),
        "the banner shows while polls fail: {banner}"
    );
    let banner = text_of(&dom, "id=\"banner\"");
    assert!(banner.starts_with("Disconnected since "), "{banner}");
    assert!(banner.contains("HTTP 503"), "{banner}");
    assert!(
        banner.contains("Showing the last data received"),
        "{banner}"
    );
    assert_eq!(field(component(&dom, "payments"), "state"), "forced open");
    assert_eq!(text_of(&dom, "id=\"status\""), "ready");
    assert!(
        drill.lost.load(Ordering::SeqCst) >= 2,
        "the page kept polling"
    );

    // `/late/ui/state` fails twice, then answers: the page recovers by itself.
    let dom = dump_dom(&chromium, &drill.url("/late/ui")).await;
    assert!(
        drill.late.load(Ordering::SeqCst) >= 3,
        "the page polled again"
    );
    let banner = element(&dom, "id=\"banner\"");
    assert!(banner.contains(" hidden"), "the banner went away: {banner}");
    assert_eq!(field(component(&dom, "payments"), "state"), "forced open");
    assert_eq!(text_of(&dom, "id=\"status\""), "ready");

    drill.finish().await;
}

/// What the DOM must show of the drill after the page has polled.
fn assert_shows_the_drill(dom: &str, path: &str) {
    let context = format!("page at {path}");
    assert_eq!(text_of(dom, "id=\"title\""), "drill", "{context}");
    assert_eq!(text_of(dom, "id=\"status\""), "ready", "{context}");

    let payments = component(dom, "payments");
    let root = start_tag(payments);
    assert!(root.contains("data-kind=\"breaker\""), "{context}: {root}");
    assert!(root.contains("data-status=\"down\""), "{context}: {root}");
    assert_eq!(field(payments, "state"), "forced open", "{context}");
    // A default breaker keeps no window: failures in a row, no rates.
    assert_eq!(field(payments, "consecutive_failures"), "0", "{context}");
    assert!(
        !payments.contains("data-field=\"failure_rate\""),
        "{context}"
    );

    let inventory = component(dom, "inventory");
    assert!(
        start_tag(inventory).contains("data-status=\"up\""),
        "{context}"
    );
    assert_eq!(field(inventory, "state"), "closed", "{context}");
    assert_eq!(field(inventory, "calls"), "40", "{context}");
    assert_eq!(field(inventory, "failure_rate"), "5.0%", "{context}");

    let db = component(dom, "db");
    assert!(
        start_tag(db).contains("data-kind=\"bulkhead\""),
        "{context}"
    );
    assert_eq!(field(db, "in_flight"), "3", "{context}");
    assert_eq!(field(db, "max_concurrent"), "4", "{context}");
    assert_eq!(field(db, "available"), "1", "{context}");

    let server = component(dom, "server");
    assert!(
        start_tag(server).contains("data-kind=\"shed\""),
        "{context}"
    );
    assert_eq!(field(server, "limit"), "16", "{context}");

    let retries = component(dom, "retries");
    assert!(
        start_tag(retries).contains("data-kind=\"budget\""),
        "{context}"
    );
    assert_eq!(field(retries, "refused"), "1", "{context}");
    assert_eq!(field(retries, "allowed"), "2", "{context}");

    let switch = component(dom, "features/recommendations");
    assert!(
        start_tag(switch).contains("data-kind=\"switch\""),
        "{context}"
    );
    assert!(
        start_tag(switch).contains("data-status=\"degraded\""),
        "{context}"
    );
    assert_eq!(field(switch, "state"), "off", "{context}");
    assert_eq!(field(switch, "mode"), "forced", "{context}");

    let hosts = component(dom, "hosts");
    assert!(
        start_tag(hosts).contains("data-kind=\"keyed_breaker\""),
        "{context}"
    );
    assert_eq!(field(hosts, "keys"), "3", "{context}");
    assert_eq!(field(hosts, "not_closed"), "1", "{context}");
    let shown = after(hosts, "data-key=\"");
    assert!(
        shown.starts_with("<li data-key=\"b.example\""),
        "{context}: not-closed key first"
    );
    assert_eq!(field(shown, "state"), "forced open", "{context}");
    let closed = after(hosts, "data-key=\"a.example\"");
    assert_eq!(field(closed, "state"), "closed", "{context}");
    assert_eq!(field(closed, "calls"), "1", "{context}");

    let config = component(dom, "config");
    assert!(
        start_tag(config).contains("data-kind=\"check\""),
        "{context}"
    );
    assert_eq!(field(config, "detail"), "loaded", "{context}");

    // Every component has a sparkline per series, with its label.
    assert!(
        payments.contains("data-series=\"failures in a row\""),
        "{context}"
    );
    assert!(payments.contains("<svg"), "{context}");
    assert!(
        inventory.contains("data-series=\"failure rate %\""),
        "{context}"
    );

    let events = after(dom, "id=\"events\"");
    let forced = after(events, "data-event=\"payments\"");
    assert_eq!(field(forced, "from"), "closed", "{context}");
    assert_eq!(field(forced, "to"), "forced open", "{context}");
    assert!(!field(forced, "reason").is_empty(), "{context}");

    assert!(
        !dom.contains("src=\"http"),
        "{context}: nothing loaded from elsewhere"
    );
    assert!(
        !dom.contains("href=\"http"),
        "{context}: nothing linked elsewhere"
    );
    let banner = element(dom, "id=\"banner\"");
    assert!(banner.contains(" hidden"), "{context}: connected: {banner}");
}

/// No resource from elsewhere: the only URL in the page is the SVG namespace.
fn assert_self_contained(page: &str) {
    let namespace = "http://www.w3.org/2000/svg";
    let rest = page.replace(namespace, "");
    for external in [
        "http:", "https:", "//cdn", "url(", "@import", "src=", "href=",
    ] {
        assert!(!rest.contains(external), "the page holds `{external}`");
    }
    assert!(!page.contains("innerHTML"), "data is shown as text only");
    assert!(
        page.len() < 32 * 1024,
        "the page stays small: {} bytes",
        page.len()
    );
}

/// A health registry as an incident drill has it, served by axum on loopback with the
/// dashboard, plus two routes whose state document fails (for the disconnected banner).
struct Drill {
    addr: SocketAddr,
    /// Releases the calls holding the bulkhead's permits.
    releases: Vec<oneshot::Sender<()>>,
    calls: Vec<JoinHandle<Result<(), tower::BoxError>>>,
    /// Kept alive: the registry's probes do not hold them.
    _switches: Switches,
    _drain: DrainLayer,
    lost: Arc<AtomicUsize>,
    late: Arc<AtomicUsize>,
}

impl Drill {
    async fn start() -> Drill {
        let health = Health::new();

        let payments = CircuitBreakerLayer::builder()
            .name("payments")
            .build()
            .unwrap();
        payments.handle().force_open();
        // Not required: one dependency's breaker open leaves the process ready.
        health.add_breaker("payments", false, payments.handle());
        let inventory = CircuitBreakerLayer::builder()
            .name("inventory")
            .failure_rate(0.5)
            .build()
            .unwrap();
        health.add_breaker("inventory", true, inventory.handle());
        // Some traffic, a few calls failing: its rates are numbers, not dashes.
        let calls = inventory.layer(service_fn(|n: u32| async move {
            match n % 20 {
                0 => Err(std::io::Error::other("unavailable")),
                _ => Ok(n),
            }
        }));
        for n in 1..=40 {
            let _ = calls.clone().oneshot(n).await;
        }

        let bulkhead = BulkheadLayer::builder()
            .name("db")
            .max_concurrent(4)
            .build()
            .unwrap();
        let db = bulkhead.handle();
        health.add_bulkhead("db", db.clone());
        let held = bulkhead.layer(service_fn(|release: oneshot::Receiver<()>| async move {
            let _ = release.await;
            Ok::<_, Infallible>(())
        }));
        let (mut releases, mut calls) = (Vec::new(), Vec::new());
        for _ in 0..3 {
            let (release, released) = oneshot::channel();
            releases.push(release);
            calls.push(tokio::spawn(held.clone().oneshot(released)));
        }
        while db.snapshot().in_flight < 3 {
            tokio::task::yield_now().await;
        }

        let shed = ShedLayer::builder()
            .name("server")
            .fixed(Fixed::new(16).unwrap())
            .build()
            .unwrap();
        health.add_shed("server", shed.handle());

        let budget = Arc::new(RatioBudget::new(Duration::from_secs(10), 0, 0.2).unwrap());
        for _ in 0..10 {
            budget.deposit();
        }
        assert!(budget.withdraw() && budget.withdraw() && !budget.withdraw());
        health.add_budget("retries", budget);

        let switches = Switches::builder()
            .name("features")
            .switch("recommendations")
            .manual_evaluation()
            .build()
            .unwrap();
        switches.switch("recommendations").unwrap().force_off();
        health.add_switches(&switches);

        let per_host = KeyedCircuitBreakerLayer::new(
            CircuitBreakerLayer::builder()
                .name("hosts")
                .failure_rate(0.5),
            |request: &(String, u32)| request.0.clone(),
            100,
            Duration::from_secs(600),
        )
        .unwrap();
        let client = per_host.layer(service_fn(|(_host, n): (String, u32)| async move {
            Ok::<_, Infallible>(n)
        }));
        for host in ["a.example", "b.example", "c.example"] {
            client.clone().oneshot((host.to_string(), 1)).await.unwrap();
        }
        per_host
            .handle()
            .get(&"b.example".to_string())
            .unwrap()
            .force_open();
        health.add_keyed_breaker("hosts", per_host.handle());

        health.add_probe("config", true, || Report::new(Status::Up, "loaded"));
        let drain = DrainLayer::new();
        health.watch_drain(drain.handle());

        let dashboard = Dashboard::builder(&health)
            .title("drill")
            .actions(|request: &http::request::Parts| {
                request
                    .headers
                    .get("authorization")
                    .is_some_and(|v| v == OPERATOR)
            })
            .build()
            .unwrap();
        let (lost, late) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
        let router = Router::new()
            .nest_service("/health", health.service().dashboard(dashboard.clone()))
            // The same page, whose state document answers once and then fails.
            .route(
                "/lost/ui/state",
                get(flaky(dashboard.clone(), lost.clone(), |n| n == 0)),
            )
            .nest_service("/lost", health.service().dashboard(dashboard.clone()))
            // The same page, whose state document fails twice and then answers.
            .route(
                "/late/ui/state",
                get(flaky(dashboard.clone(), late.clone(), |n| n >= 2)),
            )
            .nest_service("/late", health.service().dashboard(dashboard))
            // Stands for an operator who typed the token into the page: keeps it in the
            // tab's session storage, as the page's form does, and opens the page.
            .route("/operator", get(operator_login));
        let addr = serve_axum(router).await;
        Drill {
            addr,
            releases,
            calls,
            _switches: switches,
            _drain: drain,
            lost,
            late,
        }
    }

    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// Lets the held calls finish: the bulkhead empties.
    async fn finish(self) {
        for release in self.releases {
            release.send(()).unwrap();
        }
        for call in self.calls {
            call.await.unwrap().unwrap();
        }
    }
}

/// A page that stores the operator's token the way the dashboard's form does and
/// opens the dashboard in the same tab.
async fn operator_login() -> axum::response::Html<&'static str> {
    axum::response::Html(
        "<!doctype html><script>\
         sessionStorage.setItem('bulwark-operator-token', 'ops-token');\
         location.replace('/health/ui');\
         </script>",
    )
}

/// A state document handler that answers when `answers(n)` for its `n`th request
/// (counting from 0), else `503`.
fn flaky(
    dashboard: Dashboard,
    requests: Arc<AtomicUsize>,
    answers: fn(usize) -> bool,
) -> impl Fn() -> std::future::Ready<axum::response::Response> + Clone {
    use axum::response::IntoResponse;
    move || {
        let n = requests.fetch_add(1, Ordering::SeqCst);
        std::future::ready(if answers(n) {
            (
                [(axum::http::header::CONTENT_TYPE, "application/json")],
                dashboard.state_json(),
            )
                .into_response()
        } else {
            StatusCode::SERVICE_UNAVAILABLE.into_response()
        })
    }
}

/// The browser, or `None` (and a loud notice) when it is missing and not required.
fn chromium() -> Option<PathBuf> {
    let found = std::env::var_os("CHROME")
        .map(PathBuf::from)
        .or_else(|| on_path("chromium"))
        .or_else(|| on_path("chromium-browser"));
    if found.is_none() {
        assert!(
            std::env::var("BULWARK_REQUIRE_BROWSER").as_deref() != Ok("1"),
            "BULWARK_REQUIRE_BROWSER=1 but chromium was not found ($CHROME, chromium, chromium-browser)"
        );
        // Straight to the process's stderr: the test harness captures `eprintln!`.
        let _ = writeln!(
            std::io::stderr(),
            "!!!!! SKIPPED: chromium not found ($CHROME, chromium, chromium-browser on PATH): \
             the dashboard was not tested in a browser !!!!!"
        );
    }
    found
}

fn on_path(name: &str) -> Option<PathBuf> {
    std::env::split_paths(&std::env::var_os("PATH")?)
        .map(|dir| dir.join(name))
        .find(|path| path.is_file())
}

/// The DOM chromium leaves after running the page for five seconds of virtual time.
async fn dump_dom(chromium: &Path, url: &str) -> String {
    let out = run_chromium(chromium, &["--dump-dom".to_string(), url.to_string()]).await;
    String::from_utf8(out).expect("the DOM is UTF-8")
}

/// A 1280x1100 screenshot of the page, written to `path`; returns the PNG.
async fn screenshot(chromium: &Path, url: &str, path: &Path) -> Vec<u8> {
    let _ = std::fs::remove_file(path);
    run_chromium(
        chromium,
        &[
            format!("--screenshot={}", path.display()),
            "--window-size=1280,1100".to_string(),
            "--hide-scrollbars".to_string(),
            url.to_string(),
        ],
    )
    .await;
    let png = std::fs::read(path).expect("chromium wrote the screenshot");
    assert!(png.starts_with(b"\x89PNG\r\n\x1a\n"), "a PNG");
    let size = |at: usize| u32::from_be_bytes(png[at..at + 4].try_into().unwrap());
    assert_eq!((size(16), size(20)), (1280, 1100), "the window's size");
    png
}

/// Runs headless chromium with a fresh profile; its standard output. Killed after
/// [`CHROMIUM_TIMEOUT`].
async fn run_chromium(chromium: &Path, args: &[String]) -> Vec<u8> {
    let profile = Profile::new();
    let child = tokio::process::Command::new(chromium)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--virtual-time-budget=5000",
        ])
        .arg(format!("--user-data-dir={}", profile.0.display()))
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("start chromium");
    let out = tokio::time::timeout(CHROMIUM_TIMEOUT, child.wait_with_output())
        .await
        .expect("chromium finished within its timeout (it is killed otherwise)")
        .expect("chromium ran");
    assert!(
        out.status.success(),
        "chromium failed: {}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

/// A fresh chromium profile directory, removed when dropped.
struct Profile(PathBuf);

impl Profile {
    fn new() -> Profile {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let dir = std::env::temp_dir().join(format!(
            "bulwark-dashboard-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::SeqCst)
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("create a chromium profile directory");
        Profile(dir)
    }
}

impl Drop for Profile {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// `target/dashboard.png` (or under `$CARGO_TARGET_DIR`).
fn screenshot_path() -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../target"));
    std::fs::create_dir_all(&target).expect("the target directory");
    target.join("dashboard.png")
}

/// The DOM from the start tag holding `marker` on.
fn after<'a>(dom: &'a str, marker: &str) -> &'a str {
    let at = dom
        .find(marker)
        .unwrap_or_else(|| panic!("no `{marker}` in the DOM:\n{dom}"));
    let start = dom[..at].rfind('<').expect("inside a start tag");
    &dom[start..]
}

/// The start tag holding `marker`.
fn element<'a>(dom: &'a str, marker: &str) -> &'a str {
    start_tag(after(dom, marker))
}

fn start_tag(fragment: &str) -> &str {
    &fragment[..=fragment.find('>').expect("a whole start tag")]
}

/// The text right after the start tag holding `marker` (up to the next tag).
fn text_of<'a>(dom: &'a str, marker: &str) -> &'a str {
    let rest = after(dom, marker);
    let rest = &rest[start_tag(rest).len()..];
    &rest[..rest.find('<').unwrap_or(rest.len())]
}

/// The element of component `name`, up to the next component's.
fn component<'a>(dom: &'a str, name: &str) -> &'a str {
    let rest = after(dom, &format!("data-component=\"{name}\""));
    let inside = start_tag(rest).len();
    let next = rest[inside..]
        .find("data-component=\"")
        .map_or(rest.len(), |at| {
            rest[..inside + at].rfind('<').unwrap_or(inside + at)
        });
    let events = rest.find("<aside").unwrap_or(rest.len());
    &rest[..next.min(events)]
}

/// The text of the first `data-field="name"` in `fragment`.
fn field<'a>(fragment: &'a str, name: &str) -> &'a str {
    text_of(fragment, &format!("data-field=\"{name}\""))
}
