//! The machine-facing HTTP routes, driven through the router (no sockets).

use crate::harness::ConfigDir;
use axum::body::Body;
use axum::extract::connect_info::MockConnectInfo;
use axum::http::{Request, StatusCode};
use rackboot::boot::BootTable;
use rackboot::http::boot::{router, BootContext, HttpStats};
use rackboot::observe::ObservationSink;
use rackboot::render::RunCtx;
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use tokio::sync::watch;
use tower::ServiceExt;

struct T {
    _c: ConfigDir,
    ctx: BootContext,
    table_tx: watch::Sender<Arc<BootTable>>,
}

fn setup() -> T {
    let c = ConfigDir::sample();
    let cfg = c.load().unwrap();
    let (_inv_tx, inv_rx) = watch::channel(Arc::new(cfg.inventory));
    let (table_tx, table_rx) = watch::channel(Arc::new(BootTable::new()));
    std::mem::forget(_inv_tx);
    let ctx = BootContext {
        inventory: inv_rx,
        table: table_rx,
        boot_dir: cfg.settings.boot_dir.clone(),
        firmware_dir: cfg.settings.firmware_dir.clone(),
        obs: ObservationSink::discard(),
        stats: Arc::new(HttpStats::default()),
        engine: None,
        own_ip_only: true,
        discovered: None,
    };
    T {
        _c: c,
        ctx,
        table_tx,
    }
}

impl T {
    fn pending(&self, system: &str) {
        let mut t = BootTable::new();
        t.insert(
            system,
            RunCtx {
                id: "r1".into(),
                token: "secret-token".into(),
                profile: None,
                persistent: false,
                facts: None,
            },
        );
        self.table_tx.send_replace(Arc::new(t));
    }

    async fn get(
        &self,
        peer: &str,
        method: &str,
        uri: &str,
        range: Option<&str>,
    ) -> (StatusCode, String, axum::http::HeaderMap) {
        let peer: SocketAddr = format!("{peer}:40000").parse().unwrap();
        let app = router(self.ctx.clone()).layer(MockConnectInfo(peer));
        let mut b = Request::builder().method(method).uri(uri);
        if let Some(r) = range {
            b = b.header("range", r);
        }
        let res = app.oneshot(b.body(Body::empty()).unwrap()).await.unwrap();
        let status = res.status();
        let headers = res.headers().clone();
        let bytes = axum::body::to_bytes(res.into_body(), 1 << 24)
            .await
            .unwrap();
        (
            status,
            String::from_utf8_lossy(&bytes).into_owned(),
            headers,
        )
    }
}

const PEER: &str = "10.77.0.50";

#[tokio::test]
async fn generic_script_chains_to_mac() {
    let t = setup();
    let (s, body, _) = t.get(PEER, "GET", "/boot.ipxe", None).await;
    assert_eq!(s, StatusCode::OK);
    assert!(body.starts_with("#!ipxe\n"));
    assert!(
        body.contains("chain http://10.77.0.1:8080/ipxe/${net0/mac:hexhyp}"),
        "{body}"
    );
}

