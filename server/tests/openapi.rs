//! The published contract: the shop's and the PSP's OpenAPI 3.1 documents are
//! generated from the code, match the reviewed snapshots `server/openapi.json`
//! and `server/openapi-psp.json`, describe every route with the headers and
//! problem types really sent, are what `GET /openapi.json` serves, and
//! validate as OpenAPI 3.1.

use serde_json::Value;
use stampede_server::StackConfig;
use stampede_server::openapi::document_json;
use stampede_server::{Connector, HttpClient};
use std::path::PathBuf;
use std::time::Duration;

const UPDATE_VAR: &str = "STAMPEDE_UPDATE_OPENAPI";

/// Each published document: its snapshot file and its text.
fn documents() -> [(&'static str, &'static str); 2] {
    [
        ("openapi.json", document_json()),
        ("openapi-psp.json", stampede_server::psp::document_json()),
    ]
}

fn document() -> Value {
    serde_json::from_str(document_json()).expect("the document is JSON")
}

#[test]
fn the_documents_match_the_reviewed_snapshots() {
    // Proves: a change to any route, body, header or problem type of the shop or the PSP changes
    // server/openapi.json or server/openapi-psp.json, so it shows up in review; regenerate with
    // STAMPEDE_UPDATE_OPENAPI=1.
    for (file, text) in documents() {
        let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(file);
        let now = format!("{text}\n");
        if std::env::var(UPDATE_VAR).as_deref() == Ok("1") {
            std::fs::write(&path, &now).unwrap();
            continue;
        }
        let snapshot = std::fs::read_to_string(&path).unwrap_or_default();
        assert!(
            snapshot == now,
            "the HTTP contract changed: review the difference and regenerate server/{file} with \
             {UPDATE_VAR}=1 cargo test -p stampede-server --test openapi"
        );
    }
}

/// How many operations the document describes.
fn operations(doc: &Value) -> usize {
    doc["paths"]
        .as_object()
        .unwrap()
        .values()
        .map(|item| item.as_object().unwrap().len())
        .sum()
}

/// The operation `method path`.
fn operation<'a>(doc: &'a Value, method: &str, path: &str) -> &'a Value {
    let op = &doc["paths"][path][method];
    assert!(op.is_object(), "{method} {path} is not documented");
    op
}

fn header_param<'a>(op: &'a Value, name: &str) -> Option<&'a Value> {
    op["parameters"]
        .as_array()?
        .iter()
        .find(|p| p["in"] == "header" && p["name"] == name)
}

#[test]
fn every_route_is_documented_with_the_headers_and_problems_it_sends() {
    // Proves: OpenAPI 3.1; every route of the shop is there; Idempotency-Key is a header of
    // POST /v1/orders and /pay, Idempotent-Replayed a header of their success answers, Retry-After
    // of the 429, Psp-Signature a header of the webhook; every 4xx/5xx answer is
    // application/problem+json with the Problem schema; the admin routes need the bearer token.
    let doc = document();
    assert_eq!(doc["openapi"], "3.1.0");
    let routes = [
        ("get", "/healthz"),
        ("get", "/readyz"),
        ("get", "/metrics"),
        ("get", "/openapi.json"),
        ("get", "/v1/products"),
        ("get", "/v1/products/{sku}"),
        ("post", "/v1/orders"),
        ("get", "/v1/orders/{id}"),
        ("get", "/v1/orders/{id}/events"),
        ("post", "/v1/orders/{id}/pay"),
        ("post", "/v1/orders/{id}/cancel"),
        ("post", "/v1/webhooks/psp"),
        ("post", "/admin/restock"),
        ("get", "/admin/audit"),
    ];
    let documented = operations(&doc);
    assert_eq!(documented, routes.len(), "no undocumented extra operation");
    for (method, path) in routes {
        let op = operation(&doc, method, path);
        for (status, answer) in op["responses"].as_object().unwrap() {
            if status.starts_with('4') || status.starts_with('5') {
                let content = &answer["content"]["application/problem+json"]["schema"]["$ref"];
                assert_eq!(
                    content, "#/components/schemas/Problem",
                    "{method} {path} {status} is not problem+json"
                );
            }
        }
    }
    for (method, path) in [("post", "/v1/orders"), ("post", "/v1/orders/{id}/pay")] {
        let op = operation(&doc, method, path);
        let key = header_param(op, "Idempotency-Key").expect("Idempotency-Key documented");
        assert_eq!(key["required"], true);
        let ok = if path == "/v1/orders" { "202" } else { "200" };
        assert!(
            op["responses"][ok]["headers"]["Idempotent-Replayed"].is_object(),
            "{path} {ok} documents Idempotent-Replayed"
        );
    }
    let place = operation(&doc, "post", "/v1/orders");
    assert!(place["responses"]["429"]["headers"]["Retry-After"].is_object());
    // The stateful links from a placed order name real operations, as OpenAPI spells them.
    let operation_ids: Vec<&str> = doc["paths"]
        .as_object()
        .unwrap()
        .values()
        .flat_map(|item| item.as_object().unwrap().values())
        .filter_map(|op| op["operationId"].as_str())
        .collect();
    for link in ["GetOrder", "PayOrder", "CancelOrder", "OrderEvents"] {
        let link = &place["responses"]["202"]["links"][link];
        let target = link["operationId"].as_str().expect("operationId");
        assert!(operation_ids.contains(&target), "{target}");
        assert_eq!(link["parameters"]["id"], "$response.body#/order_id");
    }
    assert!(place["requestBody"]["content"]["application/json"].is_object());
    // The path the PSP is configured to deliver to is the documented webhook route.
    let hook = operation(&doc, "post", stampede_server::WEBHOOK_PATH);
    assert!(header_param(hook, "Psp-Signature").is_some());
    for (method, path) in [("post", "/admin/restock"), ("get", "/admin/audit")] {
        assert_eq!(
            operation(&doc, method, path)["security"][0]["admin_token"],
            serde_json::json!([])
        );
    }
    let problem = &doc["components"]["schemas"]["Problem"]["properties"];
    for field in ["type", "title", "status", "detail"] {
        assert!(problem[field].is_object(), "Problem.{field}");
    }
    assert!(
        problem["retry_after_s"].is_null(),
        "a header, not a body field"
    );
}

