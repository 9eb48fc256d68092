//! The console against a hostile client, over plain HTTP on loopback (`--api-plain-http`) with
//! raw requests: a console user deleted and made again under the same name (new password,
//! narrower rules) never inherits the old user's sessions; a body that trickles in is cut off
//! like the API's (`408`), not held open; an `Origin` of the other scheme is another origin;
//! a form field that is not UTF-8 is refused, not mended; descriptions refuse line separators
//! and format characters; `notice=` shows only notices of the fixed set; `/console/`
//! redirects; a page past the last one is the last one; no HSTS over plain HTTP; the audit
//! page pages by record id with a bounded page size.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use crate::api::{serve, stop};
use crate::support::{Backend, TestEnv};

/// One request on a new connection, from a page of this (plain HTTP) origin; the whole answer
/// as text.
pub(crate) fn request(
    addr: &str,
    method: &str,
    path: &str,
    cookie: Option<&str>,
    form: &str,
) -> String {
    let origin = format!("http://{addr}");
    request_raw(addr, method, path, cookie, form.as_bytes(), Some(&origin))
}

/// [`request`] with any body bytes and `Origin` (none when `None`).
pub(crate) fn request_raw(
    addr: &str,
    method: &str,
    path: &str,
    cookie: Option<&str>,
    form: &[u8],
    origin: Option<&str>,
) -> String {
    let mut tcp = TcpStream::connect(addr).unwrap();
    tcp.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
    let cookie = cookie.map_or(String::new(), |c| format!("Cookie: {c}\r\n"));
    let origin = origin.map_or(String::new(), |o| format!("Origin: {o}\r\n"));
    let head = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\n{origin}{cookie}\
         Content-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        form.len()
    );
    tcp.write_all(head.as_bytes()).unwrap();
    tcp.write_all(form).unwrap();
    let mut answer = Vec::new();
    let _ = tcp.read_to_end(&mut answer);
    String::from_utf8_lossy(&answer).into_owned()
}

pub(crate) fn status(answer: &str) -> &str {
    answer.split(' ').nth(1).unwrap_or("")
}

/// The value of header `name` in `answer`.
pub(crate) fn header<'a>(answer: &'a str, name: &str) -> Option<&'a str> {
    answer
        .split("\r\n\r\n")
        .next()?
        .lines()
        .find_map(|l| {
            l.split_once(": ")
                .filter(|(n, _)| n.eq_ignore_ascii_case(name))
        })
        .map(|(_, v)| v)
}

/// The CSRF token in a page's forms.
pub(crate) fn csrf(page: &str) -> String {
    let at = page
        .find("name=\"_csrf\" value=\"")
        .unwrap_or_else(|| panic!("no CSRF field: {page}"));
    let rest = &page[at + "name=\"_csrf\" value=\"".len()..];
    rest[..rest.find('"').unwrap()].to_owned()
}

/// Signs in; returns the session cookie (`rotor_console=…`).
pub(crate) fn sign_in(addr: &str, user: &str, password: &str) -> String {
    let answer = request(
        addr,
        "POST",
        "/console/login",
        None,
        &format!("user={user}&password={password}"),
    );
    assert_eq!(status(&answer), "303", "{answer}");
    answer
        .lines()
        .find_map(|l| {
            l.split_once(": ")
                .filter(|(name, _)| name.eq_ignore_ascii_case("set-cookie"))
                .map(|(_, value)| value)
        })
        .and_then(|c| c.split(';').next())
        .unwrap_or_else(|| panic!("no session cookie: {answer}"))
        .to_owned()
}

