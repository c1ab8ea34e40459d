use proptest::prelude::*;

use super::*;

const VECTOR_SECRET: &str = "sk_test_5f3b1c0e9a8d4e7f";
const VECTOR_KEY: &str = "key_01JDEMO0000000000000000000";

fn vector_request() -> SignedRequest<'static> {
    SignedRequest {
        method: "POST",
        path: "/v1/cards/card_01JDEMO/topups",
        query: "",
        idempotency_key: "idem-42",
        body: br#"{"amount":{"value":2500,"currency":"USD"}}"#,
    }
}

#[test]
fn security_md_test_vector() {
    let sig = sign(VECTOR_SECRET, VECTOR_KEY, "1764000000", "n0nce-0001-abcdef", &vector_request());
    assert_eq!(sig, "v1=9077d9677d4698c00451fef29bc005efbe8b079fd7a2ee9786fb660321ee12f7");
    assert!(verify(VECTOR_SECRET, VECTOR_KEY, "1764000000", "n0nce-0001-abcdef", &vector_request(), &sig));
}

#[test]
fn every_signed_part_matters() {
    let sig = sign(VECTOR_SECRET, VECTOR_KEY, "1764000000", "n0nce-0001-abcdef", &vector_request());
    let base = vector_request();
    let variants = [
        SignedRequest { method: "PUT", ..base },
        SignedRequest { path: "/v1/cards/card_01JDEMO/topup", ..base },
        SignedRequest { query: "a=1", ..base },
        SignedRequest { idempotency_key: "idem-43", ..base },
        SignedRequest { body: br#"{"amount":{"value":2501,"currency":"USD"}}"#, ..base },
    ];
    for v in variants {
        assert!(!verify(VECTOR_SECRET, VECTOR_KEY, "1764000000", "n0nce-0001-abcdef", &v, &sig));
    }
    assert!(!verify(VECTOR_SECRET, VECTOR_KEY, "1764000001", "n0nce-0001-abcdef", &base, &sig));
    assert!(!verify(VECTOR_SECRET, VECTOR_KEY, "1764000000", "n0nce-0001-abcdeg", &base, &sig));
    assert!(!verify("sk_test_other", VECTOR_KEY, "1764000000", "n0nce-0001-abcdef", &base, &sig));
    assert!(!verify(
        VECTOR_SECRET,
        VECTOR_KEY,
        "1764000000",
        "n0nce-0001-abcdef",
        &base,
        &sig.to_uppercase()
    ));
}

#[test]
fn header_shapes() {
    let ok = |name: &str| -> Option<&'static str> {
        match name {
            HEADER_KEY_ID => Some("key_01JDEMO0000000000000000000"),
            HEADER_TIMESTAMP => Some("1764000000"),
            HEADER_NONCE => Some("n0nce-0001-abcdef"),
            HEADER_SIGNATURE => Some("v1=9077d9677d4698c00451fef29bc005efbe8b079fd7a2ee9786fb660321ee12f7"),
            _ => None,
        }
    };
    assert!(parse_headers(ok).is_ok());
    assert_eq!(
        parse_headers(|n| if n == HEADER_NONCE { None } else { ok(n) }),
        Err(HeaderProblem::Missing(HEADER_NONCE))
    );
    assert_eq!(
        parse_headers(|n| if n == HEADER_NONCE { Some("short") } else { ok(n) }),
        Err(HeaderProblem::Malformed(HEADER_NONCE))
    );
    assert_eq!(
        parse_headers(|n| if n == HEADER_TIMESTAMP { Some("17e8") } else { ok(n) }),
        Err(HeaderProblem::Malformed(HEADER_TIMESTAMP))
    );
    assert_eq!(
        parse_headers(|n| if n == HEADER_KEY_ID { Some("key_1\nx") } else { ok(n) }),
        Err(HeaderProblem::Malformed(HEADER_KEY_ID))
    );
}

proptest! {
    /// The header parser never panics and accepts only well-shaped values.
    #[test]
    fn header_parser_is_total(key in ".{0,80}", ts in ".{0,20}", nonce in ".{0,80}", sig in ".{0,80}") {
        let result = parse_headers(|n| match n {
            HEADER_KEY_ID => Some(key.as_str()),
            HEADER_TIMESTAMP => Some(ts.as_str()),
            HEADER_NONCE => Some(nonce.as_str()),
            HEADER_SIGNATURE => Some(sig.as_str()),
            _ => None,
        });
        if let Ok(h) = result {
            prop_assert!(h.key_id.starts_with("key_"));
            prop_assert!((16..=64).contains(&h.nonce.len()));
            prop_assert!(h.signature.starts_with("v1="));
        }
    }

    /// sign/verify agree for any request.
    #[test]
    fn sign_then_verify(method in "[A-Z]{3,6}", path in "/[a-z0-9/_]{0,40}", query in "[a-z0-9=&]{0,20}", idem in "[ -~]{0,30}", body in proptest::collection::vec(any::<u8>(), 0..200)) {
        let req = SignedRequest { method: &method, path: &path, query: &query, idempotency_key: &idem, body: &body };
        let sig = sign("sk_x", "key_1", "1", "nonce-nonce-nonce", &req);
        prop_assert!(verify("sk_x", "key_1", "1", "nonce-nonce-nonce", &req, &sig));
    }
}