#[test]
fn every_psp_route_is_documented_with_its_problems() {
    // Proves: the PSP's document is OpenAPI 3.1 with every route of its router (and no other),
    // the optional Idempotency-Key on the two creating routes, and problem+json errors.
    let doc: Value = serde_json::from_str(stampede_server::psp::document_json()).unwrap();
    assert_eq!(doc["openapi"], "3.1.0");
    let routes = [
        ("post", "/v1/payment_intents"),
        ("get", "/v1/payment_intents"),
        ("get", "/v1/payment_intents/{id}"),
        ("post", "/v1/payment_intents/{id}/confirm"),
        ("post", "/v1/payment_intents/{id}/cancel"),
        ("post", "/v1/refunds"),
        ("get", "/v1/ledger"),
        ("get", "/openapi.json"),
    ];
    let documented = operations(&doc);
    assert_eq!(documented, routes.len());
    for (method, path) in routes {
        let op = operation(&doc, method, path);
        for (status, answer) in op["responses"].as_object().unwrap() {
            if status.starts_with('4') || status.starts_with('5') {
                assert!(
                    answer["content"]["application/problem+json"].is_object(),
                    "{method} {path} {status}"
                );
            }
        }
    }
    for path in ["/v1/payment_intents", "/v1/refunds"] {
        let key = header_param(operation(&doc, "post", path), "Idempotency-Key").unwrap();
        assert_eq!(key["required"], false, "{path}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_shop_serves_the_generated_document() {
    // Proves: GET /openapi.json on a running shop answers the generated document as JSON.
    let config = StackConfig::demo("127.0.0.1:0".parse().unwrap(), 1_700_000_000_000);
    let stack = stampede_server::start(config).await.expect("stack starts");
    let http = HttpClient::new(Connector::tokio(), Duration::from_secs(10));
    let response = http
        .get(&stack.shop_addr.to_string(), "/openapi.json")
        .await
        .unwrap();
    assert_eq!(response.status, hyper::StatusCode::OK);
    assert_eq!(response.headers["content-type"], "application/json");
    assert_eq!(response.json::<Value>().unwrap(), document());
    let psp = http.get(&stack.psp_addr, "/openapi.json").await.unwrap();
    assert_eq!(psp.status, hyper::StatusCode::OK);
    assert_eq!(psp.body, stampede_server::psp::document_json().as_bytes());
    stack.shutdown().await;
}

/// Every documented operation of `doc`, served at `addr`: asked with a body past the
/// server's cap it answers 413 `body-too-large`, and that answer is documented on it.
async fn every_operation_refuses_a_body_past_the_cap(http: &HttpClient, addr: &str, doc: &Value) {
    let body = bytes::Bytes::from(vec![b'x'; 2 << 20]);
    for (path, item) in doc["paths"].as_object().unwrap() {
        for (method, op) in item.as_object().unwrap() {
            let url = path.replace("{id}", "ord_1").replace("{sku}", "hat");
            let method_of = hyper::Method::from_bytes(method.to_uppercase().as_bytes()).unwrap();
            let headers = [("content-type", "application/json".to_string())];
            let answer = http
                .send(addr, method_of, &url, &headers, Some(body.clone()))
                .await
                .unwrap();
            assert_eq!(
                answer.status,
                hyper::StatusCode::PAYLOAD_TOO_LARGE,
                "{method} {path}"
            );
            assert!(
                op["responses"]["413"].is_object(),
                "{method} {path} answers 413 but does not document it"
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_route_documents_the_body_cap_it_enforces_and_a_wrong_method_is_problem_json() {
    // Proves: the body cap stands in front of every route of the shop and the PSP, whatever
    // the method (a GET with a body past it is refused 413), and every operation's document
    // says so; a path asked with a method it does not take is 405 problem+json, as the
    // documents' descriptions say.
    let config = StackConfig::demo("127.0.0.1:0".parse().unwrap(), 1_700_000_000_000);
    let stack = stampede_server::start(config).await.expect("stack starts");
    let http = HttpClient::new(Connector::tokio(), Duration::from_secs(10));
    let shop = stack.shop_addr.to_string();
    every_operation_refuses_a_body_past_the_cap(&http, &shop, &document()).await;
    let psp_doc: Value = serde_json::from_str(stampede_server::psp::document_json()).unwrap();
    every_operation_refuses_a_body_past_the_cap(&http, &stack.psp_addr, &psp_doc).await;
    for (addr, doc) in [(&shop, document()), (&stack.psp_addr, psp_doc)] {
        let answer = http
            .send(addr, hyper::Method::DELETE, "/openapi.json", &[], None)
            .await
            .unwrap();
        assert_eq!(answer.status, hyper::StatusCode::METHOD_NOT_ALLOWED);
        assert_eq!(answer.headers["content-type"], "application/problem+json");
        let description = doc["info"]["description"].as_str().unwrap();
        assert!(
            description.contains("405 `method-not-allowed`"),
            "{description}"
        );
    }
    stack.shutdown().await;
}

#[test]
fn the_documents_validate_as_openapi_3_1() {
    // Proves: both documents pass an independent OpenAPI 3.1 validator (Python's
    // openapi-spec-validator, which .ci/run installs). Without it this test says loudly that
    // it did not run — and fails where STAMPEDE_REQUIRE_OPENAPI_VALIDATOR=1 (CI).
    for (name, text) in documents() {
        validate(name, text);
    }
}

fn validate(name: &str, text: &str) {
    let file = std::env::temp_dir().join(format!("stampede-{}-{name}", std::process::id()));
    std::fs::write(&file, text).unwrap();
    let script = "import sys\n\
                  from openapi_spec_validator import validate\n\
                  from openapi_spec_validator.readers import read_from_filename\n\
                  spec, _ = read_from_filename(sys.argv[1])\n\
                  validate(spec)\n\
                  print(spec['openapi'])\n";
    // .ci/run's venv, where it installs the validator; else the system's.
    let python = std::env::var("STAMPEDE_PYTHON").unwrap_or_else(|_| "python3".into());
    let output = std::process::Command::new(python)
        .args(["-c", script])
        .arg(&file)
        .output();
    let _ = std::fs::remove_file(&file);
    let missing = match &output {
        Err(_) => true,
        Ok(o) => String::from_utf8_lossy(&o.stderr).contains("No module named"),
    };
    if missing {
        let required = std::env::var("STAMPEDE_REQUIRE_OPENAPI_VALIDATOR").as_deref() == Ok("1");
        assert!(
            !required,
            "openapi-spec-validator is required here but missing"
        );
        eprintln!(
            "*** NOT RUN *** the_documents_validate_as_openapi_3_1 ({name}): python3 with \
             openapi-spec-validator not found (pip install openapi-spec-validator)"
        );
        return;
    }
    let output = output.unwrap();
    assert!(
        output.status.success(),
        "openapi-spec-validator refused {name}:\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&output.stdout).trim(), "3.1.0");
}
