//! What the last-good cache keeps and whom it answers, with the defaults.

mod support;

use std::time::Duration;

use http::Method;
use support::{call, get, marker, request, Backend};
use tower::Layer;
use tower_bulwark_fallback::{Degraded, FallbackLayer};

/// A fallback with a last-good cache and the default key and classifier around `backend`.
fn last_good(
    backend: &Backend,
) -> impl tower::Service<
    http::Request<()>,
    Response = http::Response<String>,
    Error = tower_bulwark_core::BoxError,
> + Clone {
    let layer = FallbackLayer::builder()
        .last_good(Duration::from_secs(60), 100)
        .build()
        .unwrap();
    layer.layer(backend.service())
}

#[tokio::test(start_paused = true)]
async fn a_503_is_not_stored_and_not_served_later() {
    let backend = Backend::new();
    let service = last_good(&backend);
    backend.respond(503, &[]);
    let unavailable = call(&service, get("/a")).await.unwrap();
    assert_eq!(
        unavailable.status(),
        503,
        "nothing to fall back on: passed on"
    );
    assert_eq!(marker(&unavailable), None);

    backend.fail();
    let error = call(&service, get("/a")).await.unwrap_err();
    assert_eq!(
        error.to_string(),
        "connection refused",
        "no 503 kept as last good"
    );
}

#[tokio::test(start_paused = true)]
async fn a_503_after_a_success_gets_the_last_good_and_does_not_replace_it() {
    let backend = Backend::new();
    let service = last_good(&backend);
    let fresh = call(&service, get("/a")).await.unwrap();
    assert_eq!(marker(&fresh), None);

    backend.respond(503, &[]);
    let stale = call(&service, get("/a")).await.unwrap();
    assert_eq!(stale.status(), 200);
    assert_eq!(stale.body(), "GET /a");
    assert_eq!(marker(&stale), Some("last-good"));
    assert_eq!(
        stale.extensions().get::<Degraded>(),
        Some(&Degraded::LastGood)
    );

    backend.fail();
    let stale = call(&service, get("/a")).await.unwrap();
    assert_eq!(stale.status(), 200, "the 503 did not replace the last good");
}

#[tokio::test(start_paused = true)]
async fn a_grpc_error_in_a_trailers_only_response_is_not_stored() {
    let backend = Backend::new();
    let service = last_good(&backend);
    let grpc = [("content-type", "application/grpc")];
    backend.respond(200, &grpc);
    call(&service, get("/shop.Catalogue/Get")).await.unwrap();

    // UNAVAILABLE, trailers-only: a failure, answered from the last good.
    backend.respond(200, &[grpc[0], ("grpc-status", "14")]);
    let stale = call(&service, get("/shop.Catalogue/Get")).await.unwrap();
    assert_eq!(marker(&stale), Some("last-good"));
    assert!(stale.headers().get("grpc-status").is_none());

    // NOT_FOUND: the caller's mistake, passed on and not stored.
    backend.respond(200, &[grpc[0], ("grpc-status", "5")]);
    let missing = call(&service, get("/shop.Catalogue/Get")).await.unwrap();
    assert_eq!(missing.headers()["grpc-status"], "5");
    assert_eq!(marker(&missing), None);
    backend.fail();
    let stale = call(&service, get("/shop.Catalogue/Get")).await.unwrap();
    assert!(stale.headers().get("grpc-status").is_none(), "the OK one");
}

#[tokio::test(start_paused = true)]
async fn two_paths_get_their_own_last_good() {
    let backend = Backend::new();
    let service = last_good(&backend);
    for uri in [
        "/a",
        "/b",
        "/search?q=1",
        "/search?q=2",
        "http://one.example/x",
    ] {
        call(&service, get(uri)).await.unwrap();
    }
    backend.fail();
    for (uri, body) in [
        ("/a", "GET /a"),
        ("/b", "GET /b"),
        ("/search?q=1", "GET /search?q=1"),
        ("/search?q=2", "GET /search?q=2"),
        ("http://one.example/x", "GET http://one.example/x"),
    ] {
        let stale = call(&service, get(uri)).await.unwrap();
        assert_eq!(stale.body(), body, "{uri}");
        assert_eq!(marker(&stale), Some("last-good"));
    }
    for never_seen in ["/c", "/search", "/search?q=3", "http://two.example/x"] {
        let error = call(&service, get(never_seen)).await.unwrap_err();
        assert_eq!(error.to_string(), "connection refused", "{never_seen}");
    }
}

