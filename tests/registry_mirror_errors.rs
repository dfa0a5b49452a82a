//! A pull whose mirror lacks the image while the registry itself cannot be
//! reached: the error names both, and what to do.
#![allow(clippy::unwrap_used)]

mod common;
mod image_support;

use corral::image::Mirror;
use image_support::*;

use corral::error_chain;

#[test]
fn mirror_404_and_unreachable_upstream_name_both() {
    // A registry address nothing listens on: connection refused.
    let upstream = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap().to_string()
    };
    let mirror = FakeServer::start(|req| {
        if req.path == "/v2/" {
            ok(b"{}")
        } else {
            status(404)
        }
    });
    let store = common::tempdir();
    let mut options = fast_options();
    options.mirrors = vec![Mirror::parse(&format!("{upstream}=http://{}", mirror.addr)).unwrap()];
    let reference = format!("{upstream}/t/img:1");
    let err = pull(store.path(), &reference, options).unwrap_err();
    let text = error_chain(&err);
    eprintln!("{text}");
    assert!(
        text.contains(&format!("mirror http://{}", mirror.addr)),
        "names the mirror: {text}"
    );
    assert!(
        text.contains("not found"),
        "says what the mirror answered: {text}"
    );
    assert!(
        text.contains(&format!("registry {upstream} failed too")),
        "names the registry: {text}"
    );
    assert!(
        text.contains("push the image to the mirror"),
        "says what to do: {text}"
    );
    assert!(mirror.count("HEAD", "/manifests/") + mirror.count("GET", "/manifests/") >= 1);
}
