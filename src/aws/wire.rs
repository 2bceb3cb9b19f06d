//! The SDK's HTTP client, with the fence (see `fence`) on the socket itself.
//!
//! The interceptor's check before each attempt leaves a gap: a request that passed it
//! may still be in the HTTP stack (a connection being opened, a task not yet scheduled)
//! when the process is frozen, and would go out on resume, after the lease was lost. So
//! every write to a connection asks the fence first: once it is down, no byte leaves,
//! whichever request it belongs to. What remains is the instant between that check and
//! the `write` call itself.
//!
//! Otherwise the client is what the SDK's default is: hyper over rustls (aws-lc), the
//! system's root certificates, HTTP/1.1, a pool of kept-alive connections, the same
//! connect timeout as `Aws::connect` asks for.

use std::error::Error as StdError;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll};
use std::time::Duration;

use aws_smithy_runtime_api::client::http::{
    HttpClient, HttpConnector, HttpConnectorFuture, HttpConnectorSettings, SharedHttpClient,
    SharedHttpConnector,
};
use aws_smithy_runtime_api::client::orchestrator::{HttpRequest, HttpResponse};
use aws_smithy_runtime_api::client::result::ConnectorError;
use aws_smithy_runtime_api::client::runtime_components::RuntimeComponents;
use aws_smithy_types::body::SdkBody;
use aws_smithy_types::retry::ErrorKind;
use hyper::rt::{Read, ReadBufCursor, Write};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::connect::{Connected, Connection, HttpConnector as Tcp};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;

/// A connection whose writes the fence guards.
struct Fenced<T>(T);

/// Why a write was refused: the fence is down.
#[derive(Debug)]
struct FenceDown(String);

impl std::fmt::Display for FenceDown {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", crate::fence::FENCED, self.0)
    }
}

impl StdError for FenceDown {}

fn guard() -> io::Result<()> {
    crate::fence::check().map_err(|why| io::Error::other(FenceDown(why)))
}

impl<T: Read + Unpin> Read for Fenced<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: ReadBufCursor<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_read(cx, buf)
    }
}

impl<T: Write + Unpin> Write for Fenced<T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        guard()?;
        Pin::new(&mut self.0).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        guard()?;
        Pin::new(&mut self.0).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.0.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_shutdown(cx)
    }
}

impl<T: Connection> Connection for Fenced<T> {
    fn connected(&self) -> Connected {
        self.0.connected()
    }
}

/// Opens TCP connections (TLS goes on top), each wrapped in the fence.
#[derive(Clone)]
struct FencedTcp(Tcp);

type BoxError = Box<dyn StdError + Send + Sync>;
type Connecting<T> = Pin<Box<dyn Future<Output = Result<T, BoxError>> + Send>>;

impl tower_service::Service<http::Uri> for FencedTcp {
    type Response = Fenced<<Tcp as tower_service::Service<http::Uri>>::Response>;
    type Error = BoxError;
    type Future = Connecting<Self::Response>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.0.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, uri: http::Uri) -> Self::Future {
        let connecting = self.0.call(uri);
        Box::pin(async move { Ok(Fenced(connecting.await?)) })
    }
}

#[derive(Clone)]
struct Wire {
    client: Client<HttpsConnector<FencedTcp>, SdkBody>,
}

impl std::fmt::Debug for Wire {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("provision fenced HTTP client")
    }
}

/// Connect timeout: the SDK's own is applied to its connector only, not this one.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

impl Wire {
    fn new() -> io::Result<Wire> {
        let mut tcp = Tcp::new();
        tcp.enforce_http(false);
        tcp.set_nodelay(true);
        tcp.set_connect_timeout(Some(CONNECT_TIMEOUT));
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let tls = match hyper_rustls::HttpsConnectorBuilder::new()
            .with_provider_and_native_roots(provider.clone())
        {
            Ok(tls) => tls,
            // No system roots (a bare container): plain HTTP to the emulator still works
            // and TLS fails at the handshake, saying why, as the SDK's own client would.
            Err(_) => hyper_rustls::HttpsConnectorBuilder::new().with_tls_config(
                rustls::ClientConfig::builder_with_provider(provider)
                    .with_safe_default_protocol_versions()
                    .map_err(io::Error::other)?
                    .with_root_certificates(rustls::RootCertStore::empty())
                    .with_no_client_auth(),
            ),
        };
        let https = tls
            .https_or_http()
            .enable_http1()
            .wrap_connector(FencedTcp(tcp));
        let client = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(Duration::from_secs(90))
            .build(https);
        Ok(Wire { client })
    }
}

impl HttpConnector for Wire {
    fn call(&self, request: HttpRequest) -> HttpConnectorFuture {
        let request = match request.try_into_http1x() {
            Ok(request) => request,
            Err(err) => return HttpConnectorFuture::ready(Err(ConnectorError::user(err.into()))),
        };
        let answer = self.client.request(request);
        HttpConnectorFuture::new(async move {
            match answer.await {
                Ok(response) => HttpResponse::try_from(response.map(SdkBody::from_body_1_x))
                    .map_err(|err| ConnectorError::other(err.into(), None)),
                Err(err) => Err(classify(err)),
            }
        })
    }
}