#[tokio::test]
async fn no_reimage_means_local_boot() {
    let t = setup();
    let (s, body, _) = t.get(PEER, "GET", "/ipxe/52-54-00-77-00-50", None).await;
    assert_eq!(s, StatusCode::OK);
    assert!(
        body.contains("\nexit\n") && !body.contains("kernel "),
        "{body}"
    );
    // And no installer config outside a run.
    let (s, _, _) = t.get(PEER, "GET", "/ks/52-54-00-77-00-50", None).await;
    assert_eq!(s, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn pending_reimage_gets_installer() {
    let t = setup();
    t.pending("node50");
    let (s, body, _) = t.get(PEER, "GET", "/ipxe/52:54:00:77:00:50", None).await;
    assert_eq!(s, StatusCode::OK);
    assert!(
        body.contains("kernel http://10.77.0.1:8080/boot/vmlinuz initrd=initrd.img"),
        "{body}"
    );
    let (s, ks, _) = t.get(PEER, "GET", "/ks/52-54-00-77-00-50", None).await;
    assert_eq!(s, StatusCode::OK);
    assert!(
        ks.contains("run=r1") && ks.contains("done/52-54-00-77-00-50?token=secret-token"),
        "{ks}"
    );
    // Another inventory machine's address may not fetch it.
    let (s, _, _) = t
        .get("10.77.0.51", "GET", "/ks/52-54-00-77-00-50", None)
        .await;
    assert_eq!(s, StatusCode::FORBIDDEN);
    assert_eq!(t.ctx.stats.forbidden.load(Ordering::Relaxed), 1);
}

#[tokio::test]
async fn nocloud_documents() {
    let t = setup();
    t.pending("cloud71");
    let (s, ud, _) = t
        .get(
            "10.77.0.71",
            "GET",
            "/nocloud/52-54-00-77-00-71/user-data",
            None,
        )
        .await;
    assert_eq!(s, StatusCode::OK);
    assert!(ud.starts_with("#cloud-config\n"), "{ud}");
    let (s, md, _) = t
        .get(
            "10.77.0.71",
            "GET",
            "/nocloud/52-54-00-77-00-71/meta-data",
            None,
        )
        .await;
    assert_eq!(s, StatusCode::OK);
    assert!(md.contains("local-hostname: cloud71"));
    let (s, _, _) = t
        .get(
            "10.77.0.71",
            "GET",
            "/nocloud/52-54-00-77-00-71/vendor-data",
            None,
        )
        .await;
    assert_eq!(s, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn unknown_and_malformed_macs() {
    let t = setup();
    let (s, _, _) = t.get(PEER, "GET", "/ipxe/52-54-00-00-00-99", None).await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    let (s, body, _) = t.get(PEER, "GET", "/ipxe/not-a-mac", None).await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    assert!(body.contains("malformed MAC"));
    assert_eq!(t.ctx.stats.not_found.load(Ordering::Relaxed), 1);
    assert_eq!(t.ctx.stats.bad_request.load(Ordering::Relaxed), 1);
}

/// Regression (fuzz target boot_routes): a 12-byte MAC with a multi-byte
/// character panicked the handler (string sliced inside the character).
#[tokio::test]
async fn non_ascii_mac_is_a_bad_request() {
    let t = setup();
    for uri in [
        "/done/5%CD%84raz,token",
        "/ipxe/5%CD%84raz,token",
        "/ks/52:54:00:77:0%C3%A9:5",
    ] {
        let (s, body, _) = t.get(PEER, "GET", uri, None).await;
        assert_eq!(s, StatusCode::BAD_REQUEST, "{uri}");
        assert!(body.contains("malformed MAC"), "{uri}: {body}");
    }
}

#[tokio::test]
async fn static_files_head_length_and_range() {
    let t = setup();
    let (s, _, h) = t.get(PEER, "GET", "/boot/vmlinuz", None).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(h["content-length"], "100000");
    let (s, body, h) = t.get(PEER, "HEAD", "/boot/vmlinuz", None).await;
    assert_eq!(s, StatusCode::OK);
    assert!(body.is_empty());
    assert_eq!(h["content-length"], "100000");
    let (s, body, h) = t
        .get(PEER, "GET", "/boot/vmlinuz", Some("bytes=10-19"))
        .await;
    assert_eq!(s, StatusCode::PARTIAL_CONTENT);
    assert_eq!(h["content-range"], "bytes 10-19/100000");
    let expect: Vec<u8> = (10..20u32).map(|i| (i % 251) as u8).collect();
    assert_eq!(body.as_bytes(), &expect[..]);
    let (s, _, _) = t.get(PEER, "GET", "/boot/../rackboot.toml", None).await;
    assert!(
        s == StatusCode::BAD_REQUEST || s == StatusCode::NOT_FOUND,
        "{s}"
    );
    let (s, _, _) = t.get(PEER, "GET", "/firmware/ipxe.efi", None).await;
    assert_eq!(s, StatusCode::OK);
}

#[tokio::test]
async fn callback_needs_the_runs_token() {
    let t = setup();
    let (s, _, _) = t
        .get(PEER, "POST", "/done/52-54-00-77-00-50?token=x", None)
        .await;
    assert_eq!(s, StatusCode::FORBIDDEN, "no run pending");
    t.pending("node50");
    let (s, _, _) = t
        .get(PEER, "POST", "/done/52-54-00-77-00-50?token=forged", None)
        .await;
    assert_eq!(s, StatusCode::FORBIDDEN);
    let (s, _, _) = t
        .get(
            PEER,
            "POST",
            "/done/52-54-00-77-00-51?token=secret-token",
            None,
        )
        .await;
    assert_eq!(s, StatusCode::FORBIDDEN, "another machine's token");
    let (s, _, _) = t
        .get(
            PEER,
            "POST",
            "/done/52-54-00-77-00-50?token=secret-token",
            None,
        )
        .await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(t.ctx.stats.callbacks.load(Ordering::Relaxed), 1);
}
