//! The console against a hostile client, over plain HTTP on loopback (`--api-plain-http`) with
//! raw requests: a console user deleted and made again under the same name (new password,
//! narrower rules) never inherits the old user's sessions; a body that trickles in is cut off
//! like the API's (`408`), not held open.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use crate::api::{serve, stop};
use crate::support::{Backend, TestEnv};

/// One request on a new connection; the whole answer as text.
fn request(addr: &str, method: &str, path: &str, cookie: Option<&str>, form: &str) -> String {
    let mut tcp = TcpStream::connect(addr).unwrap();
    tcp.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let cookie = cookie.map_or(String::new(), |c| format!("Cookie: {c}\r\n"));
    let head = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nOrigin: http://{addr}\r\n{cookie}\
         Content-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        form.len()
    );
    tcp.write_all(head.as_bytes()).unwrap();
    tcp.write_all(form.as_bytes()).unwrap();
    let mut answer = String::new();
    let _ = tcp.read_to_string(&mut answer);
    answer
}

fn status(answer: &str) -> &str {
    answer.split(' ').nth(1).unwrap_or("")
}

/// Signs in; returns the session cookie (`rotor_console=…`).
fn sign_in(addr: &str, user: &str, password: &str) -> String {
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

fn make_user(t: &TestEnv, name: &str, password: &str, allow: &str) {
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