#[tokio::test(start_paused = true)]
async fn a_post_is_never_answered_from_the_cache() {
    let backend = Backend::new();
    let service = last_good(&backend);
    call(&service, get("/orders")).await.unwrap();
    let posted = call(&service, request(Method::POST, "/basket"))
        .await
        .unwrap();
    assert_eq!(posted.body(), "POST /basket");

    backend.fail();
    for method in [Method::POST, Method::PUT, Method::DELETE, Method::PATCH] {
        let error = call(&service, request(method.clone(), "/orders"))
            .await
            .unwrap_err();
        assert_eq!(error.to_string(), "connection refused", "{method}");
    }
    // The POST's answer was not kept either, for a POST or anything else.
    for method in [Method::POST, Method::GET] {
        let error = call(&service, request(method.clone(), "/basket"))
            .await
            .unwrap_err();
        assert_eq!(error.to_string(), "connection refused", "{method}");
    }
    // HEAD is safe, and has its own last good.
    backend.respond(200, &[]);
    call(&service, request(Method::HEAD, "/orders"))
        .await
        .unwrap();
    backend.fail();
    let head = call(&service, request(Method::HEAD, "/orders"))
        .await
        .unwrap();
    assert_eq!(head.body(), "HEAD /orders");
    assert_eq!(marker(&head), Some("last-good"));
}

#[tokio::test(start_paused = true)]
async fn a_post_gets_the_static_response_not_a_cached_one() {
    let backend = Backend::new();
    let layer = FallbackLayer::builder()
        .last_good(Duration::from_secs(60), 100)
        .static_response(http::Response::new("try again later".to_string()))
        .build()
        .unwrap();
    let service = layer.layer(backend.service());
    call(&service, get("/orders")).await.unwrap();
    backend.fail();
    let answer = call(&service, request(Method::POST, "/orders"))
        .await
        .unwrap();
    assert_eq!(answer.body(), "try again later");
    assert_eq!(marker(&answer), Some("fallback"));
}

#[tokio::test(start_paused = true)]
async fn set_cookie_and_other_per_user_headers_are_not_replayed() {
    let backend = Backend::new();
    let service = last_good(&backend);
    backend.respond(
        200,
        &[
            ("set-cookie", "session=alice"),
            ("set-cookie", "theme=dark"),
            ("set-cookie2", "legacy=alice"),
            ("authentication-info", "rspauth=\"abc\""),
            ("proxy-authentication-info", "rspauth=\"def\""),
            ("etag", "\"v1\""),
        ],
    );
    let fresh = call(&service, get("/profile")).await.unwrap();
    assert_eq!(
        fresh.headers().get_all("set-cookie").iter().count(),
        2,
        "the live answer keeps its cookies"
    );

    backend.fail();
    let stale = call(&service, get("/profile")).await.unwrap();
    assert_eq!(marker(&stale), Some("last-good"));
    for name in [
        "set-cookie",
        "set-cookie2",
        "authentication-info",
        "proxy-authentication-info",
    ] {
        assert!(stale.headers().get(name).is_none(), "{name} replayed");
    }
    assert_eq!(stale.headers()["etag"], "\"v1\"", "other headers are kept");
}

#[tokio::test(start_paused = true)]
async fn responses_marked_no_store_or_private_are_not_stored() {
    for cache_control in [
        "no-store",
        "private",
        "Private, max-age=60",
        "max-age=60, NO-STORE",
        "private=\"set-cookie, x-user\"",
        "max-age=60,no-store",
        // Not text (`to_str` fails), still read.
        "caf\u{e9}, no-store",
    ] {
        let backend = Backend::new();
        let service = last_good(&backend);
        backend.respond(200, &[("cache-control", cache_control)]);
        call(&service, get("/a")).await.unwrap();
        backend.fail();
        let error = call(&service, get("/a")).await.unwrap_err();
        assert_eq!(error.to_string(), "connection refused", "{cache_control}");
    }
    for cache_control in ["public, max-age=60", "max-age=0", "x-no-store", "caf\u{e9}"] {
        let backend = Backend::new();
        let service = last_good(&backend);
        backend.respond(200, &[("cache-control", cache_control)]);
        call(&service, get("/a")).await.unwrap();
        backend.fail();
        let stale = call(&service, get("/a")).await.unwrap();
        assert_eq!(marker(&stale), Some("last-good"), "{cache_control}");
    }
}