pub(crate) fn make_user(t: &TestEnv, name: &str, password: &str, allow: &str) {
    let out = t.run_with_stdin(
        &["console-user", "create", name, "--allow", allow],
        &format!("{password}\n"),
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_user_made_again_under_its_name_gets_none_of_the_old_sessions() {
    let t = TestEnv::new(Backend::Sqlite).await;
    t.ok(&["init"]);
    t.ok(&[
        "secret", "create", "app/one", "--type", "Generic", "--value", "v",
    ]);
    make_user(&t, "ops", "first-password-1234", "*:app/*");
    let (server, addr) = serve(&t, &["--api-plain-http"]);
    let cookie = sign_in(&addr, "ops", "first-password-1234");
    let page = request(&addr, "GET", "/console/secrets", Some(&cookie), "");
    assert_eq!(status(&page), "200", "{page}");
    assert!(page.contains("app/one"));

    t.ok(&["console-user", "delete", "ops"]);
    make_user(&t, "ops", "second-password-5678", "ListSecrets:nothing/*");
    let page = request(&addr, "GET", "/console/secrets", Some(&cookie), "");
    assert_eq!(
        status(&page),
        "303",
        "the old session ended with the old user: {page}"
    );
    assert!(!page.contains("app/one"));
    // The new user's own session gets the new rules.
    let fresh = sign_in(&addr, "ops", "second-password-5678");
    let page = request(&addr, "GET", "/console/secrets", Some(&fresh), "");
    assert_eq!(status(&page), "200", "{page}");
    assert!(!page.contains("app/one"), "the new rules apply");
    stop(server);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_form_body_that_trickles_in_is_cut_off() {
    let t = TestEnv::new(Backend::Sqlite).await;
    t.ok(&["init"]);
    let (server, addr) = serve(&t, &["--api-plain-http"]);
    let mut tcp = TcpStream::connect(&addr).unwrap();
    tcp.set_read_timeout(Some(Duration::from_secs(40))).unwrap();
    let started = Instant::now();
    tcp.write_all(
        format!(
            "POST /console/login HTTP/1.1\r\nHost: {addr}\r\nOrigin: http://{addr}\r\n\
             Content-Type: application/x-www-form-urlencoded\r\nContent-Length: 1000\r\n\r\nuser="
        )
        .as_bytes(),
    )
    .unwrap();
    // A byte every 2 s: never the whole body.
    let writer = tcp.try_clone().unwrap();
    let trickle = std::thread::spawn(move || {
        let mut writer = writer;
        for _ in 0..20 {
            std::thread::sleep(Duration::from_secs(2));
            if writer.write_all(b"a").is_err() {
                break;
            }
        }
    });
    let mut answer = vec![0u8; 4096];
    let n = tcp.read(&mut answer).unwrap_or(0);
    let answer = String::from_utf8_lossy(&answer[..n]).into_owned();
    // Without the cut-off the server would still be waiting when the trickle (40 s) ends.
    assert_eq!(
        status(&answer),
        "408",
        "after {:?}: {answer}",
        started.elapsed()
    );
    drop(tcp);
    let _ = trickle.join();
    stop(server);
}

/// A plain-HTTP console with user `ops` (`*:*`) signed in: the server, its address, the cookie
/// and the CSRF token.
fn console_with_ops(t: &TestEnv) -> (crate::api::Served, String, String, String) {
    make_user(t, "ops", "ops-password-1234", "*:*");
    let (server, addr) = serve(t, &["--api-plain-http"]);
    let cookie = sign_in(&addr, "ops", "ops-password-1234");
    let page = request(&addr, "GET", "/console/secrets", Some(&cookie), "");
    let token = csrf(&page);
    (server, addr, cookie, token)
}

/// A Sqlite store with secret `app/one` and a plain-HTTP console with `ops` signed in.
async fn app_one() -> (TestEnv, crate::api::Served, String, String, String) {
    let t = TestEnv::new(Backend::Sqlite).await;
    t.ok(&["init"]);
    t.ok(&[
        "secret", "create", "app/one", "--type", "Generic", "--value", "v",
    ]);
    let (server, addr, cookie, token) = console_with_ops(&t);
    (t, server, addr, cookie, token)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_origin_of_the_other_scheme_is_another_origin() {
    let (_t, server, addr, cookie, token) = app_one().await;
    // The same host over the other scheme is another origin: refused, for sign-in and changes.
    let https = format!("https://{addr}");
    let login = request_raw(
        &addr,
        "POST",
        "/console/login",
        None,
        b"user=ops&password=ops-password-1234",
        Some(&https),
    );
    assert_eq!(status(&login), "403", "{login}");
    let change = request_raw(
        &addr,
        "POST",
        "/console/secret/restore",
        Some(&cookie),
        format!("_csrf={token}&name=app%2Fone").as_bytes(),
        Some(&https),
    );
    assert_eq!(status(&change), "403", "{change}");
    assert!(
        change.contains("did not come from a console page"),
        "{change}"
    );
    stop(server);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_form_field_that_is_not_utf8_is_refused_not_mended() {
    let (t, server, addr, cookie, token) = app_one().await;
    // A field that is not UTF-8 is refused (400), not mended into U+FFFD; nothing is made.
    let form = format!("_csrf={token}&type=Generic&name=app%2Flatin&value=x&description=caf");
    // Latin-1 `é`, percent-encoded and raw.
    for tail in [&b"%E9"[..], &b"\xE9"[..]] {
        let body = [form.as_bytes(), tail].concat();
        let answer = request_raw(
            &addr,
            "POST",
            "/console/create",
            Some(&cookie),
            &body,
            Some(&format!("http://{addr}")),
        );
        assert_eq!(status(&answer), "400", "{answer}");
        assert!(
            answer.contains("The field description is not valid UTF-8"),
            "{answer}"
        );
    }
    assert_eq!(
        t.run(&["secret", "describe", "app/latin"]).status.code(),
        Some(3)
    );
    stop(server);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn descriptions_refuse_line_separators_and_format_characters() {
    let (t, server, addr, cookie, token) = app_one().await;
    // Line and paragraph separators and format characters are refused like control characters,
    // next to the description field.
    for (code, encoded) in [
        ("U+2028", "%E2%80%A8"),
        ("U+2029", "%E2%80%A9"),
        ("U+200B", "%E2%80%8B"),
        ("U+FEFF", "%EF%BB%BF"),
    ] {
        let answer = request(
            &addr,
            "POST",
            "/console/create",
            Some(&cookie),
            &format!("_csrf={token}&type=Generic&name=app%2Fsep&value=x&description=a{encoded}b"),
        );
        assert_eq!(status(&answer), "422", "{code}: {answer}");
        assert!(
            answer.contains("data-field=\"description\"") && answer.contains(code),
            "{code}: {answer}"
        );
    }
    assert_eq!(
        t.run(&["secret", "describe", "app/sep"]).status.code(),
        Some(3)
    );
    // The CLI refuses them too.
    let cli = t.run(&[
        "secret",
        "create",
        "app/sep",
        "--type",
        "Generic",
        "--value",
        "x",
        "--description",
        "a\u{2028}b",
    ]);
    assert_eq!(
        cli.status.code(),
        Some(2),
        "{}",
        String::from_utf8_lossy(&cli.stderr)
    );
    stop(server);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_notice_shows_only_words_of_the_fixed_set() {
    let (_t, server, addr, cookie, _) = app_one().await;
    // A notice is one of a fixed set, named by its code: a link's own words never show.
    let page = request(
        &addr,
        "GET",
        "/console/secret?name=app%2Fone&notice=Your+session+expired%3A+call+555-0100",
        Some(&cookie),
        "",
    );
    assert_eq!(status(&page), "200", "{page}");
    assert!(
        !page.contains("555-0100") && !page.contains("class=\"notice\""),
        "{page}"
    );
    let page = request(
        &addr,
        "GET",
        "/console/secret?name=app%2Fone&notice=restored",
        Some(&cookie),
        "",
    );
    assert!(
        page.contains("Restored: the scheduled deletion is cancelled."),
        "{page}"
    );
    stop(server);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_trailing_slash_and_pages_past_the_last_lead_somewhere_real() {
    let (_t, server, addr, cookie, _) = app_one().await;
    // `/console/` goes to `/console`; a page past the last is the last.
    let slash = request(&addr, "GET", "/console/", Some(&cookie), "");
    assert!(status(&slash).starts_with('3'), "{slash}");
    assert_eq!(header(&slash, "location"), Some("/console"), "{slash}");
    let past = request(&addr, "GET", "/console/secrets?page=2", Some(&cookie), "");
    assert!(status(&past).starts_with('3'), "{past}");
    let last = header(&past, "location").unwrap().to_owned();
    assert!(last.contains("page=1"), "{last}");
    let page = request(&addr, "GET", &last, Some(&cookie), "");
    assert!(page.contains("page 1 of 1"), "{page}");
    // HSTS only over TLS (the browser test sees it there).
    assert_eq!(header(&page, "strict-transport-security"), None, "{page}");
    stop(server);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_audit_page_pages_past_its_limit() {
    let t = TestEnv::new(Backend::Sqlite).await;
    t.ok(&["init"]);
    for i in 0..25 {
        t.ok(&[
            "secret",
            "create",
            &format!("app/page-{i:02}"),
            "--type",
            "Generic",
            "--value",
            "v",
        ]);
    }
    let (server, addr, cookie, _) = console_with_ops(&t);
    let ids = |page: &str| -> Vec<i64> {
        page.match_indices("data-id=\"")
            .map(|(at, m)| {
                let rest = &page[at + m.len()..];
                rest[..rest.find('"').unwrap()].parse().unwrap()
            })
            .collect()
    };
    let link = |page: &str, rel: &str| -> Option<String> {
        let at = page.find(&format!("rel=\"{rel}\""))?;
        let start = page[..at].rfind("href=\"")? + "href=\"".len();
        Some(page[start..].split('"').next()?.replace("&amp;", "&"))
    };
    let get = |path: &str| {
        let page = request(&addr, "GET", path, Some(&cookie), "");
        assert_eq!(status(&page), "200", "{page}");
        page
    };
    let first = get("/console/audit?action=secret.create&limit=10");
    let first_ids = ids(&first);
    assert_eq!(first_ids.len(), 10, "{first}");
    assert!(
        link(&first, "prev").is_none(),
        "the first page has nothing newer"
    );
    let second = get(&link(&first, "next").expect("an older page"));
    let second_ids = ids(&second);
    assert_eq!(second_ids.len(), 10);
    assert!(
        second_ids.iter().max() < first_ids.iter().min(),
        "{second_ids:?} {first_ids:?}"
    );
    let third = get(&link(&second, "next").expect("a third page"));
    assert_eq!(ids(&third).len(), 5, "the 25 records end here");
    // Back towards the present: the second page again, then the first.
    let back = get(&link(&third, "prev").expect("a newer page"));
    assert_eq!(ids(&back), second_ids);
    let front = get(&link(&back, "prev").expect("the first page"));
    assert_eq!(ids(&front), first_ids);
    // The page size is bounded whatever the link asks.
    let huge = get("/console/audit?limit=1000000");
    assert!(huge.contains("value=\"500\""), "{huge}");
    stop(server);
}