/// Sorts hyper's failures as the SDK's own client does, so retries and the "AWS may
/// have done it" judgement (`failure`) see the same kinds; a fenced write is final.
fn classify(err: hyper_util::client::legacy::Error) -> ConnectorError {
    enum Kind {
        Fenced(String),
        Timeout,
        Transient,
        User,
        Io,
        Other,
    }
    let kind = {
        let mut chain = Vec::new();
        let mut next: Option<&(dyn StdError + 'static)> = Some(&err);
        while let Some(e) = next {
            chain.push(e);
            next = e.source();
        }
        let hyper = chain.iter().find_map(|e| e.downcast_ref::<hyper::Error>());
        // `io::Error::source` skips the error it wraps: look inside each one.
        let down = chain.iter().find_map(|e| {
            e.downcast_ref::<FenceDown>().or_else(|| {
                e.downcast_ref::<io::Error>()
                    .and_then(|io| io.get_ref())
                    .and_then(|inner| inner.downcast_ref::<FenceDown>())
            })
        });
        if let Some(down) = down {
            Kind::Fenced(down.to_string())
        } else if hyper.is_some_and(|h| h.is_timeout()) {
            Kind::Timeout
        } else if hyper.is_some_and(|h| h.is_incomplete_message()) {
            // S3 sometimes closes a kept-alive connection as the request is sent.
            Kind::Transient
        } else if hyper.is_some_and(|h| h.is_user()) {
            Kind::User
        } else if err.is_connect()
            || chain.iter().any(|e| e.is::<io::Error>())
            || hyper.is_some_and(|h| h.is_closed() || h.is_canceled())
        {
            Kind::Io
        } else {
            Kind::Other
        }
    };
    match kind {
        Kind::Fenced(message) => ConnectorError::other(message.into(), None),
        Kind::Timeout => ConnectorError::timeout(err.into()),
        Kind::Transient => ConnectorError::other(err.into(), Some(ErrorKind::TransientError)),
        Kind::User => ConnectorError::user(err.into()),
        Kind::Io => ConnectorError::io(err.into()),
        Kind::Other => ConnectorError::other(err.into(), None),
    }
}

#[derive(Debug)]
struct FencedClient(SharedHttpConnector);

impl HttpClient for FencedClient {
    fn http_connector(
        &self,
        _settings: &HttpConnectorSettings,
        _components: &RuntimeComponents,
    ) -> SharedHttpConnector {
        self.0.clone()
    }
}

/// The one HTTP client of the process: its pool and root certificates are shared by
/// every service's client. `None` only if rustls refuses its own default protocol
/// versions; the SDK's default client (fenced before each attempt only) is used then.
pub fn client() -> Option<SharedHttpClient> {
    static CLIENT: OnceLock<Option<SharedHttpClient>> = OnceLock::new();
    CLIENT
        .get_or_init(|| {
            let wire = Wire::new().ok()?;
            let connector = SharedHttpConnector::new(wire);
            Some(SharedHttpClient::new(FencedClient(connector)))
        })
        .clone()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read as _;
    use std::net::TcpListener;
    use std::time::Instant;

    /// What a listener on loopback received in all, once its client gave up.
    fn listen() -> (String, std::thread::JoinHandle<usize>) {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!(
            "http://{}/bucket/state.json",
            listener.local_addr().unwrap()
        );
        let got = std::thread::spawn(move || {
            let mut total = 0;
            listener.set_nonblocking(false).unwrap();
            if let Ok((mut conn, _)) = listener.accept() {
                conn.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
                let mut buf = [0u8; 4096];
                while let Ok(n) = conn.read(&mut buf) {
                    if n == 0 {
                        break;
                    }
                    total += n;
                }
            }
            total
        });
        (url, got)
    }

    fn put(url: &str) -> HttpRequest {
        let request = http::Request::builder()
            .method("PUT")
            .uri(url)
            .body(SdkBody::from("{\"resources\":[]}"))
            .unwrap();
        HttpRequest::try_from(request).unwrap()
    }

    // The gap the interceptor leaves: a write that passed its check (the fence was up)
    // and was then held up, the process frozen, past the lease's deadline, before the
    // HTTP stack wrote it. The connection refuses every byte and says it was fenced.
    #[test]
    fn a_write_that_passed_the_check_and_was_frozen_past_the_deadline_sends_no_byte() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let _in_runtime = rt.enter();
        let _turn = crate::fence::SERIAL
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        crate::fence::reset_for_test();
        let lease = Duration::from_secs(4);
        let usable = lease - crate::fence::margin(lease);

        // Control: with the lease in force the same request reaches the listener.
        let (url, got) = listen();
        let held = crate::fence::hold("s3://b/s.lock", lease, Instant::now());
        let wire = Wire::new().unwrap();
        let _ = rt.block_on(tokio::time::timeout(
            Duration::from_secs(1),
            wire.call(put(&url)),
        ));
        held.release();
        crate::fence::reset_for_test();
        assert!(
            got.join().unwrap() > 0,
            "a write under a live lease is sent"
        );

        let (url, got) = listen();
        let held = crate::fence::hold(
            "s3://b/s.lock",
            lease,
            Instant::now() - usable + Duration::from_millis(200),
        );
        crate::fence::check().expect("the interceptor's check passes");
        let wire = Wire::new().unwrap();
        let sending = wire.call(put(&url));
        std::thread::sleep(Duration::from_millis(400)); // frozen, as by SIGSTOP
        let err = rt.block_on(sending).expect_err("a fenced write fails");
        let bytes = got.join().unwrap();
        held.release();
        crate::fence::reset_for_test();
        assert_eq!(bytes, 0, "bytes sent after the lease was lost");
        let shown = format!("{:?}", err);
        assert!(
            shown.contains(crate::fence::FENCED) && shown.contains("lost the lock s3://b/s.lock"),
            "{shown}"
        );
        assert!(
            !err.is_io() && !err.is_timeout(),
            "a fenced write is not retried: {shown}"
        );
    }
}