#[tokio::test(start_paused = true)]
async fn responses_that_vary_per_user_are_not_stored() {
    for vary in ["*", "Cookie", "accept-encoding, Authorization", "accept, *"] {
        let backend = Backend::new();
        let service = last_good(&backend);
        backend.respond(200, &[("vary", vary)]);
        call(&service, get("/a")).await.unwrap();
        backend.fail();
        let error = call(&service, get("/a")).await.unwrap_err();
        assert_eq!(error.to_string(), "connection refused", "{vary}");
    }
    let backend = Backend::new();
    let service = last_good(&backend);
    backend.respond(200, &[("vary", "accept-encoding")]);
    // The first answer that varies teaches the layer to keep request headers.
    call(&service, get("/a")).await.unwrap();
    call(&service, get("/a")).await.unwrap();
    backend.fail();
    let stale = call(&service, get("/a")).await.unwrap();
    assert_eq!(marker(&stale), Some("last-good"));
}

#[tokio::test(start_paused = true)]
async fn an_answer_to_an_authorized_request_is_stored_only_if_marked_shareable() {
    let authorized = || {
        let mut request = get("/me");
        request
            .headers_mut()
            .insert("authorization", "Bearer alice".parse().unwrap());
        request
    };
    let backend = Backend::new();
    let service = last_good(&backend);
    call(&service, authorized()).await.unwrap();
    backend.fail();
    let error = call(&service, get("/me")).await.unwrap_err();
    assert_eq!(
        error.to_string(),
        "connection refused",
        "alice's answer kept"
    );

    // Only `public`: `s-maxage` and `must-revalidate` forbid serving the answer stale,
    // all the cache ever does.
    for shareable in ["public", "Public, max-age=60"] {
        let backend = Backend::new();
        let service = last_good(&backend);
        backend.respond(200, &[("cache-control", shareable)]);
        call(&service, authorized()).await.unwrap();
        backend.fail();
        let stale = call(&service, get("/me")).await.unwrap();
        assert_eq!(marker(&stale), Some("last-good"), "{shareable}");
    }
}

#[tokio::test(start_paused = true)]
async fn a_degraded_answer_from_further_down_is_not_stored_as_last_good() {
    let backend = Backend::new();
    let service = last_good(&backend);
    call(&service, get("/a")).await.unwrap();
    backend.respond(
        200,
        &[
            ("x-bulwark-degraded", "fallback"),
            ("x-answered-by", "a fallback"),
        ],
    );
    let passed = call(&service, get("/a")).await.unwrap();
    assert_eq!(marker(&passed), Some("fallback"), "passed on as it is");
    backend.fail();
    let stale = call(&service, get("/a")).await.unwrap();
    assert_eq!(marker(&stale), Some("last-good"));
    assert!(
        stale.headers().get("x-answered-by").is_none(),
        "the fresh answer, not the degraded one"
    );
}

#[tokio::test(start_paused = true)]
async fn a_dependency_shedding_load_is_answered_from_the_last_good() {
    // A shed is no failure of the dependency's health (breakers ignore it), but the call
    // was not served: it falls back, and is not kept.
    for shed in [
        vec![("x-bulwark-overloaded", "true"), ("retry-after", "1")],
        vec![("x-envoy-overloaded", "true")],
        vec![
            ("content-type", "application/grpc"),
            ("grpc-status", "8"),
            ("grpc-retry-pushback-ms", "100"),
        ],
    ] {
        let backend = Backend::new();
        let service = last_good(&backend);
        call(&service, get("/a")).await.unwrap();
        let status = if shed[0].0 == "content-type" {
            200
        } else {
            503
        };
        backend.respond(status, &shed);
        let stale = call(&service, get("/a")).await.unwrap();
        assert_eq!(marker(&stale), Some("last-good"), "{shed:?}");
        assert_eq!(stale.status(), 200);
        let unseen = call(&service, get("/b")).await.unwrap();
        assert_eq!(unseen.status(), status, "passed on: nothing to answer with");
        assert_eq!(marker(&unseen), None);
    }
}
