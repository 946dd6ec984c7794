//! Failures an operator meets: nothing listening, a server that does not
//! answer, a missing or wrong token, bad usage; and the help texts.

use std::time::Duration;

use anyhow::Result;

use crate::common::{closed_port, mqttctl, mqttctl_bare, mqttctl_elsewhere, single};

#[tokio::test]
async fn unreachable_server_fails_fast() -> Result<()> {
    let server = format!("http://127.0.0.1:{}", closed_port()?);
    let run = mqttctl(&server, &["users", "list"]).await?;
    assert_eq!(run.failure(), format!("mqttctl: cannot reach {server}: connection refused"));
    assert!(run.elapsed < Duration::from_secs(3), "took {:?}", run.elapsed);
    // A bare HOST:PORT is taken as http://HOST:PORT.
    let bare = mqttctl(&server["http://".len()..], &["--json", "cluster", "status"]).await?;
    assert!(bare.failure().starts_with(&format!("mqttctl: cannot reach {server}")), "{bare:?}");
    Ok(())
}

#[tokio::test]
async fn silent_server_times_out() -> Result<()> {
    // Accepts connections (the kernel does, from the backlog) and never answers.
    let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
    let server = format!("http://{}", listener.local_addr()?);
    let run = mqttctl(&server, &["--timeout", "1", "users", "list"]).await?;
    assert!(run.failure().contains("within 1 second"), "{run:?}");
    assert!(run.elapsed < Duration::from_secs(5), "took {:?}", run.elapsed);
    drop(listener);
    Ok(())
}

#[tokio::test]
async fn bad_server_url_is_refused_before_connecting() -> Result<()> {
    let https = mqttctl("https://127.0.0.1:1", &["users", "list"]).await?;
    assert!(https.failure().contains("--cacert"), "{https:?}");
    let garbage = mqttctl("http://no spaces:1", &["users", "list"]).await?;
    assert!(garbage.failure().contains("is not a URL"), "{garbage:?}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_is_always_required() -> Result<()> {
    let member = single(Some("cluster-secret")).await?;
    let server = member.endpoint();

    // Away from the member's ./data/admin.token and with no token: refused.
    let missing = mqttctl_elsewhere(&server, &["users", "list"], &[]).await?;
    assert!(missing.failure().starts_with("mqttctl: the server wants a token (--token-file"), "{missing:?}");
    let wrong = mqttctl_elsewhere(&server, &["--token", "guess", "users", "list"], &[]).await?;
    assert_eq!(
        wrong.failure(),
        "mqttctl: the server refused the token from --token (check --token, --token-file or MQTTD_TOKEN)"
    );

    // The member token by flag, environment or file; the admin token file.
    let flag = mqttctl_elsewhere(
        &server,
        &["--token", "cluster-secret", "users", "add", "u", "--password", "p"],
        &[],
    )
    .await?;
    assert_eq!(flag.ok(), "added user \"u\"\n");
    let from_env =
        mqttctl_elsewhere(&server, &["users", "list"], &[("MQTTD_TOKEN", "cluster-secret")]).await?;
    assert_eq!(from_env.ok(), "USERNAME  SUPERUSER\nu         no\n");
    let dir = tempfile::tempdir()?;
    let file = dir.path().join("token");
    std::fs::write(&file, format!("{}\n", member.handle.admin_token()))?;
    let file = file.display().to_string();
    let from_file = mqttctl_elsewhere(&server, &["--token-file", &file, "users", "list"], &[]).await?;
    assert_eq!(from_file.ok(), "USERNAME  SUPERUSER\nu         no\n");
    let from_data_dir = mqttctl(&server, &["users", "list"]).await?;
    assert_eq!(from_data_dir.ok(), "USERNAME  SUPERUSER\nu         no\n");
    member.shutdown().await
}

#[tokio::test]
async fn bad_usage_exits_2_and_help_is_complete() -> Result<()> {
    let usage = mqttctl_bare(&["acl", "add", "--allow", "--deny"]).await?;
    assert_eq!(usage.code, Some(2), "{usage:?}");
    assert!(usage.stderr.contains("cannot be used with"), "{usage:?}");

    let help = mqttctl_bare(&["--help"]).await?;
    let help = help.ok();
    for word in
        ["cluster", "users", "acl", "banned", "--server", "--token", "MQTTD_TOKEN", "--json", "--timeout"]
    {
        assert!(help.contains(word), "--help lacks {word}: {help}");
    }
    let pages: [(&[&str], &[&str]); 6] = [
        (&["cluster", "--help"], &["status", "join", "leave"]),
        (&["cluster", "join", "--help"], &["learner", "voter", "<URL>"]),
        (&["users", "--help"], &["add", "list", "passwd", "del"]),
        (&["users", "add", "--help"], &["--password", "--superuser"]),
        (&["acl", "add", "--help"], &["--allow", "--deny", "--action", "--topic", "--ipaddr", "--position"]),
        (&["banned", "add", "--help"], &["--clientid", "--username", "--ipaddr", "--expires"]),
    ];
    for (args, words) in pages {
        let page = mqttctl_bare(args).await?;
        let page = page.ok();
        for word in words {
            assert!(page.contains(word), "{args:?} lacks {word}: {page}");
        }
    }
    Ok(())
}
